"""Catch sellers' mislabels: stored labels that a confident prediction disagrees with."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from classifier.schemes import SCHEMES, conf_field, pred_field, scheme_label
from classifier.tagger import TaggerRecord


@dataclass(frozen=True)
class Finding:
    id: int
    scheme: str
    label: str
    predicted: str
    confidence: float
    held_out: bool  # in the classifier's test split: it never saw this product's label
    name: str
    image: str | None


def find_mislabels(
    ids: Sequence[int],
    payloads: Sequence[dict],
    record: TaggerRecord,
    min_confidence: float = 0.9,
    schemes: Sequence[str] = SCHEMES,
) -> list[Finding]:
    """Products whose label (a class the classifier knows) differs from a prediction made with
    at least `min_confidence`; most confident first. Labels of left-out classes are not judged:
    the classifier cannot predict them."""
    test_ids = set(record.test_ids)
    known = {sc.scheme: set(sc.classes) for sc in record.schemes}
    findings = []
    for pid, payload in zip(ids, payloads):
        for scheme in schemes:
            label = scheme_label(scheme, payload)
            predicted = payload.get(pred_field(scheme))
            confidence = payload.get(conf_field(scheme))
            if (
                label in known.get(scheme, ())
                and predicted is not None
                and predicted != label
                and confidence is not None
                and confidence >= min_confidence
            ):
                findings.append(
                    Finding(
                        pid,
                        scheme,
                        label,
                        predicted,
                        float(confidence),
                        pid in test_ids,
                        str(payload.get("productDisplayName") or ""),
                        payload.get("image"),
                    )
                )
    findings.sort(key=lambda f: (-f.confidence, f.id, f.scheme))
    return findings


def write_csv(findings: Sequence[Finding], path: Path | None, stream=None) -> None:
    """CSV to a file, or to `stream` (stdout) when no path is given."""
    columns = list(Finding.__dataclass_fields__)
    if path is None:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(asdict(f) for f in findings)
        return
    with open(path, "w", newline="") as fh:
        write_csv(findings, None, fh)

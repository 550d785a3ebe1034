"""Catch sellers' mislabels: stored labels that a confident prediction disagrees with."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from classifier.neighbours import VOTED_FIELD, nearest_labels
from classifier.schemes import SCHEMES, TUNED_VECTOR, conf_field, pred_field, scheme_label
from classifier.tagger import TaggerRecord
from classifier.train import collection_payloads
from qdrant.base import VectorStore

# A finding whose tags were voted by neighbours (classifier.neighbours) is ranked by the share
# of the product's AGREEMENT_NEIGHBOURS nearest other products labelled as predicted. The
# vote's confidence follows the nearest few, so one near-duplicate filed otherwise (a unisex
# product listed twice) makes it 1.0. With 1 % of the shared catalog's labels flipped to a
# class of the same category (bench/audit_flips.py, three seeds), the first 50 findings held
# 38-52 % flips by that confidence and 78-86 % by this share (gender_master; subCategory
# 68-70 % -> 78-90 %, articleType 52-64 % -> 80-86 %). 50 neighbours did less well.
AGREEMENT_NEIGHBOURS = 100


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
    # voted tags only: the share of the product's nearest neighbours labelled as predicted
    agreement: float | None = None


def _rank(f: Finding) -> tuple:
    """Most convincing first: by agreement where measured, else by confidence."""
    return (-(f.agreement if f.agreement is not None else f.confidence), -f.confidence, f.id)


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
    findings.sort(key=lambda f: (*_rank(f), f.scheme))
    return findings


def with_agreement(
    findings: Sequence[Finding], neighbour_labels: Mapping[int, Sequence[dict]]
) -> list[Finding]:
    """The findings with the agreement of the products' neighbours (their label payloads,
    nearest first) where given, re-ranked."""
    out = []
    for f in findings:
        near = neighbour_labels.get(f.id)
        if near:
            share = sum(scheme_label(f.scheme, p) == f.predicted for p in near) / len(near)
            f = replace(f, agreement=round(share, 4))
        out.append(f)
    out.sort(key=lambda f: (*_rank(f), f.scheme))
    return out


def audit_collection(
    store: VectorStore,
    collection: str,
    record: TaggerRecord,
    min_confidence: float = 0.9,
    schemes: Sequence[str] = SCHEMES,
) -> list[Finding]:
    """The collection's findings (find_mislabels), those with voted tags ranked by agreement."""
    ids, payloads, _ = collection_payloads(store, collection)
    findings = find_mislabels(ids, payloads, record, min_confidence, schemes)
    voted = {pid for pid, p in zip(ids, payloads) if p.get(VOTED_FIELD) == record.model_file}
    judged = sorted({f.id for f in findings} & voted)
    if not judged:
        return findings
    judged, _, vectors = collection_payloads(store, collection, judged, vector=TUNED_VECTOR)
    near = nearest_labels(store, collection, judged, vectors, AGREEMENT_NEIGHBOURS)
    return with_agreement(findings, dict(zip(judged, near)))


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

"""Catch sellers' mislabels: stored labels that a confident prediction disagrees with.

The classifier's schemes; baseColour where the collection has a colour tagger, and the
articleType of the types the classifier leaves out where it has a type tagger
(classifier.label_tags)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from classifier.label_tags import LabelTagger
from classifier.neighbours import VOTED_FIELD, nearest_labels
from classifier.schemes import (
    COLOUR_TAG,
    FINE_TYPE_TAG,
    SCHEMES,
    TUNED_VECTOR,
    conf_field,
    pred_field,
    scheme_label,
    tag_label,
)
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
# baseColour findings are ranked by confidence x (1 - how often the colour tagger predicts that
# colour for held-out products with that label). Near names of one colour (Tan, Coffee Brown
# and Bronze predicted Brown; Navy Blue predicted Blue) are confused often and fall behind.
# Of the shared catalog's first 40 findings at 0.9, looked at: by confidence alone, 11 photos
# plainly of another colour than the label and 12 near names; by this, 24 and none
# (docs/classifier.md, "Colour labels in the audit"). Rare types are ranked so too (Kurtis
# taken for Kurtas).
RANKED_BY_CONFUSION = (COLOUR_TAG, FINE_TYPE_TAG)


@dataclass(frozen=True)
class Finding:
    id: int
    scheme: str  # one of the classifier's SCHEMES, or a label tagger's tag
    label: str
    predicted: str
    confidence: float
    held_out: bool  # in the predictor's test split: it never saw this product's label
    name: str
    image: str | None
    # voted tags only: the share of the product's nearest neighbours labelled as predicted
    agreement: float | None = None
    # RANKED_BY_CONFUSION tags only: the share of held-out products with this label that are
    # predicted this class
    confusion: float | None = None


def _rank(f: Finding) -> tuple:
    """Most convincing first: by agreement where measured, else by confidence (less the
    confusion where measured)."""
    unconfused = f.confidence * (1.0 - (f.confusion or 0.0))
    return (-(f.agreement if f.agreement is not None else unconfused), -f.confidence, f.id)


def held_out_confusion(
    tag: str, payloads: Sequence[dict], held_out: Sequence[bool]
) -> dict[tuple[str, str], float]:
    """(label, predicted) -> the share of held-out products with that label predicted so."""
    labels: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for payload, held in zip(payloads, held_out):
        label, predicted = tag_label(tag, payload), payload.get(pred_field(tag))
        if held and label is not None and predicted is not None:
            labels[label] += 1
            pairs[label, predicted] += 1
    return {pair: n / labels[pair[0]] for pair, n in pairs.items()}


def find_mislabels(
    ids: Sequence[int],
    payloads: Sequence[dict],
    record: TaggerRecord,
    min_confidence: float = 0.9,
    schemes: Sequence[str] = SCHEMES,
    label_taggers: Mapping[str, LabelTagger] | None = None,
) -> list[Finding]:
    """Products whose label (a class the classifier, or a label tagger (tag -> tagger),
    knows) differs from a prediction made with at least `min_confidence`; most confident
    first. Labels of left-out classes are not judged: they cannot be predicted. The type
    tagger judges only the types the classifier leaves out (the classifier judges the others)."""
    test_ids = {scheme: set(record.test_ids) for scheme in SCHEMES}
    known = {sc.scheme: set(sc.classes) for sc in record.schemes}
    for tag, tagger in (label_taggers or {}).items():
        known[tag] = set(tagger.classes)
        # A tagger saved before it kept its own split was trained on the same seeded split.
        test_ids[tag] = set(tagger.record.get("test_ids", record.test_ids))
    if FINE_TYPE_TAG in known:
        known[FINE_TYPE_TAG] -= known.get("articleType", set())
    findings = []
    for pid, payload in zip(ids, payloads):
        for scheme in schemes:
            label = tag_label(scheme, payload)
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
                        pid in test_ids[scheme],
                        str(payload.get("productDisplayName") or ""),
                        payload.get("image"),
                    )
                )
    for tag in RANKED_BY_CONFUSION:
        if any(f.scheme == tag for f in findings):
            held = [pid in test_ids[tag] for pid in ids]
            confusion = held_out_confusion(tag, payloads, held)
            findings = [
                replace(f, confusion=round(confusion.get((f.label, f.predicted), 0.0), 4))
                if f.scheme == tag
                else f
                for f in findings
            ]
    findings.sort(key=lambda f: (*_rank(f), f.scheme))
    return findings


def with_agreement(
    findings: Sequence[Finding], neighbour_labels: Mapping[int, Sequence[dict]]
) -> list[Finding]:
    """The findings of the classifier's schemes with the agreement of the products' neighbours
    (their label payloads, nearest first) where given, re-ranked."""
    out = []
    for f in findings:
        near = neighbour_labels.get(f.id)
        if near and f.scheme in SCHEMES:
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
    label_taggers: Mapping[str, LabelTagger] | None = None,
) -> list[Finding]:
    """The collection's findings (find_mislabels), those with voted tags ranked by agreement."""
    ids, payloads, _ = collection_payloads(store, collection)
    findings = find_mislabels(ids, payloads, record, min_confidence, schemes, label_taggers)
    voted = {pid for pid, p in zip(ids, payloads) if p.get(VOTED_FIELD) == record.model_file}
    judged = sorted({f.id for f in findings if f.scheme in SCHEMES} & voted)
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


def audit(
    store: VectorStore,
    collection: str,
    data_dir: Path,
    min_confidence: float = 0.9,
    schemes: Sequence[str] | None = None,
) -> list[Finding]:
    """`searchctl audit`: the findings of the schemes asked for (default: the classifier's and
    the colour tagger's), each checked to have its predictor here."""
    from classifier.label_tags import LABEL_TAGGERS, label_tagger_advice, load_label_taggers
    from classifier.schemes import TAGS
    from classifier.tagger import read_record, tagger_dir
    from classifier.train import missing_classifier

    unknown = [s for s in schemes or [] if s not in TAGS]
    if unknown:
        raise ValueError(f"unknown scheme {unknown[0]!r} (schemes: {', '.join(TAGS)})")
    record = read_record(tagger_dir(data_dir, collection))
    if record is None:
        raise missing_classifier(store, collection, "the audit")
    taggers = load_label_taggers(data_dir, collection)
    for kind in LABEL_TAGGERS:
        if kind.tag in (schemes or []) and kind.tag not in taggers:
            raise ValueError(
                f"no {kind.name.replace('_', ' ')} for collection {collection!r}: "
                + label_tagger_advice(store, collection, kind)
            )
    schemes = schemes or [*SCHEMES, *(tag for tag in taggers if tag != FINE_TYPE_TAG)]
    return audit_collection(store, collection, record, min_confidence, schemes, taggers)

"""The paper's tagging schemes, their class lists and the payload fields predictions go to.

No TensorFlow here: the CLI and the store code read these without loading a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCHEMES = ("gender_master", "subCategory", "articleType")
# Not classifier schemes: predicted by classifier.label_tags into the same kind of fields.
COLOUR_TAG = "baseColour"
FINE_TYPE_TAG = "fineArticleType"  # articleType over every type, rare ones too
# Every tag a product is predicted (pred_<tag>, pred_<tag>_conf), and the audit judges.
TAGS = (*SCHEMES, COLOUR_TAG, FINE_TYPE_TAG)
# The catalog label each tag that is not a scheme predicts.
TAG_LABELS = {COLOUR_TAG: "baseColour", FINE_TYPE_TAG: "articleType"}
KINDS = ("finetune", "vectors")  # see classifier/model.py
DEFAULT_MIN_CLASS_SIZE = 500
PRED_PREFIX = "pred_"
IGNORE = -1  # label index of a product whose class is left out of a scheme's training
# The named vector a `finetune` classifier adds: its backbone's features, tuned to the catalog.
TUNED_VECTOR = "tuned"


def scheme_label(scheme: str, payload: dict) -> str | None:
    """A product's true label in a scheme, or None when its labels do not say."""
    if scheme == "gender_master":
        g, m = payload.get("gender"), payload.get("masterCategory")
        return f"{g} {m}" if g and m else None
    if scheme in SCHEMES:
        return payload.get(scheme)
    raise ValueError(f"unknown scheme {scheme!r} (schemes: {', '.join(SCHEMES)})")


def tag_label(tag: str, payload: dict) -> str | None:
    """A product's catalog label for a predicted tag: a scheme's (scheme_label), or the label
    a label tagger predicts (TAG_LABELS)."""
    return payload.get(TAG_LABELS[tag]) if tag in TAG_LABELS else scheme_label(tag, payload)


def pred_field(scheme: str) -> str:
    return f"{PRED_PREFIX}{scheme}"


def conf_field(scheme: str) -> str:
    return f"{PRED_PREFIX}{scheme}_conf"


@dataclass(frozen=True)
class SchemeClasses:
    """The classes a scheme is trained on: those with at least `min_class_size` products."""

    scheme: str
    classes: tuple[str, ...]
    left_out: dict[str, int]  # class -> products, too few to train on
    kept_products: int = 0  # products of the kept classes (0 in records made before it)

    @classmethod
    def from_payloads(
        cls, scheme: str, payloads: Sequence[dict], min_class_size: int
    ) -> SchemeClasses:
        counts = Counter(scheme_label(scheme, p) for p in payloads)
        counts.pop(None, None)
        kept = tuple(sorted(c for c, n in counts.items() if n >= min_class_size))
        left_out = {c: n for c, n in sorted(counts.items()) if n < min_class_size}
        return cls(scheme, kept, left_out, sum(counts[c] for c in kept))

    def encode(self, payloads: Sequence[dict]) -> np.ndarray:
        """Class index per product; IGNORE for a missing or left-out label."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array(
            [index.get(scheme_label(self.scheme, p), IGNORE) for p in payloads], dtype=np.int64
        )

    def to_record(self) -> dict:
        return {
            "scheme": self.scheme,
            "classes": list(self.classes),
            "left_out": self.left_out,
            "kept_products": self.kept_products,
        }

    @classmethod
    def from_record(cls, record: dict) -> SchemeClasses:
        return cls(
            record["scheme"],
            tuple(record["classes"]),
            dict(record["left_out"]),
            int(record.get("kept_products", 0)),
        )


def largest_trainable_min_class_size(payloads: Sequence[dict]) -> int:
    """The largest --min-class-size that leaves every scheme two classes to train on (0 when
    some scheme has a single label in the whole catalog)."""
    sizes = []
    for scheme in SCHEMES:
        counts = Counter(scheme_label(scheme, p) for p in payloads)
        counts.pop(None, None)
        ranked = sorted(counts.values(), reverse=True)
        sizes.append(ranked[1] if len(ranked) > 1 else 0)
    return min(sizes)


def training_advice(payloads: Sequence[dict], min_class_size: int = DEFAULT_MIN_CLASS_SIZE) -> str:
    """What to run to get a classifier for a catalog of these labels, in one step."""
    best = largest_trainable_min_class_size(payloads)
    if best < 2:
        return (
            "the catalog cannot train one: a scheme (gender+masterCategory, subCategory, "
            "articleType) has a single label in it"
        )
    if best >= min_class_size:
        return "run `searchctl train classifier`"
    return (
        f"run `searchctl train classifier --min-class-size {best}` (the default "
        f"{min_class_size} leaves a scheme fewer than two classes of that many products here)"
    )


def tag_payload(scheme_classes: Sequence[SchemeClasses], probs: Sequence[np.ndarray], row: int):
    """Payload fields of one product from each scheme's class probabilities."""
    payload = {}
    for sc, p in zip(scheme_classes, probs):
        best = int(np.argmax(p[row]))
        payload[pred_field(sc.scheme)] = sc.classes[best]
        payload[conf_field(sc.scheme)] = round(float(p[row, best]), 4)
    return payload


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown classifier kind {kind!r} (kinds: {', '.join(KINDS)})")
    return kind

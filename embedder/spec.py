"""What identifies an embedder: recorded with every collection, checked on every use.

Kept free of TensorFlow so that `info`, argument checks and store code stay fast.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGENET = "imagenet"

# Per-channel input normalisations, applied to RGB uint8 arrays.
PREPROCESSINGS = ("caffe", "tf", "torch")

# name -> (output dimension, preprocessing Keras' own ImageNet weights expect)
BACKBONES: dict[str, tuple[int, str]] = {
    "resnet50": (2048, "caffe"),
    "mobilenet_v2": (1280, "tf"),
}

# Weight files known to need another preprocessing than Keras' default for their backbone.
# The shared MobileNetV2 file is converted from PyTorch weights and expects torch-style input.
KNOWN_WEIGHT_FILES: dict[str, str] = {
    "7024a645add6415b5b1bd5e5bbca71eba1fd07f846588d3525235577ae1d6e42": "torch",
}

# height x width: the catalog photos are 3:4, so no padding; chosen by bench/input_size.py
# (docs/embedders.md: +2.3 points articleType over 128x96; 224x168 adds 2.5 more at about
# half the speed).
DEFAULT_INPUT_SIZE = (160, 120)


class WeightsUnavailable(Exception):
    """Model weights cannot be had; the message says how to fix it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_input_size(text: str) -> tuple[int, int]:
    """'128x96' -> (128, 96) as height x width; '160' -> (160, 160)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"input size must look like 128x96 (height x width), got {text!r}"
        ) from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 32:
        raise ValueError(f"input size must be HEIGHTxWIDTH with both >= 32, got {text!r}")
    return sizes[0], sizes[1]


@dataclass(frozen=True)
class EmbedderSpec:
    """Backbone, weights and input handling: everything that changes the vectors."""

    backbone: str
    weights: str  # "imagenet" or a path to a weights file
    weights_id: str  # "keras:imagenet" or "sha256:<hex>"
    input_height: int
    input_width: int
    preprocessing: str
    dim: int

    @property
    def vector_name(self) -> str:
        return self.backbone

    def identity(self) -> dict:
        """The fields that must match for two vectors to be comparable (not the file path)."""
        record = asdict(self)
        record.pop("weights")
        return record

    def to_record(self) -> dict:
        return {**asdict(self), "vector_name": self.vector_name}

    @classmethod
    def from_record(cls, record: dict) -> EmbedderSpec:
        fields = {k: record[k] for k in cls.__dataclass_fields__}
        return cls(**fields)

    def describe(self) -> str:
        return (
            f"{self.backbone} ({self.weights_id}), input {self.input_height}x{self.input_width}, "
            f"{self.preprocessing} preprocessing, {self.dim} dims"
        )


def make_spec(
    backbone: str,
    weights: str | Path | None = None,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    preprocessing: str | None = None,
) -> EmbedderSpec:
    """Resolve a backbone name and weights choice into a spec, checking the file exists."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    dim, keras_preprocessing = BACKBONES[backbone]
    if weights is None or str(weights) == IMAGENET:
        weights_str, weights_id, default_prep = IMAGENET, f"keras:{IMAGENET}", keras_preprocessing
    else:
        path = Path(weights).expanduser().resolve()
        if not path.is_file():
            raise WeightsUnavailable(
                f"weights file not found: {path}\n"
                f"Pass --weights with the path of a Keras weights file for {backbone}."
            )
        sha = sha256_file(path)
        weights_str, weights_id = str(path), f"sha256:{sha}"
        default_prep = KNOWN_WEIGHT_FILES.get(sha, keras_preprocessing)
    prep = preprocessing or default_prep
    if prep not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {prep!r}; choose one of {PREPROCESSINGS}")
    height, width = input_size
    return EmbedderSpec(backbone, weights_str, weights_id, height, width, prep, dim)

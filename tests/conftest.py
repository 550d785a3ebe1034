"""Tiny generated catalogs and tiny weight files, so the suite runs in seconds on a CPU."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Converted backbones (embedder.onnx_backbone) go to a directory of this run, not ~/.cache.
os.environ.setdefault("SEARCHCTL_CACHE_DIR", tempfile.mkdtemp(prefix="searchctl-tests-"))

SHARED_DATASET = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "datasets"
    / "fashion-product-images-small"
)
SHARED_MOBILENET = SHARED_DATASET.parents[1] / "models" / "mobilenet_v2_imagenet_notop.weights.h5"

HEADER = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
    "productDisplayName"
)
KINDS = [
    ("Men", "Apparel", "Topwear", "Shirts", "Navy Blue"),
    ("Women", "Apparel", "Topwear", "Tops", "Red"),
    ("Men", "Footwear", "Shoes", "Casual Shoes", "White"),
    ("Women", "Accessories", "Watches", "Watches", "Black"),
]
COLOURS = [(20, 30, 90), (200, 30, 40), (240, 240, 240), (10, 10, 10)]


def product_image(i: int) -> Image.Image:
    """A 60x80 studio-like picture: a coloured shape on white, different per product."""
    rng = np.random.default_rng(i)
    kind = i % len(KINDS)
    img = np.full((80, 60, 3), 255, np.uint8)
    top, left = 10 + kind * 5, 8 + (i % 3) * 3
    img[top : top + 40 + kind * 5, left : left + 30 + i % 7] = COLOURS[kind]
    img[rng.integers(0, 80, 30), rng.integers(0, 60, 30)] = rng.integers(0, 255, (30, 3))
    return Image.fromarray(img)


def make_catalog(root: Path, n: int = 24) -> Path:
    """n good products, plus the bad cases a real catalog has."""
    images = root / "images"
    images.mkdir(parents=True)
    lines = [HEADER]
    for i in range(1, n + 1):
        g, m, s, a, c = KINDS[i % len(KINDS)]
        name = f"Brand {g} {c} {a}" + (", with belt, and box" if i == 3 else "")
        lines.append(f"{i},{g},{m},{s},{a},{c},Summer,{2010 + i % 3},Casual,{name}")
        product_image(i).save(images / f"{i}.jpg", quality=95)
    # Bad items: corrupt bytes, zero bytes, a text file, a row without image, an orphan image.
    lines += [
        "901,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Corrupt Shirt",
        "902,Men,Apparel,Topwear,Shirts,Blue,Fall,,Casual,Empty File Shirt",
        "903,Women,Apparel,Topwear,Tops,Red,Fall,2012,,Not An Image Top",
        "904,Women,Apparel,Topwear,Tops,Red,Fall,2012,Casual,No Image Top",
        "905,Women,Apparel",  # malformed: too few fields
    ]
    good = (images / "1.jpg").read_bytes()
    (images / "901.jpg").write_bytes(good[: len(good) // 3])
    (images / "902.jpg").write_bytes(b"")
    (images / "903.jpg").write_text("this is not a jpeg\n")
    product_image(999).save(images / "999.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return root


def ingest_args(catalog: Path, weights: Path, *extra: str) -> list[str]:
    """`searchctl ingest` of a tiny catalog with the tiny MobileNetV2 at 32x32."""
    return ["ingest", str(catalog), "--backbone", "mobilenet_v2", "--weights", str(weights),
            "--input-size", "32x32", *extra]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A MobileNetV2 weights file with fixed random weights (no download)."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.applications.MobileNetV2(
        include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3)
    )
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_random.weights.h5"
    model.save_weights(path)
    return path


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("SEARCHCTL_DATA_DIR", str(path))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    return path


def needs_shared():
    return pytest.mark.skipif(
        not (SHARED_DATASET / "styles.csv").is_file() or not SHARED_MOBILENET.is_file(),
        reason=f"shared dataset or weights not found at {SHARED_DATASET.parents[1]}",
    )


class RecordingProgress:
    """The library's Progress interface, recording what it hears (searchctl.reporting)."""

    def __init__(self, on_note=None):
        self.phases: list[tuple[str, int | None]] = []
        self.advanced = 0
        self.notes: list[str] = []
        self.reports: list = []
        self.on_note = on_note

    def phase(self, label, total=None):
        self.phases.append((label, total))

    def advance(self, n=1):
        self.advanced += n

    def note(self, text):
        self.notes.append(text)
        if self.on_note:
            self.on_note(text)

    def done(self, report):
        self.reports.append(report)

"""Photos decoded once per run (embedder.decoded): the pixels every stage reads are those a
fresh decode gives, they come from disk once kept, and an ingest opens each photo once."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import make_catalog

import embedder.images as images_module
from embedder.decoded import DecodedPhotos, decoded_dir
from embedder.images import load_images
from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.plan import StagePlan, ingest
from qdrant.edge import EdgeStore

SIZES = [(80, 60, "letterbox"), (32, 24, "squash")]


@pytest.fixture
def shop(tmp_path) -> Path:
    return make_catalog(tmp_path / "shop", n=20)


def _sources(shop: Path) -> tuple[list[int], list[Path]]:
    ids = [*range(1, 21), 901, 902, 903]
    return ids, [shop / "images" / f"{i}.jpg" for i in ids]


@pytest.mark.parametrize("cutout", [True, False])
def test_kept_photos_are_a_fresh_decode_and_outlive_their_files(shop, tmp_path, cutout):
    ids, paths = _sources(shop)
    with DecodedPhotos(tmp_path / "d", SIZES, cutout=cutout) as photos:
        for height, width, fit in SIZES:
            expected, good, bad = load_images(paths, height, width, fit, cutout=cutout)
            pixels, got_good, got_bad = photos.load(ids, paths, (height, width, fit))
            assert got_good == good and got_bad == bad and len(bad) == 3
            assert np.array_equal(pixels, expected)
        shutil.rmtree(shop / "images")  # every photo is now read from the kept rows
        again, good_again, bad_again = photos.load(ids, paths, SIZES[1])
        assert good_again == good and bad_again == bad
        assert np.array_equal(again, expected)
        rows = photos.rows([ids[i] for i in good], SIZES[1])
        assert len(rows) == 20 and rows.shape == (20, 32, 24, 3)
        assert np.array_equal(rows[3], expected[3])
        assert np.array_equal(rows[2:9:3], expected[2:9:3])
        assert np.array_equal(rows[np.array([7, 0, 7])], expected[[7, 0, 7]])
        with pytest.raises(KeyError, match="901"):
            photos.rows([1, 901], SIZES[1])
        directory = photos.directory
        assert directory.is_dir()
    assert not directory.exists()  # the files last one run


def test_a_killed_runs_photos_are_removed_by_the_next_run(shop, tmp_path):
    """A killed run never reaches `close`: the next run removes its files, not a live one's."""
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    parent = tmp_path / "d"
    killed = parent / f"run-{ended.stdout.strip()}-abc"
    live = parent / f"run-{os.getppid()}-xyz"  # the test runner's parent: alive
    for run in (killed, live):
        run.mkdir(parents=True)
        (run / "80x60-letterbox.u8").write_bytes(b"x" * 100)
    ids, paths = _sources(shop)
    with DecodedPhotos(parent, SIZES, cutout=True) as photos:
        photos.load(ids[:2], paths[:2], SIZES[0])
        assert not killed.exists() and live.exists()
    assert sorted(p.name for p in parent.iterdir()) == [live.name]


def test_a_size_asked_for_later_decodes_the_photo_again(shop, tmp_path):
    ids, paths = _sources(shop)
    with DecodedPhotos(tmp_path / "d", SIZES[:1], cutout=True) as photos:
        photos.load(ids, paths, SIZES[0])
        pixels, good, _ = photos.load(ids, paths, (40, 30, "letterbox"))
        expected, _, _ = load_images(paths, 40, 30, cutout=True)
        assert np.array_equal(pixels, expected) and len(good) == 20


@pytest.fixture
def opened(monkeypatch) -> Counter[str]:
    """How many times each photo file is opened (embedder.images.open_image)."""
    counts: Counter[str] = Counter()
    open_image = images_module.open_image

    def counting_open(source):
        counts[Path(source).name] += 1
        return open_image(source)

    monkeypatch.setattr(images_module, "open_image", counting_open)
    return counts


def test_an_ingest_opens_each_photo_once_and_leaves_no_decoded_files(
    shop, tmp_path, tiny_weights, opened
):
    """The backbone, colour and autoencoder stages all read photos; each is opened once."""
    plan = StagePlan(classifier=False, autoencoder_epochs=1)
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32), None)
    data = tmp_path / "data"
    with EdgeStore(data) as store:
        result = ingest(read_catalog(shop), store, "c", spec, data, plan)
        assert result.backbone.stored == 20
        assert result.stages["colour"].details["described"] == 20
        assert result.stages["autoencoder"].details["embedded"] == 20
        assert {p.id for p in store.iter_points("c")} == set(range(1, 21))
    assert opened == Counter({f"{i}.jpg": 1 for i in range(1, 21)} | {
        "901.jpg": 1, "902.jpg": 1, "903.jpg": 1})  # fmt: skip
    assert list(decoded_dir(data).iterdir()) == []


def test_a_finetune_classifier_trains_and_tags_from_the_kept_photos(
    shop, tmp_path, tiny_weights, opened
):
    """The finetune classifier's training, its tags and the tuned vectors read the photos
    the backbone stage kept: each photo is still opened once."""
    plan = StagePlan(autoencoder=False, classifier_kind="finetune", min_class_size=2)
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32), None)
    data = tmp_path / "data"
    with EdgeStore(data) as store:
        result = ingest(read_catalog(shop), store, "c", spec, data, plan)
        assert result.stages["classifier"].details["tagged"] == 20
        assert result.stages["tuned"].details["embedded"] == 20
    assert opened == Counter({f"{i}.jpg": 1 for i in range(1, 21)} | {
        "901.jpg": 1, "902.jpg": 1, "903.jpg": 1})  # fmt: skip
    assert list(decoded_dir(data).iterdir()) == []


def test_rows_on_disk_index_like_an_array_and_leave_no_file(tmp_path):
    from embedder.decoded import RowFile

    values = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    rows = RowFile((5,), np.float32, directory=tmp_path)
    for i, row in enumerate(values):
        rows[i] = row
    assert rows.shape == (7, 5) and len(rows) == 7
    np.testing.assert_array_equal(rows[2:5], values[2:5])
    np.testing.assert_array_equal(rows[[6, 0, 3]], values[[6, 0, 3]])
    np.testing.assert_array_equal(rows[-1], values[-1])
    np.testing.assert_array_equal(np.asarray(rows), values)
    with pytest.raises(IndexError):
        rows[7]
    assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing left by a killed run
    rows.close()

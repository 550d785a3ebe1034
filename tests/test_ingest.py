"""Ingest as a library call: interrupted runs resume without loss or duplicates."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import SHARED_DATASET, SHARED_MOBILENET, needs_shared

from embedder.collection import EmbedderMismatch
from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.pipeline import ingest_catalog
from qdrant.edge import EdgeStore


class Crash(Exception):
    pass


class CrashingStore(EdgeStore):
    """An embedded store that dies after `survive` successful upserts, like a killed process."""

    def __init__(self, data_dir, survive: int):
        super().__init__(data_dir)
        self.survive = survive

    def upsert(self, name, points):
        if self.survive == 0:
            raise Crash("store went away")
        self.survive -= 1
        super().upsert(name, points)


@pytest.fixture(scope="module")
def embedder(tiny_weights):
    from embedder.model import Embedder

    return Embedder(make_spec("mobilenet_v2", tiny_weights, (32, 32)))


def test_interrupted_ingest_resumes_without_loss_or_duplicates(tiny_catalog, embedder, tmp_path):
    catalog = read_catalog(tiny_catalog)
    spec = embedder.spec
    crashing = CrashingStore(tmp_path, survive=2)
    with pytest.raises(Crash):
        ingest_catalog(catalog, crashing, "c", spec, make_embedder=lambda _: embedder, batch_size=4)
    crashing.close()

    store = EdgeStore(tmp_path)
    partial = store.ids("c")
    assert len(partial) == 8  # two batches of 4 made it, nothing else

    report = ingest_catalog(
        catalog, store, "c", spec, make_embedder=lambda _: embedder, batch_size=4
    )
    assert report.already_stored == 8 and report.stored == 24 - 8
    assert store.count("c") == 24
    points = store.retrieve("c", sorted(store.ids("c")), with_vectors=True)
    by_id = catalog.by_id()
    for p in points:
        photo = tiny_catalog / "images" / f"{p.id}.jpg"
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        expected = {**by_id[p.id].payload, "image": f"images/{p.id}.jpg", "image_sha256": digest}
        assert p.payload == expected
        assert np.linalg.norm(p.vectors["mobilenet_v2"]) == pytest.approx(1.0, abs=1e-4)
    # Vectors written before the crash equal the ones a clean run makes.
    clean = EdgeStore(tmp_path / "clean")
    ingest_catalog(catalog, clean, "c", spec, make_embedder=lambda _: embedder, batch_size=7)
    for p in clean.retrieve("c", sorted(partial), with_vectors=True):
        (again,) = store.retrieve("c", [p.id], with_vectors=True)
        assert np.allclose(p.vectors["mobilenet_v2"], again.vectors["mobilenet_v2"], atol=1e-5)
    store.close()
    clean.close()


def test_other_embedder_is_refused_before_any_write(tiny_catalog, embedder, tmp_path):
    catalog = read_catalog(tiny_catalog)
    with EdgeStore(tmp_path) as store:
        ingest_catalog(
            catalog, store, "c", embedder.spec, make_embedder=lambda _: embedder, limit=4
        )
        other = make_spec("mobilenet_v2", embedder.spec.weights, (48, 48))
        with pytest.raises(EmbedderMismatch, match="input_height"):
            ingest_catalog(catalog, store, "c", other)
        assert store.count("c") == 4


@pytest.mark.integration
@needs_shared()
def test_real_catalog_sample_ingest_and_query(tmp_path):
    """A few hundred real products with the real ImageNet MobileNetV2 weights."""
    from searchctl.query import Searcher

    catalog = read_catalog(SHARED_DATASET)
    spec = make_spec("mobilenet_v2", SHARED_MOBILENET)
    assert spec.preprocessing == "torch"  # the shared file is converted from PyTorch
    with EdgeStore(tmp_path) as store:
        report = ingest_catalog(catalog, store, "shared", spec, limit=300)
        assert report.stored == 300 and not report.bad_images
        searcher = Searcher(store, "shared")
        sample = catalog.with_image[:300:30]
        same_type = 0
        for product in sample:
            hits = searcher.search_image(product.image, top=6).hits
            assert hits[0].id == product.id and hits[0].score >= 0.99
            same_type += sum(
                h.payload["articleType"] == product.payload["articleType"] for h in hits[1:]
            )
        # Real ImageNet features group products by kind: most neighbours share the articleType.
        assert same_type / (5 * len(sample)) >= 0.5


def test_ingest_records_the_catalog_photo_detail_and_queries_are_brought_down_to_it(
    tiny_catalog, embedder, tmp_path
):
    from PIL import Image

    from embedder.collection import (
        PHOTO_SHARPNESS_KEY,
        PHOTO_SIZE_KEY,
        collection_photo_detail,
        typical_photo_sharpness,
    )
    from embedder.images import CUT_OUT, photo_sharpness, was_cut_out
    from ingest.pipeline import record_photo_detail
    from searchctl.query import Searcher

    catalog = read_catalog(tiny_catalog)
    photos = [p.image for p in catalog.with_image]
    with EdgeStore(tmp_path) as store:
        ingest_catalog(catalog, store, "c", embedder.spec, make_embedder=lambda _: embedder)
        recorded = store.get_metadata("c")
        assert recorded[PHOTO_SIZE_KEY] == [60, 80]
        sharpness = recorded[PHOTO_SHARPNESS_KEY]
        assert sharpness == typical_photo_sharpness(photos) and sharpness > 0
        searcher = Searcher(store, "c")
        assert searcher.photo_size == (60, 80)
        assert searcher.photo_sharpness == sharpness
        sharp = Image.new("RGB", (240, 320), "white")
        sharp.info[CUT_OUT] = True
        shrunk = searcher.prepare(sharp, cutout=False)
        assert shrunk.size == (60, 80) and was_cut_out(shrunk)
        small = Image.new("RGB", (30, 40), "white")
        assert searcher.prepare(small, cutout=False) is small  # never enlarged
        # A studio shot sharper than the catalog's photos is brought to their sharpness.
        blocks = np.random.default_rng(0).integers(0, 256, (80, 60), dtype=np.uint8)
        studio = Image.fromarray(np.kron(blocks, np.ones((4, 4), np.uint8))).convert("RGB")
        assert photo_sharpness(searcher.prepare(studio, cutout=False)) <= sharpness
        # A collection made before the records: measured on its stored photos, and the
        # next ingest records them.
        del recorded[PHOTO_SIZE_KEY], recorded[PHOTO_SHARPNESS_KEY]
        store.set_metadata("c", recorded)
        # fewer photos than a sample: the same photos, the same figures
        assert collection_photo_detail(store, "c") == ((60, 80), sharpness)
        record_photo_detail(store, "c", catalog)
        again = store.get_metadata("c")
        assert again[PHOTO_SIZE_KEY] == [60, 80] and again[PHOTO_SHARPNESS_KEY] == sharpness

"""Shoppers' photos made from catalog photos: the photo itself, the query map fitted on them,
the stage that makes them at ingest, and what the type tagger and the search take from them."""

from __future__ import annotations

import numpy as np
from conftest import make_catalog, product_image

from classifier.label_tags import FINE_TYPE, LabelTagger, ensure_label_tags, label_tagger_dir
from classifier.tagger import read_record, tagger_dir
from embedder.colour import COLOUR_VECTOR
from embedder.images import prepare_photo, was_cut_out
from embedder.shopper import (
    FRAMES,
    QueryMap,
    ShopperSet,
    load_query_map,
    load_shopper_set,
    read_shopper_record,
    save_shopper_set,
    shopper_photo,
)
from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.plan import StagePlan, ingest
from qdrant import PointData
from qdrant.edge import EdgeStore
from searchctl.query import Searcher
from searchctl.reporting import Action

TYPES = ["Shirts", "Tops", "Watches"]


def test_a_shopper_photo_lays_the_product_on_a_background_the_cut_out_takes_away():
    product = product_image(3)
    photo = shopper_photo(product, np.random.default_rng(0))
    assert photo.size in FRAMES and photo.mode == "RGB"
    pixels = np.asarray(photo, np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    assert (255 - border).max(axis=-1).min() > 18  # no studio white left at the edge
    cut = prepare_photo(photo, True)
    assert was_cut_out(cut)  # searched as a shopper's photo is
    assert cut.width < photo.width and cut.height < photo.height  # cropped to the product
    # The same product and seed make the same photo; another seed another one.
    again = shopper_photo(product, np.random.default_rng(0))
    assert np.array_equal(np.asarray(again), np.asarray(photo))
    other = shopper_photo(product, np.random.default_rng(1))
    assert other.size != photo.size or not np.array_equal(np.asarray(other), pixels)


def test_the_query_map_brings_a_photos_vector_nearer_its_product_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(0)
    products = rng.normal(size=(400, 16))
    drift = np.eye(16) + rng.normal(0, 0.4, (16, 16))  # the camera's systematic change
    photos = products @ drift + rng.normal(0, 0.05, (400, 16))
    query_map = QueryMap.fit(photos[:300], products[:300])

    def cosine(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return (a * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(axis=1)

    unseen = slice(300, None)
    mapped = query_map.apply(photos[unseen])
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1, atol=1e-5)
    assert cosine(mapped, products[unseen]).mean() > cosine(photos[unseen], products[unseen]).mean()
    one = query_map.apply(photos[300])
    assert one.shape == (16,) and np.allclose(one, mapped[0], atol=1e-6)
    path = tmp_path / "map.npz"
    query_map.save(path)
    assert np.allclose(QueryMap.load(path).apply(photos[unseen]), mapped, atol=1e-6)


def _typed_store(tmp_path) -> EdgeStore:
    """Products whose type their shape vector tells, not their colour vector."""
    s = EdgeStore(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(3)
    points = []
    for i in range(1, 121):
        shape = rng.normal(size=4).astype(np.float32)
        shape[i % 3] += 4.0
        vectors = {"shape": shape, COLOUR_VECTOR: rng.uniform(0, 1, 6).astype(np.float32)}
        points.append(PointData(i, vectors, {"articleType": TYPES[i % 3]}))
    s.upsert("c", points)
    return s


def test_the_type_tagger_learns_shopper_photos_and_retrains_when_they_change(tmp_path):
    """Shopper photos whose type only their colour tells (their shape says nothing: a view
    the catalog's photos never show) teach the tagger to name them; without them it cannot."""
    store, data = _typed_store(tmp_path), tmp_path / "data"
    try:
        ids = np.array(sorted(store.ids("c")))
        rng = np.random.default_rng(5)
        photo_shapes = rng.normal(0, 1, (len(ids), 4)).astype(np.float32)
        colours = rng.uniform(0, 0.2, (len(ids), 6)).astype(np.float32)
        colours[np.arange(len(ids)), (ids % 3) * 2] += 1.0
        without = ensure_label_tags(store, "c", data, "shape", FINE_TYPE)
        assert without.action == Action.TRAINED
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.record["shopper_photos"] == 0 and tagger.record["shopper_mark"] is None
        queries = {"shape": photo_shapes, COLOUR_VECTOR: colours}
        truth = [TYPES[i % 3] for i in ids]

        def right(t: LabelTagger) -> float:
            return np.mean([x["pred_fineArticleType"] == y for x, y in zip(t.tags(queries), truth)])

        assert right(tagger) < 0.5
        vectors = {"shape": photo_shapes, COLOUR_VECTOR: colours}
        saved = save_shopper_set(
            data, "c", ShopperSet(ids, vectors, np.ones(len(ids), bool), {"count": 120}), None
        )
        assert load_shopper_set(data, "c").mark == saved.mark
        learnt = ensure_label_tags(store, "c", data, "shape", FINE_TYPE)
        assert learnt.action == Action.TRAINED  # a new set of shopper photos: trained again
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.record["shopper_mark"] == saved.mark
        test_ids = set(tagger.record["test_ids"])
        assert tagger.record["shopper_photos"] == len(set(ids) - test_ids)  # never a test product
        assert right(tagger) > 0.9
        assert ensure_label_tags(store, "c", data, "shape", FINE_TYPE).action == "up_to_date"
    finally:
        store.close()


def test_ingest_photographs_products_as_shoppers_and_leaves_the_test_products_out(
    tmp_path, tiny_weights
):
    catalog = read_catalog(make_catalog(tmp_path / "shop", n=100))  # 25 of each type
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32), None)
    data = tmp_path / "data"
    plan = StagePlan(autoencoder=False, min_class_size=5, shopper_photos=30)
    with EdgeStore(tmp_path / "store") as store:
        result = ingest(catalog, store, "c", spec, data, plan)
        report = result.stages["shopper_photos"]
        assert report.action == Action.TRAINED and report.details["rows"] == 30
        assert not report.details["map"]  # too few cut-out photos for a map
        shoppers = load_shopper_set(data, "c")
        assert len(shoppers.ids) == 30 and shoppers.cut_out.mean() > 0.5  # light tables stay
        assert not set(shoppers.ids.tolist()) & set(read_record(tagger_dir(data, "c")).test_ids)
        assert shoppers.vectors[spec.vector_name].shape == (30, spec.dim)
        assert shoppers.vectors[COLOUR_VECTOR].shape[0] == 30
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.record["shopper_mark"] == shoppers.mark
        assert tagger.record["shopper_photos"] == 30
        again = ingest(catalog, store, "c", spec, data, plan)
        assert again.stages["shopper_photos"].action == Action.UP_TO_DATE
        assert again.stages["type_tags"].action == Action.UP_TO_DATE
        # `tag` and `train` pass no count: the set stays as made.
        kept = ingest(catalog, store, "c", spec, data, StagePlan(autoencoder=False))
        assert kept.stages["shopper_photos"].action == Action.UP_TO_DATE
        none = StagePlan(autoencoder=False, shopper_photos=0)
        off = ingest(catalog, store, "c", spec, data, none)
        assert off.stages["shopper_photos"].action == Action.SKIPPED
        assert read_shopper_record(data, "c")["count"] == 30  # the set made stays
        # A photo gone from disk since: named, and every other product photographed.
        test_ids = set(read_record(tagger_dir(data, "c")).test_ids)
        trained_on = sorted(set(store.ids("c")) - test_ids)
        (catalog.root / "images" / f"{trained_on[0]}.jpg").unlink()
        every = StagePlan(autoencoder=False, shopper_photos=1000)
        remade = ingest(catalog, store, "c", spec, data, every).stages["shopper_photos"]
        assert remade.action == Action.TRAINED and remade.details["rows"] == len(trained_on) - 1
        assert [pid for pid, _ in remade.bad_images] == [trained_on[0]]
        assert "file not found" in remade.bad_images[0][1]


def test_a_cut_out_query_is_searched_with_the_query_map_and_a_studio_one_without(
    tmp_path, tiny_weights
):
    catalog = read_catalog(make_catalog(tmp_path / "shop", n=24))
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32), None)
    data = tmp_path / "data"
    plan = StagePlan(autoencoder=False, classifier=False)
    with EdgeStore(tmp_path / "store") as store:
        ingest(catalog, store, "c", spec, data, plan)
        dim = spec.dim
        rng = np.random.default_rng(0)
        query_map = QueryMap(np.zeros(dim, np.float32), rng.normal(size=(dim, dim)).astype(
            np.float32), np.zeros(dim, np.float32))  # fmt: skip
        vectors = {spec.vector_name: np.zeros((0, dim)), COLOUR_VECTOR: np.zeros((0, 6))}
        save_shopper_set(
            data, "c", ShopperSet(np.zeros(0, np.int64), vectors, np.zeros(0, bool),
                                  {"backbone": spec.vector_name}), query_map,
        )  # fmt: skip
        assert load_query_map(data, "c", "another_backbone") is None
        searcher = Searcher(store, "c", tiny_weights, data_dir=data)
        assert searcher.query_map is not None
        studio = product_image(5)
        shopper = shopper_photo(studio, np.random.default_rng(2))

        def embedded(photo, cut: bool) -> np.ndarray:
            pixels = searcher.fit(searcher.prepare(photo), spec.vector_name)[None]
            return searcher.embed_pixels(pixels, [cut])[0][0]

        far = rng.uniform(0, 1, dim).astype(np.float32)  # no stored vector near it
        rows = np.stack([embedded(studio, False), far])
        sent = searcher.search_rows(rows, spec.vector_name, [False, True])
        assert np.array_equal(sent[0], rows[0])  # a studio photo's vector as it is
        assert np.allclose(sent[1], query_map.apply(far), atol=1e-6)
        as_searched = searcher.search_rows(embedded(shopper, True)[None], spec.vector_name, [True])
        assert np.allclose(searcher.embed_image(shopper), as_searched[0], atol=1e-4)
        # A cut-out photo that is a catalog photo (its stored vector) keeps its own vector.
        stored = store.retrieve("c", [7], with_vectors=[spec.vector_name])[0]
        own = stored.vectors[spec.vector_name][None]
        assert np.array_equal(searcher.search_rows(own, spec.vector_name, [True]), own)
        result = searcher.search_image(shopper, top=3)
        assert result.hits and searcher.search_image(studio, top=1).hits[0].id == 5

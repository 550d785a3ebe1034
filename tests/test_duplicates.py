"""Duplicate photos: found as groups, and collapsed to one hit by a search that asks."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.plan import StagePlan, ingest
from ingest.sync import PHOTO_HASH_FIELD
from qdrant.base import PointData
from qdrant.edge import EdgeStore
from searchctl.cli import app
from searchctl.duplicates import collapse_duplicates, find_duplicates
from searchctl.query import SearchRequest, search

VECTOR = "mobilenet_v2"


@pytest.fixture(scope="module")
def shop(tiny_catalog, tiny_weights, tmp_path_factory):
    """The tiny catalog plus 31, the very bytes of 13's photo, ingested."""
    root = shutil.copytree(tiny_catalog, tmp_path_factory.mktemp("dup") / "shop")
    shutil.copyfile(root / "images" / "13.jpg", root / "images" / "31.jpg")
    with open(root / "styles.csv", "a") as f:
        f.write("31,Men,Apparel,Topwear,Shirts,Red,Summer,2012,Casual,Copy Shirt\n")
    data = root.parent / "data"
    store = EdgeStore(data)
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32))
    ingest(
        read_catalog(root), store, "c", spec, data, StagePlan(autoencoder=False, classifier=False)
    )
    yield store, root
    store.close()


def test_identical_photos_are_grouped_by_their_bytes(shop):
    store, root = shop
    report = find_duplicates(store, "c", VECTOR, threshold=1.0)
    assert [g.ids for g in report.identical] == [[13, 31]] and report.without_hash == 0
    photos = [(root / "images" / f"{i}.jpg").read_bytes() for i in (13, 31)]
    assert len({hashlib.sha256(b).digest() for b in photos}) == 1  # truly the same bytes
    assert all(13 not in g.ids for g in report.near)  # not a near group as well


def _store_of(tmp_path, rows: dict[int, list[float]], hashes: dict[int, str]) -> EdgeStore:
    store = EdgeStore(tmp_path)
    store.create_collection("v", {"x": 3}, {}, {})
    store.upsert(
        "v",
        [
            PointData(i, {"x": np.array(r, float)}, {PHOTO_HASH_FIELD: hashes.get(i, str(i))})
            for i, r in rows.items()
        ],
    )
    return store


def test_near_identical_vectors_are_grouped_above_the_threshold(tmp_path):
    rows = {
        1: [1, 0, 0], 2: [0.999, 0.04, 0], 3: [0.99, 0.1, 0.05],  # a chain of near ones
        4: [0, 1, 0], 5: [0, 0.7, 0.7], 6: [0, 0, 1], 7: [0, 0, 1],  # 6, 7: same bytes
    }  # fmt: skip
    store = _store_of(tmp_path, rows, {6: "same", 7: "same"})
    report = find_duplicates(store, "v", "x", threshold=0.99)
    assert [g.ids for g in report.identical] == [[6, 7]]
    assert [g.ids for g in report.near] == [[1, 2, 3]]
    assert 0.99 <= report.near[0].weakest < 0.999
    loose = find_duplicates(store, "v", "x", threshold=0.7)
    assert [g.ids for g in loose.near] == [[1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates(store, "v", "x", threshold=1.5)
    store.close()


def test_a_search_that_asks_shows_one_hit_per_group(shop, tmp_path):
    store, _ = shop
    plain = search(store, "c", SearchRequest(product_id=13, top=5, plain=True))
    assert [h.id for h in plain.hits][:2] in ([13, 31], [31, 13])  # the copy scores 1.0
    deduped = search(store, "c", SearchRequest(product_id=13, top=5, plain=True, dedupe=True))
    assert deduped.hits[0].id in (13, 31) and {13, 31} - {h.id for h in deduped.hits}

    rows = {
        1: [1, 0, 0], 2: [0.999, 0.04, 0], 3: [0.9, 0, 0.43], 4: [0.8, 0.6, 0],
        5: [0.8, 0.6, 0], 6: [0, 0, 1],
    }  # fmt: skip
    small = _store_of(tmp_path / "v", rows, {4: "same", 5: "same"})
    ids = [h.id for h in search(small, "v", SearchRequest(product_id=1, top=5, plain=True)).hits]
    assert ids[:3] == [1, 2, 3] and set(ids[3:]) == {4, 5}
    one_each = search(small, "v", SearchRequest(product_id=1, top=4, plain=True, dedupe=True))
    assert [h.id for h in one_each.hits] == [1, 3, ids[3], 6]  # 2 near 1; 4 and 5 the same
    paged = search(
        small, "v", SearchRequest(product_id=1, top=2, offset=1, plain=True, dedupe=True)
    )
    assert [h.id for h in paged.hits] == [3, ids[3]]
    small.close()


def test_collapse_keeps_the_better_hit_of_near_identical_vectors(tmp_path):
    from qdrant.base import Hit

    rows = {1: [1, 0, 0], 2: [0.999, 0.04, 0], 3: [0, 1, 0], 4: [0, 0.7, 0.7]}
    store = _store_of(tmp_path, rows, {})
    hits = [Hit(2, 0.9, None), Hit(1, 0.8, None), Hit(3, 0.5, None), Hit(4, 0.4, None)]
    assert [h.id for h in collapse_duplicates(store, "v", hits, "x", 0.99)] == [2, 3, 4]
    assert [h.id for h in collapse_duplicates(store, "v", hits, "x", 0.7)] == [2, 3]
    store.close()


def test_the_command_lists_writes_csv_and_a_sheet(shop, tmp_path):  # last: closes the store
    store, root = shop
    data = root.parent / "data"
    store.close()  # the command opens the store itself
    runner = CliRunner()
    sheet, rows = tmp_path / "dups.png", tmp_path / "dups.csv"
    args = ["duplicates", "-c", "c", "--data-dir", str(data), "--threshold", "1"]
    result = runner.invoke(app, [*args, "--json", "--csv", str(rows), "--show", str(sheet)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["identical_groups"] == 1 and report["identical"][0]["ids"] == [13, 31]
    assert "13" in rows.read_text() and Image.open(sheet).size[0] > 100
    text = runner.invoke(app, args)
    assert "same bytes: 13, 31" in text.stdout

"""Label match rates: hand-checked cases, a numpy brute-force twin, both stores, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ingest_args
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from qdrant import PointData
from qdrant.edge import EdgeStore
from qdrant.server import ServerStore
from searchctl.cli import app
from searchctl.evaluate import (
    EVAL_FIELDS,
    agreement_matrix,
    available_modes,
    evaluate,
    sample_ids,
    select_modes,
    stored_queries,
    top_k,
)

runner = CliRunner()
TYPES = ["Shirts", "Tops", "Heels", "Watches"]
COLOURS = ["Red", "Blue", "Black"]


def _points(n: int = 90, seed: int = 3) -> list[PointData]:
    """Four tight clusters (one per articleType); gender and colour vary inside a cluster."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:4] * 10
    points = []
    for i in range(n):
        t = i % 4
        labels = {
            "gender": "Men" if (i // 4) % 2 else "Women",
            "masterCategory": "Apparel",
            "subCategory": "Topwear" if t < 2 else "Other",
            "articleType": TYPES[t],
            "baseColour": COLOURS[i % 3],
            "usage": None if i % 10 == 0 else "Casual",
            "season": "Summer",
        }
        vec = centres[t] + rng.normal(size=8)
        points.append(PointData(i + 1, {"shape": vec, "noise": rng.normal(size=4)}, labels))
    return points


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path) if request.param == "edge" else ServerStore(QdrantClient(":memory:"))
    s.create_collection("c", {"shape": 8, "noise": 4}, {}, {})
    s.upsert("c", _points())
    yield s
    s.close()


def test_agreement_matrix_by_hand():
    labels_of = {
        1: {"gender": "Men", "articleType": "Shirts"},
        2: {"gender": "Women", "articleType": "Shirts"},
        3: {"gender": "Men"},  # no articleType: counts as a miss
    }
    queries = [{"gender": "Men", "articleType": "Shirts"}, {"gender": None, "articleType": "Tops"}]
    m = agreement_matrix(queries, [[1, 2, 3], [1, 2]], labels_of, ("gender", "articleType"))
    assert m[0].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert np.isnan(m[1, 0]) and m[1, 1] == 0.0


def test_top_k_drops_the_query_wherever_it_is():
    hits = [[7, 1, 2, 3], [1, 2, 3, 4], [5, 5]]
    assert top_k(hits, [1, 9, 5], 3, leave_one_out=True) == [[7, 2, 3], [1, 2, 3], []]
    assert top_k(hits, [1, 9, 5], 3, leave_one_out=False) == [[7, 1, 2], [1, 2, 3], [5, 5]]


def test_sample_is_reproducible():
    ids = list(range(1000))
    assert sample_ids(ids, 50, seed=4) == sample_ids(ids, 50, seed=4)
    assert sample_ids(ids, 50, seed=4) != sample_ids(ids, 50, seed=5)
    assert sample_ids(ids, None, seed=4) == ids


def _brute_force_rates(points: list[PointData], vector: str, k: int) -> dict[str, float]:
    """An independent computation: numpy cosine over all points, self excluded."""
    unit = np.stack([p.vectors[vector] / np.linalg.norm(p.vectors[vector]) for p in points])
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rates = {}
    for field in EVAL_FIELDS:
        values = np.array([str(p.payload[field]) for p in points])
        has = np.array([p.payload[field] is not None for p in points])
        rates[field] = float((values[nearest] == values[:, None]).mean(axis=1)[has].mean())
    return rates


def test_rates_match_numpy_brute_force_on_both_stores(store):
    points = _points()
    ids = sorted(store.ids("c"))
    queries = stored_queries(store, "c", ids, ["shape", "noise"])
    report = evaluate(store, "c", queries, available_modes(store, "c"), k=5, exact=True)
    by_name = {r.mode.name: r for r in report.results}
    assert set(by_name) == {"shape", "noise"}
    for vector in ("shape", "noise"):
        expected = _brute_force_rates(points, vector, 5)
        assert by_name[vector].agreement == pytest.approx(expected, abs=1e-9), vector
    shape = by_name["shape"]
    # Clusters are tight: every hit has the query's type; colours cycle with period 3 over
    # the 4 clusters, so within a cluster a third of the points share a colour.
    assert shape.agreement["articleType"] == 1.0
    assert shape.agreement_macro == 1.0
    assert 0.1 < shape.agreement["baseColour"] < 0.6
    assert by_name["noise"].agreement["articleType"] < 0.6
    assert shape.same_product_recall is None  # leave-one-out: ids are not searched for
    assert set(shape.per_class) == set(TYPES)
    assert all(v["queries"] in (22, 23) for v in shape.per_class.values())


def test_hnsw_report_states_its_recall(tmp_path):
    s = EdgeStore(tmp_path)
    s.create_collection("c", {"shape": 8, "noise": 4}, {}, {})
    s.upsert("c", _points())
    queries = stored_queries(s, "c", sorted(s.ids("c")), ["shape"])
    report = evaluate(s, "c", queries, select_modes(available_modes(s, "c"), ["shape"]), k=5)
    assert report.recall_vs_exact["shape"] == pytest.approx(1.0)  # 90 points: HNSW scans all
    assert "recall@5" in report.search_description
    s.close()


def test_same_seed_same_numbers_across_stores(tmp_path):
    results = []
    for s in (EdgeStore(tmp_path), ServerStore(QdrantClient(":memory:"))):
        s.create_collection("c", {"shape": 8, "noise": 4}, {}, {})
        s.upsert("c", _points())
        queries = stored_queries(s, "c", sample_ids(s.ids("c"), 30, seed=9), ["shape", "noise"])
        report = evaluate(s, "c", queries, available_modes(s, "c"), exact=True, workers=2)
        results.append(json.dumps(report.to_json()["results"], sort_keys=True))
        s.close()
    assert results[0] == results[1]


# -- the command ---------------------------------------------------------------------------------
def _ingest(catalog, weights):
    args = ingest_args(catalog, weights, "--batch-size", "8", "--no-autoencoder", "--json")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_eval_command_json_and_report(tiny_catalog, tiny_weights, data_dir, tmp_path):
    _ingest(tiny_catalog, tiny_weights)
    result = runner.invoke(app, ["eval", "--top", "3", "--json", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["k"] == 3 and data["queries"] == 24 and data["search"] == "hnsw"
    res = data["results"]["mobilenet_v2"]
    assert set(res["agreement"]) == set(EVAL_FIELDS)
    assert all(0.0 <= v <= 1.0 for v in res["agreement"].values())
    assert res["same_product_recall"] is None
    assert 0.0 <= res["agreement_macro_articleType"] <= 1.0
    assert set(res["per_articleType"]) == {"Shirts", "Tops", "Casual Shoes", "Watches"}
    for name in ("report.md", "agreement.png", "best_mobilenet_v2.png", "worst_mobilenet_v2.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| mobilenet_v2 |" in md and "recall@3" in md

    sampled = []
    for _ in range(2):
        run = json.loads(
            runner.invoke(app, ["eval", "--sample", "10", "--seed", "2", "--json"]).stdout
        )
        run.pop("seconds")
        sampled.append(run)
    assert sampled[0]["queries"] == 10 and sampled[0]["seed"] == 2
    assert sampled[0] == sampled[1]

    table = runner.invoke(app, ["eval"])
    assert table.exit_code == 0 and "articleType" in table.stdout and "mobilenet_v2" in table.stdout


def test_eval_external_photos_find_their_product(tiny_catalog, tiny_weights, data_dir, tmp_path):
    """The catalog's own photos as external queries: each must find its own id at rank 1-5."""
    _ingest(tiny_catalog, tiny_weights)
    result = runner.invoke(app, ["eval", "--queries", str(tiny_catalog), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["queries"] == 24
    assert {s["id"] for s in data["skipped"]} == {901, 902, 903, 904}
    assert data["results"]["mobilenet_v2"]["same_product_recall"] == 1.0


def test_eval_unknown_mode_is_a_clear_error(tiny_catalog, tiny_weights, data_dir):
    _ingest(tiny_catalog, tiny_weights)
    result = runner.invoke(app, ["eval", "--mode", "texture"])
    assert result.exit_code == 2
    assert "no search mode 'texture'" in result.stderr and "mobilenet_v2" in result.stderr

"""`ingest --shard I/N` (ingest.shards): shards run one after another, then one unsharded
run, give the points one unsharded ingest gives; the whole-catalog stages wait for every
shard."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_catalog
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.pipeline import ingest_catalog
from ingest.plan import StageContext, StagePlan, ingest, retag, train_autoencoder
from ingest.shards import Shard, ShardsMissing, shard_of, unfinished_shards
from qdrant.edge import EdgeStore
from qdrant.server import ServerStore
from searchctl.cli import app

PLAN = StagePlan(autoencoder_epochs=1, min_class_size=5)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("shop"), n=60)


def _spec(weights):
    return make_spec("mobilenet_v2", weights, (32, 32), None)


MODEL_FILE_FIELDS = {"ae_model"}  # the saved model's hash: its file records when it was saved


def _points(store, name: str) -> dict[int, tuple[dict, dict]]:
    return {
        p.id: ({k: v for k, v in p.payload.items() if k not in MODEL_FILE_FIELDS}, p.vectors)
        for p in store.iter_points(name, with_vectors=True)
    }


def test_a_product_is_in_exactly_one_shard_and_shards_are_even():
    ids = range(0, 30_000, 10)  # ids on a stride would all land in one shard with id % N
    counts = np.bincount([shard_of(i, 3) for i in ids], minlength=3)
    assert counts.sum() == 3000 and counts.min() > 900
    assert all(sum(Shard(k, 3).holds(i) for k in range(3)) == 1 for i in ids[:200])
    assert Shard.parse("2/3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"
    for bad in ("3/3", "1", "-1/3", "a/b", "0/0"):
        with pytest.raises(ValueError, match="I/N"):
            Shard.parse(bad)


def test_three_shards_then_one_run_give_the_points_of_one_unsharded_ingest(
    shop, tiny_weights, tmp_path
):
    spec = _spec(tiny_weights)
    with EdgeStore(tmp_path / "whole") as store:
        ingest(read_catalog(shop), store, "c", spec, tmp_path / "whole", PLAN)
        whole = _points(store, "c")

    data = tmp_path / "sharded"
    with EdgeStore(data) as store:
        for index in range(3):
            shard = Shard(index, 3)
            result = ingest(read_catalog(shop), store, "c", spec, data, PLAN, shard=shard)
            assert list(result.stages) == ["colour"]  # the per-photo stages only
            held = {pid for pid in whole if shard.holds(pid)}
            assert result.backbone.stored == len(held) > 10
            assert result.stages["colour"].details["described"] == len(held)
            if index == 0:
                _the_whole_catalog_stages_wait(shop, store, spec, data)
        assert unfinished_shards(store, "c") == []
        finish = ingest(read_catalog(shop), store, "c", spec, data, PLAN)
        assert finish.backbone.stored == 0 and finish.stages["autoencoder"].action == "trained"
        sharded = _points(store, "c")

    assert sharded.keys() == whole.keys() and len(whole) == 60
    for pid, (payload, vectors) in whole.items():
        assert sharded[pid][0] == payload, pid
        assert sharded[pid][1].keys() == vectors.keys()
        for name, vector in vectors.items():
            np.testing.assert_array_equal(sharded[pid][1][name], vector)


def _the_whole_catalog_stages_wait(shop, store, spec, data) -> None:
    assert [str(s) for s, _ in unfinished_shards(store, "c")] == ["1/3", "2/3"]
    context = StageContext(store, "c", spec, data, PLAN)
    for premature in (
        lambda: ingest(read_catalog(shop), store, "c", spec, data, PLAN),
        lambda: train_autoencoder(context),
        lambda: retag(context),
    ):
        with pytest.raises(ShardsMissing, match=r"1/3 \(not started\), 2/3"):
            premature()


def test_shards_share_a_server_collection_and_record_their_state(shop, tiny_weights, tmp_path):
    """On a server store (QdrantClient(":memory:") here: no server runs in CI) the first
    shard makes the collection, each marks itself done; re-running a shard is a no-op."""
    spec, plan = _spec(tiny_weights), StagePlan(autoencoder=False, classifier=False)
    store = ServerStore(QdrantClient(":memory:"))
    for index in (1, 0):
        ingest(read_catalog(shop), store, "c", spec, tmp_path, plan, shard=Shard(index, 2))
    assert store.count("c") == 60 and unfinished_shards(store, "c") == []
    again = ingest(read_catalog(shop), store, "c", spec, tmp_path, plan, shard=Shard(1, 2))
    assert again.backbone.stored == 0 and store.count("c") == 60


def test_a_collection_a_shard_makes_is_born_with_the_shard_running(shop, tiny_weights, tmp_path):
    """While the first shard's backbone runs, an unsharded run must already see the round."""
    spec, shard = _spec(tiny_weights), Shard(1, 2)
    with EdgeStore(tmp_path) as store:
        ingest_catalog(read_catalog(shop), store, "c", spec, limit=4, shard=shard)
        assert [(str(s), state) for s, state in unfinished_shards(store, "c")] == [
            ("0/2", "not started"), ("1/2", "running")]  # fmt: skip
        with pytest.raises(ShardsMissing, match=r"0/2 \(not started\), 1/2 \(running\)"):
            ingest(read_catalog(shop), store, "c", spec, tmp_path, PLAN)


def test_the_cli_checks_the_shard_and_the_placement(shop, tiny_weights, tmp_path):
    runner = CliRunner()
    base = ["ingest", str(shop), "--backbone", "mobilenet_v2", "--weights", str(tiny_weights),
            "--input-size", "32x32", "--data-dir", str(tmp_path)]  # fmt: skip
    bad_shard = runner.invoke(app, [*base, "--shard", "3/3"])
    assert bad_shard.exit_code == 2 and "0 <= I < N" in bad_shard.output
    placement = runner.invoke(app, [*base, "--shards", "4"])
    assert placement.exit_code == 2 and "--shards" in placement.output
    assert "--qdrant-url" in placement.output

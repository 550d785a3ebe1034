"""Copying a collection between stores: embedded to qdrant-client's in-memory mode (what a
server gets: no Qdrant server can run here), and back; resumable; verified."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qdrant_client import QdrantClient
from test_store_congruence import INDEXES, VECTORS, _points
from typer.testing import CliRunner

from qdrant.base import PointData, StoreError
from qdrant.edge import EdgeStore
from qdrant.migrate import migrate
from qdrant.server import ServerStore
from searchctl.cli import app

METADATA = {"embedder": {"backbone": "b", "dim": 16}, "cutout": True}


class Stopped(Exception):
    pass


class StoppingServer(ServerStore):
    """A server copy that stops after `survive` upserts, like a run killed half-way."""

    def __init__(self, client, survive: int):
        super().__init__(client)
        self.survive = survive

    def upsert(self, name, points):
        if self.survive == 0:
            raise Stopped("stopped")
        self.survive -= 1
        super().upsert(name, points)


@pytest.fixture
def edge(tmp_path):
    store = EdgeStore(tmp_path / "data")
    store.create_collection("shop", VECTORS, METADATA, INDEXES)
    store.upsert("shop", _points(300))
    yield store
    store.close()


def _same_search(a, b, name_a, name_b) -> None:
    rng = np.random.default_rng(0)
    for query in rng.normal(size=(5, VECTORS["shape"])):
        ours = a.search(name_a, query, "shape", 7, exact=True)
        theirs = b.search(name_b, query, "shape", 7, exact=True)
        assert [h.id for h in ours] == [h.id for h in theirs]
        assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=1e-4)


def test_a_copy_to_a_server_holds_every_point_and_is_verified(edge):
    server = ServerStore(QdrantClient(":memory:"))
    report = migrate(edge, server, "shop", page=64)
    assert report.verified, report.problems
    assert report.created and report.copied == report.source_points == 300
    assert report.target_points == 300 and report.sampled == 200
    assert report.indexes == INDEXES  # read from the embedded store, created on the server
    assert server.get_metadata("shop") == METADATA
    _same_search(edge, server, "shop", "shop")
    (point,) = server.retrieve("shop", [1007], with_vectors=True)
    assert point.payload == _points(300)[7].payload

    back = EdgeStore(edge.root.parent.parent / "back")
    again = migrate(server, back, "shop", "shop_back")
    assert again.verified and again.target_points == 300
    _same_search(edge, back, "shop", "shop_back")
    back.close()


def test_a_stopped_copy_is_finished_by_the_next_run(edge):
    client = QdrantClient(":memory:")
    with pytest.raises(Stopped):
        migrate(edge, StoppingServer(client, survive=2), "shop", page=50)
    server = ServerStore(client)
    assert server.count("shop") == 100
    report = migrate(edge, server, "shop", page=50)
    assert report.already_there == 100 and report.copied == 200 and report.verified
    assert not report.created


def test_verification_finds_a_point_that_differs(edge):
    server = ServerStore(QdrantClient(":memory:"))
    migrate(edge, server, "shop")
    wrong = server.retrieve("shop", [1003], with_vectors=True)[0]
    server.upsert("shop", [PointData(1003, wrong.vectors, {**wrong.payload, "gender": "X"})])
    server.upsert("shop", [PointData(5, wrong.vectors, {})])
    report = migrate(edge, server, "shop", sample=300)
    assert not report.verified and report.copied == 0
    assert "point 1003: payload differs" in report.problems
    assert any("the source lacks" in p for p in report.problems)


def test_a_copy_into_other_vectors_is_refused(edge):
    server = ServerStore(QdrantClient(":memory:"))
    server.create_collection("shop", {"shape": 8}, {}, {})
    with pytest.raises(StoreError, match="another --to-collection"):
        migrate(edge, server, "shop")


def test_shards_replicas_and_consistency_reach_qdrant():
    asked = {}

    class Client(QdrantClient):
        def create_collection(self, name, **kwargs):
            asked.update(kwargs)
            return super().create_collection(name, **kwargs)

    store = ServerStore(Client(":memory:"), shards=6, replicas=2, write_consistency=2)
    store.create_collection("c", VECTORS, {}, {})
    assert (asked["shard_number"], asked["replication_factor"]) == (6, 2)
    assert asked["write_consistency_factor"] == 2


def test_the_command_copies_to_another_embedded_store_with_the_models(edge, tmp_path):
    source = edge.root.parent
    models = source / "models" / "shop"
    models.mkdir(parents=True)
    (models / "classifier.json").write_text("{}")
    edge.close()
    target = tmp_path / "copy"
    args = ["migrate", "-c", "shop", "--data-dir", str(source), "--to-data-dir", str(target)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] and report["copied"] == 300
    assert report["target_indexes"] == INDEXES  # an embedded copy keeps them
    assert (target / "models" / "shop" / "classifier.json").is_file()
    again = CliRunner().invoke(app, args)
    assert "copied 0 points (300 were there)" in again.stdout and "Verified" in again.stdout
    neither = CliRunner().invoke(app, ["migrate", "-c", "shop", "--data-dir", str(source)])
    assert neither.exit_code == 2 and "--to-url" in neither.output

"""The same scenario on the embedded store (in this process and in a StoreProcess) and on
qdrant-client's in-memory mode: same answers."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from qdrant import CollectionNotFound, PointData, StoreError, StoreLocked
from qdrant.base import INTEGER_INDEX, KEYWORD_INDEX
from qdrant.edge import EdgeStore
from qdrant.process import StoreProcess
from qdrant.server import ServerStore

VECTORS = {"shape": 16, "colour": 8}
INDEXES = {"gender": KEYWORD_INDEX, "year": INTEGER_INDEX}
GENDERS = ["Men", "Women", "Unisex"]


def _points(n: int = 120, seed: int = 7) -> list[PointData]:
    rng = np.random.default_rng(seed)
    # Clustered data, like real embeddings: a few centres plus noise.
    centres = rng.normal(size=(6, VECTORS["shape"]))
    points = []
    for i in range(n):
        shape = centres[i % 6] + 0.3 * rng.normal(size=VECTORS["shape"])
        colour = rng.random(VECTORS["colour"])
        payload = {"gender": GENDERS[i % 3], "year": 2010 + i % 5, "name": f"item {i}", "x": None}
        points.append(PointData(1000 + i, {"shape": shape, "colour": colour}, payload))
    return points


def _open(kind: str, path):
    if kind == "edge":
        return EdgeStore(path)
    if kind == "process":
        return StoreProcess(path)
    return ServerStore(QdrantClient(":memory:"))


@pytest.fixture(params=["edge", "process", "memory"])
def store(request, tmp_path):
    s = _open(request.param, tmp_path)
    yield s
    s.close()


def _scenario(store) -> dict:
    """Everything a user of the store can observe, as plain data."""
    points = _points()
    store.create_collection("catalog", VECTORS, {"embedder": {"backbone": "b", "dim": 16}}, INDEXES)
    store.upsert("catalog", points[:70])
    store.upsert("catalog", points[60:])  # overlap: upsert must not duplicate
    queries = np.stack([points[i].vectors["shape"] for i in (0, 5, 33)])
    out = {
        "collections": store.list_collections(),
        "count": store.count("catalog"),
        "ids": sorted(store.ids("catalog")),
        "sizes": store.vector_sizes("catalog"),
        "metadata": store.get_metadata("catalog"),
        "search": [
            [(h.id, round(h.score, 4)) for h in hits]
            for hits in store.search_batch("catalog", queries, "shape", 5, exact=True)
        ],
        "filtered": [
            (h.id, h.payload["gender"], h.payload["year"])
            for h in store.search(
                "catalog",
                queries[1],
                "shape",
                4,
                where=[("gender", "Women"), ("year", 2012)],
                exact=True,
            )
        ],
        "colour": [h.id for h in store.search("catalog", points[9].vectors["colour"], "colour", 3)],
        "scored": sorted(
            (i, round(c, 4))
            for i, c in store.score("catalog", queries[0], "shape", [1009, 42, 1001]).items()
        ),
        "retrieved": [
            (p.id, p.payload, np.round(p.vectors["colour"], 4).tolist())
            for p in store.retrieve("catalog", [1009, 42, 1001], with_vectors=True)
        ],
    }
    store.set_metadata("catalog", {"embedder": {"backbone": "c"}, "autoencoder": 1})
    out["metadata_after"] = store.get_metadata("catalog")
    return out


def test_score_is_the_cosine_with_each_stored_vector(store):
    points = _points()
    store.create_collection("catalog", VECTORS, {}, INDEXES)
    store.upsert("catalog", points)
    query = np.random.default_rng(3).normal(size=VECTORS["shape"])
    wanted = [1003, 1050, 1119, 7]  # 7 is no point: left out
    scores = store.score("catalog", query, "shape", wanted)
    assert sorted(scores) == [1003, 1050, 1119]
    for i in scores:
        stored = points[i - 1000].vectors["shape"]
        cosine = stored @ query / (np.linalg.norm(stored) * np.linalg.norm(query))
        assert scores[i] == pytest.approx(cosine, abs=1e-5)
    assert store.score("catalog", query, "shape", []) == {}


def _on_both(scenario, tmp_path) -> tuple:
    """`scenario`'s answers on the embedded store and on the in-memory client; the embedded
    store in a StoreProcess must answer exactly as in this process."""
    stores = [_open(kind, tmp_path / kind) for kind in ("edge", "process", "memory")]
    try:
        edge, process, memory = (scenario(s) for s in stores)
    finally:
        for s in stores:
            s.close()
    assert process == edge
    return edge, memory


def test_edge_and_memory_client_agree(tmp_path):
    a, b = _on_both(_scenario, tmp_path)
    # Null-valued metadata keys are how the server forgets a key; treat them as absent.
    b["metadata_after"] = {k: v for k, v in b["metadata_after"].items() if v is not None}
    assert a == b


def test_scenario_results_are_right(store):
    out = _scenario(store)
    assert out["count"] == 120
    assert out["ids"] == list(range(1000, 1120))
    assert out["sizes"] == VECTORS
    for query_id, hits in zip((1000, 1005, 1033), out["search"]):
        assert hits[0][0] == query_id and hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert out["filtered"] and all(g == "Women" and y == 2012 for _, g, y in out["filtered"])
    assert out["colour"][0] == 1009
    assert [r[0] for r in out["retrieved"]] == [1009, 1001]
    assert out["retrieved"][0][1] == {"gender": "Men", "year": 2014, "name": "item 9", "x": None}


def test_missing_collection_is_a_clear_error(store):
    with pytest.raises(CollectionNotFound, match="no collection 'nope'"):
        store.count("nope")


def test_edge_store_reopens_and_second_process_is_refused(tmp_path):
    store = EdgeStore(tmp_path)
    store.create_collection("c", VECTORS, {"k": 1}, INDEXES)
    store.upsert("c", _points(10))
    store.close()
    reopened = EdgeStore(tmp_path)
    assert reopened.count("c") == 10
    other = EdgeStore(tmp_path)  # same as a second process: the shard is locked
    with pytest.raises(StoreLocked, match="open in another searchctl process"):
        other.count("c")
    reopened.close()


def test_tiny_vectors_are_still_compared_by_cosine(store):
    """Qdrant skips normalising vectors shorter than float32 epsilon; the store must not."""
    store.create_collection("tiny", {"v": 3}, {}, {})
    store.upsert("tiny", [PointData(1, {"v": np.array([1e-12, 0, 0])}, {}),
                          PointData(2, {"v": np.array([0, 5.0, 0])}, {})])  # fmt: skip
    hits = store.search("tiny", np.array([3e-13, 1e-14, 0]), "v", 2, exact=True)
    assert [h.id for h in hits] == [1, 2] and hits[0].score == pytest.approx(1.0, abs=1e-3)


def _update_scenario(store) -> dict:
    """Later stages' writes: tags into payloads, an index on them, vectors of existing points,
    per-query filters in one batch."""
    points = _points()
    store.create_collection("catalog", VECTORS, {}, INDEXES)
    store.upsert("catalog", points)
    store.set_payloads("catalog", {p.id: {"tag": "even" if p.id % 2 else "odd"} for p in points})
    store.create_index("catalog", "tag", KEYWORD_INDEX)
    store.add_vector("catalog", "shape", VECTORS["shape"])  # same size: nothing to do
    rng = np.random.default_rng(3)
    new_colour = {p.id: {"colour": rng.random(VECTORS["colour"])} for p in points[:10]}
    store.update_vectors("catalog", new_colour)
    queries = np.stack([points[i].vectors["shape"] for i in (0, 1, 2)])
    batch = store.search_batch(
        "catalog", queries, "shape", 4, exact=True,
        row_where=[[("tag", "odd")], None, [("tag", "even"), ("gender", "Women")]],
    )  # fmt: skip
    kept = store.retrieve("catalog", [1003], with_vectors=True)[0]
    store.delete("catalog", [1000, 1005, 42])  # 42 was never stored: ignored
    store.delete("catalog", [])
    after_delete = store.search("catalog", queries[0], "shape", 3, exact=True, with_payload=False)
    return {
        "count_after_delete": store.count("catalog"),
        "ids_after_delete": sorted(store.ids("catalog"))[:4],
        "search_after_delete": [h.id for h in after_delete],
        "retrieve_deleted": [p.id for p in store.retrieve("catalog", [1000, 1001])],
        "batch": [[(h.id, h.payload["tag"], h.payload["gender"]) for h in hits] for hits in batch],
        "payload": kept.payload,
        "colour": np.round(kept.vectors["colour"], 4).tolist(),
        "shape": np.round(kept.vectors["shape"], 4).tolist(),
    }


def test_updates_agree_and_are_right(tmp_path):
    a, b = _on_both(_update_scenario, tmp_path)
    assert a == b
    odd, anything, even_women = a["batch"]
    assert all(tag == "odd" for _, tag, _ in odd) and len(odd) == 4
    assert len(anything) == 4 and anything[0][0] == 1001  # no filter of its own
    assert all(tag == "even" and g == "Women" for _, tag, g in even_women)
    assert a["payload"]["tag"] == "even" and a["payload"]["name"] == "item 3"  # merged, kept
    assert a["count_after_delete"] == len(_points()) - 2
    assert a["ids_after_delete"] == [1001, 1002, 1003, 1004] and a["retrieve_deleted"] == [1001]
    assert 1000 not in a["search_after_delete"] and len(a["search_after_delete"]) == 3
    colour = np.random.default_rng(3).random((10, VECTORS["colour"]))[3]
    assert a["colour"] == pytest.approx(colour / np.linalg.norm(colour), abs=1e-4)


def _reads_between_writes(store) -> list:
    """A search with a field selection and a sample, read again after each kind of write: the
    embedded store answers the repeated reads from memory (ReadCache) and must follow."""
    points = _points(30)
    store.create_collection("catalog", VECTORS, {}, INDEXES)
    store.upsert("catalog", points)
    query = points[4].vectors["shape"]
    fields = ["gender", "tag", "missing"]

    def seen() -> tuple:
        hits = store.search("catalog", query, "shape", 6, exact=True, with_payload=fields)
        first = store.sample("catalog", 2)
        return [(h.id, h.payload) for h in hits], [(p.id, p.payload) for p in first]

    observed = [seen(), seen()]
    store.set_payloads("catalog", {1004: {"tag": "new"}, 1000: {"gender": "Women"}})
    observed.append(seen())
    near = query + 0.05 * points[11].vectors["shape"]  # near the query, not tied with 1004
    moved = PointData(1010, {"shape": near, "colour": points[10].vectors["colour"]},
                      {"gender": "Unisex", "tag": "moved"})  # fmt: skip
    store.upsert("catalog", [moved])
    observed.append(seen())
    store.delete("catalog", [1004, 1000])
    observed.append(seen())
    return observed


def test_repeated_reads_follow_every_write(tmp_path):
    a, b = _on_both(_reads_between_writes, tmp_path)
    assert a == b
    before, again, tagged, moved, deleted = a
    assert again == before
    assert dict(tagged[0])[1004] == {"gender": "Women", "tag": "new"}
    assert tagged[1][0] == (1000, {**_points(1)[0].payload, "gender": "Women"})
    assert dict(moved[0])[1010] == {"gender": "Unisex", "tag": "moved"}
    assert 1004 not in dict(deleted[0]) and deleted[1][0][0] == 1001


def test_a_server_cannot_add_a_named_vector():
    memory = ServerStore(QdrantClient(":memory:"))
    memory.create_collection("catalog", VECTORS, {}, INDEXES)
    with pytest.raises(StoreError, match="cannot add or resize a named vector"):
        memory.add_vector("catalog", "autoencoder", 512)
    memory.close()


def test_words_filter_and_rank_on_both_stores(store):
    """A TEXT_INDEX: words narrow a vector search the same way on both stores, and alone rank
    the products holding them (BM25 on the embedded store, word share on a server)."""
    from qdrant.base import TEXT_INDEX, Words

    names = ["Navy Blue Shirt", "Red Tops", "Navy Watch", "Blue Jeans", "Navy Shirt Navy"]
    points = [PointData(i + 1, {"shape": np.eye(16)[i], "colour": np.ones(8)}, {"name": n})
              for i, n in enumerate(names)]  # fmt: skip
    store.create_collection("c", VECTORS, {}, {"name": TEXT_INDEX})
    store.upsert("c", points)
    narrowed = store.search("c", np.ones(16), "shape", 5, where=[("name", Words("navy shirt"))],
                            exact=True)  # fmt: skip
    assert sorted(h.id for h in narrowed) == [1, 5]
    ranked = store.text_search("c", "name", "navy shirt", 5)
    assert [h.id for h in ranked][:2] == [5, 1] and {h.id for h in ranked} <= {1, 3, 5}
    assert len(store.sample("c", 2)) == 2 and all(p.payload["name"] for p in store.sample("c", 2))


def test_edge_rebuilds_its_index_only_once_a_tenth_was_written(tmp_path):
    import json

    from qdrant.edge import COLLECTION_FILE, UNINDEXED_KEY

    store = EdgeStore(tmp_path)
    points = _points(200)
    store.create_collection("catalog", VECTORS, {}, INDEXES)
    store.upsert("catalog", points)
    record = tmp_path / "collections" / "catalog" / COLLECTION_FILE

    def unindexed() -> list[int]:
        return json.loads(record.read_text()).get(UNINDEXED_KEY, [])

    store.optimize("catalog")  # all 200 new: built
    assert unindexed() == []
    store.set_payloads("catalog", {1000: {"tag": "a"}, 1001: {"tag": "b"}})
    store.delete("catalog", [1002])
    store.optimize("catalog")  # 3 of 199 written: left for later, and remembered
    assert unindexed() == [1000, 1001, 1002]
    store.close()

    again = EdgeStore(tmp_path)  # a later run adds to what the last one left
    moved = [PointData(p.id, p.vectors, {"gender": "Men"}) for p in points[10:27]]
    again.upsert("catalog", moved)
    hits = again.search("catalog", moved[0].vectors["shape"], "shape", 1, where=[("gender", "Men")])
    assert hits[0].id == moved[0].id  # written points are found before any rebuild
    again.optimize("catalog")  # 3 + 17 = 20 >= a tenth of 199: built
    assert unindexed() == []
    again.set_payloads("catalog", {1050: {"tag": "c"}})
    again.optimize("catalog", force=True)
    assert unindexed() == []
    again.close()


def test_a_store_process_runs_functions_where_the_store_is_and_raises_its_errors(tmp_path):
    process = StoreProcess(tmp_path)
    try:
        process.create_collection("c", VECTORS, {}, INDEXES)
        process.upsert("c", _points(10))
        assert process.run(EdgeStore.count, "c") == 10
        with pytest.raises(CollectionNotFound, match="no collection 'nope'"):
            process.run(EdgeStore.count, "nope")
        # A function the child cannot import is an error, not a call that never returns.
        only_here = types.ModuleType("only_in_the_parent")
        exec("def count(store, name):\n    return store.count(name)\n", only_here.__dict__)
        sys.modules[only_here.__name__] = only_here
        try:
            with pytest.raises(ModuleNotFoundError, match="only_in_the_parent"):
                process.run(only_here.count, "c")
        finally:
            del sys.modules[only_here.__name__]
        assert process.count("c") == 10  # and the process goes on answering
        # It holds the collection, and names this process (the one to stop) as the holder.
        other = EdgeStore(tmp_path)
        with pytest.raises(StoreLocked, match=f"process {os.getpid()} "):
            other.count("c")
    finally:
        process.close()
    assert process.count  # closed: calls say so, the child is gone, the collection is free
    with pytest.raises(StoreError, match="was closed"):
        process.count("c")
    assert process._child.poll() is not None
    with EdgeStore(tmp_path) as again:
        assert again.count("c") == 10


def test_a_store_process_ends_with_a_killed_parent(tmp_path):
    """The child must not keep the collections locked when its parent dies without closing
    it (kill -9)."""
    import signal
    import subprocess
    import time

    script = (
        "import sys, time\n"
        "from qdrant.process import StoreProcess\n"
        f"s = StoreProcess({str(tmp_path)!r})\n"
        "s.create_collection('c', {'v': 4}, {}, {})\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the store process outlived its parent"
    with EdgeStore(tmp_path) as again:
        assert again.count("c") == 0


def test_a_run_killed_before_recording_its_writes_gets_the_index_built_next_time(tmp_path):
    """Written points are recorded as unindexed only by optimize(); a run killed before it
    leaves a mark in the collection's record, and the next optimize() builds the index."""
    import json
    import subprocess

    from qdrant.edge import COLLECTION_FILE, UNINDEXED_KEY, WRITING_KEY

    with EdgeStore(tmp_path) as store:
        store.create_collection("c", VECTORS, {}, INDEXES)
        store.upsert("c", _points(200))
        store.optimize("c")  # built
    record = tmp_path / "collections" / "c" / COLLECTION_FILE
    assert WRITING_KEY not in json.loads(record.read_text())
    killed = (
        "import os\n"
        "from qdrant.edge import EdgeStore\n"
        "from qdrant.base import PointData\n"
        "import numpy as np\n"
        f"s = EdgeStore({str(tmp_path)!r})\n"
        "s.set_payloads('c', {1003: {'tag': 'x'}})\n"
        "os._exit(9)\n"  # killed: no optimize(), no close()
    )
    assert subprocess.run([sys.executable, "-c", killed]).returncode == 9
    assert json.loads(record.read_text())[WRITING_KEY]  # the mark outlived the run
    builds = []
    with EdgeStore(tmp_path) as again:
        shard = again._shard("c")
        again._shards["c"] = type("Counting", (), {
            "optimize": lambda self: builds.append(1) or shard.optimize(),
            "__getattr__": lambda self, attr: getattr(shard, attr),
        })()  # fmt: skip
        again.optimize("c")  # 1 of 200 written: no build, but for the killed run's mark
        assert builds == [1]
        after = json.loads(record.read_text())
        assert WRITING_KEY not in after and not after.get(UNINDEXED_KEY)
        again.optimize("c")
        assert builds == [1]  # and only once
        again.set_payloads("c", {1004: {"tag": "y"}})
        again.optimize("c")  # its own small write: recorded, not built
        assert builds == [1] and json.loads(record.read_text())[UNINDEXED_KEY] == [1004]

"""A later ingest brings a collection in step with a changed catalog: the same points as a
fresh ingest of the changed catalog, even after a run killed half-way."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import RecordingProgress, product_image

from embedder.colour import COLOUR_VECTOR
from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.plan import StagePlan, ingest
from ingest.sync import (
    CHANGES_KEY,
    PENDING_KEY,
    PHOTO_HASH_FIELD,
    RETRAIN_SHARE,
    plan_changes,
    retrain_advice,
)
from qdrant.edge import EdgeStore

PLAN = StagePlan(autoencoder=False, classifier=False)  # backbone and colour: no training


class Killed(Exception):
    pass


class DyingStore(EdgeStore):
    """Dies at its first upsert, like a process killed while the backbone stage writes."""

    def upsert(self, name, points):
        raise Killed("killed")


@pytest.fixture
def spec(tiny_weights):
    return make_spec("mobilenet_v2", tiny_weights, (32, 32))


def _run(catalog: Path, store, spec, tmp_path, **options):
    return ingest(read_catalog(catalog), store, "c", spec, tmp_path / "models", PLAN, **options)


def _edit(root: Path) -> None:
    """Delete product 5's row and product 6's photo, relabel 7, give 8 the photo of 13, add
    product 30, break product 9's row (a row that cannot be read keeps its product)."""
    styles = root / "styles.csv"
    lines = styles.read_text().splitlines()
    edited = []
    for line in lines:
        pid = line.split(",", 1)[0]
        if pid == "5":
            continue
        if pid == "7":
            line = line.replace(",Navy Blue,", ",Green,").replace(",Red,", ",Green,")
            line = line.replace(",White,", ",Green,").replace(",Black,", ",Green,")
        if pid == "9":
            line = ",".join(line.split(",")[:4])
        edited.append(line)
    edited.append("30,Men,Apparel,Topwear,Shirts,Navy Blue,Summer,2012,Casual,A New Shirt")
    styles.write_text("\n".join(edited) + "\n")
    (root / "images" / "6.jpg").unlink()
    shutil.copyfile(root / "images" / "13.jpg", root / "images" / "8.jpg")
    product_image(30).save(root / "images" / "30.jpg", quality=95)


def _points(store) -> dict[int, tuple[dict, dict]]:
    return {
        p.id: (p.payload, p.vectors)
        for p in store.retrieve("c", sorted(store.ids("c")), with_vectors=True)
    }


def _assert_same_points(synced: dict, fresh: dict) -> None:
    assert sorted(synced) == sorted(fresh)
    for pid, (payload, vectors) in fresh.items():
        assert synced[pid][0] == payload, pid
        assert sorted(synced[pid][1]) == sorted(vectors), pid
        for name, vector in vectors.items():
            np.testing.assert_allclose(synced[pid][1][name], vector, atol=1e-5, err_msg=str(pid))


@pytest.fixture
def edited(tiny_catalog, spec, tmp_path):
    """(a collection ingested from the catalog before the edit, the edited catalog, the points
    of a fresh ingest of the edited catalog)."""
    before = shutil.copytree(tiny_catalog, tmp_path / "before")
    after = shutil.copytree(tiny_catalog, tmp_path / "after")
    _edit(after)
    store = EdgeStore(tmp_path / "synced")
    _run(before, store, spec, tmp_path)
    store.close()
    fresh = EdgeStore(tmp_path / "fresh")
    _run(after, fresh, spec, tmp_path / "fresh_models")
    points = _points(fresh)
    fresh.close()
    return tmp_path / "synced", after, points


def test_the_plan_names_every_change_and_changes_nothing(edited, tmp_path):
    data, after, _ = edited
    store = EdgeStore(data)
    before = _points(store)
    changes = plan_changes(read_catalog(after), store, "c")
    assert changes.add == [901, 902, 903, 30]  # new, and the photos no ingest could use
    assert changes.delete == [5, 6]  # row gone; photo gone
    assert changes.relabel[7] == {"baseColour": "Green"}
    assert list(changes.relabel) == [7] and changes.rephoto == [8]
    assert not changes.hash_backfill and changes.catalog_moved is not None
    assert changes.kept_unreadable == [9]
    assert changes.unchanged == len(before) - 2 - 2 - 1  # 5, 6 gone; 7, 8 changed; 9 kept
    counts = changes.to_json()["counts"]
    assert [counts[k] for k in ("add", "delete", "relabel", "rephoto")] == [4, 2, 1, 1]
    _assert_same_points(_points(store), before)

    kept = plan_changes(read_catalog(after), store, "c", keep_missing=True)
    assert kept.delete == [] and kept.kept_missing == [5, 6]
    store.close()


def test_a_later_ingest_ends_where_a_fresh_ingest_of_the_changed_catalog_does(edited, spec):
    data, after, fresh = edited
    store = EdgeStore(data)
    progress = RecordingProgress()
    result = _run(after, store, spec=spec, tmp_path=data.parent, progress=progress)
    assert result.backbone.stored == 2 and result.backbone.embedded_again == 1  # 30; 8 again
    assert any("relabel" in note for note in progress.notes)
    synced = _points(store)
    assert 9 in synced  # its row broke: kept, not deleted
    del synced[9]
    _assert_same_points(synced, fresh)
    assert synced[8][0][PHOTO_HASH_FIELD] == fresh[8][0][PHOTO_HASH_FIELD]
    assert synced[8][1][COLOUR_VECTOR] is not None  # the colour stage described it again
    metadata = store.get_metadata("c")
    assert metadata[CHANGES_KEY][-1]["changed"] == 5 and PENDING_KEY not in metadata
    assert metadata["catalog"] == str(after.resolve())

    again = _run(after, store, spec=spec, tmp_path=data.parent)
    assert not again.changes.stored_changed_ids and again.backbone.stored == 0
    assert again.changes.add == [901, 902, 903]  # bad photos: tried again, never stored
    assert len(store.get_metadata("c")[CHANGES_KEY]) == 1  # nothing changed: nothing logged
    store.close()


def test_a_run_killed_half_way_is_finished_by_the_next(edited, spec):
    data, after, fresh = edited
    dying = DyingStore(data)
    with pytest.raises(Killed):
        _run(after, dying, spec=spec, tmp_path=data.parent)
    dying.close()

    store = EdgeStore(data)
    half = plan_changes(read_catalog(after), store, "c")
    assert half.delete == [] and half.relabel == {}  # done before the kill
    assert half.add == [901, 902, 903, 30] and half.rephoto == [8]  # left for the next run
    assert store.get_metadata("c")[PENDING_KEY] == {"ids": [5, 6, 7, 8], "add": [30, 901, 902, 903]}
    _run(after, store, spec=spec, tmp_path=data.parent)
    synced = _points(store)
    del synced[9]
    _assert_same_points(synced, fresh)
    metadata = store.get_metadata("c")
    assert metadata[CHANGES_KEY][-1]["changed"] == 5 and PENDING_KEY not in metadata
    store.close()


def test_points_stored_before_hashes_get_theirs_without_being_embedded_again(
    edited, spec, tmp_path
):
    data, _, _ = edited
    store = EdgeStore(data)
    ids = sorted(store.ids("c"))
    store.set_payloads("c", {pid: {PHOTO_HASH_FIELD: None} for pid in ids})
    catalog = tmp_path / "before"
    changes = plan_changes(read_catalog(catalog), store, "c")
    assert sorted(changes.hash_backfill) == ids and not changes.stored_changed_ids
    result = _run(catalog, store, spec=spec, tmp_path=data.parent)
    assert result.backbone.stored == 0
    assert all(p.payload[PHOTO_HASH_FIELD] for p in store.retrieve("c", ids))
    assert not plan_changes(read_catalog(catalog), store, "c").hash_backfill
    store.close()


def test_a_retrain_is_advised_once_enough_of_the_catalog_changed_since_training():
    log = {CHANGES_KEY: [{"at": 100.0, "changed": 30}, {"at": 200.0, "changed": 80}]}
    trained = {"classifier": (150.0, "searchctl train classifier"), "autoencoder": (50.0, "x")}
    advice = {a.model: a for a in retrain_advice(log, 1000, trained)}
    assert advice["autoencoder"].changed == 110 and advice["autoencoder"].share == 0.11
    assert "classifier" not in advice  # 80 of 1000 since it was trained: under the share
    assert RETRAIN_SHARE == 0.10 and "110 products (11%)" in advice["autoencoder"].line()
    assert retrain_advice({}, 1000, trained) == []


def test_the_commands_plan_and_keep_missing(tiny_catalog, tiny_weights, data_dir, tmp_path):
    import json

    from conftest import ingest_args
    from typer.testing import CliRunner

    from searchctl.cli import app

    runner = CliRunner()
    shop = shutil.copytree(tiny_catalog, tmp_path / "shop")
    first = ingest_args(shop, tiny_weights, "--no-autoencoder", "--json")
    assert runner.invoke(app, first).exit_code == 0
    _edit(shop)
    plan = runner.invoke(app, ingest_args(shop, tiny_weights, "--plan", "--json"))
    assert plan.exit_code == 0, plan.output
    counts = json.loads(plan.stdout)["counts"]
    assert (counts["delete"], counts["relabel"], counts["rephoto"]) == (2, 1, 1)
    shown = runner.invoke(app, ingest_args(shop, tiny_weights, "--plan"))
    assert "delete" in shown.stdout and "5, 6" in shown.stdout
    assert "id 7: baseColour='Green'" in shown.stdout

    kept = runner.invoke(app, [*first, "--keep-missing"])
    report = json.loads(kept.stdout)
    assert report["changes"]["kept_missing"] == [5, 6] and report["points_in_collection"] == 25
    info = json.loads(runner.invoke(app, ["info", "--json"]).stdout)["collections"][0]
    assert info["catalog_changes"][-1]["changed"] == 3 and info["retrain_advised"] == []


def test_a_run_that_would_delete_most_of_the_collection_stops_first(edited, spec, tmp_path):
    from ingest.sync import MassDelete

    data, after, _ = edited
    styles = after / "styles.csv"
    lines = styles.read_text().splitlines()
    styles.write_text("\n".join(lines[:4]) + "\n")  # a catalog cut short: 3 rows left
    store = EdgeStore(data)
    before = sorted(store.ids("c"))
    with pytest.raises(MassDelete, match="would delete 21 of the 24 products"):
        _run(after, store, spec=spec, tmp_path=data.parent)
    assert sorted(store.ids("c")) == before  # nothing changed
    _run(after, store, spec=spec, tmp_path=data.parent, allow_mass_delete=True)
    assert store.count("c") == 3
    store.close()

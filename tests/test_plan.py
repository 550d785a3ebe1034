"""The ingest's stage plan, called as a library (ingest.plan): one order, one progress
interface, typed reports."""

from __future__ import annotations

import pytest
from conftest import RecordingProgress, make_catalog

from embedder.spec import make_spec
from ingest.catalog import read_catalog
from ingest.plan import (
    STAGES,
    StageContext,
    StagePlan,
    ingest,
    retag,
    run_stages,
)
from qdrant.base import VectorNotAddable
from qdrant.edge import EdgeStore
from searchctl.reporting import Action, StageReport


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("shop"), n=80)


def _spec(weights):
    return make_spec("mobilenet_v2", weights, (32, 32), None)


def test_ingest_runs_every_stage_in_order_and_reports_each_as_it_ends(shop, tiny_weights, tmp_path):
    plan = StagePlan(autoencoder=False, min_class_size=5)
    heard = RecordingProgress()
    with EdgeStore(tmp_path) as store:
        result = ingest(
            read_catalog(shop), store, "c", _spec(tiny_weights), tmp_path, plan, progress=heard
        )
        order = ["backbone", "colour", "classifier", "tuned", "shopper_photos", "colour_tags",
                 "type_tags"]  # fmt: skip
        assert [r.stage for r in heard.reports] == order  # autoencoder left out by the plan
        assert list(result.stages) == [r.stage for r in heard.reports[1:]]
        assert all(isinstance(r, StageReport) and r.summary for r in heard.reports)
        assert result.backbone.stored == 80 and result.stages["colour"].action == Action.DESCRIBED
        assert result.stages["classifier"].action == Action.TRAINED
        # Each stage said what it was doing, in the same order.
        labels = [label for label, _ in heard.phases]
        assert labels[0] == "backbone" and labels.index("colour") < labels.index("colour tags")
        assert heard.advanced >= 80 * 3
        json_view = result.to_json()
        assert json_view["autoencoder"] is None and json_view["colour"]["action"] == "described"

        again = ingest(read_catalog(shop), store, "c", _spec(tiny_weights), tmp_path, plan)
    assert again.backbone.stored == 0  # the bad images were tried again, nothing else
    assert {r.action for r in again.stages.values()} <= {Action.UP_TO_DATE, Action.SKIPPED}


def test_retag_runs_the_stages_after_the_classifier_and_tags_everyone(
    shop, tiny_weights, tmp_path
):
    plan = StagePlan(autoencoder=False, colour=True, min_class_size=5)
    with EdgeStore(tmp_path) as store:
        ingest(read_catalog(shop), store, "c", _spec(tiny_weights), tmp_path, plan)
        heard = RecordingProgress()
        context = StageContext(store, "c", _spec(tiny_weights), tmp_path, plan, heard)
        report, stages = retag(context)
    after = [s.name for s in STAGES][[s.name for s in STAGES].index("classifier") + 1 :]
    assert report.tagged == 80 and list(stages) == after
    # Every product is tagged again by the label taggers, not only those without tags.
    assert stages["colour_tags"].action == Action.TAGGED
    assert stages["colour_tags"].details["tagged"] == 80


def test_a_stage_the_store_refuses_is_skipped_with_the_reason(shop, tiny_weights, tmp_path):
    """A server collection made without a stage's named vector refuses to add it: that stage
    is skipped with the store's reason."""
    plan = StagePlan(autoencoder=False, classifier=False)
    with EdgeStore(tmp_path) as store:
        ingest(read_catalog(shop), store, "c", _spec(tiny_weights), tmp_path, StagePlan(
            colour=False, autoencoder=False, classifier=False))  # fmt: skip

        def refuse(*args, **kwargs):
            raise VectorNotAddable("collection 'c' was made without the vector 'colour'")

        store.add_vector = refuse
        context = StageContext(store, "c", _spec(tiny_weights), tmp_path, plan)
        reports = run_stages(context)
    assert reports["colour"].action == Action.SKIPPED
    assert "without the vector 'colour'" in reports["colour"].reason
    assert reports["colour"].to_json() == {"action": "skipped", "reason": reports["colour"].reason}


def test_the_index_is_built_once_after_every_stage_has_written(shop, tiny_weights, tmp_path,
                                                               monkeypatch):  # fmt: skip
    """Vector and payload writes leave points outside the embedded store's HNSW segments:
    one build after the last stage's writes, not one a stage (each took 25-60 s of the 44k
    main job), and every point is indexed at the end."""
    from qdrant.edge import UNINDEXED_KEY

    builds: list[str] = []

    class CountingShard:
        """The real shard; its index builds counted."""

        def __init__(self, shard):
            self._shard = shard

        def optimize(self):
            builds.append("build")
            return self._shard.optimize()

        def __getattr__(self, name):
            return getattr(self._shard, name)

    real_shard = EdgeStore._shard
    monkeypatch.setattr(EdgeStore, "_shard", lambda s, name: CountingShard(real_shard(s, name)))
    plan = StagePlan(autoencoder_epochs=1, min_class_size=5)
    with EdgeStore(tmp_path) as store:
        result = ingest(read_catalog(shop), store, "c", _spec(tiny_weights), tmp_path, plan)
        written = ["colour", "autoencoder", "classifier", "shopper_photos", "colour_tags",
                   "type_tags"]  # fmt: skip
        assert all(result.stages[s].action != Action.SKIPPED for s in written)
        assert builds == ["build"]
        assert not store._config("c").get(UNINDEXED_KEY)
        builds.clear()
        retag(StageContext(store, "c", _spec(tiny_weights), tmp_path, plan))
        assert builds == ["build"]
        assert not store._config("c").get(UNINDEXED_KEY)

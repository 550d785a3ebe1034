"""The label taggers: trained on stored vectors, their tags in every payload, new points only
tagged later, retrained when their input vectors change; the search's tag agreement reading
candidates' baseColour and articleType labels; the audit of colour labels."""

from __future__ import annotations

import numpy as np
import pytest

from classifier import label_tags
from classifier.audit import audit_collection, find_mislabels
from classifier.label_tags import (
    COLOUR,
    FINE_TYPE,
    MIN_PRODUCTS,
    LabelTagger,
    ensure_label_tags,
    label_tagger_dir,
    load_label_taggers,
)
from classifier.schemes import TUNED_VECTOR, SchemeClasses
from classifier.tagger import TaggerRecord
from classifier.tuned import CURRENT_KEY
from embedder.colour import COLOUR_VECTOR
from qdrant import PointData
from qdrant.edge import EdgeStore
from searchctl.query import COLOUR_TAG_WEIGHT, FINE_TYPE_WEIGHT, tag_agreement

COLOURS = ["Red", "Navy Blue", "White"]
COLOUR_INPUTS = (("s", 1.0), (COLOUR_VECTOR, 4.0))


def ensure_colour_tags(store, collection, data, backbone, **kwargs) -> dict:
    return ensure_label_tags(store, collection, data, backbone, COLOUR, **kwargs)


def _colour_tagger(data) -> LabelTagger:
    return LabelTagger.load(label_tagger_dir(data, "c", COLOUR), COLOUR)


def _point(i: int, rng: np.random.Generator, label: str | None = "auto") -> PointData:
    kind = i % len(COLOURS)
    colour = np.zeros(6, np.float32)
    colour[kind * 2] = 1.0  # each colour its own bins, a little noise
    colour += rng.uniform(0, 0.2, 6).astype(np.float32)
    payload = {"articleType": "Tshirts"}
    if label:
        payload["baseColour"] = COLOURS[kind] if label == "auto" else label
    vectors = {"shape": rng.normal(size=4).astype(np.float32), COLOUR_VECTOR: colour}
    return PointData(i, vectors, payload)


@pytest.fixture
def store(tmp_path):
    s = EdgeStore(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(0)
    s.upsert("c", [_point(i, rng) for i in range(1, 3 * MIN_PRODUCTS + 1)])
    yield s
    s.close()


def _payloads(store) -> dict[int, dict]:
    return {p.id: p.payload for p in store.iter_points("c")}


def test_the_colour_tagger_learns_colours_and_tags_every_point(store, tmp_path):
    data = tmp_path / "data"
    report = ensure_colour_tags(store, "c", data, "shape")
    assert report.action == "trained" and report.details["tagged"] == 3 * MIN_PRODUCTS
    assert report.details["test_accuracy"] == 1.0
    for p in _payloads(store).values():
        assert p["pred_baseColour"] == p["baseColour"]
        assert 0.5 < p["pred_baseColour_conf"] <= 1.0
    again = ensure_colour_tags(store, "c", data, "shape")
    assert again.action == "up_to_date" and again.details["tagged"] == 0
    # A new product (without a label: the tagger says what colour it is) is tagged alone.
    store.upsert("c", [_point(1000, np.random.default_rng(5), label=None)])
    later = ensure_colour_tags(store, "c", data, "shape")
    assert later.action == "tagged" and later.details["tagged"] == 1
    assert _payloads(store)[1000]["pred_baseColour"] == COLOURS[1000 % 3]
    # Saved and loaded, it predicts the same.
    tagger = _colour_tagger(data)
    point = next(iter(store.retrieve("c", [1000], with_vectors=True)))
    tags = tagger.tags(point.vectors)
    assert tags[0]["pred_baseColour"] == COLOURS[1000 % 3]
    # A tagger of an older recipe is trained again, and every point tagged by it.
    tagger.record.pop("recipe")
    tagger.save(label_tagger_dir(data, "c", COLOUR))
    again = ensure_colour_tags(store, "c", data, "shape")
    assert again.action == "trained" and again.details["tagged"] == 3 * MIN_PRODUCTS + 1
    assert ensure_colour_tags(store, "c", data, "shape").action == "up_to_date"


def test_no_colour_tagger_without_colour_vectors_or_enough_labels(tmp_path):
    s = EdgeStore(tmp_path / "store")
    s.create_collection("plain", {"shape": 4}, {}, {})
    assert ensure_colour_tags(s, "plain", tmp_path, "shape").action == "skipped"
    s.create_collection("few", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(1)
    s.upsert("few", [_point(i, rng) for i in range(1, 10)])
    report = ensure_colour_tags(s, "few", tmp_path, "shape")
    assert report.action == "skipped" and "baseColour" in report.reason
    s.close()


def test_tag_agreement_counts_a_candidates_colour_label_as_sure():
    query = {"pred_baseColour": "Navy Blue", "pred_baseColour_conf": 0.6}
    weight = COLOUR_TAG_WEIGHT * 0.6
    assert tag_agreement(query, {"baseColour": "Navy Blue"}) == pytest.approx(weight)
    # The label, not the candidate's own prediction, is what counts.
    hit = {"baseColour": "Black", "pred_baseColour": "Navy Blue", "pred_baseColour_conf": 0.9}
    assert tag_agreement(query, hit) == 0.0
    unlabelled = {"pred_baseColour": "Navy Blue", "pred_baseColour_conf": 0.5}
    assert tag_agreement(query, unlabelled) == pytest.approx(weight * 0.5)
    # Beside a scheme's agreement, at 1.
    query = {**query, "pred_subCategory": "Topwear", "pred_subCategory_conf": 1.0}
    hit = {"baseColour": "Navy Blue", "pred_subCategory": "Topwear", "pred_subCategory_conf": 0.5}
    assert tag_agreement(query, hit) == pytest.approx(weight + 0.5)


def test_two_colours_are_learnt_too(tmp_path):
    # scikit-learn keeps one logit for two classes; the tagger must still tell them apart.
    s = EdgeStore(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(2)
    points = [_point(i, rng) for i in range(1, 3 * MIN_PRODUCTS + 1) if i % 3 != 2]
    s.upsert("c", points)
    report = ensure_colour_tags(s, "c", tmp_path / "data", "shape")
    assert report.action == "trained" and report.details["test_accuracy"] == 1.0
    tagged = {p.id: p.payload for p in s.iter_points("c")}
    assert all(p["pred_baseColour"] == p["baseColour"] for p in tagged.values())
    s.close()


def _record(test_ids) -> TaggerRecord:
    return TaggerRecord("vectors", {}, [4], [], 1, 0, test_ids=list(test_ids))


def test_an_audit_ranks_colour_findings_by_how_rarely_the_tagger_confuses_them():
    layers = [(np.zeros((2, 4)), np.zeros(4))]
    tagger = LabelTagger(COLOUR, ["Black", "Blue", "Brown", "Tan"], layers, COLOUR_INPUTS, {})
    tagger.record["test_ids"] = list(range(100, 120))
    payloads = {
        # held out: 4 of 10 Tan products predicted Brown, no Black one predicted Blue
        **{
            100 + i: {"baseColour": "Tan", "pred_baseColour": "Brown" if i < 4 else "Tan"}
            for i in range(10)
        },
        **{110 + i: {"baseColour": "Black", "pred_baseColour": "Black"} for i in range(10)},
        1: {"baseColour": "Black", "pred_baseColour": "Blue"},  # a photo of another colour
        2: {"baseColour": "Black", "pred_baseColour": "Blue"},  # ... not a sure one
        3: {"baseColour": "Mauve", "pred_baseColour": "Blue"},  # a colour it does not know
    }
    confs = {100: 0.99, 1: 0.95, 2: 0.6, 3: 0.99}
    for pid, p in payloads.items():
        p["pred_baseColour_conf"] = confs.get(pid, 0.8)
    ids, rows = list(payloads), list(payloads.values())
    findings = find_mislabels(ids, rows, _record([]), 0.9, ["baseColour"], {"baseColour": tagger})
    # Tan predicted Brown is a common confusion: the surer finding ranks second.
    assert [(f.id, f.confusion, f.held_out) for f in findings] == [
        (1, 0.0, False),
        (100, 0.4, True),
    ]
    assert findings[1].confidence > findings[0].confidence
    # Without a colour tagger, colour labels are not judged.
    assert find_mislabels(ids, rows, _record([]), 0.9, ["baseColour"]) == []


def test_an_audit_finds_a_product_whose_colour_label_its_photo_contradicts(store, tmp_path):
    ensure_colour_tags(store, "c", tmp_path / "data", "shape")
    tagger = _colour_tagger(tmp_path / "data")
    store.set_payloads("c", {7: {"baseColour": "White"}})  # a Navy Blue product (7 % 3 == 1)
    findings = audit_collection(
        store, "c", _record([]), 0.5, ["baseColour"], {"baseColour": tagger}
    )
    assert [(f.id, f.label, f.predicted) for f in findings] == [(7, "White", "Navy Blue")]
    # The tagger kept the products it was measured on: without a classifier, a seeded split.
    assert len(tagger.record["test_ids"]) == round(0.2 * 3 * MIN_PRODUCTS)


@pytest.mark.parametrize("colours", [3, 2])
def test_a_large_catalog_gets_a_hidden_layer_saved_and_loaded_whole(tmp_path, colours):
    s = EdgeStore(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(3)
    count = label_tags.MLP_MIN_TRAIN * 2  # 80 % of 2 colours in 3 are training enough
    points = [_point(i, rng) for i in range(1, count + 1)]
    s.upsert("c", [p for p in points if colours == 3 or p.id % 3 != 2])
    report = ensure_colour_tags(s, "c", tmp_path / "data", "shape")
    assert report.action == "trained" and report.details["test_accuracy"] == 1.0
    tagger = _colour_tagger(tmp_path / "data")
    assert tagger.record["model"] == "mlp" and len(tagger.layers) == 2
    assert tagger.layers[0][0].shape == (4 + 6, label_tags.HIDDEN_UNITS)
    tagged = {p.id: p.payload for p in s.iter_points("c")}
    assert all(p["pred_baseColour"] == p["baseColour"] for p in tagged.values())
    s.close()


def test_a_tagger_reads_the_vectors_of_at_most_its_sample_of_a_large_catalog(
    tmp_path, monkeypatch
):
    """A catalog larger than TRAIN_LIMIT + TEST_LIMIT: the tagger learns from a seeded sample,
    and no more vectors than the sample's are read to train it (its memory is the sample's,
    not the catalog's); every product is still tagged, a page at a time."""

    class Counting(EdgeStore):
        """The embedded store, counting the vectors its reads return."""

        read_vectors = 0

        def retrieve(self, name, ids, with_vectors=False):
            points = super().retrieve(name, ids, with_vectors)
            if with_vectors:
                Counting.read_vectors += sum(1 for p in points if p.vectors)
            return points

    monkeypatch.setattr(label_tags, "TRAIN_LIMIT", 60)
    monkeypatch.setattr(label_tags, "TEST_LIMIT", 15)
    monkeypatch.setattr(label_tags, "PAGE", 50)
    s = Counting(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(4)
    s.upsert("c", [_point(i, rng) for i in range(1, 301)])
    inputs = label_tags.tagger_inputs(COLOUR, s.vector_sizes("c"), "shape", False)
    tagger = label_tags.train_label_tagger(s, "c", COLOUR, inputs)
    assert tagger.record["trained_on"] == 60 and tagger.record["test_products"] == 15
    assert Counting.read_vectors == 60 + 15
    assert tagger.record["test_accuracy"] == 1.0
    again = label_tags.train_label_tagger(s, "c", COLOUR, inputs)
    assert again.record["test_ids"] == tagger.record["test_ids"]  # the sample is seeded
    Counting.read_vectors = 0
    report = ensure_colour_tags(s, "c", tmp_path / "data", "shape")
    assert report.details["tagged"] == 300
    assert Counting.read_vectors == 60 + 15 + 300  # training, then every product's tags
    s.close()


def test_a_killed_save_keeps_the_previous_tagger_and_old_files_still_load(tmp_path, monkeypatch):
    directory = tmp_path / "tagger"
    first = LabelTagger(
        COLOUR, ["Red", "Blue"], [(np.eye(3, 2), np.zeros(2))], COLOUR_INPUTS, {"a": 1}
    )
    first.save(directory)
    second = LabelTagger(
        COLOUR, ["Red", "Blue"], [(np.ones((3, 2)), np.ones(2))], COLOUR_INPUTS, {"a": 2}
    )

    def killed(*_):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(label_tags, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            second.save(directory)  # its weights are written, its record is not
    loaded = LabelTagger.load(directory, COLOUR)
    assert loaded.record == {"a": 1} and np.array_equal(loaded.layers[0][0], np.eye(3, 2))
    second.save(directory)
    assert LabelTagger.load(directory, COLOUR).record == {"a": 2}
    assert len(list(directory.glob("*.npz"))) == 1  # the others are dropped once it is named

    # A tagger saved before the weights had their own names: a regression, colour at 2x.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    np.savez(legacy / "colour_tagger.npz", coef=np.eye(2, 3), intercept=np.zeros(2))
    (legacy / "colour_tagger.json").write_text('{"classes": ["Red", "Blue"], "backbone": "s"}')
    old = LabelTagger.load(legacy, COLOUR)
    assert old.inputs == (("s", 1.0), (COLOUR_VECTOR, 2.0)) and np.array_equal(
        old.layers[0][0], np.eye(3, 2)
    )


TYPES = ["Tshirts", "Tunics", "Kurtis"]  # the last two rarer than a classifier keeps


def _typed_store(tmp_path, tuned_model: str | None) -> EdgeStore:
    """Products whose articleType only their tuned vector tells."""
    s = EdgeStore(tmp_path / "store")
    s.create_collection("c", {"shape": 4, COLOUR_VECTOR: 6, TUNED_VECTOR: 6}, {}, {})
    rng = np.random.default_rng(4)
    points = []
    for i in range(1, 3 * MIN_PRODUCTS + 1):
        tuned = rng.uniform(0, 0.2, 6).astype(np.float32)
        tuned[(i % 3) * 2] = 1.0
        vectors = {
            "shape": rng.normal(size=4).astype(np.float32),
            COLOUR_VECTOR: rng.uniform(0, 1, 6).astype(np.float32),
            TUNED_VECTOR: tuned,
        }
        points.append(PointData(i, vectors, {"articleType": TYPES[i % 3]}))
    s.upsert("c", points)
    s.set_metadata("c", {**s.get_metadata("c"), CURRENT_KEY: tuned_model})
    return s


def test_the_type_tagger_reads_current_tuned_vectors_and_follows_them(tmp_path):
    store = _typed_store(tmp_path, "model-1")
    data = tmp_path / "data"
    try:
        report = ensure_label_tags(store, "c", data, "shape", FINE_TYPE)
        assert report.action == "trained" and report.details["test_accuracy"] == 1.0
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.inputs == (("shape", 1.0), (TUNED_VECTOR, 1.0))
        assert tagger.record["tuned_model"] == "model-1"
        for p in _payloads(store).values():
            assert p["pred_fineArticleType"] == p["articleType"]
            assert "pred_baseColour" not in p  # one tagger, one tag
        assert ensure_label_tags(store, "c", data, "shape", FINE_TYPE).action == "up_to_date"
        # A retrained finetune classifier re-embeds the tuned vectors: the tagger follows.
        # Until then a query does not use it.
        assert set(load_label_taggers(data, "c", "model-1", current=True)) == {"fineArticleType"}
        assert load_label_taggers(data, "c", "model-2", current=True) == {}
        store.set_metadata("c", {**store.get_metadata("c"), CURRENT_KEY: "model-2"})
        again = ensure_label_tags(store, "c", data, "shape", FINE_TYPE)
        assert again.action == "trained" and again.details["tagged"] == 3 * MIN_PRODUCTS
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.record["tuned_model"] == "model-2"
        # Stale tuned vectors (a classifier of another kind now): backbone and colour.
        store.set_metadata("c", {**store.get_metadata("c"), CURRENT_KEY: None})
        stale = ensure_label_tags(store, "c", data, "shape", FINE_TYPE)
        assert stale.action == "trained"
        tagger = LabelTagger.load(label_tagger_dir(data, "c", FINE_TYPE), FINE_TYPE)
        assert tagger.inputs == (("shape", 1.0), (COLOUR_VECTOR, label_tags.COLOUR_SCALE))
        assert "tuned_model" not in tagger.record
    finally:
        store.close()


def test_the_agreement_weighs_every_articletype_in_place_of_the_classifiers():
    query = {
        "pred_articleType": "Tops",
        "pred_articleType_conf": 1.0,
        "pred_fineArticleType": "Tunics",
        "pred_fineArticleType_conf": 0.5,
    }
    weight = FINE_TYPE_WEIGHT * 0.5
    assert tag_agreement(query, {"articleType": "Tunics"}) == pytest.approx(weight)
    assert tag_agreement(query, {"articleType": "Tops"}) == 0.0
    # A candidate without the label: its own prediction, at its confidence.
    unlabelled = {"pred_fineArticleType": "Tunics", "pred_fineArticleType_conf": 0.8}
    assert tag_agreement(query, unlabelled) == pytest.approx(weight * 0.8)
    # A collection without the type tagger: the classifier's articleType.
    del query["pred_fineArticleType"]
    assert tag_agreement(query, {"articleType": "Tops"}) == pytest.approx(1.0)


def test_an_audit_judges_the_types_the_classifier_leaves_out_by_the_type_tagger():
    layers = [(np.zeros((2, 5)), np.zeros(5))]
    types = LabelTagger(
        FINE_TYPE, ["Kurtas", "Kurtis", "Shirts", "Tshirts", "Tunics"], layers, (), {}
    )
    types.record["test_ids"] = list(range(100, 110))
    record = TaggerRecord(
        "vectors",
        {},
        [4],
        [SchemeClasses("articleType", ("Kurtas", "Shirts", "Tshirts"), {})],
        1,
        0,
    )
    payloads = {
        # held out: 5 of 10 Kurtis products taken for Kurtas
        **{
            100 + i: {
                "articleType": "Kurtis",
                "pred_fineArticleType": "Kurtas" if i < 5 else "Kurtis",
            }
            for i in range(10)
        },
        1: {"articleType": "Tunics", "pred_fineArticleType": "Tshirts"},  # a rare type, mislabelled
        2: {
            "articleType": "Tshirts",
            "pred_fineArticleType": "Shirts",
        },  # a kept type: the classifier's
    }
    for p in payloads.values():
        p["pred_fineArticleType_conf"] = 0.95
    ids, rows = list(payloads), list(payloads.values())
    taggers = {"fineArticleType": types}
    findings = find_mislabels(ids, rows, record, 0.9, ["fineArticleType"], taggers)
    assert [(f.id, f.label, f.predicted, f.confusion) for f in findings] == [
        (1, "Tunics", "Tshirts", 0.0),
        *[(100 + i, "Kurtis", "Kurtas", 0.5) for i in range(5)],
    ]


def test_a_run_killed_while_tagging_is_finished_by_the_next_for_every_point(store, tmp_path):
    data = tmp_path / "data"
    ensure_colour_tags(store, "c", data, "shape")
    # An older recipe: the next run trains the tagger again and is killed while tagging, with
    # every point still carrying the old tagger's tags.
    old = _colour_tagger(data)
    old.record.pop("recipe")
    old.save(label_tagger_dir(data, "c", COLOUR))

    def killed(*_):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(store, "set_payloads", killed)
        with pytest.raises(KeyboardInterrupt):
            ensure_colour_tags(store, "c", data, "shape")
    assert _colour_tagger(data).record["tagged_all"] is False
    finished = ensure_colour_tags(store, "c", data, "shape")
    assert finished.action == "tagged" and finished.details["tagged"] == 3 * MIN_PRODUCTS
    assert _colour_tagger(data).record["tagged_all"] is True
    assert ensure_colour_tags(store, "c", data, "shape").action == "up_to_date"

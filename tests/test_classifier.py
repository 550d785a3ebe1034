"""The classifier: schemes, split, training on a tiny catalog, tags in the payload, audit,
--same-type queries."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import KINDS, ingest_args, make_catalog
from typer.testing import CliRunner

from classifier.label_tags import (
    COLOUR,
    FINE_TYPE,
    LabelTagger,
    label_tagger_dir,
    load_label_taggers,
)
from classifier.neighbours import voted_tags
from classifier.schemes import IGNORE, SchemeClasses, scheme_label
from classifier.split import stratified_split
from classifier.tagger import CATALOG_ZOOM, RECORD_FILE, read_record, tagger_dir
from embedder.images import zoom_in
from ingest.catalog import read_catalog
from qdrant.base import unit_rows
from qdrant.edge import EdgeStore
from searchctl.cli import app
from searchctl.query import DEFAULT_BLEND, TUNED_BLEND

runner = CliRunner()
N = 80  # 20 products of each of the 4 kinds
MISLABELLED = 5  # a Tops product (kind 1) whose styles.csv row says Shirts


def test_scheme_labels_and_left_out_classes():
    payloads = [{"gender": "Men", "masterCategory": "Apparel", "articleType": "Shirts"}] * 3 + [
        {"gender": "Women", "masterCategory": "Footwear", "articleType": "Heels"},
        {"gender": None, "masterCategory": "Footwear", "articleType": None},
    ]
    assert scheme_label("gender_master", payloads[0]) == "Men Apparel"
    assert scheme_label("gender_master", payloads[4]) is None
    sc = SchemeClasses.from_payloads("articleType", payloads, min_class_size=2)
    assert sc.classes == ("Shirts",) and sc.left_out == {"Heels": 1}
    assert sc.encode(payloads).tolist() == [0, 0, 0, IGNORE, IGNORE]
    with pytest.raises(ValueError, match="unknown scheme"):
        scheme_label("colour", payloads[0])


def test_split_is_seeded_stratified_and_disjoint():
    payloads = [{"articleType": t} for t in ["Shirts"] * 500 + ["Heels"] * 300 + ["Odd"] * 3]
    a, b = stratified_split(payloads, seed=1), stratified_split(payloads, seed=1)
    assert a.test.tolist() == b.test.tolist() and a.val.tolist() == b.val.tolist()
    assert stratified_split(payloads, seed=2).test.tolist() != a.test.tolist()
    parts = [set(a.train), set(a.val), set(a.test)]
    assert sum(map(len, parts)) == len(payloads) and not (parts[0] & parts[2])
    assert not (parts[0] & parts[1]) and not (parts[1] & parts[2])
    test_types = [payloads[i]["articleType"] for i in a.test]
    assert test_types.count("Shirts") == 100 and test_types.count("Heels") == 60
    tiny = stratified_split(payloads[:12], seed=0)  # too small to stratify: still a split
    assert len(tiny.test) + len(tiny.val) + len(tiny.train) == 12


def test_training_reads_its_vectors_from_disk_a_batch_at_a_time(tmp_path):
    """The classifier's training batches: the same from rows on disk as from an array, every
    training row once an epoch, in a new order each epoch that the seed decides."""
    from classifier.train import _batches
    from embedder.decoded import RowFile

    values = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    targets = {"articleType": np.arange(50) % 3}
    on_disk = RowFile((6,), np.float32, directory=tmp_path)
    for i, row in enumerate(values):
        on_disk[i] = row
    train = np.arange(0, 50, 2)  # 25 rows in batches of 4
    batches = {
        "memory": _batches(values, targets, train, 4, seed=7),
        "disk": _batches(on_disk, targets, train, 4, seed=7),
        "again": _batches(values, targets, train, 4, seed=7),
    }
    orders = []
    for _ in range(2):
        epoch = {name: [b[i] for i in range(len(b))] for name, b in batches.items()}
        assert len(epoch["memory"]) == 7
        for (x, y), (x_disk, y_disk) in zip(epoch["memory"], epoch["disk"]):
            np.testing.assert_array_equal(x, x_disk)
            np.testing.assert_array_equal(y["articleType"], y_disk["articleType"])
        seen = np.concatenate([x[:, 0] for x, _ in epoch["memory"]])
        assert sorted(seen) == sorted(values[train, 0])  # each training row once
        orders.append(seen)
        for b in batches.values():
            b.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])
    on_disk.close()


def test_a_querys_tags_come_from_the_vectors_network_in_numpy():
    """A query's few rows go through the `vectors` network's arrays in numpy (no TensorFlow
    call holding the GIL): the same probabilities as the Keras model; a model of another
    shape is left to Keras."""
    import keras

    from classifier.model import build_head
    from classifier.tagger import VectorsHead

    schemes = [SchemeClasses("articleType", ("Kurtas", "Shirts", "Tshirts"), {}),
               SchemeClasses("gender_master", ("Men", "Women"), {})]  # fmt: skip
    model = build_head(schemes, (16,), seed=3)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # trained-looking weights, not the initial zero biases
        layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    rows = unit_rows(rng.normal(size=(5, 16)).astype(np.float32))
    expected = model(rows, training=False)
    head = VectorsHead.of(model)
    got = head.probs(rows, ["gender_master", "articleType"])
    for scheme, probs in zip(["gender_master", "articleType"], got):
        np.testing.assert_allclose(probs, np.asarray(expected[scheme]), rtol=1e-5, atol=1e-6)
    inp = keras.Input((16,), name="features")
    other = keras.Model(inp, {"articleType": keras.layers.Dense(3, activation="sigmoid")(inp)})
    assert VectorsHead.of(other) is None


def test_colour_cast_tints_the_product_not_the_white_background():
    from classifier.model import AUGMENT_CAST, _colour_cast_layer

    photos = np.full((16, 8, 6, 3), 255.0, np.float32)
    photos[:, 2:6, 1:5] = [100.0, 150.0, 200.0]  # a product on the studio white
    cast = _colour_cast_layer()(AUGMENT_CAST, seed=3)
    assert np.array_equal(np.asarray(cast(photos, training=False)), photos)
    out = np.asarray(cast(photos, training=True))
    assert np.array_equal(out[:, 0], photos[:, 0])  # the background stays white
    gains = out[:, 3, 2] / photos[:, 3, 2]  # per photo, per channel
    assert np.all(np.abs(gains - 1) <= AUGMENT_CAST + 1e-5)
    assert np.ptp(gains, axis=0).min() > 0.05  # photos get different casts
    assert np.ptp(gains, axis=1).min() > 0  # and the channels of one photo differ
    assert np.allclose(out[:, 2:6, 1:5], photos[:, 2:6, 1:5] * gains[:, None, None])


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, tiny_weights):
    """An 80-product catalog (one mislabelled) ingested and its classifier trained."""
    root = tmp_path_factory.mktemp("tagged")
    catalog = make_catalog(root / "shop", n=N)
    styles = catalog / "styles.csv"
    lines = styles.read_text().splitlines()
    lines = [
        line.replace(",Tops,", ",Shirts,", 1) if line.startswith(f"{MISLABELLED},") else line
        for line in lines
    ]
    styles.write_text("\n".join(lines) + "\n")
    data = root / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEARCHCTL_DATA_DIR", str(data))
        # 19 Tops after the mislabel: taggers learn classes of 15 here, so every type is kept.
        args = ingest_args(catalog, tiny_weights, "--tagger-min-products", "15", "--json")
        assert runner.invoke(app, args).exit_code == 0
        train = ["train", "classifier", "--kind", "vectors", "--min-class-size", "5",
                 "--epochs", "40", "--json"]  # fmt: skip
        result = runner.invoke(app, train)
        assert result.exit_code == 0, result.output
        yield {"catalog": catalog, "data": data, "train": json.loads(result.stdout)}


def _payloads(data) -> dict[int, dict]:
    store = EdgeStore(data)
    (name,) = store.list_collections()
    out = {p.id: p.payload for p in store.retrieve(name, sorted(store.ids(name)))}
    store.close()
    return out


def test_training_reports_metrics_and_tags_every_product(tagged):
    report = tagged["train"]
    assert report["kind"] == "vectors" and report["tagged"] == N
    assert report["split"]["test"] == 16 and report["split"]["val"] + report["split"]["train"] == 64
    for scheme in ("gender_master", "subCategory", "articleType"):
        m = report["metrics"][scheme]
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert set(m["per_class"]) == set(next(s for s in report["schemes"]
                                               if s["scheme"] == scheme)["classes"])  # fmt: skip
    # The synthetic kinds differ in colour and shape: even random backbone weights separate them.
    assert report["metrics"]["articleType"]["accuracy"] >= 0.9
    for f in report["figures"]:
        assert (tagged["data"] / "models").exists() and f.endswith(".png")
    record = read_record(tagger_dir(tagged["data"], "shop"))
    assert record is not None and (tagger_dir(tagged["data"], "shop") / record.model_file).is_file()

    payloads = _payloads(tagged["data"])
    types = {k[3] for k in KINDS}
    for pid, p in payloads.items():
        assert p["pred_articleType"] in types, pid
        assert 0.0 < p["pred_articleType_conf"] <= 1.0
        assert p["pred_gender_master"] in {f"{k[0]} {k[1]}" for k in KINDS}
    correct = np.mean([p["pred_articleType"] == p["articleType"] for p in payloads.values()])
    assert correct >= 0.9


def test_audit_finds_the_mislabelled_product(tagged):
    result = runner.invoke(app, ["audit", "--min-confidence", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)["findings"]
    ours = [f for f in findings if f["id"] == MISLABELLED and f["scheme"] == "articleType"]
    assert ours and ours[0]["label"] == "Shirts" and ours[0]["predicted"] == "Tops"
    assert all(f["confidence"] >= 0.5 for f in findings)
    assert len(findings) <= 5  # the other 79 labels are right
    # Its colour tagger (ingest trained one) judges every colour label right.
    assert {f["scheme"] for f in findings} <= {"gender_master", "subCategory", "articleType"}
    # The type tagger's findings come only when asked for (every type is kept here: none).
    types = runner.invoke(app, ["audit", "--scheme", "fineArticleType", "--json"])
    assert types.exit_code == 0 and json.loads(types.stdout)["findings"] == []
    # Asked for a tag whose tagger is gone: a clear error.
    for kind, tag, missing in (
        (COLOUR, "baseColour", "colour"),
        (FINE_TYPE, "fineArticleType", "type"),
    ):
        directory = label_tagger_dir(tagged["data"], "shop", kind)
        directory.rename(directory.with_name("aside"))
        try:
            without = runner.invoke(app, ["audit", "--scheme", tag])
            assert without.exit_code != 0 and f"no {missing} tagger" in without.output
        finally:
            directory.with_name("aside").rename(directory)

    as_csv = runner.invoke(app, ["audit", "--min-confidence", "0.5", "--csv", "-"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {int(r["id"]) for r in rows} == {f["id"] for f in findings}
    sheet = tagged["data"].parent / "audit.png"
    table = runner.invoke(app, ["audit", "--min-confidence", "0.5", "--show", str(sheet)])
    assert table.exit_code == 0 and str(MISLABELLED) in table.stdout and sheet.stat().st_size > 0


def test_info_names_the_classifier_and_the_label_taggers(tagged):
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    (shop,) = json.loads(result.stdout)["collections"]
    classifier = shop["models"]["classifier"]
    assert classifier["kind"] == "vectors" and classifier["vote_test_accuracy"] is None
    assert classifier["test_accuracy"] == {
        scheme: round(m["accuracy"], 4) for scheme, m in tagged["train"]["metrics"].items()
    }
    tagger = shop["models"]["colour_tagger"]
    assert tagger["model"] == "logistic regression" and tagger["colours"] == 4  # 80 products
    types = shop["models"]["type_tagger"]  # a vectors classifier: no tuned vectors to read
    assert types["label"] == "articleType" and types["inputs"][1:] == ["colour"]
    text = runner.invoke(app, ["info"], env={"COLUMNS": "250"}).stdout
    assert "classifier: vectors" in text and "colour tagger: logistic regression, 4" in text
    assert f"type tagger: logistic regression, {types['classes']} articleType classes" in text
    shoppers = shop["models"]["shopper_photos"]  # too few to fit a query map
    assert shoppers["rows"] == types["shopper_photos"] > 0 and not shoppers["query_map"]
    assert f"(and {shoppers['rows']} shopper photos)" in text
    assert f"shopper photos: {shoppers['rows']} (" in text and "no query map" in text


def test_same_type_queries_keep_the_predicted_type(tagged):
    payloads = _payloads(tagged["data"])
    by_id = runner.invoke(app, ["query", "--id", "7", "--same-type", "--top", "10", "--json"])
    assert by_id.exit_code == 0, by_id.output
    hits = json.loads(by_id.stdout)["hits"]
    assert len(hits) == 10
    assert {h["payload"]["pred_articleType"] for h in hits} == {payloads[7]["pred_articleType"]}

    photo = tagged["catalog"] / "images" / "10.jpg"
    by_photo = runner.invoke(app, ["query", str(photo), "--same-type", "--json"])
    assert by_photo.exit_code == 0, by_photo.output
    data = json.loads(by_photo.stdout)
    assert data["predicted"]["pred_articleType"] == payloads[10]["pred_articleType"]
    assert {h["payload"]["pred_articleType"] for h in data["hits"]} == {
        data["predicted"]["pred_articleType"]
    }
    table = runner.invoke(app, ["query", str(photo), "--same-type"])
    assert f"articleType {data['predicted']['pred_articleType']}" in table.stdout


def test_eval_has_a_same_type_mode(tagged):
    result = runner.invoke(app, ["eval", "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["results"]
    assert set(results) == {
        f"{vector}{mode}"
        for vector in ("mobilenet_v2", "autoencoder", "colour")
        for mode in ("", "+same-type", "" if vector == "colour" else "+blend")
    }
    plain, same = results["mobilenet_v2"], results["mobilenet_v2+same-type"]
    assert same["agreement"]["articleType"] >= plain["agreement"]["articleType"]


def test_retag_and_missing_classifier(tagged, tmp_path, tiny_catalog, tiny_weights, monkeypatch):
    result = runner.invoke(app, ["tag", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tagged"] == N

    monkeypatch.setenv("SEARCHCTL_DATA_DIR", str(tmp_path / "other"))
    args = ingest_args(tiny_catalog, tiny_weights, "--no-autoencoder")
    assert runner.invoke(app, args).exit_code == 0
    for cmd in (["tag"], ["audit"], ["query", "--id", "1", "--same-type"]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 2, cmd
        assert "searchctl train classifier" in result.stderr or "searchctl tag" in result.stderr


def test_saving_replaces_the_model_atomically(tagged):
    directory = tagger_dir(tagged["data"], "shop")
    before = read_record(directory)
    (directory / ".partial-tagger-x.keras").write_bytes(b"half a model")  # a killed save
    assert read_record(directory).model_file == before.model_file
    assert json.loads((directory / RECORD_FILE).read_text())["model_file"] == before.model_file
    assert [p.name for p in directory.glob("tagger-*.keras")] == [before.model_file]


def _left_and_right(self, photos: np.ndarray) -> np.ndarray:
    """A stand-in for a tuned network whose features tell a photo from its mirror image: the
    mean colours of its left and right halves, spread over the tuned vector's dimensions."""
    photos = np.asarray(photos, np.float32) / 255
    half = photos.shape[2] // 2
    left, right = photos[:, :, :half].mean((1, 2)), photos[:, :, half:].mean((1, 2))
    spread = np.random.default_rng(0).normal(size=(6, int(self.record.embedder["dim"])))
    return np.concatenate([100 * (left - right), left + right], 1) @ spread


def _swap_colour_labels(styles, a: int, b: int) -> None:
    rows = list(csv.reader(io.StringIO(styles.read_text())))
    col = rows[0].index("baseColour")
    by_id = {row[0]: row for row in rows[1:]}
    by_id[str(a)][col], by_id[str(b)][col] = by_id[str(b)][col], by_id[str(a)][col]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    styles.write_text(out.getvalue())


def test_ingest_trains_then_tags_new_products(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setenv("SEARCHCTL_DATA_DIR", str(tmp_path / "data"))
    catalog = make_catalog(tmp_path / "shop", n=N)
    _swap_colour_labels(catalog / "styles.csv", 5, 6)  # a red and a white product's
    args = ingest_args(
        catalog,
        tiny_weights,
        "--min-class-size",
        "5",
        "--classifier-kind",
        "finetune",
        "--no-autoencoder",
        "--json",
    )
    first = runner.invoke(app, [*args, "--limit", "60"])
    assert first.exit_code == 0, first.output
    tags = json.loads(first.stdout)["classifier"]
    assert tags["action"] == "trained" and tags["tagged"] == 60
    assert set(tags["accuracy"]) == {"gender_master", "subCategory", "articleType"}
    assert json.loads(first.stdout)["tuned"]["embedded"] == 60
    # 15 products of each colour are too few to learn colours from.
    assert json.loads(first.stdout)["colour_tags"]["action"] == "skipped"
    assert json.loads(first.stdout)["type_tags"]["action"] == "skipped"  # and types

    second = json.loads(runner.invoke(app, args).stdout)
    assert second["stored"] == N - 60
    assert second["classifier"]["action"] == "tagged"
    assert second["classifier"]["tagged"] == N - 60
    assert second["tuned"]["embedded"] == N - 60  # the new products only
    assert second["colour_tags"]["action"] == "trained"  # 20 of each now
    assert second["colour_tags"]["tagged"] == N
    assert second["type_tags"]["action"] == "trained" and second["type_tags"]["tagged"] == N
    payloads = _payloads(tmp_path / "data")
    assert all(p.get("pred_articleType") for p in payloads.values())
    right = sum(p["pred_baseColour"] == p["baseColour"] for p in payloads.values())
    assert right >= 0.9 * N  # the synthetic kinds differ in colour
    # It was measured on the classifier's test products, and the audit judges its tags.
    colour_tagger = LabelTagger.load(label_tagger_dir(tmp_path / "data", "shop", COLOUR), COLOUR)
    classifier_record = read_record(tagger_dir(tmp_path / "data", "shop"))
    assert sorted(colour_tagger.record["test_ids"]) == sorted(classifier_record.test_ids)
    colour_audit = runner.invoke(
        app, ["audit", "--scheme", "baseColour", "--min-confidence", "0", "--json"]
    )
    assert colour_audit.exit_code == 0, colour_audit.output
    wrong = {pid for pid, p in payloads.items() if p["pred_baseColour"] != p["baseColour"]}
    assert {5, 6} <= wrong  # the swapped labels: their photos say otherwise
    findings = json.loads(colour_audit.stdout)["findings"]
    assert {f["id"] for f in findings} == wrong
    assert all(f["scheme"] == "baseColour" and f["confusion"] is not None for f in findings)

    # Every product's tags are voted by its nearest products in the tuned vector (all of
    # them again: new products are others' neighbours too), and the record measures the vote
    # on the test products (tests/test_neighbours.py checks the vote itself).
    record = read_record(tagger_dir(tmp_path / "data", "shop"))
    assert set(record.neighbour_metrics) == set(record.metrics)
    assert second["tuned"]["voted"] == N
    assert {p["pred_voted_by"] for p in payloads.values()} == {record.model_file}

    # A photo is tagged by the vote of the products nearest its tuned vector, which is the
    # one stored for the photo's product: the query path computes what training did.
    photo = catalog / "images" / "70.jpg"
    result = runner.invoke(app, ["query", str(photo), "--same-type", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["vector"] == "mobilenet_v2"
    assert found["blend"]["tag_weight"] == TUNED_BLEND.tag_weight != DEFAULT_BLEND.tag_weight
    assert found["blend"]["tuned_weight"] == 1.0  # a finetune collection blends its tuned vector
    assert found["blend"]["tuned_candidates"] == 50  # and searches it for candidates too
    assert found["blend"]["candidates"] == 100  # beside the shape vector's 100 nearest
    assert found["blend"]["colour_weight"] == 0.3  # a studio shot
    # A shopper's photo (the product on a green table, cut out of it) weighs colour more,
    # unless a weight is asked for.
    from PIL import Image

    from embedder.images import prepare_photo, was_cut_out

    table = Image.new("RGB", (240, 320), (90, 140, 70))
    table.paste(Image.open(photo).convert("RGB").resize((120, 160)), (60, 80))
    table.save(shot := tmp_path / "shot.jpg", quality=95)
    assert was_cut_out(prepare_photo(shot))
    cut = json.loads(runner.invoke(app, ["query", str(shot), "--json"]).stdout)
    assert cut["blend"]["colour_weight"] == TUNED_BLEND.cut_out.colour_weight == 0.7
    assert cut["blend"]["cut_out"] is None  # the weights applied
    asked = runner.invoke(app, ["query", str(shot), "--colour-weight", "0.45", "--json"])
    assert json.loads(asked.stdout)["blend"]["colour_weight"] == 0.45
    # One pass through the network gives the same tags and tuned vector as two.
    from classifier.tagger import Tagger
    from embedder.images import load_image

    tagger = Tagger(tagger_dir(tmp_path / "data", "shop"))
    pixels = load_image(photo, *tagger.record.input_shape[:2], cutout=True)[None]
    probs, tuned = tagger.predict_and_embed(pixels)
    for both, alone in zip(probs, tagger.predict(pixels)):
        np.testing.assert_allclose(both, alone, atol=1e-5)
    np.testing.assert_allclose(tuned, tagger.embed(pixels), atol=1e-4)
    with EdgeStore(tmp_path / "data") as store:
        [expected] = voted_tags(store, "shop", record.schemes, tuned)
        [own] = store.retrieve("shop", [70], with_vectors=["tuned"])
    for field, value in expected.items():
        assert found["predicted"][field] == pytest.approx(value, abs=2e-3), field
    np.testing.assert_allclose(own.vectors["tuned"], tagger.embed_catalog(pixels)[0], atol=1e-4)
    # Eval embeds photo queries as a query does: tags and tuned vector from one pass.
    from searchctl.evaluate import SearchMode, photo_queries
    from searchctl.query import Searcher, default_blend

    with EdgeStore(tmp_path / "data") as store:
        searcher = Searcher(store, "shop", tiny_weights, compiled=False,
                            data_dir=tmp_path / "data", with_tags=True)  # fmt: skip
        blend = default_blend(store, "shop")
        mode = SearchMode("blend", searcher.spec.vector_name, blend=blend)
        queries, _ = photo_queries(read_catalog(catalog), searcher, mode.vectors)
        # Without the tuned vector among those evaluated, the photos still go through the
        # network once, for their tags and the type tagger's tuned vector.
        with monkeypatch.context() as m:
            calls = []
            embed = Tagger.embed
            m.setattr(Tagger, "embed", lambda self, px: calls.append(1) or embed(self, px))
            backbone_only, _ = photo_queries(read_catalog(catalog), searcher, ["mobilenet_v2"])
        assert calls == []
        fine = ("pred_fineArticleType", "pred_gender_master")
        assert [[q[f] for f in fine] for q in backbone_only.labels] == [
            [q[f] for f in fine] for q in queries.labels
        ]
        # Each photo's tuned vector is the query path's, and its tags are the vote of that
        # vector's nearest products. (Products of a kind tie here: the query path's vector,
        # equal to 1e-4, may be voted otherwise.)
        voted = voted_tags(store, "shop", record.schemes, queries.vectors["tuned"])
        assert [{f: label[f] for f in tags} for label, tags in zip(queries.labels, voted)] == [
            pytest.approx(tags) for tags in voted
        ]
        for row in range(0, len(queries.ids), 9):
            shot = prepare_photo(queries.images[row], searcher.cutout)
            alone = searcher.embed_batch(searcher.fit(shot, "tuned")[None], "tuned")[0]
            np.testing.assert_allclose(queries.vectors["tuned"][row], alone, atol=1e-4)
        # The type tagger reads the backbone and tuned vectors (the finetune classifier's);
        # a query takes its tuned vector from the one pass that tags the photo, even where
        # it does not blend it.
        assert searcher.label_taggers["fineArticleType"].vectors == ["mobilenet_v2", "tuned"]
        passes = []
        with monkeypatch.context() as m:
            embed = Tagger.embed
            m.setattr(Tagger, "embed", lambda self, px: passes.append(1) or embed(self, px))
            same = searcher.search_image(photo, same_type=True)
            blended = searcher.search_image(photo, blend=blend)
        assert passes == []
        expected = searcher.label_tags([prepare_photo(photo)], {})[0]  # every vector made anew
        for result in (same, blended):
            for field, value in expected.items():
                assert result.predicted[field] == pytest.approx(value, abs=2e-3), field
    tuned = json.loads(
        runner.invoke(app, ["query", str(photo), "--vector", "tuned", "--json"]).stdout
    )
    assert tuned["vector"] == "tuned" and tuned["blend"]["tag_weight"] == 0.0
    assert tuned["blend"]["cut_out"] is None  # cut-out weights: measured on the backbone only
    everything = ["query", str(photo), "--vector", "tuned", "--plain", "--top", str(N), "--json"]
    scores = {
        h["id"]: h["score"] for h in json.loads(runner.invoke(app, everything).stdout)["hits"]
    }
    assert scores[70] > 0.9999  # products of a kind look alike here: 70 may tie with others

    third = json.loads(runner.invoke(app, args).stdout)
    assert third["classifier"] == {"action": "up_to_date", "tagged": 0}
    assert third["tuned"] == {"action": "up_to_date", "embedded": 0, "voted": 0}
    with EdgeStore(tmp_path / "data") as store:  # as if a vote of everyone had been killed
        store.set_metadata("shop", {**store.get_metadata("shop"), "vote_everyone_pending": True})
    fourth = json.loads(runner.invoke(app, args).stdout)
    assert fourth["tuned"] == {"action": "up_to_date", "embedded": 0, "voted": N}
    # Vectors an older searchctl made of the photos alone (marked with the model only) are
    # not current: not voted with, and made again by the next run, all of them, each the
    # mean of the features of its photo, its centre enlarged and their mirror images. (This
    # tiny network's features hardly depend on the photo: a stand-in that tells left from
    # right computes them.)
    from classifier.tuned import CURRENT_KEY, MODEL_FIELD, tuned_current

    old_mark = {pid: {MODEL_FIELD: record.model_file} for pid in range(1, N + 1)}
    with EdgeStore(tmp_path / "data") as store:
        store.set_payloads("shop", old_mark)
        store.set_metadata("shop", {**store.get_metadata("shop"), CURRENT_KEY: record.model_file})
        assert tuned_current(store, "shop") and not tuned_current(store, "shop", record.model_file)
    with monkeypatch.context() as m:
        m.setattr(Tagger, "embed", _left_and_right)
        fifth = json.loads(runner.invoke(app, args).stdout)
    assert fifth["tuned"]["embedded"] == N and fifth["tuned"]["voted"] == N
    with EdgeStore(tmp_path / "data") as store:
        assert tuned_current(store, "shop", record.model_file)
        [own] = store.retrieve("shop", [70], with_vectors=["tuned"])
    zoomed = zoom_in(pixels, CATALOG_ZOOM)
    views = [unit_rows(_left_and_right(tagger, p)) for p in (pixels, pixels[:, :, ::-1], zoomed,
                                                             zoomed[:, :, ::-1])]  # fmt: skip
    assert float(views[0][0] @ views[1][0]) < 0.9
    np.testing.assert_allclose(own.vectors["tuned"], unit_rows(sum(views))[0], atol=1e-4)
    # An audit ranks voted tags by the agreement of each product's nearest products.
    audit = runner.invoke(app, ["audit", "--min-confidence", "0", "--json"])
    assert audit.exit_code == 0, audit.output
    findings = json.loads(audit.stdout)["findings"]
    voted = [f for f in findings if f["scheme"] != "baseColour"]
    assert voted and all(0 <= f["agreement"] <= 1 for f in voted)
    # Re-tagged, the products are voted by their neighbours at once, without the network.
    retag = json.loads(runner.invoke(app, ["tag", "--json"]).stdout)
    assert retag["tagged"] == N and retag["tuned"]["voted"] == 0
    assert retag["colour_tags"]["action"] == "tagged" and retag["colour_tags"]["tagged"] == N
    assert retag["type_tags"] == {**retag["type_tags"], "action": "tagged", "tagged": N}
    assert {p["pred_voted_by"] for p in _payloads(tmp_path / "data").values()} == {
        record.model_file
    }

    # --held-out queries are exactly the classifier's test products, on every vector.
    record = read_record(tagger_dir(tmp_path / "data", "shop"))
    held = json.loads(runner.invoke(app, ["eval", "--held-out", "--json"]).stdout)
    assert held["queries"] == len(record.test_ids) > 0
    assert {"tuned", "tuned+blend", "mobilenet_v2+blend"} <= set(held["results"])
    bad_kind = runner.invoke(app, [*args[:-1], "--classifier-kind", "svm"])
    assert bad_kind.exit_code == 2 and "unknown classifier kind 'svm'" in bad_kind.stderr

    # Retrained as a vectors classifier, the tuned vectors are stale: not blended any more.
    retrain = ["train", "classifier", "--kind", "vectors", "--min-class-size", "5", "--json"]
    retrained = runner.invoke(app, retrain)
    assert retrained.exit_code == 0
    # The type tagger read the tuned vectors: trained again on the backbone and colour ones.
    assert json.loads(retrained.stdout)["type_tags"]["action"] == "trained"
    assert json.loads(retrained.stdout)["colour_tags"]["action"] == "up_to_date"
    type_tagger = load_label_taggers(tmp_path / "data", "shop")["fineArticleType"]
    assert type_tagger.vectors == ["mobilenet_v2", "colour"]
    after = json.loads(runner.invoke(app, ["query", str(photo), "--json"]).stdout)
    assert after["blend"]["tuned_weight"] == 0.0
    assert after["predicted"]["pred_fineArticleType"] is not None
    assert after["blend"]["tag_weight"] == DEFAULT_BLEND.tag_weight  # the vectors default's
    assert after["blend"]["tuned_candidates"] == 0
    # Asked for by weight, the tuned vector blends and brings its candidates; 0 turns both off.
    for weight, joined in (("0.5", 50), ("0", 0)):
        by_id = runner.invoke(app, ["query", "--id", "70", "--tuned-weight", weight, "--json"])
        assert json.loads(by_id.stdout)["blend"]["tuned_candidates"] == joined, weight
    stale = runner.invoke(app, ["query", str(photo), "--vector", "tuned"])
    assert stale.exit_code == 2 and "only a finetune one makes tuned vectors" in stale.stderr
    # Eval of photos runs every other mode, and says which it left out.
    photos = runner.invoke(app, ["eval", "--queries", str(catalog), "--sample", "6", "--json"])
    assert photos.exit_code == 0, photos.output
    assert "Left out: tuned, " in photos.stderr
    ran = set(json.loads(photos.stdout)["results"])
    assert "mobilenet_v2+blend" in ran and not any(m.startswith("tuned") for m in ran)

"""The searchctl commands end to end on a tiny generated catalog (CliRunner, in process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ingest_args, product_image
from PIL import Image
from typer.testing import CliRunner

from searchctl.cli import app

runner = CliRunner()
GOOD = 24  # products in the tiny catalog with a usable image
BAD = {901, 902, 903}


def _ingest(catalog, weights, *extra):
    args = ingest_args(catalog, weights, "--batch-size", "5", "--no-autoencoder", "--json", *extra)
    return runner.invoke(app, args)


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_reports_bad_items_and_stores_the_rest(tiny_catalog, tiny_weights, data_dir):
    report = _json(_ingest(tiny_catalog, tiny_weights))
    assert report["stored"] == GOOD and report["points_in_collection"] == GOOD
    assert {b["id"] for b in report["bad_images"]} == BAD
    reasons = {b["id"]: b["reason"] for b in report["bad_images"]}
    assert "empty file" in reasons[902] and "not a readable image" in reasons[903]
    assert report["rows_without_image"] == [904]
    assert report["images_without_row"] == ["999"]
    assert report["bad_rows"][0]["reason"].startswith("3 fields")

    again = _json(_ingest(tiny_catalog, tiny_weights))
    assert again["stored"] == 0 and again["already_stored"] == GOOD
    assert again["points_in_collection"] == GOOD
    # Bad images are tried again (and reported again) on every run: nothing is silently lost.
    assert {b["id"] for b in again["bad_images"]} == BAD

    info = _json(runner.invoke(app, ["info", "--json"]))
    (coll,) = info["collections"]
    assert coll["name"] == "catalog0" and coll["points"] == GOOD
    assert coll["vectors"] == {"mobilenet_v2": 1280, "colour": 112}
    assert coll["embedder"]["input_height"] == 32 and coll["embedder"]["preprocessing"] == "tf"


def test_finished_ingest_says_nothing_to_do(tmp_path, tiny_weights, data_dir):
    from conftest import make_catalog

    catalog = make_catalog(tmp_path / "shop", n=6)
    for bad in BAD:
        (catalog / "images" / f"{bad}.jpg").unlink()
    assert _ingest(catalog, tiny_weights).exit_code == 0
    args = ingest_args(catalog, tiny_weights, "--no-autoencoder")
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Nothing to do: all 6 products" in result.stdout


def test_limit_then_full_run_completes(tmp_path, tiny_catalog, tiny_weights, data_dir):
    first = _json(_ingest(tiny_catalog, tiny_weights, "--limit", "10"))
    assert first["selected"] == 10 and first["points_in_collection"] == 10
    rest = _json(_ingest(tiny_catalog, tiny_weights))
    assert rest["already_stored"] == 10 and rest["stored"] == GOOD - 10


def test_another_embedder_is_refused(tiny_catalog, tiny_weights, data_dir):
    assert _ingest(tiny_catalog, tiny_weights, "--limit", "3").exit_code == 0
    args = ["ingest", str(tiny_catalog), "--backbone", "mobilenet_v2",
            "--weights", str(tiny_weights), "--input-size", "48x48"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "was built with another embedder" in result.stderr
    assert "input_height: collection has 32, this run has 48" in result.stderr


def test_missing_weights_stop_before_any_work(tiny_catalog, tmp_path, data_dir):
    args = ["ingest", str(tiny_catalog), "--backbone", "mobilenet_v2",
            "--weights", str(tmp_path / "absent.h5")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "weights file not found" in result.stderr
    assert not data_dir.exists() or not any(data_dir.rglob("collection.json"))


@pytest.fixture
def ingested(tiny_catalog, tiny_weights, data_dir):
    assert _ingest(tiny_catalog, tiny_weights).exit_code == 0
    return tiny_catalog


def test_query_by_photo_finds_the_product_first(ingested, tmp_path):
    photo = tmp_path / "photo.png"
    product_image(7).resize((120, 160)).save(photo)  # same product, another size and format
    res = _json(runner.invoke(app, ["query", str(photo), "--top", "3", "--plain", "--json"]))
    assert res["vector"] == "mobilenet_v2" and len(res["hits"]) == 3 and res["blend"] is None
    assert res["hits"][0]["id"] == 7 and res["hits"][0]["score"] >= 0.99, res["hits"]
    assert res["hits"][0]["payload"]["articleType"] == "Watches"
    scores = [h["score"] for h in res["hits"]]
    assert scores == sorted(scores, reverse=True)
    # The default re-ranks by colour too: black watches first, scores still in order.
    blended = _json(runner.invoke(app, ["query", str(photo), "--top", "3", "--json"]))
    assert blended["blend"]["colour_weight"] == 0.3
    assert all(h["payload"]["articleType"] == "Watches" for h in blended["hits"])
    scores = [h["score"] for h in blended["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_query_table_filter_and_contact_sheet(ingested, tmp_path):
    photo = ingested / "images" / "5.jpg"
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(
        app, ["query", str(photo), "--where", "gender=Women", "--where", "year=2011",
              "--show", str(sheet), "--top", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rank" in result.stdout and "Women" in result.stdout and "Men " not in result.stdout
    img = Image.open(sheet)
    assert img.width > 4 * 120 and img.height >= 160  # query + 4 hits
    res = _json(runner.invoke(app, ["query", str(photo), "--where", "gender=Women",
                                    "--where", "year=2011", "--json"]))  # fmt: skip
    assert res["hits"] and all(
        h["payload"]["gender"] == "Women" and h["payload"]["year"] == 2011 for h in res["hits"]
    )


def test_query_by_id_uses_the_stored_vector(ingested):
    res = _json(runner.invoke(app, ["query", "--id", "12", "--plain", "--json", "--top", "2"]))
    assert res["query"] == "id:12" and res["hits"][0]["id"] == 12
    assert res["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "args,message",
    [
        (["query", "{catalog}/styles.csv"], "not a readable image"),
        (["query", "{catalog}/images/902.jpg"], "empty file"),
        (["query", "{catalog}/nothing.jpg"], "file not found"),
        (["query"], "give an IMAGE, --id PRODUCT_ID or --text WORDS"),
        (["query", "--id", "99999"], "not in collection"),
        (["query", "--id", "1", "--where", "gender"], "FIELD=VALUE"),
        (["query", "--id", "1", "--vector", "texture"], "has no vector 'texture'"),
        (["query", "--id", "1", "--collection", "other"], "no collection 'other'"),
    ],
)
def test_query_errors_are_clear_with_exit_code_2(ingested, args, message):
    result = runner.invoke(app, [a.format(catalog=ingested) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_info_on_an_empty_store(data_dir):
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "No collections yet" in result.stdout


def test_help_explains_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "query", "info"):
        assert command in result.stdout
    assert "--where" in runner.invoke(app, ["query", "--help"]).stdout


def _commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_shows_every_option_text_whole():
    """Square brackets in an option's help ("[default: ...]") are Rich markup unless escaped:
    unescaped, the --help output silently dropped them."""
    import re

    import typer

    squeeze = re.compile(r"[\s│]+")
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        # Wide enough that Rich does not cut long words short with an ellipsis.
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
        shown = squeeze.sub("", result.stdout)
        for param in command.params:
            for bracketed in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                checked += 1
                assert squeeze.sub("", bracketed) in shown, (path, param.name, bracketed)
    assert checked >= 10


def test_query_help_states_the_default_searchs_own_weights():
    """The re-rank's defaults are written out in `query --help` (the CLI does not import the
    search to read them); they must follow the code's."""
    import re

    import typer

    from searchctl.query import (
        COLOUR_TAG_WEIGHT,
        DEFAULT_BLEND,
        FINE_TYPE_WEIGHT,
        TUNED_BLEND,
    )

    command = dict(_commands(typer.main.get_command(app)))[("query",)]
    helps = {p.name: p.help for p in command.params}
    stated = {
        "colour_weight": [DEFAULT_BLEND.colour_weight, DEFAULT_BLEND.cut_out.colour_weight],
        "tag_weight": [
            DEFAULT_BLEND.tag_weight,
            TUNED_BLEND.tag_weight,
            DEFAULT_BLEND.cut_out.tag_weight,
        ],
        "tuned_weight": [TUNED_BLEND.tuned_weight, TUNED_BLEND.cut_out.tuned_weight],
        "candidates": [DEFAULT_BLEND.candidates, TUNED_BLEND.candidates],
    }
    for name, values in stated.items():
        for value in values:  # the number whole: 0.1 is not in "0.11"
            number = rf"(?<![\d.]){re.escape(str(value))}(?!\d)"
            assert re.search(number, helps[name]), (name, value)
    assert f"baseColour counts {COLOUR_TAG_WEIGHT:g}x" in helps["tag_weight"]
    assert f"{FINE_TYPE_WEIGHT:g}x in place of the classifier's" in helps["tag_weight"]
    assert f"{TUNED_BLEND.tuned_candidates} nearest products" in helps["tuned_weight"]


def test_help_flows_each_paragraph_of_a_docstring():
    """A docstring's lines are wrapped for the source; --help wraps them for the terminal."""
    import typer

    for path, command in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
        for paragraph in (command.help or "").split("\n\n"):
            assert "\n" not in paragraph, path
            assert " ".join(paragraph.split()) in " ".join(result.stdout.split()), path
    audit_help = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "250"}).stdout
    assert "(a finetune classifier), by the share" in audit_help


def test_help_names_the_default_epochs():
    """The epoch defaults are literals in the help text: they must follow the constants."""
    import typer

    from classifier.train import DEFAULT_EPOCHS
    from ingest.autoencoder import DEFAULT_EPOCHS as AUTOENCODER_EPOCHS

    train = typer.main.get_command(app).commands["train"].commands

    def epochs_help(command):
        return next(p.help for p in train[command].params if p.name == "epochs")

    if len(set(DEFAULT_EPOCHS.values())) == 1:
        assert f"[default: {DEFAULT_EPOCHS['finetune']}]" in epochs_help("classifier")
    else:
        for kind, n in DEFAULT_EPOCHS.items():
            assert f"{n} {kind}" in epochs_help("classifier")
    assert f"[default: {AUTOENCODER_EPOCHS}]" in epochs_help("autoencoder")


def test_query_library_call_matches_cli(ingested, data_dir):
    from qdrant.edge import EdgeStore
    from searchctl.query import Searcher

    with EdgeStore(data_dir) as store:
        searcher = Searcher(store, "catalog0")
        hits = searcher.search_image(ingested / "images" / "9.jpg", top=2).hits
        vec = searcher.embed_image(ingested / "images" / "9.jpg")
    assert hits[0].id == 9 and np.isfinite(vec).all()


def test_unreachable_server_is_a_clear_error(data_dir):
    # Nothing listens on port 9 of loopback.
    result = runner.invoke(app, ["info", "--qdrant-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot reach the Qdrant server at http://127.0.0.1:9" in result.stderr


def test_id_query_sheet_shows_the_product_even_when_filtered_out(ingested, tmp_path):
    from embedder.contact_sheet import PAD, TILE_H, TILE_W
    from embedder.images import letterbox, open_image

    sheet = tmp_path / "sheet.png"
    # Product 12 is a Men's shirt (12 % 4 == 0): a Women-only filter leaves it out of the hits.
    args = ["query", "--id", "12", "--where", "gender=Women", "--show", str(sheet), "--json"]
    res = _json(runner.invoke(app, args))
    assert 12 not in [h["id"] for h in res["hits"]]
    first_tile = np.asarray(Image.open(sheet))[PAD : PAD + TILE_H, PAD : PAD + TILE_W]
    expected = letterbox(open_image(ingested / "images" / "12.jpg"), TILE_H, TILE_W)
    assert np.abs(first_tile.astype(int) - expected.astype(int)).mean() < 3


def test_weights_file_replaced_in_place_is_refused_at_query(
    tiny_catalog, tiny_weights, tmp_path, data_dir
):
    import shutil

    weights = tmp_path / "copy.weights.h5"
    shutil.copy(tiny_weights, weights)
    assert _ingest(tiny_catalog, weights, "--limit", "3").exit_code == 0
    with open(weights, "ab") as fh:  # same path, other bytes
        fh.write(b"\0")
    result = runner.invoke(app, ["query", str(tiny_catalog / "images" / "1.jpg")])
    assert result.exit_code == 2
    assert "is not the weights file collection 'catalog0' was built with" in result.stderr


def _on_a_table(i: int) -> Image.Image:
    """A catalog photo whose product sits on a green table instead of studio white."""
    pixels = np.asarray(product_image(i)).copy()
    pixels[(pixels > 230).all(axis=-1)] = (70, 120, 60)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("cutout", [True, False])
def test_catalog_photos_are_cut_out_like_query_photos(
    tiny_catalog, tiny_weights, data_dir, tmp_path, cutout
):
    """A catalog photo on a coloured background is stored as the query path sees it, so the
    same photo sent as a query finds itself with cosine 1; the choice is recorded and kept."""
    from shutil import copytree

    catalog = copytree(tiny_catalog, tmp_path / "catalog")
    _on_a_table(5).save(catalog / "images" / "5.jpg", quality=95)
    flag = "--cutout" if cutout else "--no-cutout"
    report = _json(_ingest(catalog, tiny_weights, "--no-classifier", flag))

    assert report["stored"] == GOOD
    photo = catalog / "images" / "5.jpg"
    hits = _json(runner.invoke(app, ["query", str(photo), "--plain", "--json"]))["hits"]
    assert hits[0]["id"] == 5
    assert (hits[0]["score"] > 0.9999) == cutout  # query photos are always cut out

    info = runner.invoke(app, ["info"])
    assert ("photos embedded cut out" in info.stdout) == cutout
    (recorded,) = _json(runner.invoke(app, ["info", "--json"]))["collections"]
    assert recorded["photo_size"] == [60, 80]  # what query photos are brought down to
    assert f"sharpness {recorded['photo_sharpness']:.2f}" in info.stdout
    other = "--no-cutout" if cutout else "--cutout"
    refused = _ingest(catalog, tiny_weights, "--no-classifier", other)
    assert refused.exit_code != 0 and "was built with its photos" in refused.output
    assert _json(_ingest(catalog, tiny_weights, "--no-classifier"))["stored"] == 0


def test_a_collection_cut_out_by_an_older_cut_out_has_its_photos_off_white_embedded_again(
    tiny_catalog, tiny_weights, data_dir, tmp_path
):
    """A collection whose photos went through another version of the cut-out (recorded
    with it; an older searchctl recorded none) has its photos on a background cut out and
    embedded again by the next ingest, so that such a photo sent as a query finds itself at
    cosine 1 again; its studio photos are left alone, and the run after recuts nothing."""
    from shutil import copytree

    from embedder.collection import CUTOUT_RECIPE_KEY
    from embedder.images import CUTOUT_RECIPE
    from qdrant.edge import EdgeStore
    from searchctl.query import STALE_CUTOUT_NOTE, default_vector

    catalog = copytree(tiny_catalog, tmp_path / "catalog")
    _on_a_table(5).save(catalog / "images" / "5.jpg", quality=95)
    first = _json(_ingest(catalog, tiny_weights, "--no-classifier"))
    assert first["changes"]["recut"] == []
    name = first["collection"]
    with EdgeStore(data_dir) as store:
        assert store.get_metadata(name)[CUTOUT_RECIPE_KEY] == CUTOUT_RECIPE
        vector = default_vector(store, name)
        stale = np.random.default_rng(0).normal(size=store.vector_sizes(name)[vector])
        store.update_vectors(name, {5: {vector: stale.astype(np.float32)}})
        older = store.get_metadata(name)
        del older[CUTOUT_RECIPE_KEY]
        store.set_metadata(name, older)
    photo = catalog / "images" / "5.jpg"
    stale = runner.invoke(app, ["query", str(photo), "--plain", "--json"])
    hits = _json(stale)["hits"]
    assert not (hits[0]["id"] == 5 and hits[0]["score"] > 0.9999)
    assert STALE_CUTOUT_NOTE in " ".join(stale.stderr.split())  # the search says what to do

    planned = _json(_ingest(catalog, tiny_weights, "--no-classifier", "--plan"))
    assert planned["recut"] == [5]  # the plan says so, and changes nothing
    second = _json(_ingest(catalog, tiny_weights, "--no-classifier"))
    assert second["changes"]["recut"] == [5] and second["changes"]["rephoto"] == []
    recut = runner.invoke(app, ["query", str(photo), "--plain", "--json"])
    hits = _json(recut)["hits"]
    assert hits[0]["id"] == 5 and hits[0]["score"] > 0.9999
    assert "older searchctl" not in recut.stderr
    third = _json(_ingest(catalog, tiny_weights, "--no-classifier"))
    assert third["changes"]["recut"] == [] and third["stored"] == 0


def test_native_log_lines_are_told_from_the_programs_own():
    from searchctl.cli.quiet import is_native_log

    dropped = [
        b"I0000 00:00:1796232465.258149   15078 port.cc:153] oneDNN custom operations are on.\n",
        b"E0000 00:00:1796232468.851084   15078 cuda_platform.cc:52] failed call to cuInit\n",
        b"W0000 00:00:12.5 7 node_def_util.cc:682] NodeDef mentions attribute\n",
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild\n",
    ]
    kept = [
        b"error: file not found: shirt.jpg\n",
        b"F0000 00:00:1796232468.851084   15078 check.cc:52] Check failed: fatal\n",
        b"classifier epoch 1: loss 6.5527, val_loss 4.5966\n",
        b"Traceback (most recent call last):\n",
    ]
    assert all(is_native_log(line) for line in dropped)
    assert not any(is_native_log(line) for line in kept)


def test_the_program_prints_no_tensorflow_log_lines_unless_verbose(ingested, data_dir):
    """The installed program, as a user runs it: a photo query loads TensorFlow."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "SEARCHCTL_DATA_DIR": str(data_dir)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the test session's own setting, not a user's
    query = [sys.executable, "-m", "searchctl.cli", "query", str(ingested / "images" / "9.jpg")]
    quiet = subprocess.run(query, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    absl_line = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]", re.M)
    assert not absl_line.search(quiet.stderr), quiet.stderr
    assert "cuda" not in quiet.stderr.lower() and "oneDNN" not in quiet.stderr
    assert "rank" in quiet.stdout  # the hits' table
    verbose = subprocess.run(
        [*query[:3], "--verbose", *query[3:]], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    # --verbose hides nothing: every line of the quiet run is there, with TensorFlow's own.
    assert set(quiet.stderr.splitlines()) <= set(verbose.stderr.splitlines())


def test_query_gives_the_hits_the_search_pieces_give_by_hand(tmp_path, tiny_weights, data_dir):
    """`query` (the command over search()) against the pieces the command composed by hand
    before the search moved into the library: default_blend, its weights, Searcher."""
    from conftest import make_catalog

    from qdrant.edge import EdgeStore
    from searchctl.query import Searcher, default_blend

    catalog = make_catalog(tmp_path / "shop", n=40)
    ingested = _ingest(catalog, tiny_weights, "--no-autoencoder", "--min-class-size", "5")
    assert ingested.exit_code == 0, ingested.output
    photo = tmp_path / "photo.png"
    product_image(9).resize((90, 120)).save(photo)
    cases = [
        ([], {}),
        (["--plain"], None),
        (["--colour-weight", "0.6"], {"colour_weight": 0.6}),
        (["--tag-weight", "0.3", "--where", "gender=Men"], {"tag_weight": 0.3}),
        (["--same-type"], {}),
    ]
    for flags, weights in cases:
        shown = _json(runner.invoke(app, ["query", str(photo), "--top", "4", "--json", *flags]))
        where = [("gender", "Men")] if "--where" in flags else []
        with EdgeStore(data_dir) as store:
            blend = default_blend(store, "shop")
            if weights is None:
                blend = None
            elif weights:
                blend = blend.with_weights(**weights)
            searcher = Searcher(store, "shop", compiled=False, with_tags=True)
            by_hand = searcher.search_image(photo, 4, None, where, "--same-type" in flags, blend)
        assert [h["id"] for h in shown["hits"]] == [h.id for h in by_hand.hits], flags
        assert [h["score"] for h in shown["hits"]] == pytest.approx(
            [h.score for h in by_hand.hits], abs=1e-6
        )

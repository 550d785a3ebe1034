"""Every input a user can get wrong gets a clear answer (an error naming it, or a note), and
nothing is stored wrong without a word. Tiny generated catalogs throughout."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import HEADER, KINDS, ingest_args, make_catalog, product_image
from PIL import Image
from typer.testing import CliRunner

from searchctl.cli import app

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _user_error(result, *fragments: str) -> str:
    """Exit code 2 with a message naming the problem, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    assert "Traceback" not in result.output
    return text


@pytest.fixture
def ingested(tiny_catalog, tiny_weights, data_dir):
    _ok(runner.invoke(app, ingest_args(tiny_catalog, tiny_weights, "--no-autoencoder")))
    return tiny_catalog


# 1. A negative product id.
def test_a_negative_or_huge_product_id_is_a_clear_error(ingested):
    _user_error(runner.invoke(app, ["query", "--id", "-3"]), "-3")
    _user_error(runner.invoke(app, ["query", "--id", str(2**64)]), str(2**64))


# 2. A data dir that cannot be created; a read-only one.
def _as_nobody(args: list[str], env: dict) -> subprocess.CompletedProcess:
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    command += [sys.executable, "-m", "searchctl.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def world(tiny_catalog, tiny_weights):
    """A folder user nobody can read (pytest's own tmp folders are the owner's only), with a
    copy of the tiny catalog and weights, and the environment to run a command as nobody."""
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("these checks run a command as user nobody: run the suite as root")
    root = Path(tempfile.mkdtemp(prefix="searchctl-world-"))
    root.chmod(0o755)
    shutil.copytree(tiny_catalog, root / "catalog")
    shutil.copy(tiny_weights, root / tiny_weights.name)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEARCHCTL")}
    env.update(HOME=str(root), TF_CPP_MIN_LOG_LEVEL="3")
    can_run = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-c", "import searchctl"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert can_run.returncode == 0, f"user nobody cannot run {sys.executable}: {can_run.stderr}"
    yield root, root / "catalog", root / tiny_weights.name, env
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
    shutil.rmtree(root, ignore_errors=True)


def test_a_data_dir_that_cannot_be_created_is_one_clear_error(world):
    root, catalog, weights, env = world
    locked = root / "locked"
    locked.mkdir(mode=0o555)
    args = [*ingest_args(catalog, weights), "--data-dir", str(locked / "data")]
    done = _as_nobody(args, env)
    assert done.returncode == 2, done.stderr
    assert "cannot create the data dir" in done.stderr and "Permission denied" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) < 6


def test_a_read_only_collection_can_be_searched_not_changed(world):
    root, catalog, weights, env = world
    data = root / "data"
    options = ["--no-autoencoder", "--no-classifier", "--data-dir", str(data)]
    _ok(runner.invoke(app, ingest_args(catalog, weights, *options)))
    subprocess.run(["chmod", "-R", "a-w", str(data)], check=True)
    info = _as_nobody(["info", "--data-dir", str(data), "--json"], env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["collections"][0]["points"] == 24
    hits = _as_nobody(["query", "--id", "5", "--json", "--data-dir", str(data)], env)
    assert hits.returncode == 0, hits.stderr
    assert json.loads(hits.stdout)["hits"][0]["id"] == 5
    again = _as_nobody(ingest_args(catalog, weights, *options), env)
    assert again.returncode == 2 and "is read-only here" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr


# 3. Label taggers that would learn two classes.
def _small_catalog(root: Path, colours: list[str], types: list[str]) -> Path:
    """Products of the given colours and types, round robin, with the shared KINDS' others."""
    (root / "images").mkdir(parents=True)
    lines = [HEADER]
    for i, (colour, article) in enumerate(zip(colours, types), 1):
        g, m, s, _, _ = KINDS[i % len(KINDS)]
        lines.append(f"{i},{g},{m},{s},{article},{colour},Summer,2012,Casual,P{i}")
        product_image(i).save(root / "images" / f"{i}.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return root


def test_label_taggers_refuse_too_few_classes_and_say_which_option(tmp_path, tiny_weights,
                                                                  data_dir):  # fmt: skip
    # 200 products: 80 Black, 40 White, then 80 of ten colours (8 each): two colours of 20+,
    # covering 60 %, and types alike. A tagger of two classes would call a navy shirt Black.
    colours = ["Black"] * 80 + ["White"] * 40 + [f"C{i % 10}" for i in range(80)]
    types = ["Tshirts"] * 90 + ["Watches"] * 30 + [f"T{i % 10}" for i in range(80)]
    catalog = _small_catalog(tmp_path / "shop", colours, types)
    args = [*ingest_args(catalog, tiny_weights, "--no-autoencoder", "--min-class-size", "30"),
            "--json"]  # fmt: skip
    report = json.loads(_ok(runner.invoke(app, args)).stdout)
    for stage in ("colour_tags", "type_tags"):
        assert report[stage]["action"] == "skipped", report[stage]
        assert "covering 60%" in report[stage]["reason"], report[stage]["reason"]
        # Classes of 8 cover all: the advice names the option and the value that trains it.
        assert "`--tagger-min-products 8` would train it" in report[stage]["reason"]
    from qdrant.edge import EdgeStore

    with EdgeStore(data_dir) as store:
        payloads = [p.payload for p in store.iter_points("shop")]
    assert not any(p.get("pred_baseColour") for p in payloads)
    assert not any(p.get("pred_fineArticleType") for p in payloads)


def test_the_advice_for_a_missing_classifier_works_in_one_step(tmp_path, tiny_weights, data_dir):
    catalog = make_catalog(tmp_path / "shop", n=40)  # 10 products a class
    _ok(runner.invoke(app, ingest_args(catalog, tiny_weights, "--no-autoencoder")))
    text = _user_error(runner.invoke(app, ["audit"]), "has none", "--min-class-size")
    command = text[text.index("searchctl train classifier") :].split("`")[0].split()
    assert command[:3] == ["searchctl", "train", "classifier"]
    size = command[command.index("--min-class-size") + 1]
    _ok(runner.invoke(app, ["train", "classifier", "--min-class-size", size]))
    _ok(runner.invoke(app, ["audit"]))


# 5. Two ingests at once on a fresh data dir.
def test_a_collection_being_made_by_another_process_says_so(tmp_path):
    from qdrant import StoreLocked
    from qdrant.edge import EdgeStore

    first, second = EdgeStore(tmp_path), EdgeStore(tmp_path)
    first.create_collection("c", {"v": 4}, {}, {})
    with pytest.raises(StoreLocked, match="open in another searchctl process"):
        second.create_collection("c", {"v": 4}, {}, {})
    first.close()


# 6. A catalog with nothing to ingest.
def test_a_catalog_with_nothing_to_ingest_is_an_error(tmp_path, tiny_weights, data_dir):
    no_images = tmp_path / "a"
    no_images.mkdir()
    (no_images / "styles.csv").write_text(HEADER + "\n1,Men,Apparel,Topwear,Shirts,Red,,2012,,x\n")
    _user_error(runner.invoke(app, ingest_args(no_images, tiny_weights)), "no images/ folder")
    header_only = tmp_path / "b"
    (header_only / "images").mkdir(parents=True)
    (header_only / "styles.csv").write_text(HEADER + "\n")
    _user_error(runner.invoke(app, ingest_args(header_only, tiny_weights)), "no usable product")
    only_bad = tmp_path / "c"
    (only_bad / "images").mkdir(parents=True)
    (only_bad / "styles.csv").write_text(HEADER + "\n1,Men,Apparel,Topwear,Shirts,Red,,2012,,x\n")
    (only_bad / "images" / "1.jpg").write_bytes(b"not a jpeg")
    _user_error(runner.invoke(app, ingest_args(only_bad, tiny_weights)), "nothing could be stored")


# 7. Bad CSV values.
def test_bad_csv_values_are_stored_empty_or_mended_with_a_note(tmp_path, tiny_weights, data_dir):
    catalog = make_catalog(tmp_path / "shop", n=6)
    styles = catalog / "styles.csv"
    lines = styles.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b",2011,", b",abc,")  # product 1's year
    lines[2] = lines[2].replace(b"Brand", "Br\u00e9nd".encode("latin-1"))  # product 2, Latin-1
    styles.write_bytes(b"\n".join(lines))
    result = _ok(runner.invoke(app, [*ingest_args(catalog, tiny_weights, "--no-autoencoder",
                                                  "--no-classifier"), "--json"]))  # fmt: skip
    notes = {n["line"]: n["note"] for n in json.loads(result.stdout)["row_notes"]}
    assert "year 'abc' is not a number" in notes[2] and "not UTF-8" in notes[3]
    from qdrant.edge import EdgeStore

    with EdgeStore(data_dir) as store:
        stored = {p.id: p.payload for p in store.iter_points("shop")}
    assert stored[1]["year"] is None
    assert stored[2]["productDisplayName"].startswith("Br\u00e9nd")
    no_colour = make_catalog(tmp_path / "plain", n=6)
    csv_lines = (no_colour / "styles.csv").read_text().splitlines()
    cut = [",".join(x for j, x in enumerate(line.split(",")) if j != 5) for line in csv_lines]
    (no_colour / "styles.csv").write_text("\n".join(cut) + "\n")
    text = " ".join(_ok(runner.invoke(app, ingest_args(no_colour, tiny_weights,
                                                       "--no-autoencoder"))).stdout.split())
    assert "no column baseColour" in text


# 8. Filters and URLs.
def test_unknown_filter_fields_and_double_values_are_errors(ingested):
    _user_error(
        runner.invoke(app, ["query", "--id", "5", "--where", "colour=Red"]),
        "no field 'colour'", "baseColour", "gender",
    )
    _user_error(
        runner.invoke(app, ["query", "--id", "5", "--where", "gender=Men=Women"]),
        "repeat --where",
    )


@pytest.fixture
def photo_server(tmp_path):
    """Photos served over http on loopback, as a shop's CDN would."""
    root = tmp_path / "www"
    root.mkdir()
    product_image(7).resize((120, 160)).save(root / "shirt.jpg")
    (root / "page.html").write_text("<html>not a photo</html>")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_photo_url_is_fetched_and_a_bad_one_named(ingested, photo_server):
    found = json.loads(_ok(runner.invoke(app, ["query", f"{photo_server}/shirt.jpg", "--plain",
                                               "--json"])).stdout)  # fmt: skip
    assert found["hits"][0]["id"] == 7 and found["query"] == f"{photo_server}/shirt.jpg"
    _user_error(runner.invoke(app, ["query", f"{photo_server}/gone.jpg"]), "HTTP 404",
                "gone.jpg")  # fmt: skip
    _user_error(runner.invoke(app, ["query", f"{photo_server}/page.html"]), "page.html")


def test_fetching_refuses_private_addresses_and_large_bodies_when_told(photo_server):
    from embedder.images import BadImage, fetch_image

    with pytest.raises(BadImage, match="private or local address"):
        fetch_image(f"{photo_server}/shirt.jpg", allow_private=False)
    with pytest.raises(BadImage, match="over 100 bytes"):  # told by Content-Length
        fetch_image(f"{photo_server}/shirt.jpg", max_bytes=100)
    assert fetch_image(f"{photo_server}/shirt.jpg")[:2] == b"\xff\xd8"


# 9. Ctrl-C.
def test_ctrl_c_says_what_is_kept_after_the_summaries_of_finished_stages(
    tiny_catalog, tiny_weights, data_dir, monkeypatch
):
    import ingest.plan

    def interrupted(context):
        raise KeyboardInterrupt

    stages = tuple(
        ingest.plan.Stage(s.name, s.wanted, interrupted) if s.name == "autoencoder" else s
        for s in ingest.plan.STAGES
    )
    monkeypatch.setattr(ingest.plan, "STAGES", stages)
    result = runner.invoke(app, ingest_args(tiny_catalog, tiny_weights, "--no-classifier"))
    assert result.exit_code == 130
    assert "points (stored 24 now" in result.stdout and "Colour vectors for 24" in result.stdout
    said = " ".join(result.output.split())
    assert "Interrupted" in said and "run the same command again" in said


# 10. A huge photo.
def test_a_huge_jpeg_is_decoded_small_and_a_huge_png_refused(tmp_path):
    import warnings

    from embedder.images import MAX_PIXELS, BadImage, prepare_photo

    big = tmp_path / "big.jpg"
    Image.new("RGB", (12000, 12000), (200, 30, 40)).save(big, quality=70)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would fail the test
        photo = prepare_photo(big, cutout=False)
    assert max(photo.size) <= 12000 // 4  # draft mode: decoded at an eighth... or a quarter
    side = int(MAX_PIXELS**0.5) + 100
    Image.new("RGB", (side, side)).save(tmp_path / "big.png")
    with pytest.raises(BadImage, match="too large"):
        prepare_photo(tmp_path / "big.png")

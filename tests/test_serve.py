"""`searchctl serve`: the HTTP API over the search library, and its web page in a real browser."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ingest_args, make_catalog, product_image
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from searchctl.cli import app as cli
from searchctl.server.app import create_app
from searchctl.server.batching import MicroBatcher
from searchctl.server.engine import ServerSettings

runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_weights):
    """A 40-product collection with its classifier and colour vectors."""
    root = tmp_path_factory.mktemp("serve")
    catalog = make_catalog(root / "shop", n=40)
    args = ingest_args(catalog, tiny_weights, "--no-autoencoder", "--min-class-size", "5",
                       "--data-dir", str(root / "data"))  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    return {"catalog": catalog, "data": root / "data"}


@pytest.fixture(scope="module")
def client(shop):
    # More searches at once than model calls, so that photos can queue and go together (the
    # default runs one search a core, and on 2 cores no photo would wait for a call).
    settings = ServerSettings(data_dir=shop["data"], allow_private_urls=True, max_concurrent=8)
    with TestClient(create_app(settings)) as c:
        yield c


def _copy_of(shop: dict, where: Path) -> Path:
    """A copy of the collection for an app of its own: the embedded store is one process
    (here: one store object) at a time, and the module's client holds the original."""
    import shutil

    return Path(shutil.copytree(shop["data"], where / "data"))


def _photo(i: int, size=(90, 120)) -> bytes:
    import io

    buffer = io.BytesIO()
    product_image(i).resize(size).save(buffer, "PNG")
    return buffer.getvalue()


def test_health_and_collections_once_warm(client):
    assert client.get("/health").json()["status"] == "ready"
    (shop,) = client.get("/collections").json()["collections"]
    assert shop["name"] == "shop" and shop["points"] == 40 and "mobilenet_v2" in shop["vectors"]
    assert shop["models"]["classifier"]["kind"] == "vectors"
    assert "/collections/{name}/search" in client.get("/openapi.json").json()["paths"]


def test_every_way_to_give_a_photo_finds_the_product(client):
    upload = client.post("/collections/shop/search", files={"file": ("p.png", _photo(9))},
                         data={"top": "3", "return_photo": "true"})  # fmt: skip
    assert upload.status_code == 200, upload.text
    answer = upload.json()
    assert answer["hits"][0]["id"] == 9 and answer["photo"].startswith("data:image/jpeg;base64,")
    assert answer["predicted"]["pred_articleType"] and answer["blend"] is not None
    b64 = client.post("/collections/shop/search",
                      json={"image_base64": base64.b64encode(_photo(9)).decode(), "top": 3})
    assert [h["id"] for h in b64.json()["hits"]] == [h["id"] for h in answer["hits"]]
    by_id = client.post("/collections/shop/search", json={"id": 9, "top": 3, "offset": 1})
    assert by_id.status_code == 200 and 9 not in [h["id"] for h in by_id.json()["hits"]]
    filtered = client.post("/collections/shop/search",
                           json={"id": 9, "top": 5, "where": {"gender": "Women"}}).json()
    assert filtered["hits"] and all(h["payload"]["gender"] == "Women" for h in filtered["hits"])


def test_the_api_answers_in_the_query_commands_json_shape(client):
    """The command prints search()'s SearchResult.to_json(); the API answers the same."""
    from searchctl.query import SearchRequest, search

    store = client.app.state.engine.store
    command = json.loads(json.dumps(search(store, "shop", SearchRequest(product_id=9, top=4))
                                    .to_json(), default=str))  # fmt: skip
    served = client.post("/collections/shop/search", json={"id": 9, "top": 4}).json()
    assert set(command) <= set(served)
    assert {k: served[k] for k in command} == command


def test_the_servers_store_process_finds_what_this_process_finds(client, shop, tmp_path):
    """The server opens the embedded store in a StoreProcess, where the blend's store half
    runs (VectorStore.run); the same photo searched in this process gives the same hits and
    scores, blended."""
    from qdrant.edge import EdgeStore
    from qdrant.process import StoreProcess
    from searchctl.query import SearchRequest, search

    served = client.app.state.engine.store
    assert isinstance(served, StoreProcess) and served.pid != __import__("os").getpid()
    copy = _copy_of(shop, tmp_path)
    for product in (3, 17):
        request = SearchRequest(image=_photo(product), top=5)
        there = search(served, "shop", request)
        with EdgeStore(copy) as store:
            here = search(store, "shop", request)
        assert there.blend is not None and there.hits[0].id == product
        assert [(h.id, round(h.score, 5), h.payload) for h in there.hits] == [
            (h.id, round(h.score, 5), h.payload) for h in here.hits
        ]
        assert set(there.seconds) >= {"search", "rerank"}


def test_a_dead_store_process_is_a_503_naming_it_and_health_says_so(shop, tmp_path):
    import os
    import signal

    with TestClient(create_app(ServerSettings(data_dir=_copy_of(shop, tmp_path), warm=False))) as c:
        assert c.get("/health").status_code == 200
        store = c.app.state.engine.store
        os.kill(store.pid, signal.SIGKILL)
        store._child.wait(timeout=30)
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "store unavailable"
        assert f"store process (pid {store.pid})" in health.json()["error"]
        searched = c.post("/collections/shop/search", json={"id": 9})
        assert searched.status_code == 503
        assert f"store process (pid {store.pid})" in searched.json()["error"]


def test_text_alone_ranks_by_words_and_beside_a_photo_narrows(client):
    words = client.post("/collections/shop/search", json={"text": "navy shirts", "top": 5}).json()
    assert words["hits"] and all(
        "Navy" in h["payload"]["productDisplayName"] for h in words["hits"]
    )
    narrowed = client.post("/collections/shop/search",
                           json={"id": 9, "text": "watches", "top": 5}).json()  # fmt: skip
    names = [h["payload"]["productDisplayName"] for h in narrowed["hits"]]
    assert names and all("Watches" in n for n in names)


def test_recommend_products_and_their_photos(client, shop):
    more = client.post("/collections/shop/recommend", json={"positive": [9], "top": 3}).json()
    assert len(more["hits"]) == 3 and 9 not in [h["id"] for h in more["hits"]]
    less = client.post("/collections/shop/recommend",
                       json={"positive": [9], "negative": [more["hits"][0]["id"]], "top": 3})
    assert less.status_code == 200
    product = client.get("/collections/shop/products/9").json()
    assert product["payload"]["id"] == 9
    photo = client.get("/collections/shop/products/9/image")
    assert photo.status_code == 200
    assert photo.content == (shop["catalog"] / "images" / "9.jpg").read_bytes()
    facets = client.get("/collections/shop/facets").json()
    assert sum(facets["gender"].values()) == 40


def test_photos_arriving_together_are_embedded_in_one_model_call(client, monkeypatch):
    engine = client.app.state.engine
    (batcher,) = engine.batchers
    before = len(batcher.batches)
    photos = [_photo(i) for i in range(1, 17)]
    model = batcher.fn

    def slow_model(rows):  # a model call long enough that the other requests queue behind it,
        time.sleep(0.3)  # however loaded the machine (with a quick one, each came alone)
        return model(rows)

    monkeypatch.setattr(batcher, "fn", slow_model)
    backbone = engine.searchers["shop"].backbone
    onnx, threads = backbone._onnx, []

    def counting_threads(rows, threads_asked=None):  # ONNX Runtime as it is, each call noted
        threads.append(threads_asked)
        return onnx(rows, threads_asked)

    monkeypatch.setattr(backbone, "_onnx", counting_threads)

    def one(photo: bytes):
        return client.post("/collections/shop/search", files={"file": ("p.png", photo)},
                           data={"top": "1", "plain": "true"}).status_code  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, photos)) == {200}
    sizes = batcher.batches[before:]
    assert sum(sizes) == 16 and max(sizes) > 1, sizes  # fewer model calls than photos
    assert 1 in threads, threads  # a call made beside other searches: one thread
    threads.clear()
    assert one(photos[0]) == 200 and threads == [None]  # a lone search's call: every core
    metrics = client.get("/metrics").text
    assert 'searchctl_search_step_seconds_count{step="embed"}' in metrics
    assert "searchctl_embed_batch_rows_bucket" in metrics


def test_the_micro_batcher_hands_each_caller_its_rows_with_at_most_two_calls_at_once():
    running, most, calls = [0], [0], []
    lock = threading.Lock()

    def model(rows):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            calls.append((len(rows), threading.get_ident()))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if (rows < 0).any():
            raise ValueError("negative row")
        return rows * 2

    batcher = MicroBatcher(model, max_batch=4, parallel=2)
    assert batcher(np.array([[1.0]])).tolist() == [[2.0]]
    assert calls == [(1, threading.get_ident())]  # alone: run in the caller's own thread

    rows = [np.full((1, 3), float(i)) for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(batcher, rows))
    assert all(np.array_equal(out, row * 2) for out, row in zip(outs, rows))
    sizes = [n for n, _ in calls[1:]]
    assert sum(sizes) == 12 and len(sizes) < 12 and max(sizes) <= 4, sizes
    assert most[0] == 2

    with pytest.raises(ValueError, match="negative row"):
        batcher(np.array([[-1.0]]))
    assert batcher(np.array([[3.0]])).tolist() == [[6.0]]  # and it goes on
    assert batcher.leaders == 0


@pytest.fixture(scope="module")
def photos_on_loopback(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "shirt.png").write_bytes(_photo(9))
    (root / "page.html").write_text("<html>no photo</html>")

    def handler(*args):
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(root))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bad_requests_get_a_4xx_naming_the_problem(client, photos_on_loopback, tmp_path):
    from PIL import Image

    big = tmp_path / "bomb.png"
    Image.new("RGB", (9000, 9000)).save(big)
    search = "/collections/shop/search"
    cases = [
        (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty"),
        (dict(content=b"{nope", headers={"content-type": "application/json"}), 422, "JSON"),
        (dict(files={"file": ("x.txt", b"not an image")}), 400, "not a readable image"),
        (dict(files={"file": ("e.png", b"")}), 400, "empty"),
        (dict(files={"file": ("b.png", big.read_bytes())}), 400, "too large"),
        (dict(json={"image_base64": "%%%"}), 400, "base64"),
        (dict(json={"image_url": f"{photos_on_loopback}/gone.png"}), 400, "HTTP 404"),
        (dict(json={"image_url": f"{photos_on_loopback}/page.html"}), 400, "page.html"),
        (dict(json={"image_url": "http://127.0.0.1:9/x.png"}), 400, "cannot fetch"),
        (dict(json={"id": 777777}), 404, "777777"),
        (dict(json={"id": 9, "where": {"colour": "Red"}}), 422, "no field 'colour'"),
        (dict(json={"id": 9, "top": 0}), 422, "top"),
        (dict(json={"id": 9, "image_url": "http://x/y.png"}), 422, "one of"),
        # A path or a file: URL never reaches the filesystem.
        (dict(json={"image_url": str(big)}), 422, "must be an http:// or https:// URL"),
        (dict(json={"image_url": "file:///etc/passwd"}), 422, "https:// URL"),
    ]
    for request, status, fragment in cases:
        answer = client.post(search, **request)
        assert answer.status_code == status, (request, answer.text)
        assert fragment in answer.json()["error"], (fragment, answer.json())
    assert client.post("/collections/nope/search", json={"id": 9}).status_code == 404
    assert client.get("/collections/shop/products/777777").status_code == 404
    assert client.get("/collections/shop/products/777777/image").status_code == 404
    lost = client.get("/collections/shop/products/..%2F..%2Fetc%2Fpasswd/image")
    assert lost.status_code == 404 and "Not Found: GET /collections/shop" in lost.json()["error"]
    assert client.get("/health").json()["status"] == "ready"  # and it goes on serving
    metrics = client.get("/metrics").text  # every refusal counted under its route's template
    route = 'route="/collections/{name}/search"'
    assert f'searchctl_errors_total{{{route}}} {len(cases) + 1}.0' in metrics
    assert f'searchctl_requests_total{{{route},status="422"}}' in metrics
    assert 'searchctl_errors_total{route="/collections/{name}/products/{id}/image"} 1.0' in metrics


def test_private_urls_refused_body_limit_and_api_key(shop, photos_on_loopback, tmp_path):
    settings = ServerSettings(data_dir=_copy_of(shop, tmp_path), api_key="s3cret",
                              max_body_bytes=50_000, warm=False)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        url = {"image_url": f"{photos_on_loopback}/shirt.png"}
        assert c.post("/collections/shop/search", json=url).status_code == 401
        key = {"X-API-Key": "s3cret"}
        refused = c.post("/collections/shop/search", json=url, headers=key)
        assert refused.status_code == 400 and "private or local" in refused.json()["error"]
        big = c.post("/collections/shop/search", headers=key,
                     files={"file": ("p.png", _photo(9, (400, 533)) + b"\0" * 60_000)})
        assert big.status_code == 413
        bearer = {"Authorization": "Bearer s3cret"}
        assert c.post("/collections/shop/search", json={"id": 9}, headers=bearer).status_code == 200
        assert c.get("/health").status_code == 200  # health needs no key


def test_a_writer_is_told_which_process_serves_the_collection(shop, tmp_path):
    data = _copy_of(shop, tmp_path)
    with TestClient(create_app(ServerSettings(data_dir=data, warm=False))):
        result = runner.invoke(cli, ["tag", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "open in another searchctl process, process" in " ".join(result.output.split())


# -- the page, in a real browser -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(shop, tmp_path_factory):
    import uvicorn

    port = _free_port()
    data = _copy_of(shop, tmp_path_factory.mktemp("live"))
    server = uvicorn.Server(uvicorn.Config(create_app(ServerSettings(data_dir=data)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 120
    while not server.started and time.time() < deadline:
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def test_the_page_finds_a_photo_filters_and_shows_more_like_a_hit(live_server, browser, shop,
                                                                  tmp_path):  # fmt: skip
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def cards():
        return browser.find_elements(By.CSS_SELECTOR, ".card")

    def genders():
        return [c.find_element(By.CSS_SELECTOR, ".chip").text for c in cards()]

    browser.get(live_server + "/")
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#facet-gender option"))
    browser.find_element(By.ID, "file").send_keys(str(shop["catalog"] / "images" / "9.jpg"))
    wait.until(lambda b: cards())
    assert cards()[0].get_attribute("data-id") == "9"  # its own product first
    assert browser.find_element(By.ID, "query-photo").get_attribute("src").startswith("data:")
    assert "Women" in genders()  # product 9 is a Women's top: so are its nearest
    Select(browser.find_element(By.ID, "facet-gender")).select_by_value("Men")
    wait.until(lambda b: cards() and set(genders()) == {"Men"})
    first = cards()[0].get_attribute("data-id")
    cards()[0].find_element(By.CSS_SELECTOR, "button.more").click()
    wait.until(lambda b: "recommend:+" + first in b.find_element(By.ID, "query").text)
    assert first not in [c.get_attribute("data-id") for c in cards()]
    shot = Path(tmp_path) / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_products_are_added_replaced_and_deleted_over_the_api(shop, tmp_path):
    from embedder.colour import COLOUR_VECTOR
    from qdrant.edge import EdgeStore

    data = _copy_of(shop, tmp_path)
    with TestClient(create_app(ServerSettings(data_dir=data, warm=False))) as c:
        refused = c.put("/collections/shop/products/500", files={"file": ("p.png", _photo(7))})
        assert refused.status_code == 403 and "--api-key" in refused.json()["error"]
    settings = ServerSettings(data_dir=data, api_key="k", warm=False)
    key = {"X-API-Key": "k"}
    labels = {"gender": "Men", "articleType": "Shirts", "productDisplayName": "Api Shirt"}
    with TestClient(create_app(settings)) as c:
        assert c.put("/collections/shop/products/500", json={"labels": labels}).status_code == 401
        form = {"labels": json.dumps(labels)}
        added = c.put("/collections/shop/products/500", headers=key,
                      files={"file": ("p.png", _photo(7))}, data=form)  # fmt: skip
        assert added.status_code == 200, added.text
        assert added.json()["replaced"] is False and "colour" in added.json()["stages"]
        stored = c.get("/collections/shop/products/500", headers=key).json()["payload"]
        assert stored["productDisplayName"] == "Api Shirt" and stored["pred_articleType"]
        assert stored["colour_v"] and stored["image_sha256"]
        assert c.get("/collections/shop/products/500/image", headers=key).content == _photo(7)
        query = {"file": ("q.png", _photo(7))}
        found = c.post("/collections/shop/search", headers=key, files=query,
                       data={"top": "3", "plain": "true"})  # fmt: skip
        assert 500 in [h["id"] for h in found.json()["hits"]]

        photo = base64.b64encode(_photo(11)).decode()
        replaced = c.put("/collections/shop/products/7", headers=key,
                         json={"image_base64": photo, "labels": labels})  # fmt: skip
        assert replaced.status_code == 200 and replaced.json()["replaced"] is True
        bad = c.put("/collections/shop/products/8", headers=key,
                    json={"image_base64": base64.b64encode(b"not a photo").decode()})  # fmt: skip
        assert bad.status_code == 400
        assert c.get("/collections/shop/products/8", headers=key).status_code == 200  # kept
        no_photo = c.put("/collections/shop/products/8", headers=key, json={"labels": labels})
        assert no_photo.status_code == 422 and "image_base64" in no_photo.json()["error"]
        bad_label = c.put("/collections/shop/products/8", headers=key,
                          json={"image_base64": photo, "labels": {"id": 3}})  # fmt: skip
        assert bad_label.status_code == 422

        assert c.delete("/collections/shop/products/500", headers=key).json()["deleted"] is True
        assert c.delete("/collections/shop/products/500", headers=key).status_code == 404
        assert c.get("/collections/shop/products/500", headers=key).status_code == 404
    with EdgeStore(data) as store:
        (seven,) = store.retrieve("shop", [7], with_vectors=True)
        assert seven.payload["productDisplayName"] == "Api Shirt" and COLOUR_VECTOR in seven.vectors
        assert store.count("shop") == 40
        log = store.get_metadata("shop")["catalog_changes"]
        assert log[-1]["changed"] == 3 and len(log) == 1  # 3 writes within the hour: one entry

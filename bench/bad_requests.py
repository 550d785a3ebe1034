"""Bad requests over HTTP against `searchctl serve`, started as a user starts it: each one's
status and error message as a table, then whether the server still answers a good search.

Two servers, one after the other: as a user starts it (photo URLs on private addresses
refused), then with --api-key and --allow-private-urls, for the cases that need a key or a
page served on loopback (a test HTTP server in this process).

    python bench/bad_requests.py --data-dir STORE --collection bench
"""

from __future__ import annotations

import argparse
import base64
import http.server
import io
import subprocess
import threading
from pathlib import Path

import httpx
from _common import DATASET, start_serve
from PIL import Image

KEY = "bench-key"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def start_server(args, extra: list[str]) -> tuple[subprocess.Popen, str]:
    return start_serve(args.data_dir, args.collection, args.port, extra,
                       stderr=subprocess.DEVNULL)  # fmt: skip


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def loopback_site() -> str:
    """A page and a missing photo on loopback, for the URL cases."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path == "/page.html":
                body = b"<html><body>not a photo</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *_):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{site.server_address[1]}"


def row(http: httpx.Client, what: str, method: str, path: str, **request) -> str:
    answer = http.request(method, path, **request)
    try:
        message = answer.json().get("error") or answer.text
    except ValueError:
        message = answer.text
    message = " ".join(str(message).split())[:150].replace("|", "\\|")
    return f"| {what} | {answer.status_code} | {message} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--port", type=int, default=8794)
    parser.add_argument("--product", type=int, default=15970)
    args = parser.parse_args()

    c = args.collection
    search = f"/collections/{c}/search"
    photo = (DATASET / "images" / f"{args.product}.jpg").read_bytes()
    too_big = b"\xff" * (21 * 1024 * 1024)
    site = loopback_site()
    rows = ["| request | status | error |", "| --- | --- | --- |"]

    server, base = start_server(args, [])
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            json_type = {"content-type": "application/json"}
            cases = [
                ("a text file as the photo", "POST", search,
                 {"files": {"file": ("notes.txt", b"just some words")}}),
                ("an empty body", "POST", search, {"content": b"", "headers": json_type}),
                ("an empty uploaded file", "POST", search, {"files": {"file": ("e.jpg", b"")}}),
                ("a JPEG cut short (first 300 bytes)", "POST", search,
                 {"files": {"file": ("cut.jpg", photo[:300])}}),
                ("a decompression bomb: 9000x9000 PNG (81 MP, 0.2 MB)", "POST", search,
                 {"files": {"file": ("bomb.png", png(9000, 9000))}}),
                ("a 21 MB body (limit 20 MB), with Content-Length", "POST", search,
                 {"files": {"file": ("big.jpg", too_big)}}),
                ("a 21 MB body, chunked (no Content-Length)", "POST", search,
                 {"content": iter([too_big[i : i + 2**20] for i in range(0, len(too_big), 2**20)]),
                  "headers": json_type}),
                ("malformed JSON", "POST", search, {"content": b"{nope", "headers": json_type}),
                ("image_base64 that is not base64", "POST", search,
                 {"json": {"image_base64": "%%%not base64"}}),
                ("image_base64 of a text", "POST", search,
                 {"json": {"image_base64": base64.b64encode(b"hello").decode()}}),
                ("a photo URL on loopback (private addresses refused)", "POST", search,
                 {"json": {"image_url": f"{site}/photo.jpg"}}),
                ("a photo URL on a private network", "POST", search,
                 {"json": {"image_url": "http://10.1.2.3/photo.jpg"}}),
                ("a photo URL whose host does not resolve", "POST", search,
                 {"json": {"image_url": "http://no-such-host.invalid/photo.jpg"}}),
                ("a file: URL", "POST", search, {"json": {"image_url": "file:///etc/passwd"}}),
                ("a photo and an id at once", "POST", search,
                 {"json": {"id": args.product, "image_url": "http://example.com/x.jpg"}}),
                ("no photo, id or text", "POST", search, {"json": {"top": 5}}),
                ("an unknown collection", "POST", "/collections/nope/search",
                 {"json": {"id": args.product}}),
                ("an unknown product id", "POST", search, {"json": {"id": 987654321}}),
                ("a filter on a field no product has", "POST", search,
                 {"json": {"id": args.product, "where": {"colour": "Red"}}}),
                ("a filter that is not an object", "POST", search,
                 {"json": {"id": args.product, "where": "gender=Men"}}),
                ("top 0", "POST", search, {"json": {"id": args.product, "top": 0}}),
                ("top 5000", "POST", search, {"json": {"id": args.product, "top": 5000}}),
                ("an unknown vector", "POST", search, {"json": {"id": args.product,
                                                               "vector": "nope"}}),
                ("a negative weight", "POST", search, {"json": {"id": args.product,
                                                                "colour_weight": -1}}),
                ("recommend with no positive id", "POST", f"/collections/{c}/recommend",
                 {"json": {"positive": []}}),
                ("recommend an unknown id", "POST", f"/collections/{c}/recommend",
                 {"json": {"positive": [987654321]}}),
                ("a product that is not there", "GET", f"/collections/{c}/products/987654321", {}),
                ("a product id that is not a number", "GET", f"/collections/{c}/products/abc", {}),
                ("a path as the product id of a photo", "GET",
                 f"/collections/{c}/products/..%2F..%2Fetc%2Fpasswd/image", {}),
            ]  # fmt: skip
            for what, method, path, request in cases:
                rows.append(row(http, what, method, path, **request))
            good = http.post(search, files={"file": ("p.jpg", photo)})
            still = f"after them a good search: {good.status_code}, first hit "
            still += str(good.json()["hits"][0]["id"]) if good.status_code == 200 else "none"
    finally:
        stop(server)

    server, base = start_server(args, ["--api-key", KEY, "--allow-private-urls"])
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            key = {"X-API-Key": KEY}
            cases = [
                ("no API key (server run with --api-key)", "POST", search,
                 {"json": {"id": args.product}}),
                ("a wrong API key", "POST", search,
                 {"json": {"id": args.product}, "headers": {"X-API-Key": "guess"}}),
                ("a photo URL that answers 404 (--allow-private-urls)", "POST", search,
                 {"json": {"image_url": f"{site}/gone.jpg"}, "headers": key}),
                ("a photo URL that is a web page (--allow-private-urls)", "POST", search,
                 {"json": {"image_url": f"{site}/page.html"}, "headers": key}),
                ("a photo URL on a closed port (--allow-private-urls)", "POST", search,
                 {"json": {"image_url": "http://127.0.0.1:9/x.jpg"}, "headers": key}),
            ]  # fmt: skip
            for what, method, path, request in cases:
                rows.append(row(http, what, method, path, **request))
            health = http.get("/health").json()["status"]
    finally:
        stop(server)
    print("\n".join(rows))
    print(still)
    print(f"/health at the end of the second server's cases: {health}")


if __name__ == "__main__":
    main()

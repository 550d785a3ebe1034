"""Load on `searchctl serve` over HTTP on localhost, beside the warm library call.

First the library: search() on a warm Searcher, with the same request as the HTTP clients
(top 10), p50 of --library-queries, in a child process that exits before the server starts
(its models and threads stay out of the clients' process).
Then the server, started as a user starts it: seconds until /health says ready; for a 60x80
catalog photo and a ~1-megapixel phone-like photo, at 1, 4 and 16 concurrent clients for
--seconds each: p50 / p95 / p99 latency, requests/s, errors; the server's CPU and peak
RSS, its store process (qdrant.process) included.

    python bench/serve_load.py --data-dir STORE --collection bench
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _common import DATASET, start_serve
from PIL import Image, ImageFilter


def phone_like(catalog_photo: Path, side: int = 1000) -> bytes:
    """A ~1-megapixel JPEG: the product on a grey-beige table, tilted, warm, a little soft."""
    product = Image.open(catalog_photo).convert("RGB").resize((540, 720), Image.BICUBIC)
    canvas = Image.new("RGB", (side, side), (176, 164, 140))
    canvas.paste(product.rotate(6, expand=True, fillcolor=(176, 164, 140)), (200, 120))
    pixels = np.asarray(canvas, np.float32) * (1.06, 1.0, 0.9)
    noisy = pixels + np.random.default_rng(0).normal(0, 6, pixels.shape)
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.BLUR)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def percentiles(ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ms)
    return tuple(float(np.percentile(a, q)) for q in (50, 95, 99))


TOP = 10  # hits a request asks for, over HTTP and in the library call alike


def library_p50(data_dir: Path, collection: str, photos: dict[str, bytes], n: int) -> dict:
    from qdrant.edge import EdgeStore
    from searchctl.query import SearchRequest, open_searcher, search

    out = {}
    with EdgeStore(data_dir) as store:
        searcher, _ = open_searcher(store, collection, with_tags=True, data_dir=data_dir)
        for name, photo in photos.items():
            request = SearchRequest(image=photo, top=TOP)
            for _ in range(5):
                search(store, collection, request, searcher=searcher)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                search(store, collection, request, searcher=searcher)
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = statistics.median(times)
    return out


def run_clients(url: str, photo: bytes, clients: int, seconds: float) -> dict:
    import httpx

    # The form is encoded once: the clients share the server's 2 cores, and encoding a 1 MP
    # photo for every request would be the client's cost counted as the server's.
    form = {"files": {"file": ("photo.jpg", photo)}, "data": {"top": str(TOP)}}
    request = httpx.Request("POST", url, **form)
    body, form_type = request.read(), request.headers["content-type"]
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = http.post(url, content=body, headers={"content-type": form_type})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    p50, p95, p99 = percentiles(latencies)
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": p50, "p95": p95,
            "p99": p99, "errors": errors[0]}  # fmt: skip


def server_pids(pid: int) -> list[int]:
    """The server and its children (the store process, qdrant.process)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return [pid, *children]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of the server and its children (/proc/PID/stat)."""
    import os

    total = 0
    for p in server_pids(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> dict[int, float]:
    """Peak RSS (VmHWM) of the server and of each of its children, in MiB."""
    peaks = {}
    for p in server_pids(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[p] = int(line.split()[1]) / 1024
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--library-queries", type=int, default=200)
    parser.add_argument("--product", type=int, default=15970)
    parser.add_argument("--serve-args", default="", help="more `searchctl serve` options")
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--library-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    catalog_photo = DATASET / "images" / f"{args.product}.jpg"
    photos = {"catalog 60x80": catalog_photo.read_bytes(), "phone ~1 MP": phone_like(catalog_photo)}
    if args.library_only:  # the child process of the library figures
        library = library_p50(args.data_dir, args.collection, photos, args.library_queries)
        print(json.dumps(library))
        return
    library = {}
    if not args.skip_library:
        child = [sys.executable, __file__, "--library-only", "--data-dir", str(args.data_dir),
                 "--collection", args.collection, "--product", str(args.product),
                 "--library-queries", str(args.library_queries)]  # fmt: skip
        out = subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True).stdout
        library = json.loads(out.strip().splitlines()[-1])
    for name, p50 in library.items():
        print(f"library, warm search(): {name}: p50 {p50:.1f} ms", flush=True)

    import httpx

    started = time.perf_counter()
    server, base = start_serve(args.data_dir, args.collection, args.port, args.serve_args.split())
    try:
        print(f"server ready {time.perf_counter() - started:.1f} s after start", flush=True)
        url = f"{base}/collections/{args.collection}/search"
        # server cores: the server's CPU seconds over the run's wall seconds (2 at most here).
        print("| photo | clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | "
              "server cores | server CPU ms/request |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, photo in photos.items():
            for clients in args.clients:
                cpu0, wall0 = cpu_seconds(server.pid), time.perf_counter()
                r = run_clients(url, photo, clients, args.seconds)
                cpu = cpu_seconds(server.pid) - cpu0
                cores = cpu / (time.perf_counter() - wall0)
                print(f"| {name} | {clients} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} "
                      f"| {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | {cores:.2f} "
                      f"| {1000 * cpu / max(r['requests'], 1):.1f} |", flush=True)  # fmt: skip
        metrics = httpx.get(base + "/metrics").text
        batches = [line for line in metrics.splitlines()
                   if line.startswith("searchctl_embed_batch_rows_")]  # fmt: skip
        print("\n".join(batches))
        peaks = peak_rss_mb(server.pid)
        parts = " + ".join(f"{mb:.0f}" for mb in peaks.values())
        # The sum of each process's own peak: at least the peak of the sum.
        print(f"server peak RSS {sum(peaks.values()):.0f} MiB ({parts}: serve, its children)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

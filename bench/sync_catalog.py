"""A later ingest on a changed catalog: the plan, the sync's wall time, and every point checked
against a fresh ingest of the changed catalog; then the same after a kill -9 half-way.

    python bench/sync_catalog.py --base-data-dir DIR --collection bench --work WORK

DIR holds a collection ingested from the shared catalog (the README's main job) with its
models. The script works on copies under WORK: it edits a copy of the catalog (a tree of
symlinks to the shared photos; styles.csv rewritten) by deleting N rows, relabelling N
(another baseColour), giving N products another product's photo, and holding N products back
from the first ingest (deleted from the copied collection by a first sync). Then:

1. `ingest --plan --json` on the edited catalog: the counts;
2. `ingest` on it: wall time (beside --full-ingest-seconds, the main job's);
3. a fresh ingest of the edited catalog into another data dir, with the same models copied
   there (a fresh ingest would otherwise train new ones), and every point of the synced
   collection compared with it: ids, payloads, every named vector;
4. the sync again on a fresh copy, killed with SIGKILL half-way, re-run, compared the same.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATASET, MOBILENET_WEIGHTS

from ingest.catalog import STYLES_FILE
from ingest.sync import PHOTO_HASH_FIELD
from qdrant.edge import EdgeStore

CLI = Path(sys.executable).with_name("searchctl")
PRED_PREFIX = "pred_"


def edit_catalog(work: Path, n: int, seed: int) -> tuple[Path, Path, dict[str, list[int]]]:
    """(the catalog of the first ingest, the edited catalog, the ids of each edit)."""
    lines = (DATASET / STYLES_FILE).read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    ncol = len(next(csv.reader([header])))
    photos = {p.stem: p for p in (DATASET / "images").iterdir()}
    parsed = {}
    for i, line in enumerate(rows):
        fields = next(csv.reader([line]))
        if len(fields) == ncol and fields[0] in photos:  # plain rows with a photo
            parsed[i] = fields
    rng = random.Random(seed)
    picked = rng.sample(sorted(parsed), 4 * n)
    deleted, relabelled, rephotoed, held = (picked[k * n : (k + 1) * n] for k in range(4))
    colours = sorted({parsed[i][5] for i in parsed if parsed[i][5]})
    edits = {
        "delete": sorted(int(parsed[i][0]) for i in deleted),
        "relabel": sorted(int(parsed[i][0]) for i in relabelled),
        "rephoto": sorted(int(parsed[i][0]) for i in rephotoed),
        "held_back": sorted(int(parsed[i][0]) for i in held),
    }

    def write(root: Path, styles: list[str], images: dict[str, Path]) -> Path:
        (root / "images").mkdir(parents=True)
        (root / STYLES_FILE).write_text("\n".join(styles) + "\n", encoding="utf-8")
        for stem, target in images.items():
            os.symlink(target, root / "images" / f"{stem}{target.suffix}")
        return root

    def as_line(fields: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(fields)
        return buffer.getvalue()

    first_rows = [line for i, line in enumerate(rows) if i not in set(held)]
    first = write(work / "catalog_first", [header, *first_rows], photos)
    edited_rows = []
    for i, line in enumerate(rows):
        if i in set(deleted):
            continue
        if i in set(relabelled):
            fields = list(parsed[i])
            fields[5] = rng.choice([c for c in colours if c != fields[5]])
            line = as_line(fields)
        edited_rows.append(line)
    edited_photos = dict(photos)
    donors = [parsed[i][0] for i in rng.sample(sorted(set(parsed) - set(picked)), n)]
    for i, donor in zip(rephotoed, donors):
        edited_photos[parsed[i][0]] = photos[donor]
    edited = write(work / "catalog_edited", [header, *edited_rows], edited_photos)
    return first, edited, edits


def run(args: list[str], label: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    done = subprocess.run([str(CLI), *args, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def ingest_args(catalog: Path, data_dir: Path, collection: str) -> list[str]:
    return ["ingest", str(catalog), "-c", collection, "--data-dir", str(data_dir),
            "--backbone", "mobilenet_v2", "--weights", str(MOBILENET_WEIGHTS)]  # fmt: skip


def points(data_dir: Path, collection: str) -> dict[int, tuple[dict, dict]]:
    with EdgeStore(data_dir) as store:
        return {
            p.id: (p.payload or {}, p.vectors or {})
            for p in store.iter_points(collection, with_vectors=True)
        }


def compare(synced: dict, fresh: dict, changed_photos: set[int]) -> dict:
    """Every point of `synced` against `fresh`: what differs, by kind."""
    out = {"synced_points": len(synced), "fresh_points": len(fresh)}
    out["missing"] = len(fresh.keys() - synced.keys())
    out["extra"] = len(synced.keys() - fresh.keys())
    catalog_fields, tag_fields, vectors, tags_of_changed = 0, {}, {}, 0
    worst = 0.0
    for pid in sorted(synced.keys() & fresh.keys()):
        (sp, sv), (fp, fv) = synced[pid], fresh[pid]
        for key in sp.keys() | fp.keys():
            if sp.get(key) == fp.get(key):
                continue
            if key.startswith(PRED_PREFIX):
                tag_fields[key] = tag_fields.get(key, 0) + 1
                tags_of_changed += pid in changed_photos
            else:
                catalog_fields += 1
        for name in sv.keys() | fv.keys():
            if name not in sv or name not in fv:
                vectors[name] = vectors.get(name, 0) + 1
                continue
            diff = float(np.abs(sv[name] - fv[name]).max())
            worst = max(worst, diff)
            if diff > 1e-4:
                vectors[name] = vectors.get(name, 0) + 1
    out.update(
        other_payload_fields_differing=catalog_fields,
        predicted_tags_differing=tag_fields,
        predicted_tags_differing_on_changed_photos=tags_of_changed,
        vectors_differing_over_1e4=vectors,
        largest_vector_difference=worst,
    )
    return out


def copy_models(source: Path, target: Path, collection: str) -> None:
    shutil.copytree(source / "models" / collection, target / "models" / collection)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base-data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--work", type=Path, required=True, help="an empty directory")
    ap.add_argument("-n", type=int, default=500, help="products per kind of edit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-ingest-seconds", type=float, default=None,
                    help="the main job's wall time, for the ratio")  # fmt: skip
    ap.add_argument("--fresh", type=Path, default=None, help="an earlier fresh ingest (same -n)")
    args = ap.parse_args()
    work, name = args.work, args.collection
    work.mkdir(parents=True, exist_ok=True)

    first, edited, edits = edit_catalog(work, args.n, args.seed)
    print(f"edits: {json.dumps({k: len(v) for k, v in edits.items()})} (seed {args.seed})")
    base = work / "base"
    shutil.copytree(args.base_data_dir, base)
    report, seconds = run(ingest_args(first, base, name), "first sync")
    counts = report["changes"]["counts"]
    print(f"base: the collection brought to the first catalog in {seconds:.0f} s "
          f"(deleted {counts['delete']} held back, {counts['hash_backfill']} photo hashes "
          f"recorded); {report['points_in_collection']} points")  # fmt: skip
    killed = work / "killed"
    shutil.copytree(base, killed)

    plan, seconds = run([*ingest_args(edited, base, name), "--plan"], "plan")
    print(f"plan ({seconds:.1f} s as a process): {json.dumps(plan['counts'])}")
    for kind in ("delete", "relabel", "rephoto"):
        assert sorted(plan[kind] if kind != "relabel" else map(int, plan[kind])) == edits[kind]
    assert sorted(set(plan["add"]) & set(edits["held_back"])) == edits["held_back"]

    synced_report, sync_seconds = run(ingest_args(edited, base, name), "sync")
    stages = {
        k: v for k, v in synced_report.items() if isinstance(v, dict) and "action" in v
    }
    print(f"sync: {sync_seconds:.1f} s wall as a process")
    for stage, report in stages.items():
        figures = {k: v for k, v in report.items() if isinstance(v, int | float | str)}
        print(f"  {stage}: {json.dumps(figures)}")
    if args.full_ingest_seconds:
        print(f"  = {sync_seconds / args.full_ingest_seconds:.1%} of the main job's "
              f"{args.full_ingest_seconds:.0f} s")  # fmt: skip

    fresh = args.fresh or work / "fresh"
    if args.fresh is None:
        copy_models(base, fresh, name)
        _, seconds = run(ingest_args(edited, fresh, name), "fresh ingest")
        print(f"fresh ingest of the edited catalog (models copied, none trained): {seconds:.0f} s")
    reference = points(fresh, name)
    changed = set(edits["rephoto"]) | set(edits["held_back"])
    result = compare(points(base, name), reference, changed)
    print(f"synced vs fresh: {json.dumps(result)}")

    cmd = [str(CLI), *ingest_args(edited, killed, name), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(sync_seconds / 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with EdgeStore(killed) as store:
        left = store.get_metadata(name).get("catalog_sync") or {"ids": [], "add": []}
    print(
        f"killed with SIGKILL after {sync_seconds / 2:.0f} s; pending: {len(left['ids'])} "
        f"stored products, {len(left['add'])} to add"
    )
    rerun, seconds = run(ingest_args(edited, killed, name), "re-run")
    print(f"re-run: {seconds:.1f} s; {json.dumps(rerun['changes']['counts'])}")
    result = compare(points(killed, name), reference, changed)
    print(f"killed+re-run vs fresh: {json.dumps(result)}")
    with EdgeStore(base) as a, EdgeStore(killed) as b:
        print(
            f"change logs: synced {a.get_metadata(name).get('catalog_changes')[-1]['changed']}, "
            f"killed+re-run {b.get_metadata(name).get('catalog_changes')[-1]['changed']}"
        )
    hashes = {p[0].get(PHOTO_HASH_FIELD) for p in reference.values()}
    print(
        f"photo hashes in the fresh collection: {len(hashes)} distinct for {len(reference)} points"
    )


if __name__ == "__main__":
    main()

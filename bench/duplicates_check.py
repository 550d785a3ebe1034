"""`searchctl duplicates` on an ingested catalog, checked from the files themselves.

    python bench/duplicates_check.py --data-dir STORE --collection bench --sheets DIR

The byte-identical groups are checked against groups made here by comparing the catalog's
files (MD5, then byte for byte): the same groups, every member truly identical. Then the
near-identical groups at several thresholds, with a contact sheet of ten groups at each, to
look at.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import time
from pathlib import Path

from embedder.collection import collection_images
from qdrant.edge import EdgeStore
from searchctl.duplicates import DEFAULT_THRESHOLD, contact_sheet, find_duplicates
from searchctl.query import default_vector


def file_groups(paths: dict[int, Path]) -> list[list[int]]:
    by_digest: dict[str, list[int]] = {}
    for pid, path in paths.items():
        by_digest.setdefault(hashlib.md5(path.read_bytes()).hexdigest(), []).append(pid)
    return sorted(sorted(ids) for ids in by_digest.values() if len(ids) > 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--collection", default="bench")
    ap.add_argument("--sheets", type=Path, default=None, help="write contact sheets here")
    ap.add_argument("--thresholds", default="0.95,0.97,0.98,0.99")
    args = ap.parse_args()
    name = args.collection
    with EdgeStore(args.data_dir) as store:
        vector = default_vector(store, name)
        t0 = time.perf_counter()
        report = find_duplicates(store, name, vector, threshold=DEFAULT_THRESHOLD)
        print(f"duplicates at the default {DEFAULT_THRESHOLD}: {time.perf_counter() - t0:.1f} s")
        ids, paths = collection_images(store, name)
        files = dict(zip(ids, paths))
        expected = file_groups(files)
        found = sorted(g.ids for g in report.identical)
        truly = all(
            filecmp.cmp(files[g[0]], files[other], shallow=False) for g in found for other in g[1:]
        )
        print(
            f"identical: {len(found)} groups, {sum(map(len, found))} products; the files' own "
            f"groups: {len(expected)}; the same groups: {found == expected}; every member "
            f"byte for byte the same: {truly}; without a hash: {report.without_hash}"
        )
        print(f"  largest: {[g.ids for g in report.identical[:3]]}")
        for threshold in (float(t) for t in args.thresholds.split(",")):
            at = find_duplicates(store, name, vector, threshold=threshold)
            sizes = [len(g.ids) for g in at.near]
            print(
                f"near at {threshold}: {len(at.near)} groups, {sum(sizes)} products, largest "
                f"{max(sizes, default=0)}; first: {[g.ids for g in at.near[:3]]}"
            )
            if args.sheets:
                # Ten groups from the middle of the list: neither only the nearest nor the loosest.
                middle = max(0, len(at.near) // 2 - 5)
                path = args.sheets / f"near_{threshold}.png"
                contact_sheet(store, name, at.near[middle : middle + 10], path)
                print(f"  sheet: {path} (groups {middle + 1}-{middle + 10} of {len(at.near)})")
        if args.sheets:
            path = args.sheets / "identical.png"
            contact_sheet(store, name, report.identical[:10], path)
            print(f"  sheet: {path}")


if __name__ == "__main__":
    main()

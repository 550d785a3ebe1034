"""A synthetic catalog N times the shared one, to measure how ingest scales with the catalog.

Copy 0 is the shared catalog itself (its photos linked, not copied); each further copy k
holds every product again under a new id (id + k * ID_STRIDE), its styles.csv row copied
with its labels, and its photo changed so that no two copies embed alike: mirrored or not,
cropped by up to 12 % on each side, its colour saturation and brightness moved by up to
8 %, seeded by the product and the copy.

    python bench/make_big_catalog.py --out /data/big --copies 4   # 176k products
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from _common import DATASET
from PIL import Image, ImageEnhance, ImageOps

ID_STRIDE = 1_000_000


def _variant(job: tuple[Path, Path, int, int]) -> str | None:
    source, target, product_id, copy = job
    rng = np.random.default_rng([product_id, copy])
    try:
        with Image.open(source) as img:
            photo = img.convert("RGB")
    except (OSError, ValueError) as exc:
        return f"{source.name}: {exc}"  # a bad photo stays bad in every copy
    if rng.random() < 0.5:
        photo = ImageOps.mirror(photo)
    w, h = photo.size
    left, top, right, bottom = (rng.uniform(0, 0.12, 4) * [w, h, w, h]).round().astype(int)
    photo = photo.crop((left, top, w - right, h - bottom)).resize((w, h), Image.BILINEAR)
    photo = ImageEnhance.Color(photo).enhance(rng.uniform(0.92, 1.08))
    photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.92, 1.08))
    photo.save(target, quality=90)
    return None


def _new_id_line(line: bytes, copy: int) -> tuple[int, bytes] | None:
    """The row under the copy's id; its bytes otherwise as they are (any encoding)."""
    first, comma, rest = line.partition(b",")
    if not first.strip().isdigit() or not comma:
        return None
    product_id = int(first)
    return product_id, b"%d,%s" % (product_id + copy * ID_STRIDE, rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=4, help="the catalog this many times")
    ap.add_argument("--source", type=Path, default=DATASET)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    t0 = time.perf_counter()
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = (args.source / "styles.csv").read_bytes().splitlines()
    header, rows = lines[0], lines[1:]
    out_lines, jobs = [header, *rows], []
    for path in sorted((args.source / "images").iterdir()):
        link = images / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    for copy in range(1, args.copies):
        for line in rows:
            made = _new_id_line(line, copy)
            if made is None:
                continue
            product_id, new_line = made
            out_lines.append(new_line)
            source = args.source / "images" / f"{product_id}.jpg"
            target = images / f"{product_id + copy * ID_STRIDE}.jpg"
            if source.exists() and not target.exists():
                jobs.append((source, target, product_id, copy))
    (args.out / "styles.csv").write_bytes(b"\n".join(out_lines) + b"\n")
    with Pool(args.workers) as pool:
        problems = [p for p in pool.imap_unordered(_variant, jobs, chunksize=256) if p]
    photos = sum(1 for _ in images.iterdir())
    print(
        f"{args.out}: {len(out_lines) - 1:,} rows, {photos:,} photos ({len(jobs):,} made now, "
        f"{len(problems)} unreadable sources) in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()

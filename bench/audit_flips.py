"""How well does `searchctl audit` rank mislabels? Flip known labels and count them first.

On a collection whose tags are voted by neighbours (a finetune classifier's tuned vectors),
flip 1 % of each scheme's known labels to another class of the same category (a Tshirts row
filed as Shirts or Tops, a Men Footwear row filed as Women Footwear: the mistakes sellers
make), vote every product's tags again with the flipped labels (classifier.neighbours, each
product voted by the others), run the audit's find_mislabels, and print the share of flips
among the first N findings ranked by the vote's confidence and by the agreement of the
product's nearest products (classifier.audit). The catalog's own mislabels count as misses
for both rankings. Reads the store only; it writes nothing.

With --colour, the colour tagger's baseColour instead (classifier.label_tags): 1 % of the
held-out products' colour labels (the tagger never saw them) flipped to another colour at
random, their predicted colours kept, and the flips counted among the first held-out findings
ranked by confidence and by confidence x (1 - the label's held-out confusion). A random flip
is rarely to a near name of the same colour (Tan for Brown), the kind the confusion demotes,
so this favours the confusion by construction; docs/classifier.md's audit sections have
what the first findings of the real catalog look like.

    python bench/audit_flips.py --data-dir /tmp/s7/aug3 --collection bench --seeds 0 1 2
    python bench/audit_flips.py --data-dir /tmp/s12/v2 --colour
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from classifier import audit
from classifier.label_tags import COLOUR, LabelTagger, label_tagger_dir
from classifier.neighbours import NEIGHBOURS, nearest, vote
from classifier.schemes import COLOUR_TAG, TUNED_VECTOR, scheme_label, tag_payload
from classifier.tagger import read_record, tagger_dir
from classifier.train import collection_payloads
from qdrant.base import unit_rows
from qdrant.edge import EdgeStore

FIRST = (10, 25, 50, 100, 200)
# The category a flip stays in: a seller's mistake picks a neighbouring class.
GROUP_FIELD = {
    "gender_master": "masterCategory",
    "subCategory": "masterCategory",
    "articleType": "subCategory",
}


def flip_labels(payloads: list[dict], scheme, rate: float, rng) -> tuple[list[dict], set[int]]:
    """Copies of the payloads with `rate` of the known labels of `scheme` (a SchemeClasses)
    flipped to another known class of the same category; the flipped rows."""
    group_field = GROUP_FIELD[scheme.scheme]
    known = set(scheme.classes)
    classes_of: dict[str, set[str]] = {}
    for p in payloads:
        label = scheme_label(scheme.scheme, p)
        if label in known:
            classes_of.setdefault(p.get(group_field), set()).add(label)
    rows = [
        r
        for r, p in enumerate(payloads)
        if scheme_label(scheme.scheme, p) in known and len(classes_of[p.get(group_field)]) > 1
    ]
    known_count = sum(scheme_label(scheme.scheme, p) in known for p in payloads)
    flipped = rng.choice(rows, size=int(known_count * rate), replace=False)
    out = list(payloads)
    for r in flipped:
        p = payloads[r]
        label = scheme_label(scheme.scheme, p)
        new = rng.choice(sorted(classes_of[p.get(group_field)] - {label}))
        changed = dict(p)
        if scheme.scheme == "gender_master":
            changed["gender"] = new.split(" ", 1)[0]  # the category stays: only gender flips
        else:
            changed[scheme.scheme] = new
        out[r] = changed
    return out, {int(r) for r in flipped}


def print_shares(title: str, rankings: dict[str, list], flipped_ids: set[int]) -> None:
    """How many findings are flips, and their share among the first FIRST findings of each
    ranking (the first ranking holds every finding)."""
    findings = next(iter(rankings.values()))
    found = sum(f.id in flipped_ids for f in findings)
    print(f"{title}, {len(findings)} findings, {found} of them flips")
    for name, ranked in rankings.items():
        shares = " ".join(
            f"@{n}={np.mean([f.id in flipped_ids for f in ranked[:n]]):.2f}" for n in FIRST
        )
        print(f"  flips among the first findings by {name:10s} {shares}")


def flip_colours(
    payloads: list[dict], rows: list[int], colours: list[str], rate: float, rng
) -> tuple[list[dict], set[int]]:
    """Copies of the payloads with `rate` of `rows` given another of `colours` at random."""
    flipped = rng.choice(rows, size=int(len(rows) * rate), replace=False)
    out = list(payloads)
    for r in flipped:
        label = payloads[r][COLOUR_TAG]
        out[r] = {**payloads[r], COLOUR_TAG: rng.choice(sorted(set(colours) - {label}))}
    return out, {int(r) for r in flipped}


def colour_flips(args, record) -> None:
    tagger = LabelTagger.load(label_tagger_dir(args.data_dir, args.collection, COLOUR), COLOUR)
    if tagger is None:
        raise SystemExit(f"no colour tagger in {args.data_dir} ({args.collection})")
    with EdgeStore(args.data_dir) as store:
        ids, payloads, _ = collection_payloads(store, args.collection)
    held_ids = set(tagger.record.get("test_ids", record.test_ids))
    rows = [
        r for r, (pid, p) in enumerate(zip(ids, payloads))
        if pid in held_ids and p.get(COLOUR_TAG) in tagger.classes
    ]  # fmt: skip
    held = [ids[r] for r in rows]
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        flipped_payloads, flipped = flip_colours(payloads, rows, tagger.classes, args.rate, rng)
        held_payloads = [flipped_payloads[r] for r in rows]
        ranked = audit.find_mislabels(
            held, held_payloads, record, args.min_confidence, [COLOUR_TAG], {COLOUR_TAG: tagger}
        )
        by_confidence = sorted(ranked, key=lambda f: (-f.confidence, f.id))
        title = f"baseColour seed {seed}: {len(flipped)} flips among {len(rows):,} held-out"
        rankings = {"confidence": by_confidence, "confusion": ranked}
        print_shares(title, rankings, {ids[r] for r in flipped})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument("--colour", action="store_true", help="the colour tagger's baseColour")
    args = parser.parse_args()

    t0 = time.perf_counter()
    record = read_record(tagger_dir(args.data_dir, args.collection))
    if args.colour:
        colour_flips(args, record)
        print(f"{time.perf_counter() - t0:.0f} s")
        return
    with EdgeStore(args.data_dir) as store:
        ids, payloads, tuned = collection_payloads(store, args.collection, vector=TUNED_VECTOR)
    tuned = unit_rows(tuned)
    k = max(NEIGHBOURS, audit.AGREEMENT_NEIGHBOURS)
    index, cosine = nearest(tuned, tuned, k, np.arange(len(ids)))
    print(f"{len(ids):,} products, {k} nearest each in {time.perf_counter() - t0:.0f} s")
    for sc in record.schemes:
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            flipped_payloads, flipped = flip_labels(payloads, sc, args.rate, rng)
            near = [[flipped_payloads[j] for j in row] for row in index]
            probs = vote([sc], [n[:NEIGHBOURS] for n in near], cosine[:, :NEIGHBOURS])
            tagged = [{**p, **tag_payload([sc], probs, r)} for r, p in enumerate(flipped_payloads)]
            by_confidence = audit.find_mislabels(
                ids, tagged, record, args.min_confidence, [sc.scheme]
            )
            by_confidence.sort(key=lambda f: (-f.confidence, f.id))  # the vote's own rank
            row_of = {pid: r for r, pid in enumerate(ids)}
            agreement = {
                f.id: near[row_of[f.id]][: audit.AGREEMENT_NEIGHBOURS] for f in by_confidence
            }
            by_agreement = audit.with_agreement(by_confidence, agreement)
            title = f"{sc.scheme} seed {seed}: {len(flipped)} flips"
            rankings = {"confidence": by_confidence, "agreement": by_agreement}
            print_shares(title, rankings, {ids[r] for r in flipped})
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

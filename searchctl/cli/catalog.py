"""The commands about a collection as a whole: `duplicates`, `migrate`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from searchctl.cli.common import (
    BarProgress,
    CollectionOpt,
    DataDir,
    JsonOpt,
    QdrantApiKey,
    QdrantUrl,
    err,
    out,
    print_json,
    store_of,
)

SHEET_GROUPS = 10  # groups on the contact sheet
LISTED_GROUPS = 20  # groups listed for a person


def duplicates(
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Cosine at or above which two photos are near-identical \\[default: 0.97, "
            "measured on the shared catalog: docs/sync.md].",
            show_default=False,
        ),
    ] = None,
    vector: Annotated[
        str | None, typer.Option(help="Named vector compared \\[default: the backbone's].")
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write one row per product of a group here.")
    ] = None,
    show: Annotated[
        Path | None,
        typer.Option(help=f"Write a PNG contact sheet of {SHEET_GROUPS} groups, one per row."),
    ] = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Groups of products whose photos are the same bytes, and groups whose photos are
    near-identical by vector. `query --dedupe` (and the API's `dedupe`) shows one hit per
    group."""
    from searchctl.config import pick_collection
    from searchctl.duplicates import DEFAULT_THRESHOLD, contact_sheet, find_duplicates
    from searchctl.query import default_vector

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        with BarProgress(summaries=False) as progress:
            report = find_duplicates(
                store, name, vector or default_vector(store, name),
                threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                progress=progress,
            )  # fmt: skip
        if show:
            shown = [*report.identical[: SHEET_GROUPS // 2], *report.near]
            contact_sheet(store, name, shown[:SHEET_GROUPS], show)
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["group", "kind", "id", "weakest"])
            writer.writeheader()
            writer.writerows(report.rows())
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report)
    if show:
        err.print(f"contact sheet: {show}")


def _print_report(report) -> None:
    counts = report.to_json()["counts"]
    out.print(
        f"Collection '{report.collection}' ({report.points:,} products, {report.seconds:.0f} s): "
        f"{counts['identical_groups']:,} groups of identical photos "
        f"({counts['identical_products']:,} products); {counts['near_groups']:,} groups of "
        f"near-identical ones at cosine >= {report.threshold} on {report.vector} "
        f"({counts['near_products']:,} products).",
        highlight=False,
    )
    if report.without_hash:
        out.print(
            f"{report.without_hash:,} products have no photo hash (stored by an older "
            "searchctl): `searchctl ingest` on the catalog records them.",
            highlight=False,
        )
    for group in [*report.identical, *report.near][:LISTED_GROUPS]:
        how = "same bytes" if group.kind == "identical" else f"cosine >= {group.weakest:.3f}"
        out.print(f"  {how}: {', '.join(map(str, group.ids))}", highlight=False)
    more = len(report.identical) + len(report.near) - LISTED_GROUPS
    if more > 0:
        out.print(f"  ... and {more:,} more groups (--json or --csv lists them all)")

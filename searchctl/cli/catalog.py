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
    ReplicasOpt,
    ShardsOpt,
    WriteConsistencyOpt,
    err,
    out,
    print_json,
    store_of,
    user_errors,
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


def migrate(
    to_url: Annotated[
        str | None,
        typer.Option(help="Copy to this Qdrant server or cluster, e.g. http://qdrant:6333."),
    ] = None,
    to_api_key: Annotated[
        str | None, typer.Option(envvar="SEARCHCTL_TO_QDRANT_API_KEY", help="API key for --to-url.")
    ] = None,
    to_data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Copy to the embedded store in this directory instead (the reverse way)."
        ),
    ] = None,
    to_collection: Annotated[
        str | None, typer.Option(help="Name of the copy \\[default: the collection's].")
    ] = None,
    shards: ShardsOpt = None,
    replicas: ReplicasOpt = None,
    write_consistency: WriteConsistencyOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a collection to a Qdrant server or cluster (or, with --to-data-dir, back to an
    embedded store): every point with all its named vectors and payload, the payload indexes,
    the embedder and model records. Resumable: a re-run copies only what is missing. Verified
    at the end: counts, ids, and 200 points compared vector by vector."""
    from qdrant.migrate import migrate as copy_collection
    from qdrant.server import ServerStore
    from searchctl.config import pick_collection

    if (to_url is None) == (to_data_dir is None):
        err.print("Give one of --to-url (a Qdrant server) or --to-data-dir (an embedded store).")
        raise typer.Exit(2)
    with store_of(data_dir, qdrant_url, qdrant_api_key) as source:
        name = pick_collection(source, collection)
        if to_url is not None:
            placement = {"shards": shards, "replicas": replicas,
                         "write_consistency": write_consistency}  # fmt: skip
            with user_errors():
                target = ServerStore.connect(to_url, to_api_key, **placement)
        else:
            from qdrant.edge import EdgeStore

            target = EdgeStore(to_data_dir)
        with target, BarProgress(summaries=False) as progress:
            report = copy_collection(source, target, name, to_collection, progress=progress)
    models = _copy_models(data_dir, name, to_data_dir, to_collection or name)
    if as_json:
        print_json({**report.to_json(), "models": str(models) if models else None})
    else:
        out.print(
            f"{report.collection} -> {report.target_collection} on {report.target}: copied "
            f"{report.copied:,} points ({report.already_there:,} were there), "
            f"{report.target_points:,} of {report.source_points:,} in the copy, "
            f"{len(report.indexes)} payload indexes ({report.seconds:.1f} s).",
            highlight=False,
        )
        if models:
            out.print(f"Models: {models}", highlight=False)
        if report.verified:
            out.print(f"Verified: ids, metadata, and {report.sampled} points vector by vector.")
        for problem in report.problems:
            err.print(f"[red]{problem}[/]")
    if not report.verified:
        raise typer.Exit(1)


def _copy_models(data_dir: Path | None, name: str, to_data_dir: Path | None, to_name: str):
    """The models stay in the data dir, found by collection name: copied when the copy has
    another name or another data dir. Returns where the copy's models are."""
    import shutil

    from embedder.files import models_dir
    from searchctl.cli.common import data_dir_or_default

    source = models_dir(data_dir_or_default(data_dir), name)
    target = models_dir(to_data_dir or data_dir_or_default(data_dir), to_name)
    if not source.is_dir():
        return None
    if source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return target

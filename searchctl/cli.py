"""The `searchctl` command line: thin commands over the library (ingest, query, eval, info)."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from searchctl import __version__

app = typer.Typer(
    help="Visual search for fashion catalogs: ingest a catalog into Qdrant, query it by photo.",
    no_args_is_help=True,
    add_completion=False,
)
# Piped output (no terminal width) gets room for a whole result row rather than 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SEARCHCTL_DATA_DIR",
        help="Where the embedded store keeps collections [default: ~/.local/share/searchctl].",
        show_default=False,
    ),
]
QdrantUrl = Annotated[
    str | None,
    typer.Option(
        "--qdrant-url",
        envvar="QDRANT_URL",
        help="Use a Qdrant server or cluster (e.g. http://localhost:6333) instead of the "
        "embedded store.",
    ),
]
QdrantApiKey = Annotated[
    str | None,
    typer.Option("--qdrant-api-key", envvar="QDRANT_API_KEY", help="API key for --qdrant-url."),
]
CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", "-c", help="Collection name [default: the only one there is]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="Keras weights file for the backbone (no top). Default: Keras' ImageNet weights, "
        "downloaded once (needs internet).",
    ),
]


@contextmanager
def user_errors():
    """Known problems become one clear message and exit code 2, not a traceback."""
    from embedder.images import BadImage
    from embedder.spec import WeightsUnavailable
    from ingest.catalog import CatalogError
    from ingest.pipeline import EmbedderMismatch
    from qdrant import StoreError

    try:
        yield
    except (
        BadImage,
        WeightsUnavailable,
        CatalogError,
        EmbedderMismatch,
        StoreError,
        ValueError,
    ) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )


def _short_list(items: list, n: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


@app.command()
def ingest(
    catalog: Annotated[Path, typer.Argument(help="Catalog directory: styles.csv and images/.")],
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="Collection [default: the catalog's dir name]."),
    ] = None,
    backbone: Annotated[
        str, typer.Option(help="keras.applications backbone: resnet50 or mobilenet_v2.")
    ] = "resnet50",
    weights: WeightsOpt = None,
    input_size: Annotated[
        str | None, typer.Option(help="Model input HEIGHTxWIDTH [default: 160x120].")
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Input normalisation: caffe, tf or torch [default: what the weights expect]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 64,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N products with an image.")
    ] = None,
    mixed_precision: Annotated[
        bool, typer.Option(help="float16 compute (pays on a GPU only).")
    ] = False,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed every catalog image and store it, one point per product, with its labels.

    Resumable and idempotent: a re-run stores only what is missing.
    """
    from embedder.spec import DEFAULT_INPUT_SIZE, make_spec, parse_input_size
    from ingest.catalog import read_catalog
    from ingest.pipeline import ingest_catalog
    from searchctl.config import collection_name_for, connect

    with user_errors():
        size = parse_input_size(input_size) if input_size else DEFAULT_INPUT_SIZE
        spec = make_spec(backbone, weights, size, preprocess)
        cat = read_catalog(catalog)
        name = collection or collection_name_for(cat.root)

        def make_embedder(s):
            from embedder.model import Embedder

            err.print(f"Loading {s.describe()}", highlight=False)
            return Embedder(s, mixed_precision=mixed_precision)

        with connect(data_dir, qdrant_url, qdrant_api_key) as store, _progress() as bar:
            task = bar.add_task("ingest", total=None, rate="")

            def on_plan(n: int) -> None:
                bar.update(task, total=n)

            def on_progress(k: int) -> None:
                bar.advance(task, k)
                speed = bar.tasks[0].speed
                bar.update(task, rate=f"{speed:.0f} img/s" if speed else "")

            report = ingest_catalog(
                cat,
                store,
                name,
                spec,
                batch_size=batch_size,
                limit=limit,
                on_plan=on_plan,
                on_progress=on_progress,
                make_embedder=make_embedder,
            )
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    _print_ingest_report(report, store)


def _print_ingest_report(report, store) -> None:
    if report.up_to_date:
        out.print(
            f"Nothing to do: all {report.selected:,} products with an image are already in "
            f"collection '{report.collection}' ({report.points_in_collection:,} points)."
        )
    else:
        out.print(
            f"Collection '{report.collection}' in {store!r}: {report.points_in_collection:,} "
            f"points (stored {report.stored:,} now, {report.already_stored:,} were already there)."
        )
    out.print(
        f"Catalog: {report.catalog_rows:,} rows; {len(report.rows_without_image):,} without an "
        f"image; {len(report.images_without_row):,} images without a row; "
        f"{len(report.bad_rows):,} unusable rows.",
        highlight=False,
    )
    for line, reason in report.bad_rows:
        err.print(f"  styles.csv line {line}: {reason}", highlight=False)
    if report.bad_images:
        err.print(
            f"[yellow]{len(report.bad_images)} images could not be used (not stored; "
            "fix them and re-run ingest):[/]"
        )
        for pid, reason in report.bad_images:
            err.print(f"  id {pid}: {reason}", highlight=False)
    if report.stored:
        s = report.seconds
        out.print(
            f"Time: {s['wall']:.1f} s wall; {report.images_per_second:.0f} images/s "
            f"(model {s.get('embed', 0):.1f} s, upserts {s.get('upsert', 0):.1f} s, "
            f"index build {s.get('optimize', 0):.1f} s)."
        )


@app.command()
def query(
    image: Annotated[
        Path | None, typer.Argument(help="Photo to search with (any size, any format).")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Number of hits.")] = 5,
    product_id: Annotated[
        int | None, typer.Option("--id", help="Search with a catalog product's stored vector.")
    ] = None,
    vector: Annotated[
        str | None, typer.Option(help="Named vector to search [default: the backbone's].")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Payload filter FIELD=VALUE, e.g. gender=Men (repeatable: all must hold)."
        ),
    ] = None,
    show: Annotated[
        Path | None, typer.Option(help="Write a contact sheet PNG: the query, then the hits.")
    ] = None,
    weights: WeightsOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the catalog products most similar to a photo (or to a product, with --id)."""
    from embedder.images import open_image
    from searchctl.config import connect, pick_collection
    from searchctl.query import Searcher, parse_where, search_by_id

    with user_errors():
        if (image is None) == (product_id is None):
            raise ValueError("give either an IMAGE or --id PRODUCT_ID")
        conditions = parse_where(where)
        if image is not None:
            open_image(image)  # a clear error before the model is loaded
        with connect(data_dir, qdrant_url, qdrant_api_key) as store:
            name = pick_collection(store, collection)
            if image is not None:
                result = Searcher(store, name, weights, compiled=False).search_image(
                    image, top, vector, conditions
                )
            else:
                result = search_by_id(store, name, product_id, top, vector, conditions)
            catalog_root = store.get_metadata(name).get("catalog")
    if show:
        _write_query_sheet(result, image, catalog_root, show)
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    _print_hits(result)
    if show:
        err.print(f"contact sheet: {show}")


HIT_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour")


def _print_hits(result) -> None:
    table = Table(title=f"{result.query}  (vector: {result.vector})", title_justify="left")
    for col in ("rank", "id", "score", *HIT_COLUMNS):
        table.add_column(col, justify="right" if col in ("rank", "id", "score") else "left",
                         no_wrap=True)  # fmt: skip
    table.add_column("productDisplayName", no_wrap=True, overflow="ellipsis")
    for rank, hit in enumerate(result.hits, 1):
        p = hit.payload or {}
        table.add_row(
            str(rank),
            str(hit.id),
            f"{hit.score:.4f}",
            *(str(p.get(c) or "") for c in HIT_COLUMNS),
            str(p.get("productDisplayName") or ""),
        )
    out.print(table)
    if not result.hits:
        out.print("No hits (is a --where filter too strict?).")


def _write_query_sheet(result, image, catalog_root, path) -> None:
    from searchctl.contact_sheet import Tile, write_contact_sheet

    def image_of(payload: dict | None) -> Path | None:
        rel = (payload or {}).get("image")
        return Path(catalog_root) / rel if catalog_root and rel else None

    # With --id, the product's own photo: it need not be among the hits (filters, duplicates).
    query_source = image if image is not None else image_of(result.query_payload)
    tiles = [Tile(query_source, ["query", result.query[-20:]])]
    tiles += [
        Tile(
            image_of(h.payload),
            [
                f"#{r} id {h.id}",
                f"score {h.score:.3f}",
                str((h.payload or {}).get("articleType") or ""),
            ],
        )
        for r, h in enumerate(result.hits, 1)
    ]
    write_contact_sheet(tiles, path)


@app.command("eval")
def eval_(
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Hits judged per query.")] = 5,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Query with N random products, not all of them.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample: same seed, same numbers.")] = 0,
    mode: Annotated[
        list[str] | None,
        typer.Option(help="Search mode (a named vector, ...) to judge [default: every one]."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            help="External photos in the catalog layout (styles.csv + images/), embedded with "
            "the collection's embedder; adds recall of the same product id.",
        ),
    ] = None,
    exact: Annotated[
        bool, typer.Option(help="Exact search (full scan) instead of the HNSW index.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel search threads.")] = 2,
    report: Annotated[
        Path | None,
        typer.Option(help="Write report.md, a bar chart and best/worst contact sheets here."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Photos per model call.")] = 64,
    weights: WeightsOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Label match rates: how often the top-k hits share the query's labels.

    By default every product queries with its own stored vector and is left out of its hits
    (leave-one-out). Rates per field (gender, masterCategory, subCategory, articleType,
    baseColour, usage, season), the articleType macro mean and a per-articleType breakdown.
    """
    from searchctl.config import connect, pick_collection
    from searchctl.evaluate import (
        available_modes,
        collection_labels,
        evaluate,
        photo_queries,
        sample_ids,
        select_modes,
        stored_queries,
    )

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        modes = select_modes(available_modes(store, name), mode)
        vectors = list(dict.fromkeys(m.vector for m in modes))
        all_ids = sorted(store.ids(name))
        if not all_ids:
            raise ValueError(f"collection {name!r} is empty: run `searchctl ingest` first")
        labels_of = collection_labels(store, name, all_ids)
        skipped = []
        with _progress() as bar:
            if queries is None:
                query_set = stored_queries(store, name, sample_ids(all_ids, sample, seed), vectors)
                source = "the collection"
            else:
                from ingest.catalog import read_catalog
                from searchctl.query import Searcher

                external = read_catalog(queries)
                if sample is not None:
                    chosen = set(sample_ids([p.id for p in external.products], sample, seed))
                    external.products = [p for p in external.products if p.id in chosen]
                task = bar.add_task("embed", total=len(external.with_image), rate="")
                query_set, skipped = photo_queries(
                    external,
                    Searcher(store, name, weights),
                    vectors,
                    batch_size,
                    on_progress=lambda k: bar.advance(task, k),
                )
                source = str(external.root)
                if not query_set.ids:
                    raise ValueError(f"no usable query photos in {external.root}")
            tasks = {}

            def on_mode(m, n):
                tasks[m.name] = bar.add_task(m.name, total=n, rate="")

            result = evaluate(
                store,
                name,
                query_set,
                modes,
                k=top,
                exact=exact,
                workers=workers,
                labels_of=labels_of,
                on_mode=on_mode,
                on_progress=lambda k: bar.advance(list(tasks.values())[-1], k),
            )
        result.sample, result.seed, result.source = sample, seed if sample else None, source
        result.skipped = skipped
        catalog_root = store.get_metadata(name).get("catalog")
        report_path = None
        if report:
            from searchctl.eval_report import write_report

            report_path = write_report(result, report, labels_of, catalog_root)
    for pid, reason in skipped:
        err.print(f"  query photo {pid} skipped: {reason}", highlight=False)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_eval(result)
    if report_path:
        err.print(f"report: {report_path}")


MIN_CLASS_QUERIES = 20


def _print_eval(report) -> None:
    from searchctl.evaluate import EVAL_FIELDS, MACRO_FIELD

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    table = Table(
        title=f"Top-{report.k} label match rates, {len(report.queries.ids):,} queries from "
        f"{report.source}",
        title_justify="left",
    )
    table.add_column("search", no_wrap=True)
    for f in (*EVAL_FIELDS, f"{MACRO_FIELD} macro", "same product"):
        table.add_column(f, justify="right", no_wrap=True)
    for r in report.results:
        table.add_row(
            r.mode.name,
            *(fmt(r.agreement[f]) for f in EVAL_FIELDS),
            fmt(r.agreement_macro),
            fmt(r.same_product_recall),
        )
    out.print(table)
    for r in report.results:
        worst = [(c, v) for c, v in r.per_class.items() if v["queries"] >= MIN_CLASS_QUERIES][:8]
        out.print(
            f"{r.mode.name}: worst {MACRO_FIELD} classes (of {MIN_CLASS_QUERIES}+ queries): "
            + "; ".join(
                f"{c} {fmt(v['agreement'][MACRO_FIELD])} (n={v['queries']})" for c, v in worst
            ),
            highlight=False,
        )
    out.print(f"Search: {report.search_description}.", highlight=False)
    out.print(f"Time: {report.seconds['total']:.1f} s.", highlight=False)


@app.command()
def info(
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Collections, their point counts, named vectors and embedder records."""
    from searchctl.config import connect

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        collections = [
            {
                "name": name,
                "points": store.count(name),
                "vectors": store.vector_sizes(name),
                **store.get_metadata(name),
            }
            for name in store.list_collections()
        ]
    if as_json:
        print(json.dumps({"store": repr(store), "collections": collections}, indent=2))
        return
    out.print(f"Store: {store!r}", highlight=False)
    if not collections:
        out.print("No collections yet: run `searchctl ingest CATALOG`.")
    for c in collections:
        out.print(f"\n[bold]{c['name']}[/]: {c['points']:,} points", highlight=False)
        out.print(
            f"  vectors: {', '.join(f'{k} ({v} dims, cosine)' for k, v in c['vectors'].items())}"
        )
        if c.get("catalog"):
            out.print(f"  catalog: {c['catalog']}", highlight=False)
        emb = c.get("embedder")
        if emb:
            out.print(
                f"  embedder: {emb['backbone']}, weights {emb['weights_id']}, input "
                f"{emb['input_height']}x{emb['input_width']}, {emb['preprocessing']} "
                f"preprocessing, {emb['dim']} dims",
                highlight=False,
            )


def _version(value: bool) -> None:
    if value:
        print(f"searchctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Visual search for fashion catalogs."""


if __name__ == "__main__":
    sys.exit(app())

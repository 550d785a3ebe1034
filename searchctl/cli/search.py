"""The commands that read a collection: `query` and `eval`. Each parses its options into a
request, calls the search library (searchctl.query, searchctl.evaluate) and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from searchctl.cli.common import (
    BarProgress,
    CollectionOpt,
    DataDir,
    JsonOpt,
    QdrantApiKey,
    QdrantUrl,
    WeightsOpt,
    data_dir_or_default,
    err,
    out,
    print_json,
    store_of,
)

TextOpt = Annotated[
    str | None,
    typer.Option(
        help="Words of the product name: alone, products ranked by them (BM25); beside a "
        "photo or --id, only hits whose name holds every word.",
    ),
]
ImageOpt = Annotated[
    str | None,
    typer.Argument(
        help="Photo to search with: a file (any size, any format) or an http(s) URL "
        "(at most 20 MB, 10 s).",
        show_default=False,
    ),
]
ProductIdOpt = Annotated[
    int | None, typer.Option("--id", help="Search with a catalog product's stored vector.")
]
VectorOpt = Annotated[
    str | None,
    typer.Option(
        help="Named vector to search \\[default: the backbone's]; tuned (made by a finetune "
        "classifier) matches labels better, finds the very product less often."
    ),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(help="Payload filter FIELD=VALUE, e.g. gender=Men (repeatable: all must hold)."),
]
SameTypeOpt = Annotated[
    bool,
    typer.Option(
        "--same-type",
        help="Only hits whose predicted articleType is the query's predicted articleType "
        "(needs the classifier).",
    ),
]
DedupeOpt = Annotated[
    bool,
    typer.Option(
        "--dedupe",
        help="One hit per group of duplicate photos (the same bytes, or near-identical: "
        "`searchctl duplicates`); the best-ranked stands for its group.",
    ),
]
PlainOpt = Annotated[
    bool,
    typer.Option(
        "--plain", help="Plain cosine on the vector: no re-rank by colour and predicted type."
    ),
]
ColourWeightOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Weight of colour similarity in the re-rank of the vector's nearest products, "
        "for every photo \\[default: 0.3 when the collection has colour vectors; 0.7 for "
        "a photo cut out of its background, a shopper's].",
    ),
]
TagWeightOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Weight of tag agreement in the re-rank: for each of gender+master, "
        "subCategory, articleType and baseColour in which the query's predicted tag is the "
        "hit's, the query's confidence x the hit's (its label, where it has one, counts as "
        "sure for gender+master, articleType and baseColour); baseColour counts 1.4x, the "
        "articleType over every type 1.8x in place of the classifier's \\[default: 0.08 "
        "when the products carry predicted tags; 0.11 beside a tuned vector, the "
        "classifier's own features; 0.02 for a cut-out photo, whose articleType its 5 "
        "nearest candidates vote and count 0.02 more; 0 turns that vote off too].",
    ),
]
TunedWeightOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Weight of the tuned vector's cosine in the re-rank \\[default: 1.0 when the "
        "collection has tuned vectors, from a finetune classifier; 0.8 for a cut-out "
        "photo]; with it, the tuned "
        "vector's 50 nearest products join the candidates (0 turns both off).",
    ),
]
CandidatesOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="How many nearest products of the searched vector the re-rank chooses from "
        "\\[default: 100].",
    ),
]
CutoutOpt = Annotated[
    bool,
    typer.Option(
        help="Make a photo that is not a studio shot look like one before embedding it: "
        "its background becomes white and it is cropped to the product.",
    ),
]
ShowOpt = Annotated[
    Path | None, typer.Option(help="Write a contact sheet PNG: the query, then the hits.")
]


def query(
    image: ImageOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Number of hits.")] = 5,
    product_id: ProductIdOpt = None,
    vector: VectorOpt = None,
    where: WhereOpt = None,
    text: TextOpt = None,
    same_type: SameTypeOpt = False,
    plain: PlainOpt = False,
    dedupe: DedupeOpt = False,
    colour_weight: ColourWeightOpt = None,
    tag_weight: TagWeightOpt = None,
    tuned_weight: TunedWeightOpt = None,
    candidates: CandidatesOpt = None,
    cutout: CutoutOpt = True,
    show: ShowOpt = None,
    weights: WeightsOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the catalog products most similar to a photo (or to a product, with --id).

    By default the vector's nearest products are re-ranked: colour similarity and agreement
    with the classifier's predicted tags add to the score (docs/quality.md); --plain turns
    that off.
    """
    from searchctl.config import pick_collection
    from searchctl.query import SearchRequest, ensure_text_index, parse_where, search

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        request = SearchRequest(
            image=image, product_id=product_id, top=top, vector=vector,
            where=parse_where(where), text=text, same_type=same_type, plain=plain,
            colour_weight=colour_weight, tag_weight=tag_weight, tuned_weight=tuned_weight,
            candidates=candidates, cutout=cutout, dedupe=dedupe,
        )  # fmt: skip
        name = pick_collection(store, collection)
        if text:
            ensure_text_index(store, name)
        result = search(store, name, request, weights=weights, data_dir=data_dir)
        catalog_root = store.get_metadata(name).get("catalog")
    for note in result.notes:
        err.print(f"[yellow]{note}[/]")
    if show:
        _write_query_sheet(result, image, catalog_root, show)
    if as_json:
        print_json(result.to_json())
        return
    _print_hits(result)
    if show:
        err.print(f"contact sheet: {show}")


HIT_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour")


def _print_hits(result) -> None:
    how = f"vector: {result.vector}"
    if result.blend:
        b = result.blend
        how += f", re-ranked: colour x{b.colour_weight:g}, tags x{b.tag_weight:g}"
        if b.tuned_weight:
            how += f", tuned x{b.tuned_weight:g}"
        if b.type_voters:
            how += f", type voted by the {b.type_voters} nearest"
    table = Table(title=f"{result.query}  ({how})", title_justify="left")
    for col in ("rank", "id", "score", *HIT_COLUMNS):
        table.add_column(
            col, justify="right" if col in ("rank", "id", "score") else "left", no_wrap=True
        )
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
    if result.predicted:
        p = result.predicted  # pred_<scheme> and pred_<scheme>_conf
        tags = ", ".join(
            f"{k[5:]} {v} ({p[k + '_conf']:.2f})" for k, v in p.items() if not k.endswith("_conf")
        )
        out.print(f"Predicted for the photo: {tags}", highlight=False)
    if not result.hits:
        out.print("No hits (is a --where filter too strict?).")


def _write_query_sheet(result, image, catalog_root, path) -> None:
    from embedder.contact_sheet import Tile, write_contact_sheet

    def image_of(payload: dict | None) -> Path | None:
        rel = (payload or {}).get("image")
        return Path(catalog_root) / rel if catalog_root and rel else None

    # With --id, the product's own photo: it need not be among the hits (filters, duplicates).
    photo = result.photo
    query_source = np.asarray(photo) if photo is not None else image_of(result.query_payload)
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


SampleOpt = Annotated[
    int | None, typer.Option(min=1, help="Query with N random products, not all of them.")
]
ModeOpt = Annotated[
    list[str] | None,
    typer.Option(help="Search mode (a named vector, ...) to judge \\[default: every one]."),
]
QueriesOpt = Annotated[
    Path | None,
    typer.Option(
        help="External photos in the catalog layout (styles.csv + images/), embedded with "
        "the collection's embedder; adds recall of the same product id.",
    ),
]
HeldOutOpt = Annotated[
    bool,
    typer.Option(
        help="Query with the classifier's held-out test products only: the honest figure "
        "for the tuned vector and the predicted tags, which were trained on the others.",
    ),
]
ExactOpt = Annotated[bool, typer.Option(help="Exact search (full scan) instead of the HNSW index.")]
ReportOpt = Annotated[
    Path | None,
    typer.Option(help="Write report.md, a bar chart and best/worst contact sheets here."),
]
EvalCutoutOpt = Annotated[
    bool,
    typer.Option(
        help="With --queries: cut the background out of photos that are not studio shots "
        "(as `searchctl query` does).",
    ),
]


def eval_(
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Hits judged per query.")] = 5,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample: same seed, same numbers.")] = 0,
    mode: ModeOpt = None,
    queries: QueriesOpt = None,
    held_out: HeldOutOpt = False,
    exact: ExactOpt = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel search threads.")] = 2,
    report: ReportOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Photos per model call.")] = 64,
    cutout: EvalCutoutOpt = True,
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
    from searchctl.config import pick_collection
    from searchctl.evaluate import EvalRequest, run_eval

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        request = EvalRequest(
            top=top, sample=sample, seed=seed, modes=mode, queries=queries, held_out=held_out,
            exact=exact, workers=workers, batch_size=batch_size, cutout=cutout,
        )  # fmt: skip
        name = pick_collection(store, collection)
        with BarProgress(summaries=False) as progress:
            result = run_eval(
                store, name, request, data_dir=data_dir_or_default(data_dir), weights=weights,
                progress=progress,
            )  # fmt: skip
        report_path = None
        if report:
            from searchctl.eval_report import write_report

            catalog_root = store.get_metadata(name).get("catalog")
            report_path = write_report(result, report, result.labels_of, catalog_root)
    for note in result.notes:
        err.print(f"[yellow]{note}[/]")
    for pid, reason in result.skipped:
        err.print(f"  query photo {pid} skipped: {reason}", highlight=False)
    if as_json:
        print_json(result.to_json())
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

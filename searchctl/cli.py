"""The `searchctl` command line: thin commands over the library."""

from __future__ import annotations

import inspect
import json
import sys
from contextlib import contextmanager
from dataclasses import replace
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
        help="Where the embedded store keeps collections \\[default: ~/.local/share/searchctl].",
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
    typer.Option("--collection", "-c", help="Collection name \\[default: the only one there is]."),
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
    from classifier.tagger import ClassifierMissing
    from embedder.collection import EmbedderMismatch
    from embedder.images import BadImage
    from embedder.spec import WeightsUnavailable
    from ingest.catalog import CatalogError
    from qdrant import StoreError

    try:
        yield
    except (
        BadImage,
        ClassifierMissing,
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
        typer.Option("--collection", "-c", help="Collection \\[default: the catalog's dir name]."),
    ] = None,
    backbone: Annotated[
        str, typer.Option(help="keras.applications backbone: resnet50 or mobilenet_v2.")
    ] = "resnet50",
    weights: WeightsOpt = None,
    input_size: Annotated[
        str | None, typer.Option(help="Model input HEIGHTxWIDTH \\[default: 160x120].")
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Input normalisation: caffe, tf or torch \\[default: what the weights expect]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 64,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N products with an image.")
    ] = None,
    mixed_precision: Annotated[
        bool, typer.Option(help="float16 compute (pays on a GPU only).")
    ] = False,
    cutout: Annotated[
        bool | None,
        typer.Option(
            "--cutout/--no-cutout",
            help="Make photos with a non-white background studio shots (background whitened, "
            "cropped to the product) before embedding, as query photos are. Recorded with the "
            "collection \\[default: on for a new collection, else what it recorded].",
            show_default=False,
        ),
    ] = None,
    colour: Annotated[
        bool,
        typer.Option(
            help="Store the colour vector too: a histogram of the product's pixels, which the "
            "default search blends with the shape vector.",
        ),
    ] = True,
    autoencoder: Annotated[
        bool,
        typer.Option(
            help="Store the autoencoder vector too: train the autoencoder on the catalog first "
            "if there is none.",
        ),
    ] = True,
    autoencoder_arch: Annotated[
        str, typer.Option(help="Architecture of an autoencoder trained here: default or paper.")
    ] = "default",
    classifier: Annotated[
        bool,
        typer.Option(
            help="Tag what is stored: train the classifier first if there is none (needs "
            "classes of 500+ products), else tag the products that have no tags yet.",
        ),
    ] = True,
    classifier_kind: Annotated[
        str, typer.Option(help="Kind of a classifier trained here: finetune or vectors.")
    ] = "vectors",
    min_class_size: Annotated[
        int, typer.Option(min=1, help="Classes with fewer products are left out of training.")
    ] = 500,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed every catalog image and store it, one point per product, with its labels.

    Resumable and idempotent: a re-run stores only what is missing.
    """
    from classifier.label_tags import LABEL_TAGGERS
    from classifier.schemes import check_kind
    from embedder.autoencoder import VECTOR_NAME, get_config
    from embedder.colour import COLOUR_DIM, COLOUR_VECTOR
    from embedder.spec import DEFAULT_INPUT_SIZE, make_spec, parse_input_size
    from ingest.catalog import read_catalog
    from ingest.pipeline import ingest_catalog
    from searchctl.config import collection_name_for, connect, default_data_dir

    with user_errors():
        check_kind(classifier_kind)
        ae_config = get_config(autoencoder_arch)
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
                cutout=cutout,
                extra_vectors={
                    **({COLOUR_VECTOR: COLOUR_DIM} if colour else {}),
                    **({VECTOR_NAME: ae_config.dim} if autoencoder else {}),
                },
            )
        colours = ae = tags = None
        label_tags: dict[str, dict] = {}
        if colour and report.points_in_collection:
            colours = _ensure_colour(store, name)
        if autoencoder and report.points_in_collection:
            data = data_dir or default_data_dir()
            ae = _run_autoencoder(store, name, data, autoencoder_arch, None, False, 0)
        tuned = None
        if classifier and report.points_in_collection:
            tags = _ensure_tags(store, name, spec, data_dir, classifier_kind, min_class_size)
            tuned = _ensure_tuned(store, name, data_dir)
            label_tags = _ensure_label_tags(store, name, spec, data_dir)
    if as_json:
        parts = {"colour": colours, "autoencoder": ae, "classifier": tags, "tuned": tuned}
        parts.update({kind.stage: label_tags.get(kind.stage) for kind in LABEL_TAGGERS})
        print(json.dumps({**report.to_json(), **parts}, indent=2))
        return
    _print_ingest_report(report, store)
    if colours:
        out.print(_describe_colour(colours), highlight=False)
    if ae:
        out.print(_describe_autoencoder(ae), highlight=False)
    if tags:
        out.print(_describe_tags(tags), highlight=False)
    if tuned and tuned["action"] != "skipped":
        out.print(_describe_tuned(tuned), highlight=False)
    for report in label_tags.values():
        out.print(_describe_label_tags(report), highlight=False)


def _run_stage(label: str, stage, *args) -> dict:
    """A stage that adds a named vector to every point, with a progress bar; a server
    collection made without the vector skips it with the reason."""
    from qdrant.base import StoreError

    with _progress() as bar:
        task = bar.add_task(label, total=None, rate="")
        try:
            report = stage(
                *args,
                on_plan=lambda n: bar.update(task, total=n),
                on_progress=lambda k: bar.advance(task, k),
            )
        except StoreError as exc:
            return {"action": "skipped", "reason": str(exc)}
    for bad in report.get("bad_images", []):
        err.print(f"  {label}: id {bad['id']}: {bad['reason']}", highlight=False)
    return report


def _ensure_tuned(store, name, data_dir) -> dict:
    from ingest.tuned import ensure_tuned
    from searchctl.config import default_data_dir

    return _run_stage("tuned vector", ensure_tuned, store, name, data_dir or default_data_dir())


def _describe_tuned(tuned: dict) -> str:
    voted = tuned.get("voted", 0)
    votes = f" Tags voted by their nearest products for {voted:,} products." if voted else ""
    if tuned["action"] == "up_to_date":
        return "Every product has its tuned vector." + votes
    return (
        f"Tuned vectors (the finetune classifier's features) for {tuned['embedded']:,} "
        f"products ({tuned['seconds']:.1f} s): the default search re-ranks with them." + votes
    )


def _ensure_label_tags(store, name, spec, data_dir, retag: bool = False) -> dict[str, dict]:
    """Each label tagger's stage (classifier.label_tags): report key -> its report."""
    from functools import partial

    from classifier.label_tags import LABEL_TAGGERS, ensure_label_tags
    from searchctl.config import default_data_dir

    data = data_dir or default_data_dir()
    reports = {}
    for kind in LABEL_TAGGERS:
        stage = partial(ensure_label_tags, kind=kind, retag=retag)
        bar_label = kind.stage.replace("_", " ")
        reports[kind.stage] = _run_stage(bar_label, stage, store, name, data, spec.vector_name)
        reports[kind.stage]["label"] = kind.label
    return reports


def _describe_label_tags(report: dict) -> str:
    label = report["label"]
    if report["action"] == "skipped":
        return f"No predicted {label} over all its classes: {report['reason']}"
    if report["action"] == "up_to_date":
        return f"Every product has its predicted {label} over all its classes."
    trained = ""
    if report["action"] == "trained" and report.get("test_accuracy") is not None:
        trained = f" (tagger trained: test accuracy {report['test_accuracy']:.3f})"
    return f"Predicted {label} of {report['tagged']:,} products{trained}."


def _ensure_colour(store, name) -> dict:
    from ingest.colour import ensure_colour

    report = _run_stage("colour", ensure_colour, store, name)
    if report.get("action") == "skipped":
        return report
    return {"action": "described" if report["described"] else "up_to_date", **report}


def _describe_colour(colours: dict) -> str:
    if colours["action"] == "skipped":
        return f"No colour vectors: {colours['reason']}"
    if colours["action"] == "up_to_date":
        return "Every product has its colour vector."
    return f"Colour vectors for {colours['described']:,} products ({colours['seconds']:.1f} s)."


def _ensure_tags(store, name, spec, data_dir, kind, min_class_size) -> dict:
    from classifier.train import ensure_tags
    from searchctl.config import default_data_dir

    with _progress() as bar:
        task = bar.add_task("classifier", total=None, rate="")
        return ensure_tags(
            store,
            name,
            spec,
            data_dir or default_data_dir(),
            kind,
            min_class_size,
            on_features=lambda n: bar.update(task, total=n),
            on_progress=lambda k: bar.advance(task, k),
            on_epoch=lambda e, logs: err.print(
                f"classifier epoch {e}: val_loss {logs.get('val_loss', 0):.4f}", highlight=False
            ),
        )


def _describe_tags(tags: dict) -> str:
    if tags["action"] == "skipped":
        return f"Classifier not trained: {tags['reason']}"
    if tags["action"] == "trained":
        acc = ", ".join(f"{s} {a:.3f}" for s, a in tags["accuracy"].items())
        return f"Classifier trained (test accuracy {acc}); tagged {tags['tagged']:,} products."
    if tags["action"] == "tagged":
        return f"Tagged {tags['tagged']:,} new products with the classifier."
    return "Every product is tagged."


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
        str | None,
        typer.Option(
            help="Named vector to search \\[default: the backbone's]; tuned (made by a finetune "
            "classifier) matches labels better, finds the very product less often."
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Payload filter FIELD=VALUE, e.g. gender=Men (repeatable: all must hold)."
        ),
    ] = None,
    same_type: Annotated[
        bool,
        typer.Option(
            "--same-type",
            help="Only hits whose predicted articleType is the query's predicted articleType "
            "(needs the classifier).",
        ),
    ] = False,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain", help="Plain cosine on the vector: no re-rank by colour and predicted type."
        ),
    ] = False,
    colour_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of colour similarity in the re-rank of the vector's nearest products, "
            "for every photo \\[default: 0.3 when the collection has colour vectors; 0.7 for "
            "a photo cut out of its background, a shopper's].",
        ),
    ] = None,
    tag_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of tag agreement in the re-rank: for each of gender+master, "
            "subCategory, articleType and baseColour in which the query's predicted tag is the "
            "hit's, the query's confidence x the hit's (its label, where it has one, counts as "
            "sure for gender+master, articleType and baseColour); baseColour counts 1.4x, the "
            "articleType over every type 1.8x in place of the classifier's \\[default: 0.08 "
            "when the products carry predicted tags; 0.11 beside a tuned vector, the "
            "classifier's own features; 0.02 for a cut-out photo].",
        ),
    ] = None,
    tuned_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Weight of the tuned vector's cosine in the re-rank \\[default: 1.0 when the "
            "collection has tuned vectors, from a finetune classifier; 0.8 for a cut-out "
            "photo]; with it, the tuned "
            "vector's 50 nearest products join the candidates (0 turns both off).",
        ),
    ] = None,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="How many nearest products of the searched vector the re-rank chooses from "
            "\\[default: 100].",
        ),
    ] = None,
    cutout: Annotated[
        bool,
        typer.Option(
            help="Make a photo that is not a studio shot look like one before embedding it: "
            "its background becomes white and it is cropped to the product.",
        ),
    ] = True,
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
    """Find the catalog products most similar to a photo (or to a product, with --id).

    By default the vector's nearest products are re-ranked: colour similarity and agreement
    with the classifier's predicted tags add to the score (see the README's search quality
    table); --plain turns that off.
    """
    from classifier.schemes import TUNED_VECTOR
    from classifier.tagger import ClassifierMissing
    from embedder.colour import COLOUR_VECTOR
    from embedder.images import open_image
    from searchctl.config import connect, pick_collection
    from searchctl.query import (
        TUNED_BLEND,
        Blend,
        Searcher,
        default_blend,
        parse_where,
        search_by_id,
    )

    with user_errors():
        if (image is None) == (product_id is None):
            raise ValueError("give either an IMAGE or --id PRODUCT_ID")
        conditions = parse_where(where)
        if image is not None:
            open_image(image)  # a clear error before the model is loaded
        with connect(data_dir, qdrant_url, qdrant_api_key) as store:
            name = pick_collection(store, collection)
            blend = None if plain else default_blend(store, name, vector)
            if colour_weight and COLOUR_VECTOR not in store.vector_sizes(name):
                raise ValueError(
                    f"collection {name!r} has no colour vectors for --colour-weight: run "
                    "`searchctl ingest` on its catalog to add them"
                )
            if tuned_weight and TUNED_VECTOR not in store.vector_sizes(name):
                raise ValueError(
                    f"collection {name!r} has no tuned vectors for --tuned-weight: they come "
                    "with a finetune classifier (`searchctl train classifier --kind finetune`)"
                )
            overrides = {
                "colour_weight": colour_weight,
                "tag_weight": tag_weight,
                "tuned_weight": tuned_weight,
            }
            overrides = {k: v for k, v in overrides.items() if v is not None}
            if tuned_weight is not None:
                overrides["tuned_candidates"] = TUNED_BLEND.tuned_candidates
            if not plain and overrides:  # the weights asked for, whatever the photo
                blend = (blend or Blend(0.0, 0.0)).with_weights(**overrides)
            if blend is not None and candidates is not None:
                blend = replace(blend, candidates=candidates)
            if image is not None:
                wants_tags = same_type or bool(blend and blend.tag_weight)
                try:
                    searcher = Searcher(
                        store,
                        name,
                        weights,
                        compiled=False,
                        data_dir=data_dir,
                        with_tags=wants_tags,
                        cutout=cutout,
                    )
                except ClassifierMissing:
                    if same_type or tag_weight:
                        raise
                    err.print("[yellow]No classifier here: no re-rank by predicted tags.[/]")
                    blend = blend.with_weights(tag_weight=0.0)
                    searcher = Searcher(
                        store, name, weights, compiled=False, data_dir=data_dir, cutout=cutout
                    )
                result = searcher.search_image(image, top, vector, conditions, same_type, blend)
            else:
                result = search_by_id(
                    store, name, product_id, top, vector, conditions, same_type, blend
                )
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
    how = f"vector: {result.vector}"
    if result.blend:
        b = result.blend
        how += f", re-ranked: colour x{b.colour_weight:g}, tags x{b.tag_weight:g}"
        if b.tuned_weight:
            how += f", tuned x{b.tuned_weight:g}"
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
        typer.Option(help="Search mode (a named vector, ...) to judge \\[default: every one]."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            help="External photos in the catalog layout (styles.csv + images/), embedded with "
            "the collection's embedder; adds recall of the same product id.",
        ),
    ] = None,
    held_out: Annotated[
        bool,
        typer.Option(
            help="Query with the classifier's held-out test products only: the honest figure "
            "for the tuned vector and the predicted tags, which were trained on the others.",
        ),
    ] = False,
    exact: Annotated[
        bool, typer.Option(help="Exact search (full scan) instead of the HNSW index.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel search threads.")] = 2,
    report: Annotated[
        Path | None,
        typer.Option(help="Write report.md, a bar chart and best/worst contact sheets here."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Photos per model call.")] = 64,
    cutout: Annotated[
        bool,
        typer.Option(
            help="With --queries: cut the background out of photos that are not studio shots "
            "(as `searchctl query` does).",
        ),
    ] = True,
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
        photo_modes,
        photo_queries,
        sample_ids,
        select_modes,
        stored_queries,
    )

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        modes = select_modes(available_modes(store, name), mode)
        if queries is not None and not mode:
            modes, left_out = photo_modes(store, name, modes)
            if left_out:
                err.print(
                    f"[yellow]Left out: {', '.join(left_out)}; the tuned vectors are not all "
                    "the classifier's (see `searchctl tag`).[/]"
                )
        vectors = list(dict.fromkeys(v for m in modes for v in m.vectors))
        all_ids = sorted(store.ids(name))
        if not all_ids:
            raise ValueError(f"collection {name!r} is empty: run `searchctl ingest` first")
        labels_of = collection_labels(store, name, all_ids)
        skipped = []
        with _progress() as bar:
            if held_out and queries is not None:
                raise ValueError("--held-out picks queries from the collection, not --queries")
            if queries is None:
                ids = _held_out_ids(name, all_ids, data_dir) if held_out else all_ids
                query_set = stored_queries(store, name, sample_ids(ids, sample, seed), vectors)
                source = "the classifier's held-out products" if held_out else "the collection"
            else:
                from ingest.catalog import read_catalog
                from searchctl.query import Searcher

                external = read_catalog(queries)
                if sample is not None:
                    chosen = set(sample_ids([p.id for p in external.products], sample, seed))
                    external.products = [p for p in external.products if p.id in chosen]
                task = bar.add_task("embed", total=len(external.with_image), rate="")
                needs_tags = any(m.same_field or (m.blend and m.blend.tag_weight) for m in modes)
                searcher = Searcher(
                    store, name, weights, data_dir=data_dir, with_tags=needs_tags, cutout=cutout
                )
                query_set, skipped = photo_queries(
                    external,
                    searcher,
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


def _held_out_ids(name: str, all_ids: list[int], data_dir: Path | None) -> list[int]:
    from classifier.tagger import ClassifierMissing, read_record, tagger_dir
    from searchctl.config import default_data_dir

    record = read_record(tagger_dir(data_dir or default_data_dir(), name))
    if record is None:
        raise ClassifierMissing(f"--held-out: {name!r} has no classifier to have held products out")
    return sorted(set(record.test_ids) & set(all_ids))


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


train_app = typer.Typer(
    help="Train the models a collection uses (the classifier that tags products).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

KindOpt = Annotated[
    str,
    typer.Option(
        help="vectors: a small network on the stored vectors (about a minute for 44k "
        "products); finetune: the whole backbone trained on the catalog photos (about 1 h 25 "
        "min for 44k products on a 2-core CPU, about 1-4 points more accurate: see README)."
    ),
]
PAPER_ACCURACY = {"gender_master": 0.884, "subCategory": 0.966, "articleType": 0.873}


@train_app.command("classifier")
def train_classifier_cmd(
    kind: KindOpt = "vectors",
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many epochs \\[default: 12]."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the initial weights.")] = 0,
    min_class_size: Annotated[
        int, typer.Option(min=1, help="Classes with fewer products are left out of training.")
    ] = 500,
    figures: Annotated[
        Path | None,
        typer.Option(
            help="Write the confusion matrices and precision-recall curves here "
            "\\[default: next to the model]."
        ),
    ] = None,
    weights: WeightsOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the tagger (gender_master, subCategory, articleType) and tag every product.

    Stratified 80/20 split with a seed; early stopping on 10 % of the training part. Writes
    pred_<scheme> and pred_<scheme>_conf into each point's payload (filterable). Then the
    tuned vectors of a finetune classifier, and the label taggers where they are out of date
    (the type tagger reads the tuned vectors).
    """
    from classifier.schemes import check_kind
    from classifier.tagger import read_record
    from classifier.train import train_classifier
    from searchctl.config import connect, default_data_dir, pick_collection
    from searchctl.query import recorded_spec

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        check_kind(kind)
        name = pick_collection(store, collection)
        spec = recorded_spec(store, name, weights)
        with _progress() as bar:
            task = bar.add_task("features", total=None, rate="")

            def on_epoch(epoch: int, logs: dict) -> None:
                err.print(
                    f"epoch {epoch}: loss {logs.get('loss', 0):.4f}, "
                    f"val_loss {logs.get('val_loss', 0):.4f}",
                    highlight=False,
                )

            report = train_classifier(
                store,
                name,
                spec,
                data_dir or default_data_dir(),
                kind=kind,
                epochs=epochs,
                seed=seed,
                min_class_size=min_class_size,
                figures_dir=figures,
                on_features=lambda n: bar.update(task, total=n),
                on_progress=lambda k: bar.advance(task, k),
                on_epoch=on_epoch,
            )
        tuned = _ensure_tuned(store, name, data_dir)
        # A type tagger that read the old tuned vectors is out of date: trained again now.
        label_tags = _ensure_label_tags(store, name, spec, data_dir)
    # The tuned vector stage adds the neighbours' vote's test metrics to the saved record.
    record = read_record(report.directory) or report.record
    if as_json:
        data = record.to_json()
        data.pop("test_ids")
        data["tagged"] = report.tagged
        data["tuned"] = tuned
        data.update(label_tags)
        data["figures"] = [str(f) for f in report.figures]
        data["skipped"] = [{"id": i, "reason": r} for i, r in report.skipped]
        print(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"Classifier ({record.kind}) of '{name}': test set, "
        f"{record.split['test']:,} products",
        title_justify="left",
    )
    voted = record.neighbour_metrics
    columns = ["scheme", "classes", "left out", "accuracy", "macro-F1"]
    columns += ["voted: accuracy", "voted: macro-F1"] if voted else []
    for col in [*columns, "paper (VGG19)"]:
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for sc in record.schemes:
        m = record.metrics[sc.scheme]
        v = voted.get(sc.scheme)
        table.add_row(
            sc.scheme,
            str(len(sc.classes)),
            str(len(sc.left_out)),
            f"{m['accuracy']:.4f}",
            f"{m['macro_f1']:.4f}",
            *([f"{v['accuracy']:.4f}", f"{v['macro_f1']:.4f}"] if v else []),
            f"{PAPER_ACCURACY[sc.scheme]:.3f}",
        )
    out.print(table)
    if voted:
        from classifier.neighbours import NEIGHBOURS

        out.print(
            f"voted: the tags the products carry, voted by the {NEIGHBOURS} products nearest in "
            "the tuned vector (the test products by the others only).",
            highlight=False,
        )
    out.print(
        f"Tagged {report.tagged:,} products; time {record.seconds['total']:.0f} s "
        f"(features {record.seconds['features']:.0f} s, training {record.seconds['train']:.0f} "
        f"s, {len(record.history)} epochs). Model: {report.directory}",
        highlight=False,
    )
    for pid, reason in report.skipped:
        err.print(f"  id {pid} skipped: {reason}", highlight=False)
    out.print("Figures: " + ", ".join(str(f) for f in report.figures), highlight=False)
    if tuned["action"] != "skipped":
        out.print(_describe_tuned(tuned), highlight=False)
    for part in label_tags.values():
        if part["action"] != "up_to_date":
            out.print(_describe_label_tags(part), highlight=False)


@train_app.command("autoencoder")
def train_autoencoder_cmd(
    arch: Annotated[
        str,
        typer.Option(help="default (ours, chosen by label match rates) or paper (reference)."),
    ] = "default",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="At most this many epochs \\[default: 8].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and weights.")] = 0,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train anew and re-embed every product.")
    ] = False,
    show: Annotated[
        Path | None,
        typer.Option(help="Write a PNG: catalog photos above, their reconstructions below."),
    ] = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the catalog's autoencoder (if there is none, or --retrain) and store its vector
    for every product. A killed training resumes from its last epoch."""
    from embedder.autoencoder import get_config, read_record
    from ingest.autoencoder import autoencoder_dir, reconstruction_sheet
    from searchctl.config import connect, default_data_dir, pick_collection

    data = data_dir or default_data_dir()
    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        get_config(arch)
        name = pick_collection(store, collection)
        existing = read_record(autoencoder_dir(data, name))
        if existing and not retrain and existing.autoencoder_config.arch != arch:
            raise ValueError(
                f"the autoencoder of {name!r} is {existing.autoencoder_config.arch!r}; "
                f"add --retrain to replace it with {arch!r}"
            )
        summary = _run_autoencoder(store, name, data, arch, epochs, retrain, seed)
        if show:
            reconstruction_sheet(store, name, data, show, seed=seed)
    if as_json:
        print(json.dumps({"collection": name, **summary}, indent=2))
    else:
        out.print(_describe_autoencoder(summary), highlight=False)
    if show:
        err.print(f"reconstructions: {show}")


def _run_autoencoder(store, name, data, arch, epochs, retrain, seed) -> dict:
    from ingest.autoencoder import DEFAULT_EPOCHS, ensure_autoencoder

    with _progress() as bar:
        tasks = {}

        def on_stage(stage: str, n: int | None) -> None:
            tasks["current"] = bar.add_task(f"autoencoder {stage}", total=n, rate="")

        return ensure_autoencoder(
            store,
            name,
            data,
            arch=arch,
            epochs=epochs or DEFAULT_EPOCHS,
            retrain=retrain,
            seed=seed,
            on_stage=on_stage,
            on_progress=lambda k: bar.advance(tasks["current"], k),
            on_epoch=lambda e, logs: err.print(
                f"autoencoder epoch {e}: loss {logs.get('loss', 0):.5f}, "
                f"val_loss {logs.get('val_loss', 0):.5f}",
                highlight=False,
            ),
        )


def _describe_autoencoder(s: dict) -> str:
    if s["action"] == "skipped":
        return f"Autoencoder not trained: {s['reason']}"
    text = {
        "trained": f"Autoencoder '{s.get('arch')}' trained: {s.get('epochs')} epochs, best "
        f"validation loss {s.get('best_val_loss')}, {s.get('train_seconds')} s.",
        "embedded": "Autoencoder vectors added.",
        "up_to_date": "Every product has its autoencoder vector.",
    }[s["action"]]
    if s.get("embedded"):
        text += f" Embedded {s['embedded']:,} products in {s['seconds']} s."
    for bad in s.get("bad_images", []):
        text += f"\n  id {bad['id']}: {bad['reason']}"
    return text


@app.command()
def tag(
    weights: WeightsOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-tag every product of the collection with the saved classifier (and its predicted
    baseColour and articleType over every type with the label taggers, each trained if there
    is none or it is out of date: an older recipe, other vectors)."""
    from classifier.train import tag_collection
    from searchctl.config import connect, default_data_dir, pick_collection
    from searchctl.query import recorded_spec

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        spec = recorded_spec(store, name, weights)
        with _progress() as bar:
            task = bar.add_task("tag", total=None, rate="")
            report = tag_collection(
                store,
                name,
                spec,
                data_dir or default_data_dir(),
                on_features=lambda n: bar.update(task, total=n),
                on_progress=lambda k: bar.advance(task, k),
            )
        tuned = _ensure_tuned(store, name, data_dir)
        label_tags = _ensure_label_tags(store, name, spec, data_dir, retag=True)
    if as_json:
        print(
            json.dumps(
                {
                    "collection": name,
                    "tagged": report.tagged,
                    "tuned": tuned,
                    **label_tags,
                    "skipped": [{"id": i, "reason": r} for i, r in report.skipped],
                    "seconds": round(report.seconds, 1),
                },
                indent=2,
            )
        )
        return
    out.print(f"Tagged {report.tagged:,} products of '{name}' in {report.seconds:.1f} s.")
    if tuned["action"] != "skipped":
        out.print(_describe_tuned(tuned), highlight=False)
    for part in label_tags.values():
        out.print(_describe_label_tags(part), highlight=False)
    for pid, reason in report.skipped:
        err.print(f"  id {pid} not tagged: {reason}", highlight=False)


@app.command()
def audit(
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Only predictions at least this sure.")
    ] = 0.9,
    scheme: Annotated[
        list[str] | None,
        typer.Option(
            help="gender_master, subCategory, articleType, baseColour (the colour tagger's) or "
            "fineArticleType (the type tagger's, of the types the classifier leaves out; asked "
            "for only) \\[default: all the collection has but fineArticleType]."
        ),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write every finding as CSV ('-': stdout).")
    ] = None,
    show: Annotated[
        Path | None, typer.Option(help="Contact sheet PNG of the first findings.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Findings in the table and --show.")] = 30,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Products whose stored label disagrees with a confident prediction: likely mislabels.

    The classifier's schemes and baseColour where the collection has a colour tagger; asked
    for, fineArticleType: the articleType labels of the types the classifier leaves out
    (under --min-class-size), where it has a type tagger (on the shared catalog a third of
    its first findings were mislabels, against two thirds for colour).

    Most convincing first: where the tags were voted by neighbours (a finetune classifier),
    by the share of the product's 100 nearest products labelled as predicted ("agree");
    otherwise by the prediction's confidence. baseColour and fineArticleType findings by
    their confidence times 1 - the share of held-out products with that label the tagger
    predicts the same way ("confused": Tan taken for Brown is common, Black for Blue is
    not)."""
    from classifier.audit import audit_collection, write_csv
    from classifier.label_tags import COLOUR, LABEL_TAGGERS, load_label_taggers
    from classifier.schemes import FINE_TYPE_TAG, SCHEMES, TAGS
    from classifier.tagger import ClassifierMissing, read_record, tagger_dir
    from searchctl.config import connect, default_data_dir, pick_collection

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        unknown = [s for s in scheme or [] if s not in TAGS]
        if unknown:
            raise ValueError(f"unknown scheme {unknown[0]!r} (schemes: {', '.join(TAGS)})")
        models = data_dir or default_data_dir()
        record = read_record(tagger_dir(models, name))
        if record is None:
            raise ValueError(
                str(
                    ClassifierMissing(
                        f"no classifier for collection {name!r}: run "
                        "`searchctl train classifier` first"
                    )
                )
            )
        taggers = load_label_taggers(models, name)
        for kind in LABEL_TAGGERS:
            if kind.tag in (scheme or []) and kind.tag not in taggers:
                needs = " (it needs colour vectors)" if kind == COLOUR else ""
                raise ValueError(
                    f"no {kind.name.replace('_', ' ')} for collection {name!r}: "
                    f"`searchctl tag` trains one{needs}"
                )
        schemes = scheme or [*SCHEMES, *(tag for tag in taggers if tag != FINE_TYPE_TAG)]
        findings = audit_collection(store, name, record, min_confidence, schemes, taggers)
        catalog_root = store.get_metadata(name).get("catalog")
    if csv_path is not None:
        if str(csv_path) == "-":
            write_csv(findings, None, sys.stdout)
        else:
            write_csv(findings, csv_path)
            err.print(f"{len(findings)} findings written to {csv_path}")
    if show:
        _write_audit_sheet(findings[:limit], catalog_root, show)
        err.print(f"contact sheet: {show}")
    if as_json:
        from dataclasses import asdict

        print(
            json.dumps(
                {
                    "collection": name,
                    "min_confidence": min_confidence,
                    "findings": [asdict(f) for f in findings],
                },
                indent=2,
            )
        )
        return
    if csv_path is not None and str(csv_path) == "-":
        return
    table = Table(
        title=f"{len(findings):,} products of '{name}' whose label disagrees with a "
        f"prediction of confidence >= {min_confidence}",
        title_justify="left",
    )
    columns = ("id", "scheme", "label", "predicted", "conf", "agree", "confused", "held out")
    for col in (*columns, "name"):
        numeric = col in ("id", "conf", "agree", "confused")
        table.add_column(col, no_wrap=True, justify="right" if numeric else "left")
    for f in findings[:limit]:
        table.add_row(
            str(f.id),
            f.scheme,
            f.label,
            f.predicted,
            f"{f.confidence:.3f}",
            "" if f.agreement is None else f"{f.agreement:.2f}",
            "" if f.confusion is None else f"{f.confusion:.2f}",
            "yes" if f.held_out else "no",
            f.name,
        )
    out.print(table)
    if len(findings) > limit:
        out.print(f"({len(findings) - limit:,} more: --limit, --csv or --json for all.)")


def _finding_score(f) -> str:
    score = f"{f.confidence:.2f}"  # a caption has room for 20 characters: not the confusion
    return score if f.agreement is None else f"{score} agree {f.agreement:.2f}"


def _write_audit_sheet(findings, catalog_root, path) -> None:
    from embedder.contact_sheet import Tile, write_contact_sheet

    tiles = [
        Tile(
            Path(catalog_root) / f.image if catalog_root and f.image else None,
            [f"id {f.id} {_finding_score(f)}", f"label {f.label}", f"pred {f.predicted}"],
        )
        for f in findings
    ]
    write_contact_sheet(tiles, path, columns=min(6, max(1, len(tiles))))


@app.command()
def info(
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Collections, their point counts, named vectors, embedder records and models."""
    from searchctl.config import connect, default_data_dir

    with user_errors(), connect(data_dir, qdrant_url, qdrant_api_key) as store:
        collections = [
            {
                "name": name,
                "points": store.count(name),
                "vectors": store.vector_sizes(name),
                **store.get_metadata(name),
                "models": _models(data_dir or default_data_dir(), name),
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
            cut = "cut out" if c.get("cutout") else "as they are"
            out.print(f"  catalog: {c['catalog']} (photos embedded {cut})", highlight=False)
        emb = c.get("embedder")
        if emb:
            out.print(
                f"  embedder: {emb['backbone']}, weights {emb['weights_id']}, input "
                f"{emb['input_height']}x{emb['input_width']}, {emb['preprocessing']} "
                f"preprocessing, {emb['dim']} dims",
                highlight=False,
            )
        for line in _describe_models(c["models"]):
            out.print(f"  {line}", highlight=False)


def _models(data_dir: Path, name: str) -> dict:
    """The collection's classifier and label taggers, as their saved records describe them."""
    from classifier.label_tags import COLOUR, load_label_taggers
    from classifier.tagger import ClassifierMissing, read_record, tagger_dir

    def accuracy(metrics: dict) -> dict[str, float]:
        return {scheme: round(m["accuracy"], 4) for scheme, m in metrics.items()}

    models: dict = {}
    try:
        record = read_record(tagger_dir(data_dir, name))
    except ClassifierMissing as exc:
        models["classifier"] = {"unusable": str(exc)}
        record = None
    if record is not None:
        models["classifier"] = {
            "kind": record.kind,
            "created": record.created,
            "test_accuracy": accuracy(record.metrics),
            "vote_test_accuracy": accuracy(record.neighbour_metrics) or None,
        }
    for tagger in load_label_taggers(data_dir, name).values():
        models[tagger.kind.name] = {
            "model": tagger.record.get("model", "logistic regression"),
            "label": tagger.kind.label,
            "classes": len(tagger.classes),
            "inputs": tagger.vectors,
            "test_accuracy": tagger.record.get("test_accuracy"),
        }
        if tagger.kind == COLOUR:
            models[tagger.kind.name]["colours"] = len(tagger.classes)  # its key before
    return models


def _describe_models(models: dict) -> list[str]:
    lines = []
    classifier = models.get("classifier")
    if classifier and "unusable" in classifier:
        lines.append(f"classifier: {classifier['unusable']}")
    elif classifier:
        shown = classifier["vote_test_accuracy"] or classifier["test_accuracy"]
        by = "the neighbours' vote" if classifier["vote_test_accuracy"] else "the network"
        accuracy = " / ".join(f"{shown[s]:.3f}" for s in shown)
        lines.append(
            f"classifier: {classifier['kind']} ({classifier['created'][:10]}), test accuracy "
            f"{accuracy} ({' / '.join(shown)}, tags by {by})"
        )
    taggers = {key: m for key, m in models.items() if key != "classifier"}  # _models
    for key, tagger in taggers.items():
        held = tagger["test_accuracy"]
        lines.append(
            f"{key.replace('_', ' ')}: {tagger['model']}, {tagger['classes']} "
            f"{tagger['label']} classes from {' + '.join(tagger['inputs'])}"
            + (f", test accuracy {held:.3f}" if held is not None else "")
        )
    return lines


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


def _unwrap_help(*apps: typer.Typer) -> None:
    """Each command's help is its docstring with the line breaks inside paragraphs removed:
    Typer's rich help keeps a docstring's single line breaks after the first paragraph, so
    text wrapped at 100 columns in the source came out ragged in a terminal."""
    for typer_app in apps:
        for info in typer_app.registered_commands:
            doc = info.help if info.help is not None else inspect.getdoc(info.callback)
            if doc:
                info.help = "\n\n".join(" ".join(p.splitlines()) for p in doc.split("\n\n"))


_unwrap_help(app, train_app)

if __name__ == "__main__":
    sys.exit(app())

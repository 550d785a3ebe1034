"""The commands that write a collection: `ingest`, `train classifier|autoencoder`, `tag`.

Each parses its options into a StagePlan, calls ingest.plan and renders the reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from searchctl.cli.common import (
    BarProgress,
    CollectionOpt,
    DataDir,
    JsonOpt,
    MinClassSize,
    QdrantApiKey,
    QdrantUrl,
    ReplicasOpt,
    ShardsOpt,
    WeightsOpt,
    WriteConsistencyOpt,
    data_dir_or_default,
    err,
    out,
    print_json,
    store_of,
    user_errors,
)

train_app = typer.Typer(
    help="Train the models a collection uses (the classifier that tags products, the autoencoder).",
    no_args_is_help=True,
)

CutoutOpt = Annotated[
    bool | None,
    typer.Option(
        "--cutout/--no-cutout",
        help="Make photos with a non-white background studio shots (background whitened, "
        "cropped to the product) before embedding, as query photos are. Recorded with the "
        "collection \\[default: on for a new collection, else what it recorded].",
        show_default=False,
    ),
]
ColourOpt = Annotated[
    bool,
    typer.Option(
        help="Store the colour vector too: a histogram of the product's pixels, which the "
        "default search blends with the shape vector.",
    ),
]
AutoencoderOpt = Annotated[
    bool,
    typer.Option(
        help="Store the autoencoder vector too: train the autoencoder on the catalog first if "
        "there is none.",
    ),
]
ClassifierOpt = Annotated[
    bool,
    typer.Option(
        help="Tag what is stored: train the classifier first if there is none (needs classes "
        "of 500+ products), else tag the products that have no tags yet.",
    ),
]
KindOpt = Annotated[
    str,
    typer.Option(
        help="vectors: a small network on the stored vectors (about a minute for 44k "
        "products); finetune: the whole backbone trained on the catalog photos (about 1 h 25 "
        "min for 44k products on a 2-core CPU, 1-4 points more accurate: docs/classifier.md)."
    ),
]
TaggerMinProducts = Annotated[
    int | None,
    typer.Option(
        min=2,
        help="The colour and type taggers learn the labels with this many products; they train "
        "only when 3 such labels cover 80 % of the products \\[default: what they were trained "
        "with, else 20].",
        show_default=False,
    ),
]
PAPER_ACCURACY = {"gender_master": 0.884, "subCategory": 0.966, "articleType": 0.873}


def _context(store, name: str, spec, data_dir: Path | None, plan, progress):
    from ingest.plan import StageContext

    return StageContext(store, name, spec, data_dir_or_default(data_dir), plan, progress)


IngestCollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", "-c", help="Collection \\[default: the catalog's dir name]."),
]
BackboneOpt = Annotated[
    str, typer.Option(help="keras.applications backbone: resnet50 or mobilenet_v2.")
]
InputSizeOpt = Annotated[
    str | None, typer.Option(help="Model input HEIGHTxWIDTH \\[default: 160x120].")
]
PreprocessOpt = Annotated[
    str | None,
    typer.Option(
        help="Input normalisation: caffe, tf or torch \\[default: what the weights expect]."
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option(min=1, help="Only the first N products with an image.")
]
MixedPrecisionOpt = Annotated[bool, typer.Option(help="float16 compute (pays on a GPU only).")]
AutoencoderArchOpt = Annotated[
    str, typer.Option(help="Architecture of an autoencoder trained here: default or paper.")
]
KeepMissingOpt = Annotated[
    bool,
    typer.Option(
        "--keep-missing",
        help="Keep the stored products whose row or photo is gone from the catalog (by "
        "default they are deleted).",
    ),
]
MassDeleteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-mass-delete",
        help="Delete the missing products even when they are over half the collection (a "
        "run stops first otherwise: the catalog may be the wrong one).",
    ),
]
PlanOpt = Annotated[
    bool,
    typer.Option(
        "--plan",
        help="Only show what the run would change (new, deleted, relabelled, re-photographed "
        "products); change nothing, load no model.",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Embed only shard I of N (numbered from 0) of the catalog: N processes or "
        "machines share one collection (a Qdrant server), each running one shard; then one "
        'run without --shard trains the models and tags every product (README, "Many '
        'machines").',
        show_default=False,
    ),
]
ShopperPhotosOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Photograph this many catalog products as a shopper would (on a background, "
        "turned, under other light) and learn from them: a query map that brings a shopper's "
        "photo nearer its product, and a type tagger that names its type. 0 turns it off "
        "\\[default: as made, else 10000; ~3 min on 2 cores].",
        show_default=False,
    ),
]
ClassifierKindOpt = Annotated[
    str, typer.Option(help="Kind of a classifier trained here: finetune or vectors.")
]


def ingest(
    catalog: Annotated[Path, typer.Argument(help="Catalog directory: styles.csv and images/.")],
    collection: IngestCollectionOpt = None,
    backbone: BackboneOpt = "resnet50",
    weights: WeightsOpt = None,
    input_size: InputSizeOpt = None,
    preprocess: PreprocessOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 64,
    limit: LimitOpt = None,
    mixed_precision: MixedPrecisionOpt = False,
    cutout: CutoutOpt = None,
    colour: ColourOpt = True,
    autoencoder: AutoencoderOpt = True,
    autoencoder_arch: AutoencoderArchOpt = "default",
    classifier: ClassifierOpt = True,
    classifier_kind: ClassifierKindOpt = "vectors",
    min_class_size: MinClassSize = 500,
    tagger_min_products: TaggerMinProducts = None,
    shopper_photos: ShopperPhotosOpt = None,
    keep_missing: KeepMissingOpt = False,
    allow_mass_delete: MassDeleteOpt = False,
    show_plan: PlanOpt = False,
    shard: ShardOpt = None,
    shards: ShardsOpt = None,
    replicas: ReplicasOpt = None,
    write_consistency: WriteConsistencyOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed every catalog image and store it, one point per product, with its labels.

    Then the colour vectors, the autoencoder, the classifier's tags, the tuned vectors, the
    shopper photos (a query map for shoppers' photos and more for the type tagger to learn)
    and the label taggers' tags (docs/architecture.md, "The ingest"). Run again on a changed
    catalog, it brings the collection in step: new products are added, products whose row or
    photo is gone are deleted, relabelled rows get their new labels (nothing is embedded
    again), and a product whose photo changed gets every vector and tag made again; models
    are not retrained (`searchctl info` says when a retrain is advised). `--plan` shows what
    would change. Resumable and idempotent: a re-run does only what is left. `--shard I/N`
    spreads the embedding over N runs (ingest.shards).
    """
    from embedder.spec import DEFAULT_INPUT_SIZE, make_spec, parse_input_size
    from ingest.catalog import read_catalog
    from ingest.plan import StagePlan
    from ingest.plan import ingest as run_ingest
    from ingest.shards import Shard
    from searchctl.config import collection_name_for

    placement = {"shards": shards, "replicas": replicas, "write_consistency": write_consistency}
    with user_errors():
        part = Shard.parse(shard) if shard else None
    if show_plan:
        from ingest.sync import plan_changes

        with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
            cat = read_catalog(catalog)
            name = collection or collection_name_for(cat.root)
            changes = plan_changes(
                cat, store, name, limit=limit, keep_missing=keep_missing, shard=part
            )
        if as_json:
            print_json(changes.to_json())
        else:
            for line in changes.lines():
                out.print(line, highlight=False, markup=False)
        return
    with store_of(data_dir, qdrant_url, qdrant_api_key, **placement) as store:
        plan = StagePlan(
            colour=colour, autoencoder=autoencoder, autoencoder_arch=autoencoder_arch,
            classifier=classifier, classifier_kind=classifier_kind,
            min_class_size=min_class_size, tagger_min_products=tagger_min_products,
            shopper_photos=shopper_photos,
        )  # fmt: skip
        size = parse_input_size(input_size) if input_size else DEFAULT_INPUT_SIZE
        spec = make_spec(backbone, weights, size, preprocess)
        cat = read_catalog(catalog)
        name = collection or collection_name_for(cat.root)
        with BarProgress(summaries=not as_json) as progress:
            result = run_ingest(
                cat, store, name, spec, data_dir_or_default(data_dir), plan,
                batch_size=batch_size, limit=limit, cutout=cutout,
                mixed_precision=mixed_precision, keep_missing=keep_missing,
                allow_mass_delete=allow_mass_delete, progress=progress, shard=part,
            )  # fmt: skip
    if as_json:
        print_json(result.to_json())


EpochsOpt = Annotated[
    int | None, typer.Option(min=1, help="At most this many epochs \\[default: 12].")
]
FiguresOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write the confusion matrices and precision-recall curves here "
        "\\[default: next to the model]."
    ),
]


@train_app.command("classifier")
def train_classifier(
    kind: KindOpt = "vectors",
    epochs: EpochsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the initial weights.")] = 0,
    min_class_size: MinClassSize = 500,
    figures: FiguresOpt = None,
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
    from classifier.tagger import read_record
    from ingest.plan import StagePlan, retrain_classifier
    from searchctl.config import pick_collection
    from searchctl.query import recorded_spec

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        plan = StagePlan(classifier_kind=kind, min_class_size=min_class_size, seed=seed)
        name = pick_collection(store, collection)
        spec = recorded_spec(store, name, weights)
        with BarProgress(summaries=False) as progress:
            context = _context(store, name, spec, data_dir, plan, progress)
            report, stages = retrain_classifier(context, epochs=epochs, figures_dir=figures)
    # The tuned vector stage adds the neighbours' vote's test metrics to the saved record.
    record = read_record(report.directory) or report.record
    if as_json:
        data = record.to_json()
        data.pop("test_ids")
        data.update(tagged=report.tagged, figures=[str(f) for f in report.figures])
        data.update({stage: r.to_json() for stage, r in stages.items()})
        data["skipped"] = [{"id": i, "reason": r} for i, r in report.skipped]
        print_json(data)
        return
    _print_training(name, record, report)
    for stage in stages.values():
        hidden = "skipped" if stage.stage == "tuned" else "up_to_date"
        if stage.action != hidden:
            out.print(stage.summary, highlight=False)


def _print_training(name: str, record, report) -> None:
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
        m, v = record.metrics[sc.scheme], voted.get(sc.scheme)
        table.add_row(
            sc.scheme, str(len(sc.classes)), str(len(sc.left_out)),
            f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}",
            *([f"{v['accuracy']:.4f}", f"{v['macro_f1']:.4f}"] if v else []),
            f"{PAPER_ACCURACY[sc.scheme]:.3f}",
        )  # fmt: skip
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


ArchOpt = Annotated[
    str,
    typer.Option(help="default (ours, chosen by label match rates) or paper (reference)."),
]
TrainAutoencoderEpochsOpt = Annotated[
    int | None, typer.Option(min=1, help="At most this many epochs \\[default: 3].")
]
RetrainOpt = Annotated[
    bool, typer.Option("--retrain", help="Train anew and re-embed every product.")
]
ShowOpt = Annotated[
    Path | None,
    typer.Option(help="Write a PNG: catalog photos above, their reconstructions below."),
]


@train_app.command("autoencoder")
def train_autoencoder(
    arch: ArchOpt = "default",
    epochs: TrainAutoencoderEpochsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and weights.")] = 0,
    retrain: RetrainOpt = False,
    show: ShowOpt = None,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the catalog's autoencoder (if there is none, or --retrain) and store its vector
    for every product. A killed training resumes from its last epoch."""
    from ingest.autoencoder import DEFAULT_EPOCHS, reconstruction_sheet
    from ingest.plan import StagePlan
    from ingest.plan import train_autoencoder as run_training
    from searchctl.config import pick_collection

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        plan = StagePlan(
            autoencoder_arch=arch, autoencoder_epochs=epochs or DEFAULT_EPOCHS,
            retrain_autoencoder=retrain, seed=seed,
        )  # fmt: skip
        name = pick_collection(store, collection)
        with BarProgress(summaries=not as_json) as progress:
            report = run_training(_context(store, name, None, data_dir, plan, progress))
        if show:
            reconstruction_sheet(store, name, data_dir_or_default(data_dir), show, seed=seed)
    if as_json:
        print_json({"collection": name, **report.to_json()})
    if show:
        err.print(f"reconstructions: {show}")


def tag(
    tagger_min_products: TaggerMinProducts = None,
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
    from ingest.plan import StagePlan, retag
    from searchctl.config import pick_collection
    from searchctl.query import recorded_spec

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        spec = recorded_spec(store, name, weights)
        with BarProgress(summaries=False) as progress:
            plan = StagePlan(tagger_min_products=tagger_min_products)
            report, stages = retag(_context(store, name, spec, data_dir, plan, progress))
    if as_json:
        print_json({
            "collection": name, "tagged": report.tagged,
            **{stage: r.to_json() for stage, r in stages.items()},
            "skipped": [{"id": i, "reason": r} for i, r in report.skipped],
            "seconds": round(report.seconds, 1),
        })  # fmt: skip
        return
    out.print(f"Tagged {report.tagged:,} products of '{name}' in {report.seconds:.1f} s.")
    for stage in stages.values():
        if stage.stage != "tuned" or stage.action != "skipped":
            out.print(stage.summary, highlight=False)
    for pid, reason in report.skipped:
        err.print(f"  id {pid} not tagged: {reason}", highlight=False)

"""The ingest's stage plan: every stage, in its one order, behind one interface.

backbone (ingest.pipeline) -> colour -> autoencoder -> classifier -> tuned -> shopper_photos ->
colour_tags -> type_tags. `ingest` runs them all; `train classifier` and `tag` run the
classifier their way and then every stage after it (`run_stages(..., after="classifier")`),
so a retrained model never leaves a stage that reads it out of date. Each stage is
idempotent: it does only what the collection lacks, so an interrupted run is finished by the
next.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from classifier.label_tags import LABEL_TAGGERS, TaggedLabel, ensure_label_tags
from classifier.model import PHOTO_SIZE as FINETUNE_PHOTO_SIZE
from classifier.schemes import DEFAULT_MIN_CLASS_SIZE, check_kind
from classifier.train import (
    DEFAULT_KIND,
    TagReport,
    TrainReport,
    ensure_tags,
    has_classifier,
    missing_classifier,
    tag_collection,
    train_classifier,
)
from embedder.autoencoder import DEFAULT_ARCH, VECTOR_NAME, autoencoder_dir, get_config
from embedder.autoencoder import read_record as read_autoencoder_record
from embedder.collection import (
    check_embedder,
    collection_cutout,
    record_cutout_recipe,
)
from embedder.colour import COLOUR_DIM, COLOUR_VECTOR
from embedder.colour import INPUT_SIZE as COLOUR_INPUT_SIZE
from embedder.decoded import DecodedPhotos, Size, decoded_dir
from embedder.spec import EmbedderSpec
from ingest.autoencoder import DEFAULT_EPOCHS, ensure_autoencoder
from ingest.catalog import Catalog
from ingest.colour import ensure_colour
from ingest.pipeline import IngestReport, ingest_catalog, record_photo_detail, resolve_cutout
from ingest.shards import DONE, RUNNING, Shard, check_every_shard_done, mark
from ingest.shopper import STAGE as SHOPPER_STAGE
from ingest.shopper import ensure_shopper_photos
from ingest.sync import (
    CatalogChanges,
    apply_changes,
    check_deletions,
    log_changes,
    plan_changes,
)
from ingest.tuned import ensure_tuned
from qdrant.base import VectorNotAddable, VectorStore
from searchctl.reporting import NO_PROGRESS, Progress, StageReport, skipped


@dataclass
class StagePlan:
    """Which stages run after the backbone, and how."""

    colour: bool = True
    autoencoder: bool = True
    autoencoder_arch: str = DEFAULT_ARCH
    autoencoder_epochs: int = DEFAULT_EPOCHS
    retrain_autoencoder: bool = False
    classifier: bool = True  # the classifier, its tuned vectors and the label taggers
    classifier_kind: str = DEFAULT_KIND
    min_class_size: int = DEFAULT_MIN_CLASS_SIZE
    retag: bool = False  # the label taggers tag every product again (`searchctl tag`)
    tagger_min_products: int | None = None  # label taggers' classes (None: as trained, or 20)
    # products photographed as a shopper would (ingest.shopper; None: as made, or the default)
    shopper_photos: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_kind(self.classifier_kind)
        get_config(self.autoencoder_arch)

    def extra_vectors(self) -> dict[str, int]:
        """The named vectors a new collection is made with, filled in by later stages."""
        vectors = {COLOUR_VECTOR: COLOUR_DIM} if self.colour else {}
        if self.autoencoder:
            vectors[VECTOR_NAME] = get_config(self.autoencoder_arch).dim
        return vectors

    def photo_sizes(self) -> list[Size]:
        """The sizes the stages after the backbone read photos at (embedder.decoded)."""
        sizes: list[Size] = [(*COLOUR_INPUT_SIZE, "letterbox")] if self.colour else []
        if self.autoencoder:
            config = get_config(self.autoencoder_arch)
            sizes.append((config.input_height, config.input_width, config.fit))
        if self.classifier and self.classifier_kind == "finetune":
            sizes.append((*FINETUNE_PHOTO_SIZE, "letterbox"))
        return list(dict.fromkeys(sizes))


@dataclass
class StageContext:
    """What every stage reads."""

    store: VectorStore
    collection: str
    spec: EmbedderSpec
    data_dir: Path
    plan: StagePlan
    progress: Progress = NO_PROGRESS
    photos: DecodedPhotos | None = None  # run_stages makes one for its run if None
    shard: Shard | None = None  # a sharded ingest's per-photo stages: only its products


@dataclass(frozen=True)
class Stage:
    """One stage: `run` gives every point what the stage adds, if `wanted` by the plan."""

    name: str
    wanted: Callable[[StagePlan], bool]
    run: Callable[[StageContext], StageReport]


def _colour(c: StageContext) -> StageReport:
    only = c.shard.holds if c.shard else None
    return ensure_colour(c.store, c.collection, c.photos, only=only, progress=c.progress)


def _autoencoder(c: StageContext) -> StageReport:
    p = c.plan
    return ensure_autoencoder(
        c.store, c.collection, c.data_dir, c.photos, arch=p.autoencoder_arch,
        epochs=p.autoencoder_epochs, retrain=p.retrain_autoencoder, seed=p.seed,
        progress=c.progress,
    )  # fmt: skip


def _classifier(c: StageContext) -> StageReport:
    p = c.plan
    return ensure_tags(
        c.store, c.collection, c.spec, c.data_dir, p.classifier_kind, p.min_class_size,
        progress=c.progress, photos=c.photos,
    )  # fmt: skip


def _tuned(c: StageContext) -> StageReport:
    return ensure_tuned(c.store, c.collection, c.data_dir, c.photos, progress=c.progress)


def _shopper_photos(c: StageContext) -> StageReport:
    return ensure_shopper_photos(
        c.store, c.collection, c.spec, c.data_dir, count=c.plan.shopper_photos,
        seed=c.plan.seed, progress=c.progress,
    )  # fmt: skip


def _label_tags(c: StageContext, kind: TaggedLabel) -> StageReport:
    return ensure_label_tags(
        c.store, c.collection, c.data_dir, c.spec.vector_name, kind, retag=c.plan.retag,
        min_products=c.plan.tagger_min_products, progress=c.progress,
    )  # fmt: skip


def _classifier_wanted(plan: StagePlan) -> bool:
    return plan.classifier


STAGES: tuple[Stage, ...] = (
    Stage("colour", lambda plan: plan.colour, _colour),
    Stage("autoencoder", lambda plan: plan.autoencoder, _autoencoder),
    Stage("classifier", _classifier_wanted, _classifier),
    Stage("tuned", _classifier_wanted, _tuned),
    Stage(SHOPPER_STAGE, _classifier_wanted, _shopper_photos),
    *(
        Stage(kind.stage, _classifier_wanted, partial(_label_tags, kind=kind))
        for kind in LABEL_TAGGERS
    ),
)
STAGE_NAMES = ("backbone", *(s.name for s in STAGES))


def run_stages(
    context: StageContext, *, after: str | None = None, only: str | None = None
) -> dict[str, StageReport]:
    """Run the plan's stages in order (those after the stage `after`, or the one stage
    `only`); stage name -> its report. Each report goes to `progress.done` as its stage ends.
    A server collection made without a stage's named vector skips that stage, with the
    reason."""
    names = [s.name for s in STAGES]
    first = names.index(after) + 1 if after else 0
    reports: dict[str, StageReport] = {}
    if not context.store.count(context.collection):
        return reports
    with decoded_photos(context) as photos:
        context = replace(context, photos=photos)
        for stage in STAGES[first:]:
            _run_stage(context, stage, only, reports)
    # One index build for every stage's writes, not one a stage: vectors and payload writes
    # both leave points outside the embedded store's HNSW segments (until the build every
    # search of them is brute force, 15.2 ms against 6.5), and each build of the 44k
    # collection took 25-60 s of the main job.
    context.store.optimize(context.collection)
    return reports


@contextmanager
def decoded_photos(context: StageContext) -> Iterator[DecodedPhotos]:
    """The context's decoded photos, or new ones for the plan's sizes, removed after."""
    if context.photos is not None:
        yield context.photos
        return
    cutout = collection_cutout(context.store, context.collection)
    sizes = context.plan.photo_sizes()
    with DecodedPhotos(decoded_dir(context.data_dir), sizes, cutout=cutout) as photos:
        yield photos


def _run_stage(
    context: StageContext, stage: Stage, only: str | None, reports: dict[str, StageReport]
) -> None:
    if only is not None and stage.name != only:
        return
    if only is None and not stage.wanted(context.plan):
        return
    try:
        report = stage.run(context)
    except VectorNotAddable as exc:
        report = skipped(stage.name, str(exc), f"Stage {stage.name} skipped")
    finally:
        release_freed_memory()
    context.progress.done(report)
    reports[stage.name] = report


def release_freed_memory() -> None:
    """Hand what a stage freed back to the system: glibc keeps freed heap (TensorFlow's
    and numpy's buffers of a stage's batches) for reuse, so the next stages' peaks stacked
    on the last one's (bench/peak_memory.py)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: it keeps what it keeps
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class IngestResult:
    """What `ingest` did: the changes it found, the backbone's report, every later stage's."""

    changes: CatalogChanges
    backbone: IngestReport
    stages: dict[str, StageReport] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = self.backbone.to_json()
        data["changes"] = self.changes.to_json()
        data.update({name: None for name in STAGE_NAMES[1:]})
        data.update({name: report.to_json() for name, report in self.stages.items()})
        return data


def ingest(
    catalog: Catalog,
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    data_dir: Path,
    plan: StagePlan | None = None,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    cutout: bool | None = None,
    mixed_precision: bool = False,
    keep_missing: bool = False,
    allow_mass_delete: bool = False,
    progress: Progress = NO_PROGRESS,
    shard: Shard | None = None,
) -> IngestResult:
    """The main job, which also keeps a collection in step with its catalog: delete what the
    catalog lost (unless `keep_missing`), relabel what it relabelled, store what is new and
    embed again what has a new photo (the backbone), then run every stage of the plan, which
    gives those products their vectors and tags. Models are not retrained (`info` advises).
    A run that would delete over half the collection stops first (MassDelete) unless
    `allow_mass_delete`. With `shard`, all of this for the shard's products only, and of the
    stages only the per-photo ones (colour); the rest wait for an unsharded run after every
    shard is done (ingest.shards)."""
    plan = plan or StagePlan()
    extra_vectors = plan.extra_vectors()  # a new collection gets every vector, sharded or not
    if shard is not None:
        plan = replace(plan, autoencoder=False, classifier=False)
    cut = resolve_cutout(store, collection, cutout)  # before any write: a mismatch stops here
    if store.has_collection(collection):  # before any write: a wrong --backbone changes nothing
        check_embedder(store, collection, spec)
        if shard is None:
            check_every_shard_done(store, collection, "The ingest of the whole catalog")
        else:
            mark(store, collection, shard, RUNNING)
    changes = plan_changes(
        catalog, store, collection, limit=limit, keep_missing=keep_missing, shard=shard
    )
    check_deletions(changes, catalog, allow_mass_delete)
    if changes.any and not changes.new_collection:
        for line in changes.lines():
            progress.note(line)
    apply_changes(store, collection, catalog, changes)

    def make_embedder(s: EmbedderSpec):
        from embedder.model import Embedder

        progress.note(f"Loading {s.describe()}")
        return Embedder(s, mixed_precision=mixed_precision)

    # Each photo is decoded once: the backbone keeps it at the later stages' sizes.
    with DecodedPhotos(decoded_dir(data_dir), plan.photo_sizes(), cutout=cut) as photos:
        backbone = ingest_catalog(
            catalog, store, collection, spec, batch_size=batch_size, limit=limit,
            progress=progress, make_embedder=make_embedder, cutout=cutout,
            extra_vectors=extra_vectors, embed_again=changes.embed_again, photos=photos,
            shard=shard, optimize=False,  # indexed once, after the stages' writes (run_stages)
        )  # fmt: skip
        progress.done(backbone.stage_report())
        record_photo_detail(store, collection, catalog)  # a collection made before the record
        if not backbone.points_in_collection:
            raise NothingStored(
                f"nothing could be stored: none of the {backbone.selected:,} products with an "
                f"image has a usable one ({len(backbone.bad_images):,} unreadable, listed above)"
            )
        context = StageContext(store, collection, spec, data_dir, plan, progress, photos, shard)
        stages = run_stages(context)
    if shard is not None:
        mark(store, collection, shard, DONE)
    if changes.cutout_outdated and shard is None:  # a shard's run recuts its own photos only
        record_cutout_recipe(store, collection)
    if not changes.new_collection:
        log_changes(store, collection)
    store.optimize(collection)  # once the run's writes (the sync's too) reach a tenth
    return IngestResult(changes, backbone, stages)


class NothingStored(ValueError):
    """An ingest that could not store a single product."""


def retrain_classifier(
    context: StageContext,
    *,
    epochs: int | None = None,
    figures_dir: Path | None = None,
) -> tuple[TrainReport, dict[str, StageReport]]:
    """`searchctl train classifier`: train the plan's kind anew and tag every product, then
    bring every stage after it up to date (a type tagger that read the old tuned vectors is
    retrained at once)."""
    c, plan = context, context.plan
    check_every_shard_done(c.store, c.collection, "The classifier")
    with decoded_photos(context) as photos:  # the finetune kind's and the stages' after it
        report = train_classifier(
            c.store, c.collection, c.spec, c.data_dir, kind=plan.classifier_kind,
            epochs=epochs, seed=plan.seed, min_class_size=plan.min_class_size,
            figures_dir=figures_dir, progress=c.progress, photos=photos,
        )  # fmt: skip
        # Every payload was rewritten: run_stages rebuilds the index after the last stage.
        stages = run_stages(replace(context, photos=photos), after="classifier")
    return report, stages


def retag(context: StageContext) -> tuple[TagReport, dict[str, StageReport]]:
    """`searchctl tag`: every product tagged again by the saved classifier, then every stage
    after it, the label taggers tagging every product again."""
    c = replace(context, plan=replace(context.plan, retag=True))
    check_every_shard_done(c.store, c.collection, "Tagging")
    if not has_classifier(c.data_dir, c.collection):
        raise missing_classifier(c.store, c.collection, "`searchctl tag`")
    with decoded_photos(c) as photos:
        report = tag_collection(
            c.store, c.collection, c.spec, c.data_dir, progress=c.progress, photos=photos
        )
        return report, run_stages(replace(c, photos=photos), after="classifier")


def train_autoencoder(context: StageContext) -> StageReport:
    """`searchctl train autoencoder`: the autoencoder stage alone, trained anew with
    `retrain_autoencoder`; an existing model of another architecture needs that."""
    plan = context.plan
    check_every_shard_done(context.store, context.collection, "The autoencoder")
    existing = read_autoencoder_record(autoencoder_dir(context.data_dir, context.collection))
    arch = existing.autoencoder_config.arch if existing else plan.autoencoder_arch
    if existing and not plan.retrain_autoencoder and arch != plan.autoencoder_arch:
        raise ValueError(
            f"the autoencoder of {context.collection!r} is {arch!r}; add --retrain to replace "
            f"it with {plan.autoencoder_arch!r}"
        )
    return run_stages(context, only="autoencoder")["autoencoder"]

"""Ingest: catalog -> decoded images -> embedder -> store, with the three stages overlapping.

Decoding runs in a thread pool a few batches ahead, inference on the calling thread (TensorFlow
uses every core or the GPU), upserts in a writer thread. A point is written with its vectors and
payload in one operation, and the store is asked which ids it already holds before any work, so
an interrupted ingest (even kill -9) resumes where it stopped and a finished one is a no-op.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embedder.collection import (
    CATALOG_KEY,
    CUTOUT_KEY,
    CUTOUT_RECIPE_KEY,
    EMBEDDER_KEY,
    PHOTO_SHARPNESS_KEY,
    PHOTO_SIZE_KEY,
    EmbedderMismatch,
    check_embedder,
    collection_cutout,
    photo_detail,
)
from embedder.decoded import DecodedPhotos
from embedder.images import (
    CUTOUT_RECIPE,
    BadImage,
    embed_with_views,
    fit_image,
    prepare_photo,
    was_cut_out,
)
from embedder.spec import EmbedderSpec
from ingest.catalog import LABEL_FIELDS, TEXT_FIELD, Catalog, Product
from ingest.shards import RUNNING, Shard, mark, shard_marks
from ingest.sync import PHOTO_HASH_FIELD, catalog_payload, photo_hash
from qdrant import StoreError
from qdrant.base import INTEGER_INDEX, KEYWORD_INDEX, TEXT_INDEX, PointData, VectorStore
from searchctl.reporting import NO_PROGRESS, Action, Progress, StageReport

PREFETCH_BATCHES = 3
WRITE_QUEUE_BATCHES = 2
PAYLOAD_INDEXES = {
    **{f: KEYWORD_INDEX for f in LABEL_FIELDS},
    "year": INTEGER_INDEX,
    TEXT_FIELD: TEXT_INDEX,  # words of the name: `query --text`
}


@dataclass
class IngestReport:
    collection: str
    catalog_rows: int
    rows_without_image: list[int]
    images_without_row: list[str]
    bad_rows: list[tuple[int, str]]
    selected: int  # products with an image, after --limit
    already_stored: int
    embedded_again: int = 0  # stored products whose new photo replaced the point
    stored: int = 0
    bad_images: list[tuple[int, str]] = field(default_factory=list)
    points_in_collection: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    row_notes: list[tuple[int, str]] = field(default_factory=list)  # Catalog.notes

    @property
    def up_to_date(self) -> bool:
        return self.stored == 0 and not self.bad_images

    @property
    def images_per_second(self) -> float:
        work = self.seconds.get("pipeline", 0.0)
        return (self.stored + len(self.bad_images)) / work if work > 0 else 0.0

    def stage_report(self) -> StageReport:
        """The backbone stage's report: what was stored, and what of the catalog could not be."""
        if self.up_to_date:
            action = Action.UP_TO_DATE
            lines = [
                f"Nothing to do: all {self.selected:,} products with an image are already in "
                f"collection '{self.collection}' ({self.points_in_collection:,} points)."
            ]
        else:
            action = Action.EMBEDDED
            again = f", {self.embedded_again:,} of them a new photo" if self.embedded_again else ""
            lines = [
                f"Collection '{self.collection}': {self.points_in_collection:,} points (stored "
                f"{self.stored:,} now{again}, {self.already_stored:,} were already there)."
            ]
        lines.append(
            f"Catalog: {self.catalog_rows:,} rows; {len(self.rows_without_image):,} without an "
            f"image; {len(self.images_without_row):,} images without a row; "
            f"{len(self.bad_rows):,} unusable rows."
        )
        lines += [f"  styles.csv line {line}: {reason}" for line, reason in self.bad_rows]
        if self.row_notes:
            lines.append(f"{len(self.row_notes)} notes on styles.csv (the rows are stored):")
            lines += [f"  styles.csv line {line}: {note}" for line, note in self.row_notes]
        if self.bad_images:
            lines.append(
                f"{len(self.bad_images)} images could not be used (not stored; fix them and "
                "re-run ingest):"
            )
            lines += [f"  id {pid}: {reason}" for pid, reason in self.bad_images]
        if self.stored:
            s = self.seconds
            built = f", index build {s['optimize']:.1f} s" if "optimize" in s else ""
            lines.append(
                f"Time: {s['wall']:.1f} s wall; {self.images_per_second:.0f} images/s (model "
                f"{s.get('embed', 0):.1f} s, upserts {s.get('upsert', 0):.1f} s{built})."
            )
        return StageReport("backbone", action, "\n".join(lines), self.to_json())

    def to_json(self) -> dict:
        data = asdict(self)
        data["bad_images"] = [{"id": i, "reason": r} for i, r in self.bad_images]
        data["bad_rows"] = [{"line": n, "reason": r} for n, r in self.bad_rows]
        data["row_notes"] = [{"line": n, "note": r} for n, r in self.row_notes]
        data["images_per_second"] = round(self.images_per_second, 1)
        data["up_to_date"] = self.up_to_date
        return data


def create_collection(
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    catalog_root: Path,
    extra_vectors: dict[str, int] | None = None,
    cutout: bool = True,
    detail: dict | None = None,
    extra_metadata: dict | None = None,
) -> None:
    """A collection for `spec`'s vectors (and `extra_vectors` {name: dim}, filled in later),
    with the embedder record, the catalog directory, whether photos are cut out, the catalog
    photos' typical size and sharpness (`detail`: embedder.collection.photo_detail),
    `extra_metadata`, and label indexes."""
    store.create_collection(
        collection,
        {spec.vector_name: spec.dim, **(extra_vectors or {})},
        {
            EMBEDDER_KEY: spec.to_record(),
            CATALOG_KEY: str(catalog_root.resolve()),
            CUTOUT_KEY: cutout,
            CUTOUT_RECIPE_KEY: CUTOUT_RECIPE if cutout else None,
            **(detail or {}),
            **(extra_metadata or {}),
        },
        PAYLOAD_INDEXES,
    )


def resolve_cutout(store: VectorStore, collection: str, asked: bool | None) -> bool:
    """A new collection cuts out its photos unless asked not to; an existing one keeps what
    it recorded, so that all its vectors see the same pixels."""
    if not store.has_collection(collection):
        return True if asked is None else asked
    recorded = collection_cutout(store, collection)
    if asked is not None and asked != recorded:
        raise EmbedderMismatch(
            f"collection {collection!r} was built with its photos "
            f"{'cut out' if recorded else 'as they are'}; this run asks for "
            f"{'--cutout' if asked else '--no-cutout'}. Leave the option out, or ingest into "
            "another --collection."
        )
    return recorded


def record_photo_detail(store: VectorStore, collection: str, catalog: Catalog) -> None:
    """Record the catalog photos' typical size and sharpness in a collection made before
    the record of either (query photos are brought to them: embedder.images.match_detail)."""
    metadata = store.get_metadata(collection)
    missing = [key for key in (PHOTO_SIZE_KEY, PHOTO_SHARPNESS_KEY) if metadata.get(key) is None]
    if missing:
        detail = photo_detail([p.image for p in catalog.with_image])
        found = {key: detail[key] for key in missing if detail[key] is not None}
        if found:
            store.set_metadata(collection, {**metadata, **found})


def product_payload(product: Product, catalog_root: Path) -> dict:
    """A point's payload as the backbone stage writes it: what the catalog says of the
    product, and its photo's hash (what the next ingest compares to see a new photo)."""
    return {
        **catalog_payload(product, catalog_root),
        PHOTO_HASH_FIELD: photo_hash(product.image) if product.image else None,
    }


@dataclass
class _Batch:
    products: list[Product]
    images: np.ndarray  # uint8 pixels of the good ones
    good: list[Product]
    bad: list[tuple[int, str]]
    payloads: list[dict] = field(default_factory=list)  # of the good ones
    cut_out: list[bool] = field(default_factory=list)  # of the good ones: embed_with_views


def _decode(
    products: list[Product],
    spec: EmbedderSpec,
    cutout: bool,
    root: Path,
    photos: DecodedPhotos | None,
) -> _Batch:
    arrays, good, bad, payloads, cut_out = [], [], [], [], []
    for product in products:
        try:
            payload = product_payload(product, root)  # the hash first: a photo replaced
            photo = prepare_photo(product.image, cutout)  # now is seen next
            arrays.append(fit_image(photo, spec.input_height, spec.input_width))
            good.append(product)
            payloads.append(payload)
            cut_out.append(was_cut_out(photo))
            if photos is not None:
                photos.keep(product.id, photo)  # the later stages read it, not the file
        except BadImage as exc:
            bad.append((product.id, str(exc)))
            if photos is not None:
                photos.keep_bad(product.id, str(exc))
    shape = (0, spec.input_height, spec.input_width, 3)
    images = np.stack(arrays) if arrays else np.zeros(shape, np.uint8)
    return _Batch(products, images, good, bad, payloads, cut_out)


class _Writer:
    """Upserts in a background thread; a failure surfaces on the next put or at close."""

    def __init__(self, store: VectorStore, collection: str):
        self.store, self.collection = store, collection
        self.queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="searchctl-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (points := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain without writing after a failure
            start = time.perf_counter()
            try:
                self.store.upsert(self.collection, points)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
            self.seconds += time.perf_counter() - start

    def put(self, points: list[PointData]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(points)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _chunks(items: Sequence[Product], size: int) -> Iterator[list[Product]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def ingest_catalog(
    catalog: Catalog,
    store: VectorStore,
    collection: str,
    spec: EmbedderSpec,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    decode_workers: int = 2,
    optimize: bool = True,
    progress: Progress = NO_PROGRESS,
    make_embedder: Callable[[EmbedderSpec], object] | None = None,
    extra_vectors: dict[str, int] | None = None,
    cutout: bool | None = None,
    embed_again: Collection[int] = (),
    photos: DecodedPhotos | None = None,
    shard: Shard | None = None,
) -> IngestReport:
    """Store every product of `catalog` that the collection lacks, and embed again the stored
    ones in `embed_again` (their photo changed: the point is replaced); returns what happened.

    `make_embedder(spec)` (default: embedder.model.Embedder) is called only when there is work.
    `extra_vectors` {name: dim}: named vectors a new collection gets for later stages.
    `cutout`: whether photos are made studio shots first (see resolve_cutout).
    `progress` hears of a "backbone" phase of the products to embed, advanced after each batch.
    `photos`: where each decoded photo is kept for the later stages (embedder.decoded).
    `shard`: only the shard's products (ingest.shards); a new collection is made for all, and
    records the shard as running.
    """
    wall = time.perf_counter()
    selected = catalog.with_image[:limit] if limit is not None else catalog.with_image
    if shard is not None:
        selected = [p for p in selected if shard.holds(p.id)]
    exists = store.has_collection(collection)
    if exists:
        check_embedder(store, collection, spec)
    cutout = resolve_cutout(store, collection, cutout)
    stored_ids = store.ids(collection) if exists else set()
    again = set(embed_again) & stored_ids
    todo = [p for p in catalog.with_image if p.id in again]
    new = [p for p in selected if p.id not in stored_ids]
    todo += new
    report = IngestReport(
        collection=collection,
        catalog_rows=len(catalog.products),
        rows_without_image=catalog.without_image,
        images_without_row=catalog.orphan_images,
        bad_rows=catalog.bad_rows,
        selected=len(selected),
        already_stored=len(selected) - len(new),
        embedded_again=len(again),
        row_notes=catalog.notes,
    )
    embedder = None
    if todo:
        # Built before anything is written: missing weights stop the run with nothing done.
        if make_embedder is None:
            from embedder.model import Embedder as make_embedder
        embedder = make_embedder(spec)
    if not exists:
        detail = photo_detail([p.image for p in catalog.with_image])
        marks = shard_marks(shard, RUNNING) if shard is not None else None
        try:
            create_collection(
                store, collection, spec, catalog.root, extra_vectors, cutout, detail, marks
            )
        except StoreError:
            if not store.has_collection(collection):
                raise
            check_embedder(store, collection, spec)  # another shard's run made it first
            if shard is not None:
                mark(store, collection, shard, RUNNING)
    progress.phase("backbone", len(todo))
    if todo:
        _run_pipeline(
            todo,
            catalog.root,
            spec,
            cutout,
            embedder,
            store,
            collection,
            report,
            batch_size,
            decode_workers,
            progress,
            photos,
        )
        if optimize and report.stored:
            start = time.perf_counter()
            store.optimize(collection)
            report.seconds["optimize"] = time.perf_counter() - start
    report.points_in_collection = store.count(collection)
    report.seconds["wall"] = time.perf_counter() - wall
    return report


def _run_pipeline(
    todo,
    root,
    spec,
    cutout,
    embedder,
    store,
    collection,
    report,
    batch_size,
    decode_workers,
    progress,
    photos,
) -> None:
    start = time.perf_counter()
    embed_seconds = 0.0
    batches = _chunks(todo, batch_size)
    writer = _Writer(store, collection)
    try:
        with ThreadPoolExecutor(decode_workers, thread_name_prefix="searchctl-decode") as pool:
            first = _take(batches, PREFETCH_BATCHES)
            pending = deque(pool.submit(_decode, b, spec, cutout, root, photos) for b in first)
            while pending:
                batch = pending.popleft().result()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(pool.submit(_decode, nxt, spec, cutout, root, photos))
                report.bad_images.extend(batch.bad)
                if batch.good:
                    t0 = time.perf_counter()
                    vectors = embed_with_views(embedder.embed, batch.images, batch.cut_out)
                    embed_seconds += time.perf_counter() - t0
                    writer.put(
                        [
                            PointData(p.id, {spec.vector_name: v}, payload)
                            for p, v, payload in zip(batch.good, vectors, batch.payloads)
                        ]
                    )
                    report.stored += len(batch.good)
                progress.advance(len(batch.products))
    finally:
        # Whatever was handed to the writer is written, even on Ctrl-C.
        writer.close()
        report.seconds["embed"] = embed_seconds
        report.seconds["upsert"] = writer.seconds
        report.seconds["pipeline"] = time.perf_counter() - start


def _take(it: Iterator, n: int) -> list:
    return [x for _, x in zip(range(n), it)]

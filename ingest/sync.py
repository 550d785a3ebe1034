"""Keep a collection in step with its catalog: what changed since the last ingest, and the
writes that need no model.

`plan_changes` compares the catalog with the collection: new products, products gone from
the catalog (their row or their photo), rows whose labels changed, and photos whose bytes
changed (a SHA-256 of the file, kept in each point's payload). `apply_changes` deletes and
relabels; new and re-photographed products are then embedded by the backbone stage like any
product the collection lacks (an upsert replaces the whole point, so every later stage sees
it as new and makes its vectors and tags again). Every step is idempotent, so a run killed
half-way is finished by the next: the plan of that run is what is still left to do.

The collection's metadata keeps a log of the changes (`CHANGES_KEY`), which `retrain_advice`
compares with the models' training times.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from embedder.collection import CATALOG_KEY, needs_recut
from ingest.catalog import Catalog, Product
from ingest.shards import Shard
from qdrant.base import VectorStore

PHOTO_HASH_FIELD = "image_sha256"  # in each point's payload: the SHA-256 of its photo file
CHANGES_KEY = "catalog_changes"  # collection metadata: [{"at": epoch s, "changed": n}, ...]
PENDING_KEY = "catalog_sync"  # collection metadata: the ids a sync under way changes
RETRAIN_SHARE = 0.10  # advise a retrain once this share of the products changed since
MASS_DELETE_SHARE, MASS_DELETE_MIN = 0.5, 10  # more needs --allow-mass-delete
LOG_MERGE_SECONDS = 3600  # one change-log entry an hour at most
SHOWN_IDS = 10  # ids listed per kind of change in the plan for a person
HASH_WORKERS = 4  # file reads overlap (hashlib releases the GIL)
BACKFILL_CHUNK = 2000  # hashes recorded per store call


def photo_hash(path: Path) -> str | None:
    """The SHA-256 of a photo file's bytes; None when it cannot be read (ingest reports it)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def photo_hashes(paths: Mapping[int, Path], workers: int = HASH_WORKERS) -> dict[int, str | None]:
    with ThreadPoolExecutor(workers, thread_name_prefix="searchctl-hash") as pool:
        return dict(zip(paths, pool.map(photo_hash, paths.values())))


def _off_white(path: Path) -> bool:
    """Whether a photo's background is off white (False when it cannot be read: ingest
    reports it)."""
    from embedder.images import BadImage, is_off_white, open_image

    try:
        return is_off_white(open_image(path))
    except BadImage:
        return False


def photos_off_white(paths: Mapping[int, Path], workers: int = HASH_WORKERS) -> dict[int, bool]:
    """Which of the photos have a background off white (embedder.images.is_off_white)."""
    with ThreadPoolExecutor(workers, thread_name_prefix="searchctl-recut") as pool:
        return dict(zip(paths, pool.map(_off_white, paths.values())))


def catalog_payload(product: Product, catalog_root: Path) -> dict:
    """What the catalog says of a product: every styles.csv column, plus the image path
    relative to the catalog, or absolute outside it (the photo's hash is added where the
    photo is read)."""
    payload = dict(product.payload)
    if product.image is not None:
        image = product.image
        # A photo outside the catalog (put through the API: ingest.products) is kept whole.
        inside = image.is_relative_to(catalog_root)
        payload["image"] = (image.relative_to(catalog_root) if inside else image).as_posix()
    return payload


@dataclass
class CatalogChanges:
    """What an ingest changes in a collection to bring it in step with the catalog."""

    collection: str
    add: list[int] = field(default_factory=list)  # in the catalog, not in the collection
    delete: list[int] = field(default_factory=list)  # gone from the catalog (row or photo)
    relabel: dict[int, dict] = field(default_factory=dict)  # id -> the fields that changed
    rephoto: list[int] = field(default_factory=list)  # photo bytes changed: embedded again
    # photos off white, cut out by another version of the cut-out: cut out and embedded again
    recut: list[int] = field(default_factory=list)
    cutout_outdated: bool = False  # the collection's cut-out is of another version: recut
    kept_missing: list[int] = field(default_factory=list)  # gone, kept by --keep-missing
    kept_unreadable: list[int] = field(default_factory=list)  # row unreadable now: kept as is
    hash_backfill: dict[int, str] = field(default_factory=dict)  # stored before hashes were
    unchanged: int = 0
    stored: int = 0  # points in the collection before the run
    catalog_moved: tuple[str, str] | None = None  # (recorded root, this catalog's root)
    new_collection: bool = False
    seconds: float = 0.0

    @property
    def changed_ids(self) -> set[int]:
        return {*self.add, *self.delete, *self.relabel, *self.rephoto}

    @property
    def stored_changed_ids(self) -> set[int]:
        """The stored products this changes (what is added is counted once it is stored)."""
        return {*self.delete, *self.relabel, *self.rephoto}

    @property
    def any(self) -> bool:
        return bool(self.changed_ids or self.recut or self.hash_backfill or self.catalog_moved)

    @property
    def embed_again(self) -> list[int]:
        """The stored products the backbone embeds again: new photos, and those cut again."""
        return sorted({*self.rephoto, *self.recut})

    def to_json(self) -> dict:
        return {
            "collection": self.collection,
            "new_collection": self.new_collection,
            "counts": {
                "add": len(self.add),
                "delete": len(self.delete),
                "relabel": len(self.relabel),
                "rephoto": len(self.rephoto),
                "recut": len(self.recut),
                "kept_missing": len(self.kept_missing),
                "kept_unreadable": len(self.kept_unreadable),
                "hash_backfill": len(self.hash_backfill),
                "unchanged": self.unchanged,
            },
            "add": self.add,
            "delete": self.delete,
            "relabel": {str(i): fields for i, fields in self.relabel.items()},
            "rephoto": self.rephoto,
            "recut": self.recut,
            "kept_missing": self.kept_missing,
            "kept_unreadable": self.kept_unreadable,
            "catalog_moved": list(self.catalog_moved) if self.catalog_moved else None,
            "seconds": round(self.seconds, 2),
        }

    def lines(self) -> list[str]:
        """The plan for a person: counts, and the first ids of each kind of change."""

        def ids(values) -> str:
            shown = ", ".join(str(i) for i in list(values)[:SHOWN_IDS])
            return shown + (", ..." if len(values) > SHOWN_IDS else "")

        if self.new_collection:
            return [f"New collection '{self.collection}': {len(self.add):,} products to store."]
        lines = [f"Collection '{self.collection}' against the catalog ({self.seconds:.1f} s):"]
        rows = [
            ("add", self.add, "not stored (new, or a photo no run could use): embedded"),
            ("delete", self.delete, "gone from the catalog (row or photo): deleted"),
            ("relabel", self.relabel, "labels changed: payload rewritten, nothing embedded"),
            ("rephoto", self.rephoto, "photo changed: every vector and tag made again"),
            ("recut", self.recut, "off white, a new cut-out: every vector and tag made again"),
            ("keep", self.kept_missing, "gone from the catalog, kept (--keep-missing)"),
            ("keep", self.kept_unreadable, "row unreadable now (see above): kept as stored"),
        ]
        for name, values, what in rows:
            if values:
                lines.append(f"  {name:8} {len(values):>7,}  {what}: {ids(values)}")
        for pid, fields in list(self.relabel.items())[:3]:
            shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
            lines.append(f"           id {pid}: {shown}")
        lines.append(f"  {'same':8} {self.unchanged:>7,}  unchanged")
        if self.hash_backfill:
            lines.append(
                f"  {len(self.hash_backfill):,} products were stored without a photo hash (an "
                "older searchctl): their photos' hashes are recorded now, and a photo changed "
                "before this run is not seen (`searchctl ingest` into a new collection is)."
            )
        if self.catalog_moved:
            old, new = self.catalog_moved
            lines.append(f"  the catalog moved: {old} -> {new} (recorded with the collection)")
        if not self.any:
            lines.append("  Nothing to change.")
        return lines


def plan_changes(
    catalog: Catalog,
    store: VectorStore,
    collection: str,
    *,
    limit: int | None = None,
    keep_missing: bool = False,
    shard: Shard | None = None,
) -> CatalogChanges:
    """What bringing `collection` in step with `catalog` changes; writes nothing.

    `limit` caps the products added (the first N with a photo), never what is deleted: a
    product is deleted only when its row or its photo is gone from the catalog, and a row that
    could not be read but still shows its id keeps its product. With `shard`, only the
    shard's products, stored or in the catalog, are looked at. When the collection's photos
    went through another version of the cut-out (embedder.collection.needs_recut), the
    stored products whose photo is off white (the cut-out's to cut) are embedded again.
    """
    t0 = time.perf_counter()
    selected = catalog.with_image[:limit] if limit is not None else catalog.with_image
    in_shard = shard.holds if shard else (lambda _pid: True)
    selected = [p for p in selected if in_shard(p.id)]
    changes = CatalogChanges(collection)
    if not store.has_collection(collection):
        changes.new_collection = True
        changes.add = [p.id for p in selected]
        changes.seconds = time.perf_counter() - t0
        return changes
    recorded_root = store.get_metadata(collection).get(CATALOG_KEY)
    this_root = str(catalog.root.resolve())
    if recorded_root and recorded_root != this_root:
        changes.catalog_moved = (recorded_root, this_root)
    stored = {p.id: p.payload or {} for p in store.iter_points(collection) if in_shard(p.id)}
    changes.stored = len(stored)
    in_catalog = {p.id: p for p in catalog.with_image if in_shard(p.id)}
    for pid in sorted(stored.keys() - in_catalog.keys()):
        if pid in catalog.bad_row_ids:
            changes.kept_unreadable.append(pid)
        else:
            (changes.kept_missing if keep_missing else changes.delete).append(pid)
    changes.add = [p.id for p in selected if p.id not in stored]
    kept = sorted(stored.keys() & in_catalog.keys())
    hashes = photo_hashes({pid: in_catalog[pid].image for pid in kept})
    for pid in kept:
        payload = stored[pid]
        new = catalog_payload(in_catalog[pid], catalog.root)
        fields = {k: v for k, v in new.items() if payload.get(k) != v}
        if fields:
            changes.relabel[pid] = fields
        recorded, now = payload.get(PHOTO_HASH_FIELD), hashes[pid]
        if now is None:
            continue  # unreadable now: the stored product stays as it is
        if recorded is None:
            changes.hash_backfill[pid] = now
        elif recorded != now:
            changes.rephoto.append(pid)
    changes.cutout_outdated = needs_recut(store, collection)
    if changes.cutout_outdated:
        again = set(changes.rephoto)
        photos = {pid: in_catalog[pid].image for pid in kept if pid not in again}
        changes.recut = sorted(pid for pid, off in photos_off_white(photos).items() if off)
    touched = set(changes.relabel) | set(changes.rephoto) | set(changes.recut)
    changes.unchanged = len(kept) - len(touched)
    changes.seconds = time.perf_counter() - t0
    return changes


class MassDelete(ValueError):
    """A sync that would delete most of a collection: likely the wrong catalog."""


def check_deletions(changes: CatalogChanges, catalog: Catalog, allowed: bool) -> None:
    """Refuse to delete more than MASS_DELETE_SHARE of a collection unless `allowed`: a
    catalog read from the wrong directory, or half copied, would otherwise empty it."""
    stored = changes.stored
    share = len(changes.delete) / max(stored, 1)
    if allowed or len(changes.delete) <= MASS_DELETE_MIN or share <= MASS_DELETE_SHARE:
        return
    moved = f" (it was ingested from {changes.catalog_moved[0]})" if changes.catalog_moved else ""
    raise MassDelete(
        f"this run would delete {len(changes.delete):,} of the {stored:,} products of "
        f"{changes.collection!r} ({share:.0%}): they are not in the catalog at {catalog.root}"
        f"{moved}. Check it with --plan; --keep-missing keeps them; --allow-mass-delete "
        "deletes them. Nothing was changed."
    )


def apply_changes(
    store: VectorStore, collection: str, catalog: Catalog, changes: CatalogChanges
) -> None:
    """The writes that need no model: the pending log first (a killed run's changes are
    counted by the next), the catalog's new root, deletions, relabels and recorded hashes.
    New and re-photographed products are left to the backbone stage (`changes.add`,
    `changes.rephoto`)."""
    if changes.new_collection or not changes.any:
        return
    metadata = store.get_metadata(collection)
    pending = metadata.get(PENDING_KEY, {})
    metadata[PENDING_KEY] = {
        "ids": sorted(set(pending.get("ids", [])) | changes.stored_changed_ids),
        "add": sorted(set(pending.get("add", [])) | set(changes.add)),
    }
    if changes.catalog_moved:
        metadata[CATALOG_KEY] = changes.catalog_moved[1]
    store.set_metadata(collection, metadata)
    store.delete(collection, changes.delete)
    rephoto = set(changes.rephoto)  # embedded again with their new labels by the backbone
    relabel = {pid: f for pid, f in changes.relabel.items() if pid not in rephoto}
    store.set_payloads(collection, relabel)
    backfill = list(changes.hash_backfill.items())
    for start in range(0, len(backfill), BACKFILL_CHUNK):
        chunk = backfill[start : start + BACKFILL_CHUNK]
        store.set_payloads(collection, {pid: {PHOTO_HASH_FIELD: h} for pid, h in chunk})


def log_changes(store: VectorStore, collection: str) -> None:
    """After a sync's every stage: its changes (and a killed run's before it) join the log:
    the products deleted, relabelled or re-photographed, and those added that are stored."""
    metadata = store.get_metadata(collection)
    pending = metadata.pop(PENDING_KEY, None)
    if pending is None:
        return
    added = set(pending["add"]) & store.ids(collection)
    _append_changes(store, collection, metadata, len(pending["ids"]) + len(added))


def record_changes(store: VectorStore, collection: str, count: int) -> None:
    """`count` products added, replaced or deleted one by one (ingest.products) join the log."""
    _append_changes(store, collection, store.get_metadata(collection), count)


def _append_changes(store: VectorStore, collection: str, metadata: dict, count: int) -> None:
    """Changes within LOG_MERGE_SECONDS of the last entry join it (dated now, so a model
    trained meanwhile counts them too: advice errs towards a retrain), which keeps the log
    short however many writes the API takes."""
    if count:
        log, now = list(metadata.get(CHANGES_KEY, [])), time.time()
        if log and now - log[-1]["at"] < LOG_MERGE_SECONDS:
            log[-1] = {"at": now, "changed": log[-1]["changed"] + count}
        else:
            log.append({"at": now, "changed": count})
        metadata[CHANGES_KEY] = log
    store.set_metadata(collection, metadata)


@dataclass(frozen=True)
class RetrainAdvice:
    model: str
    changed: int  # products added, deleted, relabelled or re-photographed since it was trained
    share: float
    command: str

    def line(self) -> str:
        return (
            f"{self.changed:,} products ({self.share:.0%}) changed since the {self.model} was "
            f"trained: retrain it with `{self.command}`"
        )


def retrain_advice(
    metadata: Mapping, points: int, trained_at: Mapping[str, tuple[float, str]]
) -> list[RetrainAdvice]:
    """Models whose catalog has changed by `RETRAIN_SHARE` or more since they were trained.
    `trained_at`: model -> (its training time, epoch seconds; the command that retrains it)."""
    log = metadata.get(CHANGES_KEY, [])
    advice = []
    for model, (when, command) in trained_at.items():
        changed = sum(entry["changed"] for entry in log if entry["at"] > when)
        share = changed / max(points, 1)
        if changed and share >= RETRAIN_SHARE:
            advice.append(RetrainAdvice(model, changed, share, command))
    return advice


def _epoch(created: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError):
        return None


def collection_retrain_advice(
    store: VectorStore, collection: str, data_dir: Path
) -> list[RetrainAdvice]:
    """retrain_advice for the collection's autoencoder and classifier, as their records say
    when they were trained."""
    from classifier.tagger import ClassifierMissing, tagger_dir
    from classifier.tagger import read_record as read_classifier
    from embedder.autoencoder import autoencoder_dir
    from embedder.autoencoder import read_record as read_autoencoder

    trained: dict[str, tuple[float, str]] = {}
    autoencoder = read_autoencoder(autoencoder_dir(data_dir, collection))
    if autoencoder is not None and (when := _epoch(autoencoder.created)) is not None:
        trained["autoencoder"] = (when, f"searchctl train autoencoder --retrain -c {collection}")
    try:
        classifier = read_classifier(tagger_dir(data_dir, collection))
    except ClassifierMissing:
        classifier = None
    if classifier is not None and (when := _epoch(classifier.created)) is not None:
        kind = f" --kind {classifier.kind}" if classifier.kind != "vectors" else ""
        trained["classifier"] = (when, f"searchctl train classifier{kind} -c {collection}")
    return retrain_advice(store.get_metadata(collection), store.count(collection), trained)

"""Read a catalog in the Kaggle layout: styles.csv and images/<id>.jpg.

Every row is kept: the last column (productDisplayName) may contain unquoted commas, so a
row with too many fields has its tail rejoined rather than being dropped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

STYLES_FILE = "styles.csv"
IMAGES_DIR = "images"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
INT_COLUMNS = ("id", "year")
TEXT_FIELD = "productDisplayName"  # the product's name: full-text indexed
# Label fields: keyword-indexed in the store and shown in query results.
LABEL_FIELDS = (
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "usage",
)


class CatalogError(Exception):
    """The catalog as a whole cannot be read (no styles.csv, no id column...)."""


@dataclass(frozen=True)
class Product:
    id: int
    payload: dict  # every styles.csv column, typed; empty fields are None
    image: Path | None


@dataclass
class Catalog:
    root: Path
    columns: list[str]
    products: list[Product]  # rows in file order, each with its image or None
    orphan_images: list[str] = field(default_factory=list)  # image files with no row
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    # Rows kept with a value mended or left empty, and columns the catalog lacks: (line, what)
    notes: list[tuple[int, str]] = field(default_factory=list)
    # Ids read from unusable rows: a product whose row broke is not taken for one deleted
    bad_row_ids: set[int] = field(default_factory=set)

    @property
    def with_image(self) -> list[Product]:
        return [p for p in self.products if p.image is not None]

    @property
    def without_image(self) -> list[int]:
        return [p.id for p in self.products if p.image is None]

    def by_id(self) -> dict[int, Product]:
        return {p.id: p for p in self.products}


class _NotANumber(ValueError):
    pass


def _typed(column: str, value: str):
    value = value.strip()
    if value == "":
        return None
    if column in INT_COLUMNS:
        try:
            return int(float(value)) if column == "year" else int(value)
        except ValueError:
            raise _NotANumber(column, value) from None
    return value


def _decoded_lines(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """styles.csv as text lines: UTF-8, and a line that is not read as Windows-1252 (what
    spreadsheets on Windows write; it maps every byte), with a note for each such line."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines, notes = [], []
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("cp1252", errors="replace"))
            notes.append((number, "not UTF-8: read as Windows-1252 (Latin-1)"))
    return lines, notes


def read_styles(
    path: Path,
) -> tuple[list[str], list[dict], list[tuple[int, str]], list[tuple[int, str]], set[int]]:
    """Parse styles.csv: columns, typed rows, (line, reason) for each unusable row, (line,
    note) for each row kept with a value left empty or read another way, and the ids that
    unusable rows still show."""
    rows: list[dict] = []
    bad: list[tuple[int, str]] = []
    bad_ids: set[int] = set()
    seen: set[int] = set()
    lines, notes = _decoded_lines(path)
    reader = csv.reader(lines)
    try:
        columns = [c.strip() for c in next(reader)]
    except StopIteration:
        raise CatalogError(f"{path} is empty") from None
    if "id" not in columns:
        raise CatalogError(f"{path} has no 'id' column (columns: {', '.join(columns)})")
    missing = [c for c in LABEL_FIELDS if c not in columns]
    if missing:
        notes.append((1, f"no column {', '.join(missing)}: no labels, tags or match rates of it"))
    n = len(columns)
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) > n:
            # Unquoted commas in the last column: rejoin the tail.
            fields = fields[: n - 1] + [",".join(fields[n - 1 :])]
        elif len(fields) < n:
            bad.append((line, f"{len(fields)} fields, expected {n}: {','.join(fields)[:80]!r}"))
            id_at = columns.index("id")
            if id_at < len(fields) and fields[id_at].strip().isdigit():
                bad_ids.add(int(fields[id_at]))
            continue
        row = {}
        for column, value in zip(columns, fields):
            try:
                row[column] = _typed(column, value)
            except _NotANumber:
                if column == "id":
                    bad.append((line, f"id is not an integer: {value.strip()!r}"))
                    break
                notes.append((line, f"{column} {value.strip()!r} is not a number: stored empty"))
                row[column] = None
        else:
            pid = row["id"]
            if pid is None:
                bad.append((line, "no id"))
            elif pid < 0:
                bad.append((line, f"id {pid} is negative: ids are whole numbers from 0"))
            elif pid in seen:
                bad.append((line, f"duplicate id {pid}: the first row is kept"))
            else:
                seen.add(pid)
                rows.append(row)
    return columns, rows, bad, notes, bad_ids


def _image_files(images_dir: Path) -> dict[str, Path]:
    """Image stem -> path, for every image file directly inside images_dir."""
    found: dict[str, Path] = {}
    if not images_dir.is_dir():
        return found
    with os.scandir(images_dir) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS and stem not in found:
                found[stem] = Path(entry.path)
    return found


def read_catalog(root: str | Path) -> Catalog:
    """Read styles.csv and join it to images/<id>.* by id."""
    root = Path(root).expanduser()
    styles = root / STYLES_FILE
    if not root.is_dir():
        raise CatalogError(f"catalog directory not found: {root}")
    if not styles.is_file():
        raise CatalogError(f"no {STYLES_FILE} in {root} (expected {STYLES_FILE} and {IMAGES_DIR}/)")
    if not (root / IMAGES_DIR).is_dir():
        raise CatalogError(
            f"no {IMAGES_DIR}/ folder in {root} (expected {STYLES_FILE} and {IMAGES_DIR}/<id>.jpg)"
        )
    columns, rows, bad_rows, notes, bad_ids = read_styles(styles)
    if not rows:
        first = f" (line {bad_rows[0][0]}: {bad_rows[0][1]})" if bad_rows else ""
        raise CatalogError(f"{styles} has no usable product rows{first}")
    images = _image_files(root / IMAGES_DIR)
    products = [Product(r["id"], r, images.pop(str(r["id"]), None)) for r in rows]
    if not any(p.image for p in products):
        raise CatalogError(
            f"none of the {len(products):,} products of {styles} has an image in "
            f"{root / IMAGES_DIR} (images are named <id>.jpg, e.g. {products[0].id}.jpg)"
        )
    orphans = sorted(images)
    return Catalog(root, columns, products, orphans, bad_rows, sorted(notes), bad_ids)

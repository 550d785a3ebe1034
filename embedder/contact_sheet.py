"""Contact sheets: a row of product tiles with captions, written as PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from embedder.images import BadImage, letterbox, open_image

TILE_W, TILE_H = 120, 160
CAPTION_H = 42
PAD = 6


@dataclass
class Tile:
    image: object  # path, bytes, uint8 HxWx3 array, or None (drawn as a grey placeholder)
    lines: list[str]


def _tile_pixels(source) -> Image.Image:
    try:
        if source is None:
            raise BadImage("no image")
        img = Image.fromarray(source) if isinstance(source, np.ndarray) else open_image(source)
        return Image.fromarray(letterbox(img, TILE_H, TILE_W))
    except BadImage:
        return Image.new("RGB", (TILE_W, TILE_H), (200, 200, 200))


def write_contact_sheet(tiles: list[Tile], out: Path, columns: int | None = None) -> Path:
    columns = columns or len(tiles)
    rows = (len(tiles) + columns - 1) // columns
    cell_w, cell_h = TILE_W + PAD, TILE_H + CAPTION_H + PAD
    sheet = Image.new("RGB", (columns * cell_w + PAD, rows * cell_h + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        x = PAD + (i % columns) * cell_w
        y = PAD + (i // columns) * cell_h
        sheet.paste(_tile_pixels(tile.image), (x, y))
        draw.rectangle([x, y, x + TILE_W - 1, y + TILE_H - 1], outline=(180, 180, 180))
        for j, line in enumerate(tile.lines[:3]):
            draw.text((x + 2, y + TILE_H + 2 + 13 * j), line[:20], fill=(0, 0, 0), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out

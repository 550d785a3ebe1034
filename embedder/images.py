"""Decode any image a catalog or a shopper may hand us into a fixed-size RGB array.

Greyscale, CMYK, palette and alpha images become RGB (transparency composited on white),
EXIF rotation is applied, and the picture is resized keeping its aspect ratio, then padded
with white (the catalog's studio background) to the model's input size.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from qdrant.base import unit_rows
from searchctl.reporting import NO_PROGRESS, Progress

WHITE = (255, 255, 255)
STUDIO_BACKGROUND = 225  # a border this light in every channel: a studio shot, left as is
CUTOUT_SIDE = 640  # photos are shrunk to this (longest side) before the cut-out
# A JPEG is decoded at the smallest of 1/2, 1/4, 1/8 of its size that keeps this on each side
# (libjpeg's draft mode): every use shrinks it further, and a 12000x12000 photo decoded whole
# took 2 GB. Other formats cannot be decoded smaller; past MAX_PIXELS they are refused.
DECODE_SIDE = 2 * CUTOUT_SIDE
MAX_PIXELS = 64_000_000
SMOOTH_SIZE = 5  # the median filter the cut-out decides on
DETECT_SIDE = 80  # the cut-out decides and masks at this size (longest side): see to_studio
# Where it finds no product at DETECT_SIDE, it looks again at this size: a product far from a
# phone's camera is a few pixels at 80 that the median filter wipes out (docs/quality.md,
# "Shoppers' photos, fifth round").
FAR_DETECT_SIDE = 160
MIN_PRODUCT_AREA = 0.01  # a cut-out keeping less of the photo has found no product
# The closer look (to_studio) cuts out the product's box widened by this share of its longest
# side on each side: on the tuning sets 0.15, 0.25 and 0.4 found the same share of products.
CLOSER_PAD = 0.25
# The background is also taken row by row, from this many pixels at each side of the row: a
# wall above a floor, or a striped wall, is then background all over (to_studio).
ROW_SIDE_PIXELS = 4
# The cut-out's version: a collection cut out under another has its photos off white cut out
# and embedded again by the next ingest (ingest.sync.plan_changes).
CUTOUT_RECIPE = 3
# A mask filling less of its bounding box than this has cut the product apart (light clothes
# on a light grey studio wall, a white shoe on grey): the photo is left as it is (to_studio).
MIN_MASK_FILL = 0.3
CUT_OUT = "searchctl_cut_out"  # the mark to_studio leaves in a cut-out photo's info
VIEW_TURN = 8.0  # degrees each way of the turned test-time views (query_views)
# match_sharpness: a shrunk photo sharper than its catalog's typical photo by more than this is
# blurred to it, with the least of these Gaussians (sigma in pixels) that gets it there. On the
# tuning sets, originals against a catalog of the same photos halved and blurred took 0.5-0.6
# most often, and margins of 0 to 0.2 found the same products; of 500 upscaled catalog photos
# (studio shots) 17 were blurred at 0, 7 at 0.1, 1 at 0.2 (docs/quality.md, "Shoppers'
# photos, sixth round").
SHARPNESS_MARGIN = 0.2
BLUR_SIGMAS = tuple(round(0.1 * step, 1) for step in range(1, 21))


class BadImage(Exception):
    """An image that cannot be used: missing, empty, corrupt or not an image."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels become white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, WHITE)
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16/32-bit greyscale: rescale to 8 bits before converting.
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    return img.convert("RGB") if img.mode != "RGB" else img


def letterbox(img: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize keeping the aspect ratio, centre on a white canvas; returns uint8 HxWx3."""
    scale = min(width / img.width, height / img.height)
    new_w = max(1, round(img.width * scale))
    new_h = max(1, round(img.height * scale))
    if (new_w, new_h) != img.size:
        resample = Image.Resampling.BILINEAR if scale >= 1 else Image.Resampling.BOX
        img = img.resize((new_w, new_h), resample=resample)
    if (new_w, new_h) == (width, height):
        return np.asarray(img, dtype=np.uint8)
    canvas = Image.new("RGB", (width, height), WHITE)
    canvas.paste(img, ((width - new_w) // 2, (height - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def _open_quietly(source) -> Image.Image:
    """Image.open without PIL's DecompressionBombWarning: open_image decides on the size
    itself, after a JPEG's draft mode has made it small (its error past twice PIL's limit
    still comes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(source)


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open and fully decode an image from a path or bytes, as RGB. Raises BadImage."""
    try:
        if isinstance(source, bytes):
            if not source:
                raise BadImage("empty data (0 bytes)")
            img = _open_quietly(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.exists():
                raise BadImage(f"file not found: {path}")
            if path.is_dir():
                raise BadImage(f"is a directory, not an image: {path}")
            if path.stat().st_size == 0:
                raise BadImage(f"empty file (0 bytes): {path}")
            img = _open_quietly(path)
        if img.format == "JPEG":
            img.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
        if img.width * img.height > MAX_PIXELS:
            raise BadImage(
                f"too large to decode safely: {img.width}x{img.height} pixels "
                f"({img.width * img.height / 1e6:.0f} megapixels; at most {MAX_PIXELS / 1e6:.0f} "
                "unless it is a JPEG)"
            )
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        what = f"{len(source):,} bytes of data" if isinstance(source, bytes) else f"{source}"
        raise BadImage(f"not a readable image: {what} is in no image format known here") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Truncated/corrupt data raise OSError; permission errors too.
        raise BadImage(f"cannot decode image: {exc}") from exc


def fit_image(img: Image.Image, height: int, width: int, fit: str = "letterbox") -> np.ndarray:
    """letterbox keeps the aspect ratio (white padding); squash stretches to the size."""
    if fit == "squash":
        resample = Image.Resampling.BILINEAR
        return np.asarray(img.resize((width, height), resample=resample), dtype=np.uint8)
    return letterbox(img, height, width)


def load_image(
    source: str | Path | bytes,
    height: int,
    width: int,
    fit: str = "letterbox",
    cutout: bool = False,
) -> np.ndarray:
    """Decode `source` (cut out, see prepare_photo) and fit it to height x width (see
    fit_image). Raises BadImage."""
    return fit_image(prepare_photo(source, cutout), height, width, fit)


def fill_holes(foreground: np.ndarray) -> np.ndarray:
    """The mask with every region the border cannot reach filled: background is what touches
    the photo's edge, so a black logo on a black-backed product, or a shirt the colour of the
    wall, keeps its inside (whitened holes lost 3 points of phone-like same-product recall)."""
    from scipy import ndimage  # 0.4 s to import: only photos that get cut out need it

    return ndimage.binary_fill_holes(foreground)


def _at_least_half(value: int) -> int:
    return 255 if value >= 128 else 0


def _smooth(img: Image.Image) -> np.ndarray:
    """`img` through a SMOOTH_SIZE median filter, edges repeated: PIL's MedianFilter to the
    bit, but in numpy, which lets other threads run meanwhile (PIL's holds the GIL: a quarter
    of a busy server's GIL time went there)."""
    original = np.asarray(img)
    pixels = original[..., None] if original.ndim == 2 else original
    reach = SMOOTH_SIZE // 2
    padded = np.pad(pixels, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    h, w = pixels.shape[:2]
    windows = np.stack(
        [padded[y : y + h, x : x + w] for y in range(SMOOTH_SIZE) for x in range(SMOOTH_SIZE)]
    )
    middle = len(windows) // 2
    return np.partition(windows, middle, axis=0)[middle].astype(np.int16).reshape(original.shape)


def _smooth_border(img: Image.Image) -> np.ndarray:
    """The outermost pixels of `_smooth(img)`, in its order (top row, bottom row, left column,
    right column): each border pixel's window gathered from one padded copy and its median
    taken at once, which is all a studio photo needs. Four median filters over strips took
    two thirds of a catalog photo's decode at ingest, and decoding beside the model kept the
    backbone stage at 0.73x the bare model's speed (bench/ingest_full.py)."""
    original = np.asarray(img)
    pixels = original[..., None] if original.ndim == 2 else original
    h, w = pixels.shape[:2]
    reach = SMOOTH_SIZE // 2
    padded = np.pad(pixels, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    rows, cols = np.arange(h), np.arange(w)
    ys = np.concatenate([np.zeros(w, int), np.full(w, h - 1), rows, rows])
    xs = np.concatenate([cols, cols, np.zeros(h, int), np.full(h, w - 1)])
    steps = np.arange(SMOOTH_SIZE)  # a pixel's window starts at its own place in `padded`
    windows = padded[ys[:, None, None] + steps[:, None], xs[:, None, None] + steps[None, :]]
    windows = windows.reshape(len(ys), SMOOTH_SIZE * SMOOTH_SIZE, pixels.shape[2])
    middle = SMOOTH_SIZE * SMOOTH_SIZE // 2
    border = np.partition(windows, middle, axis=1)[:, middle].astype(np.int16)
    return border if original.ndim == 3 else border[:, 0]


def _detect_copy(img: Image.Image, side: int = DETECT_SIDE) -> Image.Image:
    """`img` shrunk to `side` (longest side) for the cut-out to decide on, or itself if
    smaller."""
    if max(img.size) <= side:
        return img
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.BOX)
    return small


def _background(small: Image.Image) -> np.ndarray:
    """The median colour of a photo's smoothed border, at detect size."""
    return np.median(_smooth_border(small), axis=0)


def is_off_white(img: Image.Image) -> bool:
    """Whether `img`'s background is not near-white: the photos to_studio cuts out."""
    return bool(_background(_detect_copy(img)).min() < STUDIO_BACKGROUND)


def _background_distance(smooth: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Each pixel's distance (largest channel difference) to the nearer of the background's
    median colour and its own row's colour (the median of ROW_SIDE_PIXELS at each end)."""
    k = ROW_SIDE_PIXELS
    rows = np.median(np.concatenate([smooth[:, :k], smooth[:, -k:]], axis=1), axis=1)
    whole = np.abs(smooth - background).max(axis=-1)
    return np.minimum(whole, np.abs(smooth - rows[:, None]).max(axis=-1))


def _product_mask(small: Image.Image, background: np.ndarray) -> np.ndarray | None:
    """The product's pixels in a photo at detect size, or None when the mask finds no
    product (MIN_PRODUCT_AREA) or fragments of one (MIN_MASK_FILL)."""
    distance = _background_distance(_smooth(small), background)
    edge = np.concatenate([distance[0], distance[-1], distance[:, 0], distance[:, -1]])
    tolerance = max(30.0, float(edge.mean() + 3 * edge.std()))  # how textured the background is
    foreground = fill_holes(distance > tolerance)
    if foreground.mean() < MIN_PRODUCT_AREA:  # specks in a busy background: no product found
        return None
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    if foreground[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].mean() < MIN_MASK_FILL:
        return None  # fragments of the product: the cut-out failed
    return foreground


def to_studio(img: Image.Image, margin: float = 0.05) -> Image.Image:
    """A shopper's photo made to look like a catalog shot: when its background (the median
    colour of its border) is not near-white, pixels like the background, or like their own
    row's ends, become white and the photo is cropped to the product (plus a margin). Studio
    photos come back unchanged, and so does a photo whose mask finds no product or only
    fragments of one (MIN_MASK_FILL).

    Catalog photos are products on white, filling the frame; a phone shot on a table or a
    wall is not, and shape and colour vectors then match the background. The row's colour
    takes a wall above a floor, and stripes, for background. The decision and the mask are
    made on the photo shrunk to DETECT_SIDE, the catalog's own scale, so that the same
    picture at any size is cut the same way (at full size a 225x300 copy of a catalog photo
    was cut where the 60x80 original was not, and the other way round); only a photo in which
    no product is found there is looked at again at FAR_DETECT_SIDE.

    A photo larger than the copy decided on is then looked at closer: the product's box
    (with CLOSER_PAD around it) is cut out again the same way, at DETECT_SIDE of its own, so
    that a product far from the camera gets a mask of 80 pixels rather than a few blocks of
    the whole frame's (docs/quality.md, "Shoppers' photos, sixth round"). Where the closer
    look finds no product, the first cut stands."""
    found = _find_product(img)
    if found is None:
        return img
    small, foreground = found
    if small is not img:
        region = img.crop(_box_around(foreground, small.size, img.size, CLOSER_PAD))
        closer = _find_product(region)
        cut = _whitened(region, *closer, margin) if closer is not None else None
        if cut is not None:
            return cut
    return _whitened(img, small, foreground, margin) or img


def _find_product(img: Image.Image) -> tuple[Image.Image, np.ndarray] | None:
    """The copy of `img` the cut-out decides on and the product's mask on it; None for a
    studio photo, or when no product is found (at DETECT_SIDE, then FAR_DETECT_SIDE)."""
    small = _detect_copy(img)
    background = _background(small)
    if background.min() >= STUDIO_BACKGROUND:
        return None
    foreground = _product_mask(small, background)
    if foreground is None and max(img.size) > DETECT_SIDE:
        small = _detect_copy(img, FAR_DETECT_SIDE)
        foreground = _product_mask(small, _background(small))
    return None if foreground is None else (small, foreground)


def _box_around(
    foreground: np.ndarray, small: tuple[int, int], size: tuple[int, int], pad: float
) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of a mask made on a copy of `small` size, in the
    pixels of the photo of `size`, widened by `pad` x its longest side within the photo."""
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    sx, sy = size[0] / small[0], size[1] / small[1]
    left, top, right, bottom = cols[0] * sx, rows[0] * sy, (cols[-1] + 1) * sx, (rows[-1] + 1) * sy
    reach = pad * max(right - left, bottom - top)
    return (
        int(max(0, left - reach)),
        int(max(0, top - reach)),
        int(min(size[0], right + reach)),
        int(min(size[1], bottom + reach)),
    )


def _whitened(
    img: Image.Image, small: Image.Image, foreground: np.ndarray, margin: float
) -> Image.Image | None:
    """`img` cropped to the product of the mask made on its copy `small` (plus `margin` of
    its longest side) and whitened outside it, marked cut out; None if the mask, brought to
    `img`'s size, keeps nothing."""
    mask = Image.fromarray(foreground.astype(np.uint8) * 255)
    if small is not img:
        mask = mask.resize(img.size, Image.Resampling.BILINEAR).point(_at_least_half)
    found = mask.getbbox()  # (left, top, right, bottom) of the product, or None
    if found is None:
        return None
    left, top, right, bottom = found
    pad = int(margin * max(bottom - 1 - top, right - 1 - left))
    box = (
        max(0, left - pad),
        max(0, top - pad),
        min(img.width, right + pad),
        min(img.height, bottom + pad),
    )
    # Whitened and cropped in PIL (C), the crop first: the numpy version took 5 of the
    # 12 ms a 480x640 query photo spent here.
    crop = img.crop(box)
    cut = Image.composite(crop, Image.new(crop.mode, crop.size, "white"), mask.crop(box))
    cut.info[CUT_OUT] = True
    return cut


def was_cut_out(photo: Image.Image) -> bool:
    """Whether to_studio took `photo` off a background: a photo from outside the studio."""
    return bool(photo.info.get(CUT_OUT))


def prepare_photo(source: str | Path | bytes | Image.Image, cutout: bool = True) -> Image.Image:
    """A photo decoded once for every vector it is fitted to. With `cutout`, shrunk to
    CUTOUT_SIDE (a 12-megapixel phone photo took 11 s at full size) and made a studio shot
    (to_studio). Query photos and, in a collection that records `cutout`, catalog photos go
    through the same steps. Preparing a prepared photo changes nothing."""
    img = source if isinstance(source, Image.Image) else open_image(source)
    if not cutout:
        return img
    img = img.copy()
    img.thumbnail((CUTOUT_SIDE, CUTOUT_SIDE), Image.Resampling.BOX)
    return to_studio(img)


def match_detail(
    photo: Image.Image, size: tuple[int, int] | None, sharpness: float | None = None
) -> Image.Image:
    """`photo` shrunk to fit within `size` (width, height: the catalog's typical photo, see
    embedder.collection.collection_photo_detail) when it is larger, so that it reaches each
    vector's input through the same upscale as the catalog's photos. A photo with more detail
    than the catalog's lands away from its product: the shared originals, queried against a
    catalog of the same photos halved, found their product in the top 5 0.706 of the time
    as they are and 0.986 brought down (plain search; docs/quality.md, "Shoppers' photos").
    Photos no larger, and every photo when `size` is None, come back as they are.

    With `sharpness` (the catalog photos' typical photo_sharpness), a shrunk photo that was
    not cut out and is still sharper than that by more than SHARPNESS_MARGIN is blurred down
    to it (match_sharpness): a catalog of soft thumbnails is less sharp than a studio
    original shrunk to their size."""
    if size is None or (photo.width <= size[0] and photo.height <= size[1]):
        return photo
    shrunk = photo.copy()  # keeps the cut-out mark (was_cut_out)
    shrunk.thumbnail(size, Image.Resampling.BOX)
    if sharpness is None or was_cut_out(photo):
        return shrunk
    return match_sharpness(shrunk, sharpness)


def prepare_query(
    source: str | Path | bytes | Image.Image,
    size: tuple[int, int] | None,
    sharpness: float | None,
    cutout: bool = True,
) -> Image.Image:
    """A query photo, or a shopper photo made to stand for one (ingest.shopper), as every
    vector sees it: cut out (prepare_photo) and brought to the catalog photos' `size` and
    `sharpness` (match_detail)."""
    return match_detail(prepare_photo(source, cutout), size, sharpness)


def photo_sharpness(photo: Image.Image) -> float:
    """How sharp a photo is at its own size: the mean absolute Laplacian of its grey pixels
    over their mean absolute step to the next pixel (0 for a flat photo). A ratio, so that
    it reads the blur rather than the amount of edges: the shared catalog's 60x80 photos
    measure 2.5-2.8, the same photos halved and blurred 2.2-2.5."""
    grey = np.asarray(photo.convert("L"), dtype=np.float32)
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = np.abs(
        4 * centre - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    ).mean()
    step = (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2
    return float(laplacian / step) if step > 0 else 0.0


def match_sharpness(photo: Image.Image, sharpness: float) -> Image.Image:
    """`photo` blurred with the least Gaussian of BLUR_SIGMAS that brings its photo_sharpness
    down to `sharpness`, when it is sharper than that by more than SHARPNESS_MARGIN (a
    catalog photo's own sharpness strays from the typical one by 0.1-0.2 either way);
    otherwise as it is. Its info (the cut-out mark) is kept."""
    if photo_sharpness(photo) <= sharpness + SHARPNESS_MARGIN:
        return photo
    low, high = 0, len(BLUR_SIGMAS) - 1  # sharpness falls as the blur grows: bisect
    while low < high:
        middle = (low + high) // 2
        if photo_sharpness(_blurred(photo, BLUR_SIGMAS[middle])) <= sharpness:
            high = middle
        else:
            low = middle + 1
    blurred = _blurred(photo, BLUR_SIGMAS[low])
    blurred.info.update(photo.info)
    return blurred


def _blurred(photo: Image.Image, sigma: float) -> Image.Image:
    return photo.filter(ImageFilter.GaussianBlur(sigma))


def zoom_in(photos: np.ndarray, factor: float) -> np.ndarray:
    """uint8 photos (N x H x W x 3) with their centre enlarged `factor` times to the whole
    frame (bilinear)."""
    height, width = photos.shape[1:3]
    crop_h, crop_w = round(height / factor), round(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    out = np.empty_like(photos)
    for i, photo in enumerate(photos):
        centre = Image.fromarray(photo[top : top + crop_h, left : left + crop_w])
        out[i] = np.asarray(centre.resize((width, height), Image.BILINEAR))
    return out


def query_views(photos: np.ndarray) -> np.ndarray:
    """uint8 photos (N x H x W x 3) -> their test-time views (N x 3 x H x W x 3): mirrored, and
    turned VIEW_TURN degrees each way on white. A shopper's product lies at any angle and faces
    either way; a catalog's is upright. Their backbone vectors pooled with the photo's own
    (embed_with_views) found the very product in the top 5 of 0.800 rather than 0.776
    phone-like photos, and matched their articleType 0.674 rather than 0.665 (docs/quality.md,
    "Test-time views")."""
    views = np.empty((len(photos), 3, *photos.shape[1:]), np.uint8)
    for i, photo in enumerate(photos):
        img = Image.fromarray(photo)
        views[i, 0] = np.asarray(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        for j, angle in enumerate((VIEW_TURN, -VIEW_TURN), start=1):
            views[i, j] = np.asarray(img.rotate(angle, Image.BICUBIC, fillcolor=WHITE))
    return views


def embed_with_views(
    embed: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, with_views: Sequence[bool]
) -> np.ndarray:
    """`embed(pixels)` (a backbone's vectors of a uint8 batch), where the rows marked in
    `with_views` (photos cut out of a background) get the mean direction of their own and
    their views' vectors (query_views) at their own length, all in one call. Catalog photos
    cut out at ingest and query photos go through it alike, so a cut-out catalog photo sent
    as a query finds itself at a cosine of 1."""
    marked = np.flatnonzero(np.asarray(with_views, bool))
    if not len(marked):
        return embed(pixels)
    views = query_views(pixels[marked])
    both = embed(np.concatenate([pixels, views.reshape(-1, *pixels.shape[1:])]))
    out = both[: len(pixels)].copy()
    seen = unit_rows(both[len(pixels) :]).reshape(len(marked), views.shape[1], -1)
    pooled = unit_rows(unit_rows(out[marked]) + seen.sum(axis=1))
    out[marked] = pooled * np.linalg.norm(out[marked], axis=1, keepdims=True)
    return out


def load_images(
    sources: list,
    height: int,
    width: int,
    fit: str = "letterbox",
    workers: int = 2,
    progress: Progress = NO_PROGRESS,
    chunk: int = 512,
    cutout: bool = False,
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Decode many images in threads: (uint8 N x H x W x 3 of the good ones, their indexes in
    `sources`, (index, reason) of the bad ones)."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty((len(sources), height, width, 3), np.uint8)
    good, bad = [], []

    def one(i: int):
        try:
            out[i] = load_image(sources[i], height, width, fit, cutout)
            return i, None
        except BadImage as exc:
            return i, str(exc)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="searchctl-decode") as pool:
        for start in range(0, len(sources), chunk):
            for i, problem in pool.map(one, range(start, min(start + chunk, len(sources)))):
                (good.append(i) if problem is None else bad.append((i, problem)))
            progress.advance(min(chunk, len(sources) - start))
    return out[good] if len(good) < len(sources) else out, good, bad


MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
DOWNLOAD_TIMEOUT = 10.0


def is_url(source: object) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def fetch_image(
    url: str,
    *,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    timeout: float = DOWNLOAD_TIMEOUT,
    allow_private: bool = True,
) -> bytes:
    """The bytes of a photo at an http(s) URL, at most `max_bytes`, within `timeout` seconds
    for each network step. `allow_private=False` refuses hosts that resolve to loopback,
    private, link-local or reserved addresses (a server must not fetch its own network).
    Raises BadImage naming the URL and the problem."""
    import ipaddress
    import socket
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadImage(f"not an http(s) URL: {url}")
    if not allow_private:
        try:
            port = parsed.port or 443
            infos = socket.getaddrinfo(parsed.hostname, port, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise BadImage(f"cannot fetch {url}: host not found ({exc})") from exc
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise BadImage(
                    f"cannot fetch {url}: {parsed.hostname} is a private or local address "
                    f"({address}); fetching those is not allowed here"
                )
    request = urllib.request.Request(url, headers={"User-Agent": "searchctl"})
    try:
        # An opener of its own: urlopen's global one keeps the proxies of the process's first
        # download for good (a test's dead proxy once answered every later fetch).
        with urllib.request.build_opener().open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise BadImage(
                    f"cannot fetch {url}: {int(length):,} bytes, over {max_bytes:,} bytes"
                )
            data = response.read(max_bytes + 1)
    except BadImage:
        raise
    except urllib.error.HTTPError as exc:
        raise BadImage(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadImage(f"cannot fetch {url}: {reason}") from exc
    if len(data) > max_bytes:
        raise BadImage(f"cannot fetch {url}: over {max_bytes:,} bytes")
    if not data:
        raise BadImage(f"cannot fetch {url}: the response is empty")
    return data

"""The `colour` named vector: a colour histogram of the product's pixels (numpy, no model).

Shape vectors (ImageNet features, the autoencoder) hardly separate a navy shirt from a black
one. This descriptor does: a hue x saturation x value histogram of the photo with its
background left out (pixels like the median border colour) and the centre weighted up (the
product sits in the middle of catalog photos), plus four grey levels for unsaturated pixels.
Square roots of the bin fractions make cosine a Hellinger-style similarity.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from PIL import Image

COLOUR_VECTOR = "colour"
HUE_BINS, SAT_BINS, VAL_BINS, GREY_BINS = 12, 3, 3, 4
COLOUR_DIM = HUE_BINS * SAT_BINS * VAL_BINS + GREY_BINS  # 112
MIN_SATURATION = 0.2  # below it a pixel counts as grey (black / grey / white)
BACKGROUND_TOLERANCE = 12  # max channel difference from the border colour, 0-255
CENTRE_FALLOFF = 2.0  # weight exp(-falloff * r^2), r = 1 at the middle of each edge
NEAR_WHITE = 250  # every channel at least this: white, left as is by a white balance
INPUT_SIZE = (80, 60)  # height, width: the catalog's own size; photos are letterboxed to it


@functools.cache
def _centre_weights(height: int, width: int) -> np.ndarray:
    """Made once a size (read-only): a query's colour vector made them anew every time."""
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((yy - (height - 1) / 2) / (height / 2)) ** 2 + ((xx - (width - 1) / 2) / (width / 2)) ** 2
    weights = np.exp(-CENTRE_FALLOFF * r2).ravel()
    weights.flags.writeable = False
    return weights


def colour_descriptors(pixels: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> N x COLOUR_DIM float32 (square roots of weighted fractions)."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    n, height, width, _ = pixels.shape
    hsv = np.stack([np.asarray(Image.fromarray(p).convert("HSV")) for p in pixels])
    # Bins of x/256 in integers: int(x / 256 * B) == (x * B) >> 8 for 8-bit x.
    h, v = hsv[..., 0].astype(np.int32), hsv[..., 2].astype(np.int32)
    s = hsv[..., 1].astype(np.float32) / 256
    hue = (h * HUE_BINS) >> 8
    sat = ((s - MIN_SATURATION) / (1 - MIN_SATURATION) * SAT_BINS).astype(np.int32)
    sat = np.minimum(sat, SAT_BINS - 1)
    val, grey = (v * VAL_BINS) >> 8, (v * GREY_BINS) >> 8
    chroma_bins = HUE_BINS * SAT_BINS * VAL_BINS
    bins = np.where(s > MIN_SATURATION, (hue * SAT_BINS + sat) * VAL_BINS + val, chroma_bins + grey)

    rgb = pixels.astype(np.int16)
    border = np.concatenate([rgb[:, 0], rgb[:, -1], rgb[:, :, 0], rgb[:, :, -1]], axis=1)
    # Doubled, the median (which may end in .5) and the test stay exact in integers; the
    # channel maximum is taken pairwise (a max over a last axis of 3 was a third of the time).
    background2 = (2 * np.median(border, axis=1)).astype(np.int16)  # N x 3
    d = np.abs(2 * rgb - background2[:, None, None])
    farthest = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    weights = (farthest > 2 * BACKGROUND_TOLERANCE).reshape(n, -1) * _centre_weights(height, width)

    flat = bins.reshape(n, -1) + np.arange(n)[:, None] * COLOUR_DIM  # one bincount for all
    out = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=n * COLOUR_DIM)
    out = out.reshape(n, COLOUR_DIM)
    totals = out.sum(axis=1, keepdims=True)
    # A photo that is all background (a blank image) keeps a zero histogram: no colour match.
    return np.sqrt(out / np.where(totals > 0, totals, 1)).astype(np.float32)


def _white_balance_gains(levels: tuple[float, ...]) -> np.ndarray:
    """Every per-channel gain made of `levels`, scaled to a mean of 1 (brightness kept)."""
    gains = np.array(list(itertools.product(levels, repeat=3)), dtype=np.float64)
    return np.unique(np.round(gains / gains.mean(axis=1, keepdims=True), 4), axis=0)


# 7 x 3: (1, 1, 1) and one channel or two at 0.9 against 1.1. On the phone-like sets these
# 7 found as many products as the 25 of (0.9, 1.0, 1.1) (0.772 / 0.764 against 0.774 / 0.764
# in numpy), for 3.5 times less work a query.
WHITE_BALANCE_GAINS = _white_balance_gains((0.9, 1.1))


def white_balance_variants(pixels: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> K x H x W x 3: the photo under every WHITE_BALANCE_GAINS, its
    near-white pixels (the whitened background of a cut-out photo) kept white."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    white = (pixels >= NEAR_WHITE).all(axis=-1, keepdims=True)
    tinted = pixels[None].astype(np.float32) * WHITE_BALANCE_GAINS[:, None, None, :]
    return np.where(white[None], pixels[None], np.clip(tinted, 0, 255).astype(np.uint8))


def cast_tolerant_descriptors(pixels: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> K x COLOUR_DIM: the colour descriptors of white_balance_variants.

    A photo taken outside the studio carries its camera's white balance: measured on our
    phone-like photos (a cast of up to 15 % per channel), the colour vector of a photo was
    0.815 cosine from its own product's, against 0.966 without the cast. The re-rank takes
    the best cosine over these rows (searchctl.query.rerank), so a product matches under the
    white balance that suits it best. Only for cut-out photos: applied to catalog shots it
    cost held-out baseColour matches 2 points."""
    return colour_descriptors(white_balance_variants(pixels))

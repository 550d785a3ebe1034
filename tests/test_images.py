from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SHARED_DATASET, needs_shared
from PIL import Image, ImageFilter

from embedder.images import (
    CUT_OUT,
    BadImage,
    _smooth,
    _smooth_border,
    letterbox,
    load_image,
    match_detail,
    match_sharpness,
    open_image,
    photo_sharpness,
    prepare_query,
    to_studio,
    was_cut_out,
    zoom_in,
)


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "img,fmt",
    [
        (Image.new("L", (60, 80), 128), "JPEG"),
        (Image.new("CMYK", (60, 80), (0, 255, 255, 0)), "JPEG"),
        (Image.new("RGB", (60, 80), (255, 0, 0)).convert("P"), "PNG"),
        (Image.new("RGBA", (60, 80), (255, 0, 0, 255)), "PNG"),
        (Image.new("LA", (60, 80), (30, 255)), "PNG"),
        (Image.new("I;16", (60, 80), 30000), "PNG"),
        (Image.new("1", (60, 80), 1), "PNG"),
    ],
    ids=["L", "CMYK", "P", "RGBA", "LA", "I16", "1"],
)
def test_every_mode_becomes_rgb(img, fmt):
    arr = load_image(_bytes(img, fmt), 32, 24)
    assert arr.shape == (32, 24, 3) and arr.dtype == np.uint8


def test_transparency_becomes_white_and_cmyk_red_is_red():
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (open_image(_bytes(clear, "PNG")).getpixel((5, 5))) == (255, 255, 255)
    red = open_image(_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    r, g, b = red.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_letterbox_keeps_aspect_and_pads_white():
    black_wide = Image.new("RGB", (200, 100), (0, 0, 0))
    arr = letterbox(black_wide, 100, 100)
    assert arr.shape == (100, 100, 3)
    assert (arr[:24] == 255).all() and (arr[-24:] == 255).all()  # white bands top and bottom
    assert (arr[26:74] == 0).all()  # the picture, unstretched, in the middle
    native = letterbox(Image.new("RGB", (60, 80), (9, 9, 9)), 80, 60)
    assert (native == 9).all()


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated = open_image(_bytes(img, "JPEG", exif=exif))
    assert rotated.size == (20, 40)


def test_bad_images_raise_bad_image_naming_the_problem(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    good = _bytes(Image.new("RGB", (60, 80), (1, 2, 3)), "JPEG")
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    cases = {
        "empty.jpg": "empty file",
        "text.jpg": "not a readable image",
        "cut.jpg": "cannot decode",
        "missing.jpg": "file not found",
    }
    for name, message in cases.items():
        with pytest.raises(BadImage, match=message):
            load_image(tmp_path / name, 32, 32)
    with pytest.raises(BadImage, match="empty data"):
        load_image(b"", 32, 32)


def test_to_studio_cuts_a_coloured_background_and_leaves_studio_shots_alone():
    rng = np.random.default_rng(0)
    table = np.clip(rng.normal((90, 140, 70), 12, size=(300, 400, 3)), 0, 255).astype(np.uint8)
    table[100:220, 150:230] = (200, 30, 40)  # the product: a red block off-centre
    cut_photo = to_studio(Image.fromarray(table))
    assert was_cut_out(cut_photo)  # a photo from outside the studio (Searcher.colour_rows)
    cut = np.asarray(cut_photo)
    # Cropped to the product plus a 5 % margin (5 px: 5 % of 119, rounded down; the closer
    # look's mask, at 80 px of the product's box, is within 2 px of its edges), the table
    # turned white.
    assert abs(cut.shape[0] - 130) <= 4 and abs(cut.shape[1] - 90) <= 4 and cut.shape[2] == 3
    red = (cut == (200, 30, 40)).all(axis=-1)
    assert red.sum() > 0.98 * 120 * 80  # all of it but edges the mask rounds off
    assert (cut[:3] == 255).all() and (cut[:, :3] == 255).all()

    studio = np.full((80, 60, 3), 250, np.uint8)
    studio[20:60, 15:45] = (20, 30, 110)
    same = to_studio(Image.fromarray(studio))
    assert np.array_equal(np.asarray(same), studio) and not was_cut_out(same)


def test_to_studio_looks_closer_at_a_product_far_from_the_camera():
    """A small bag with a strap in a 720x960 phone shot: decided on at 160 px, its mask is
    blocks of 6 pixels, which lost the 10-px strap and an eighth of the bag's edge; the closer
    look masks the bag's box at 80 px of its own."""
    from PIL import ImageDraw

    rng = np.random.default_rng(5)
    wall = np.clip(rng.normal((70, 120, 160), 6, size=(960, 720, 3)), 0, 255).astype(np.uint8)
    photo = Image.fromarray(wall)
    bag = Image.new("L", (720, 960), 0)
    draw = ImageDraw.Draw(bag)
    draw.ellipse((400, 600, 490, 720), fill=255)
    draw.rectangle((440, 560, 450, 600), fill=255)  # the strap
    photo.paste((230, 200, 40), mask=bag)
    cut = to_studio(photo)
    assert was_cut_out(cut)
    pixels = np.asarray(cut).astype(int)
    kept = (np.abs(pixels - (230, 200, 40)).max(axis=-1) < 30).sum()
    wall_kept = (np.abs(pixels - (70, 120, 160)).max(axis=-1) < 40).sum()
    bag_pixels = (np.asarray(bag) > 0).sum()
    assert cut.height >= 160  # the strap's top (y 560) to the bag's bottom (y 720)
    assert kept > 0.99 * bag_pixels
    assert wall_kept < 0.05 * bag_pixels


def test_to_studio_takes_a_wall_above_a_floor_for_background():
    """A shoe on a floor, a wall of another colour behind it: the median colour of the
    border is the wall's, and the floor used to be kept as product; each row's own ends
    tell it is background."""
    rng = np.random.default_rng(4)
    room = np.empty((400, 300, 3))
    room[:220] = (150, 110, 160)  # the wall
    room[220:] = (120, 90, 60)  # the floor
    room = np.clip(room + rng.normal(0, 4, room.shape), 0, 255).astype(np.uint8)
    room[240:300, 100:200] = (20, 20, 20)  # the shoe, on the floor
    cut = to_studio(Image.fromarray(room))
    assert was_cut_out(cut)
    width, height = cut.size  # the shoe and a 5 % margin, edges as the 80-px mask rounds them
    assert 100 <= width <= 115 and 60 <= height <= 75  # no floor
    dark = (np.asarray(cut) < 40).all(axis=-1)
    assert dark.sum() > 0.9 * 60 * 100  # all of it but edges the mask rounds off


def test_to_studio_finds_a_product_far_from_the_camera():
    """A thin product far from the camera (16 px across of 480): at the catalog's scale
    (80 px) it is 2 px across and the median filter wipes it out; looked at again at
    FAR_DETECT_SIDE it is cut out."""
    rng = np.random.default_rng(5)
    wall = np.clip(rng.normal((90, 140, 70), 6, size=(640, 480, 3)), 0, 255).astype(np.uint8)
    wall[200:440, 232:248] = (200, 30, 40)
    small = Image.fromarray(wall).resize((60, 80), Image.Resampling.BOX)
    assert to_studio(small) is small  # too few pixels at the catalog's scale
    cut = to_studio(Image.fromarray(wall))
    assert was_cut_out(cut)
    width, height = cut.size  # the product and a 5 % margin (12 px of 239)
    assert 16 <= width <= 48 and 240 <= height <= 270


@needs_shared()
@pytest.mark.parametrize("product", [3653, 50602, 52200, 59682, 59686])
def test_to_studio_cuts_a_catalog_photo_the_same_way_at_any_size(product):
    """Real catalog photos on coloured or textured backgrounds, and the same photos at
    225x300 (as bench/make_query_sets.py makes studio queries): each was cut differently at
    the two sizes when the cut-out worked at full size."""
    photo = open_image(SHARED_DATASET / "images" / f"{product}.jpg")
    large = open_image(
        _bytes(photo.resize((225, 300), Image.Resampling.BICUBIC), "JPEG", quality=95)
    )
    cut_small, cut_large = to_studio(photo), to_studio(large)
    assert (cut_small is photo) == (cut_large is large)
    kept_small = np.array(cut_small.size) / np.array(photo.size)
    kept_large = np.array(cut_large.size) / np.array(large.size)
    # Within 3 of the catalog photo's pixels: the large copy's closer look masks the product
    # at a finer scale (52200, a pendant on grey, is cut 19 px wide at 60x80 and 21 at 225x300).
    np.testing.assert_allclose(kept_small, kept_large, atol=3 / 60)


@pytest.mark.parametrize("size", [(60, 80), (80, 60), (33, 17), (7, 7), (6, 9), (1, 5)])
def test_the_smoothing_is_pils_median_filter_and_its_border_the_smoothed_border(size):
    pixels = np.random.default_rng(size[0] * 100 + size[1]).integers(0, 256, (size[1], size[0], 3))
    photo = Image.fromarray(pixels.astype(np.uint8))
    smooth = _smooth(photo)
    assert np.array_equal(smooth, np.asarray(photo.filter(ImageFilter.MedianFilter(5))))
    assert np.array_equal(
        _smooth(photo.convert("L")), photo.convert("L").filter(ImageFilter.MedianFilter(5))
    )
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    assert np.array_equal(_smooth_border(photo), border)


def test_to_studio_leaves_a_busy_background_without_a_product_alone():
    rng = np.random.default_rng(1)
    wall = np.clip(rng.normal((180, 160, 130), 25, size=(80, 60, 3)), 0, 255).astype(np.uint8)
    wall[40:44, 30:34] = 0  # a dark speck that a 5x5 median keeps is not a product
    photo = Image.fromarray(wall)
    assert to_studio(photo) is photo


def test_to_studio_leaves_a_photo_alone_when_its_mask_keeps_fragments_of_the_product():
    """A light shirt on a light wall: only its dark buttons and badges differ from the wall,
    and a mask of those would cut the shirt to pieces; the photo stays as it is. On a darker
    shirt the same badges are cut out with the whole shirt."""
    rng = np.random.default_rng(3)
    wall = np.clip(rng.normal(205, 3, size=(300, 240, 3)), 0, 255).astype(np.uint8)
    wall[40:260, 50:190] = 218  # the shirt: too close to the wall to tell apart
    for top in (40, 110, 180, 236):
        for left in (50, 166):
            wall[top : top + 24, left : left + 24] = (30, 40, 90)  # eight dark badges
    photo = Image.fromarray(wall)
    assert to_studio(photo) is photo
    shirt = wall[40:260, 50:190]
    shirt[shirt[..., 0] == 218] = 120  # a darker shirt
    cut = to_studio(Image.fromarray(wall))
    assert was_cut_out(cut) and cut.size[0] < 170  # the shirt and its margin


@needs_shared()
@pytest.mark.parametrize("product", [1538, 2496])
def test_catalog_photos_the_cut_out_would_cut_apart_are_left_as_they_are(product):
    """Light clothes on a model against light grey, a white shoe on grey: their masks keep
    under a third of their bounding boxes (docs/quality.md, "A cut-out that fails"). (1620,
    navy shorts with white panels, was one; with each row's own colour its mask now keeps
    the navy, and the leave-one-out figures held: "Shoppers' photos, fifth round".)"""
    photo = open_image(SHARED_DATASET / "images" / f"{product}.jpg")
    assert to_studio(photo) is photo


def test_to_studio_keeps_the_inside_of_a_product_the_colour_of_the_background():
    rng = np.random.default_rng(2)
    wall = np.clip(rng.normal((90, 140, 70), 6, size=(300, 400, 3)), 0, 255).astype(np.uint8)
    wall[60:240, 120:280] = (20, 20, 20)  # a black sweatshirt...
    wall[120:180, 170:230] = (90, 140, 70)  # ...with a print the colour of the wall
    cut = np.asarray(to_studio(Image.fromarray(wall)))
    # The sweatshirt plus its 5 % margin (8 px), give or take the 80-px mask's rounding.
    np.testing.assert_allclose(cut.shape[:2], (196, 176), atol=4)
    inside = cut[8 + 70 : 8 + 110, 8 + 60 : 8 + 100]  # the middle of the print
    assert not (inside == 255).all(axis=-1).any()  # kept, not whitened as background
    assert (cut[:3] == 255).all()  # the wall around it is


def test_zoom_in_enlarges_the_centre_to_the_whole_frame():
    photo = np.full((1, 80, 60, 3), 255, np.uint8)
    photo[0, 20:60, 15:45] = (200, 30, 40)  # a 40x30 box, centred
    photo[0, :4] = 0  # a black band at the top: outside the centre, cut off
    zoomed = zoom_in(photo, 1.25)
    assert zoomed.shape == photo.shape and zoomed.dtype == np.uint8
    box = np.argwhere((zoomed[0] == (200, 30, 40)).all(-1))
    height, width = box.max(0) - box.min(0) + 1
    assert 48 <= height <= 52 and 36 <= width <= 39  # 40x30 x1.25 = 50x37.5, bilinear edges
    assert abs((box.min(0) + box.max(0)) / 2 - (39.5, 29.5)).max() <= 1  # still centred
    assert zoomed[0].min() > 0  # the band is gone
    assert zoom_in(photo[:0], 1.25).shape == (0, 80, 60, 3)


def test_match_detail_shrinks_a_photo_to_the_catalog_size_keeping_its_shape():
    wide = Image.new("RGB", (300, 150), "red")
    wide.info[CUT_OUT] = True
    shrunk = match_detail(wide, (60, 80))
    assert shrunk.size == (60, 30) and was_cut_out(shrunk)
    assert wide.size == (300, 150)  # the photo given is left alone
    small = Image.new("RGB", (50, 80))
    assert match_detail(small, (60, 80)) is small
    assert match_detail(wide, None) is wide


def _pattern(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo full of edges: blocks of random grey."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 4, width // 4), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((4, 4), np.uint8))).convert("RGB")


def test_photo_sharpness_reads_the_blur_not_the_content():
    photo = _pattern(60, 80)
    sharp = photo_sharpness(photo)
    softer = photo_sharpness(photo.filter(ImageFilter.GaussianBlur(0.5)))
    softest = photo_sharpness(photo.filter(ImageFilter.GaussianBlur(1.0)))
    assert sharp > softer > softest > 0
    assert photo_sharpness(Image.new("RGB", (60, 80), "grey")) == 0.0  # nothing to read
    # Half the contrast, the same blur: the same sharpness.
    faint = Image.fromarray((np.asarray(photo) // 2).astype(np.uint8))
    assert photo_sharpness(faint) == pytest.approx(sharp, abs=0.05)


def test_match_detail_blurs_a_shrunk_studio_photo_down_to_the_catalog_sharpness():
    original = _pattern(240, 320)
    catalog_photo = original.resize((60, 80), Image.Resampling.BOX).filter(
        ImageFilter.GaussianBlur(0.6)
    )
    target = photo_sharpness(catalog_photo)
    shrunk = match_detail(original, (60, 80))
    assert photo_sharpness(shrunk) > target + 0.3  # shrinking alone leaves it sharper
    matched = match_detail(original, (60, 80), target)
    assert matched.size == (60, 80)
    assert target - 0.3 < photo_sharpness(matched) <= target

    # Nearer the catalog's photo, pixel for pixel, than the shrunk one.
    def distance(photo):
        return np.abs(np.asarray(photo, np.float32) - np.asarray(catalog_photo, np.float32)).mean()

    assert distance(matched) < 0.7 * distance(shrunk)
    # Left as they are: a photo no larger than the catalog's (it may be a catalog photo),
    # a cut-out photo (a shopper's: blurring did not help them), one already soft enough.
    small = _pattern(60, 80)
    assert match_detail(small, (60, 80), target) is small
    cut = original.copy()
    cut.info[CUT_OUT] = True
    assert photo_sharpness(match_detail(cut, (60, 80), target)) == photo_sharpness(shrunk)
    assert match_sharpness(catalog_photo, target) is catalog_photo
    marked = shrunk.copy()
    marked.info["kept"] = True
    assert match_sharpness(marked, target).info["kept"]


def test_prepare_query_cuts_out_then_brings_to_the_catalog_size_and_sharpness():
    """The one preparation of query photos and of the shopper photos that stand for them."""
    studio = Image.new("RGB", (240, 320), "white")  # a studio shot: a product on white
    studio.paste(_pattern(200, 280), (20, 20))
    target = photo_sharpness(studio.resize((60, 80), Image.Resampling.BOX)) - 0.5
    prepared = prepare_query(studio, (60, 80), target)
    assert prepared.size == (60, 80) and not was_cut_out(prepared)
    assert photo_sharpness(prepared) <= target
    wall = np.full((320, 240, 3), (90, 140, 70), np.uint8)
    wall[100:220, 80:160] = np.asarray(_pattern(80, 120))
    shot = prepare_query(Image.fromarray(wall), (60, 80), target)
    assert was_cut_out(shot) and max(shot.size) <= 80
    assert photo_sharpness(shot) > target  # a shopper's photo keeps its own sharpness


@needs_shared()
def test_a_sharper_original_matched_to_a_soft_catalog_is_nearer_its_catalog_photo():
    """The shared photos stand for studio originals; their catalog copies are halved and
    blurred (as bench/make_query_sets.py's sharper set). Brought to the catalog's size and
    its typical sharpness, an original is nearer its catalog photo at the model's input than
    brought to its size only."""
    from embedder.collection import typical_photo_sharpness

    paths = sorted((SHARED_DATASET / "images").glob("*.jpg"))[:40]
    originals = [open_image(p) for p in paths]
    catalog = [
        o.resize((30, 40), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(0.5))
        for o in originals
    ]
    target = np.median([photo_sharpness(c) for c in catalog])
    near_size, near_both = [], []
    for original, catalog_photo in zip(originals, catalog):
        want = letterbox(catalog_photo, 160, 120).astype(np.float32)
        size_only = letterbox(match_detail(original, (30, 40)), 160, 120).astype(np.float32)
        both = letterbox(match_detail(original, (30, 40), target), 160, 120).astype(np.float32)
        near_size.append(np.abs(size_only - want).mean())
        near_both.append(np.abs(both - want).mean())
    assert np.mean(near_both) < 0.8 * np.mean(near_size)
    assert typical_photo_sharpness(paths) == pytest.approx(
        np.median([photo_sharpness(o) for o in originals]), abs=1e-3
    )


@needs_shared()
def test_a_sharper_photo_brought_to_the_catalog_size_is_the_catalog_photo_again():
    """A 4x sharper copy (Lanczos from a 4x photo stands in for a studio original) shrunk by
    match_detail differs from the catalog photo by far less than the same copy fitted to a
    model's input directly."""
    photo = open_image(SHARED_DATASET / "images" / "15970.jpg")
    sharp = photo.resize((240, 320), Image.Resampling.LANCZOS).filter(ImageFilter.SHARPEN)
    target = letterbox(photo, 160, 120).astype(np.float32)
    direct = letterbox(sharp, 160, 120).astype(np.float32)
    matched = letterbox(match_detail(sharp, photo.size), 160, 120).astype(np.float32)
    assert np.abs(matched - target).mean() < 0.5 * np.abs(direct - target).mean()

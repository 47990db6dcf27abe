"""Effects on (image, mask): property tests on synthetic data, and real u2netp masks on the
official test images. Every kind of output is saved to artifacts/effects/ for a person to see."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from scipy import ndimage

from u2net import effects
from u2net.effects import (
    ASPECTS,
    HIGHLIGHT_MODES,
    Box,
    Boxes,
    OptionError,
    bounding_boxes,
    crop,
    cutout,
    draw_boxes,
    highlight,
    refine_mask,
    replace_background,
)
from u2net.errors import U2NetError

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EIGHT = np.ones((3, 3), bool)  # 8-connectivity, as bounding_boxes uses


# --------------------------------------------------------------------------- strategies


@st.composite
def image_and_mask(draw, max_side: int = 24, min_side: int = 1):
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    image = draw(hnp.arrays(np.uint8, (h, w, 3)))
    values = st.one_of(st.just(0), st.just(255), st.integers(0, 255))
    mask = draw(hnp.arrays(np.uint8, (h, w), elements=values))
    return image, mask


@st.composite
def blobby_mask(draw, max_side: int = 40):
    """A mask of a few rectangles (soft or hard) on a background, like a saliency map."""
    h = draw(st.integers(2, max_side))
    w = draw(st.integers(2, max_side))
    mask = np.zeros((h, w), np.uint8)
    for _ in range(draw(st.integers(0, 4))):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        mask[y0:y1, x0:x1] = draw(st.integers(1, 255))
    return mask


colours = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.sampled_from(["white", "black", "#1e90ff", "#abc", "tomato"]),
)


def rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def expected_colour(colour) -> np.ndarray:
    return np.array(effects.parse_colour(colour), np.uint8)


# --------------------------------------------------------------------------- properties


@PROPS
@given(image_and_mask(), st.booleans())
def test_cutout_alpha_is_the_mask(data, decontaminate):
    image, mask = data
    out = cutout(image, mask, decontaminate=decontaminate)
    assert out.mode == "RGBA" and out.size == (image.shape[1], image.shape[0])
    assert np.array_equal(np.asarray(out)[..., 3], mask)
    # Where the object is fully opaque the colours are the photo's, bit for bit.
    full = mask == 255
    assert np.array_equal(np.asarray(out)[..., :3][full], image[full])


@PROPS
@given(image_and_mask(), colours)
def test_opaque_mask_gives_the_original(data, colour):
    image, _ = data
    opaque = np.full(image.shape[:2], 255, np.uint8)
    assert np.array_equal(np.asarray(cutout(image, opaque)), np.dstack([image, opaque]))
    for background in (colour, "blur", "grayscale"):
        assert np.array_equal(rgb(replace_background(image, opaque, background)), image)
    for mode in ("dim", "desaturate", "blur", "outline"):  # the ones that leave the object alone
        assert np.array_equal(rgb(highlight(image, opaque, mode, strength=1.0)), image)


@PROPS
@given(image_and_mask(), colours)
def test_background_keeps_the_object_and_replaces_the_rest(data, colour):
    image, mask = data
    out = rgb(replace_background(image, mask, colour))
    assert out.shape == image.shape
    assert np.array_equal(out[mask == 255], image[mask == 255])
    assert (out[mask == 0] == expected_colour(colour)).all()
    # Grey world: background pixels are the photo's luma (as Pillow computes it, ±1).
    grey = rgb(replace_background(image, mask, "grayscale")).astype(int)
    luma = np.asarray(Image.fromarray(image).convert("L")).astype(int)
    assert np.array_equal(grey[mask == 255], image[mask == 255])
    assert (np.abs(grey[mask == 0] - luma[mask == 0][:, None]) <= 1).all()


@PROPS
@given(image_and_mask(min_side=2), st.sampled_from(["cover", "contain", "stretch"]))
def test_picture_background_fills_the_frame(data, fit):
    image, mask = data
    h, w = mask.shape
    picture = np.random.default_rng(h * 100 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = rgb(replace_background(image, mask, Image.fromarray(picture), fit=fit))
    assert out.shape == image.shape
    assert np.array_equal(out[mask == 255], image[mask == 255])
    # A picture of the photo's own size fits without scaling, whatever the fit.
    assert np.array_equal(out[mask == 0], picture[mask == 0])


@PROPS
@given(blobby_mask(), st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_every_foreground_pixel_is_inside_a_box_and_the_union(mask, threshold):
    found = bounding_boxes(mask, threshold=threshold, min_area=0)
    fg = mask.astype(float) / 255 > threshold
    labels, count = ndimage.label(fg, structure=EIGHT)
    assert len(found) == count
    covered = np.zeros_like(fg)
    for box in found:
        covered[box.y0:box.y1, box.x0:box.x1] = True
        # Tight: each edge row / column of a box holds foreground.
        assert fg[box.y0, box.x0:box.x1].any() and fg[box.y1 - 1, box.x0:box.x1].any()
        assert fg[box.y0:box.y1, box.x0].any() and fg[box.y0:box.y1, box.x1 - 1].any()
        assert 0 < box.score <= 1
    assert covered[fg].all()
    if count:
        u = found.union
        assert fg[u.y0:u.y1, u.x0:u.x1].sum() == fg.sum() and u.area == fg.sum()
        assert [b.area for b in found] == sorted((b.area for b in found), reverse=True)
    else:
        assert found.union is None
    assert json.loads(json.dumps(found.to_dict()))["count"] == count


@PROPS
@given(blobby_mask(), st.sampled_from([0.0, 0.5]))
def test_boxes_areas_and_scores_are_scipys(mask, threshold):
    # Boxes are found with OpenCV's labelling; scipy's, written out here, is the reference.
    fg = mask.astype(float) / 255 > threshold
    labels, count = ndimage.label(fg, structure=EIGHT)
    want = []
    for i, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
        region = labels == i
        want.append((xs.start, ys.start, xs.stop, ys.stop, int(region.sum()),
                     round(float(mask[region].astype(np.int64).sum() / region.sum() / 255.0), 4)))
    got = [(b.x0, b.y0, b.x1, b.y1, b.area, b.score) for b in bounding_boxes(mask, threshold, min_area=0)]
    assert sorted(got) == sorted(want)


@PROPS
@given(blobby_mask(), st.integers(2, 30))
def test_specks_below_min_area_are_dropped(mask, min_area):
    found = bounding_boxes(mask, threshold=0.0, min_area=min_area)
    labels, count = ndimage.label(mask > 0, structure=EIGHT)
    sizes = ndimage.sum_labels(mask > 0, labels, range(1, count + 1))
    assert len(found) == int((sizes >= min_area).sum())
    assert all(b.area >= min_area for b in found)


@PROPS
@given(blobby_mask(), st.sampled_from(["0%", "10%", "35%", 0, 3, 0.25]), st.sampled_from(ASPECTS),
       st.sampled_from([0.001, 0]))
def test_crop_contains_every_box_and_keeps_the_aspect(mask, padding, aspect, min_area):
    h, w = mask.shape
    image = np.random.default_rng(h * 100 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    result = crop(image, mask, padding=padding, aspect=aspect, min_area=min_area)
    boxes = bounding_boxes(mask, 0.5, min_area)
    x0, y0, x1, y1 = result.box
    assert result.image.size == (x1 - x0, y1 - y0)
    if not boxes.boxes:
        assert result.empty and result.box == (0, 0, w, h) and "whole image" in result.message
        return
    assert not result.empty
    for b in boxes:
        assert x0 <= b.x0 and y0 <= b.y0 and b.x1 <= x1 and b.y1 <= y1
    if aspect != "free":
        a, b = (int(v) for v in aspect.split(":"))
        cw, ch = x1 - x0, y1 - y0
        assert abs(cw - ch * a / b) <= 1 and abs(ch - cw * b / a) <= 1
    u = boxes.union
    fits = aspect == "free" or "larger than the image" not in result.message
    if fits:
        # Inside the photo, and it is the photo's pixels.
        assert 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h
        assert np.array_equal(rgb(result.image), image[y0:y1, x0:x1])
        if "padding reduced" not in result.message:
            # The aspect only grows the padded box ("free" gives exactly that box).
            padded = crop(image, mask, padding=padding, aspect="free", min_area=min_area).box
            assert x0 <= padded[0] and y0 <= padded[1] and padded[2] <= x1 and padded[3] <= y1
    else:
        # Only when no box of that ratio around the object fits in the photo.
        a, b = (int(v) for v in aspect.split(":"))
        need_w, need_h = effects._ratio_size(u.width, u.height, a / b)
        assert need_w > w or need_h > h


@PROPS
@given(blobby_mask(), st.sampled_from(["10%", 4]))
def test_free_crop_pads_as_asked_inside_the_image(mask, padding):
    result = crop(mask, mask, padding=padding, output="mask")
    u = bounding_boxes(mask).union
    if u is None:
        return
    px = u.width * 0.1 if padding == "10%" else 4
    py = u.height * 0.1 if padding == "10%" else 4
    h, w = mask.shape
    assert result.box == (max(0, int(np.floor(u.x0 - px))), max(0, int(np.floor(u.y0 - py))),
                          min(w, int(np.ceil(u.x1 + px))), min(h, int(np.ceil(u.y1 + py))))
    x0, y0, x1, y1 = result.box
    assert result.image.mode == "L" and np.array_equal(np.asarray(result.image), mask[y0:y1, x0:x1])


@PROPS
@given(image_and_mask(), st.sampled_from(HIGHLIGHT_MODES))
def test_highlight_is_identity_at_zero_strength_and_keeps_size(data, mode):
    image, mask = data
    assert np.array_equal(rgb(highlight(image, mask, mode, strength=0.0)), image)
    out = highlight(image, mask, mode, strength=0.8)
    assert out.mode == "RGB" and out.size == (image.shape[1], image.shape[0])


@PROPS
@given(image_and_mask(), st.sampled_from(HIGHLIGHT_MODES), st.booleans())
def test_effects_are_deterministic_and_leave_inputs_alone(data, mode, as_pil):
    image, mask = data
    img_in = Image.fromarray(image) if as_pil else image.copy()
    mask_in = Image.fromarray(mask) if as_pil else mask.copy()
    before = (np.array(img_in), np.array(mask_in))
    calls = [
        lambda: cutout(img_in, mask_in, feather=1.0),
        lambda: replace_background(img_in, mask_in, "blur", blur_radius=2),
        lambda: highlight(img_in, mask_in, mode),
        lambda: crop(img_in, mask_in, aspect="4:5").image,
        lambda: draw_boxes(img_in, bounding_boxes(mask_in)),
        lambda: refine_mask(mask_in, 0.5, 3, True, 1.0),
    ]
    for call in calls:
        assert call().tobytes() == call().tobytes()
    assert np.array_equal(np.array(img_in), before[0]) and np.array_equal(np.array(mask_in), before[1])


# --------------------------------------------------------------------------- refine_mask


@PROPS
@given(image_and_mask())
def test_refine_mask_does_nothing_unless_asked(data):
    _, mask = data
    assert np.array_equal(np.asarray(refine_mask(mask)), mask)


@PROPS
@given(blobby_mask(), st.floats(0, 1))
def test_refine_threshold_is_hard_and_shared_with_boxes(mask, threshold):
    hard = np.asarray(refine_mask(mask, threshold=threshold))
    assert set(np.unique(hard)) <= {0, 255}
    assert np.array_equal(hard == 255, mask.astype(float) / 255 > threshold)
    assert np.array_equal(np.asarray(cutout(mask, mask, threshold=threshold))[..., 3], hard)


def test_refine_fills_holes_drops_islands_and_feathers():
    mask = np.zeros((60, 60), np.uint8)
    mask[10:40, 10:40] = 240
    mask[20:30, 20:30] = 0  # a hole
    mask[50:53, 50:53] = 200  # a 9-pixel speck
    mask[49:54, 49:54][mask[49:54, 49:54] == 0] = 40  # its faint halo
    filled = np.asarray(refine_mask(mask, fill_holes=True))
    assert (filled[20:30, 20:30] == 255).all() and (filled[10:20] == mask[10:20]).all()
    cleaned = np.asarray(refine_mask(mask, min_island=10))
    assert (cleaned[45:60, 45:60] == 0).all()  # speck and halo gone
    assert np.array_equal(cleaned[:45, :45], mask[:45, :45])  # the object untouched
    assert np.array_equal(np.asarray(refine_mask(mask, min_island=9)), mask)
    assert np.array_equal(np.asarray(refine_mask(mask, min_island=0.003)), cleaned)  # 0.3 % = 10.8 px
    square = np.zeros((60, 60), np.uint8)
    square[10:50, 10:50] = 240
    soft = np.asarray(refine_mask(square, threshold=0.5, feather=3))
    edge = soft[30, 2:20]
    assert edge[0] < 20 and edge[-1] > 235 and np.all(np.diff(edge.astype(int)) >= 0)
    assert len(np.unique(edge)) > 5  # a ramp, not a step


# --------------------------------------------------------------------------- details


def test_decontamination_removes_the_old_background_from_soft_edges():
    """A red disc composited onto green with a wide soft edge: the cut-out's edge colours
    should be red, not the red-green mix the photo holds."""
    h = w = 240
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 120, xx - 120)
    alpha = np.clip((80 - r) / 10, 0, 1)  # a 10-pixel soft rim
    red, green = np.array([220, 30, 40.0]), np.array([20, 200, 60.0])
    photo = alpha[..., None] * red + (1 - alpha[..., None]) * green
    image = np.round(photo).astype(np.uint8)
    mask = np.round(alpha * 255).astype(np.uint8)
    rim = (mask > 25) & (mask < 230)
    raw = np.asarray(cutout(image, mask, decontaminate=False))[..., :3].astype(float)
    clean = np.asarray(cutout(image, mask))[..., :3].astype(float)
    raw_err = np.abs(raw[rim] - red).mean()
    clean_err = np.abs(clean[rim] - red).mean()
    assert clean_err < 0.2 * raw_err, (clean_err, raw_err)
    # On white, the decontaminated edge shows no green fringe.
    on_white = rgb(replace_background(image, mask, "white")).astype(float)
    assert (on_white[rim][:, 1] - on_white[rim][:, 0]).max() < 10


def test_any_mode_and_size_in_same_size_out():
    base = np.random.default_rng(1).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    mask = np.zeros((23, 37), np.uint8)
    mask[5:15, 8:30] = 255
    images = [Image.fromarray(base).convert(m) for m in ("L", "RGBA", "P", "CMYK", "LA", "I;16")]
    images += [base.astype(np.float32) / 255, base[..., 0]]
    for img in images:
        for out in (cutout(img, mask), replace_background(img, mask, "blur"), highlight(img, mask, "blur"),
                    draw_boxes(img, bounding_boxes(mask))):
            assert out.size == (37, 23)
    # A mask of another size is scaled to the photo (as a float array too).
    small = np.asarray(Image.fromarray(mask).resize((18, 11))).astype(np.float32) / 255
    assert cutout(base, small).size == (37, 23)


def test_empty_mask():
    image = np.full((30, 40, 3), 90, np.uint8)
    empty = np.zeros((30, 40), np.uint8)
    found = bounding_boxes(empty)
    assert found.boxes == [] and found.union is None and found.to_dict() == {"count": 0, "boxes": [], "union": None}
    assert np.array_equal(rgb(draw_boxes(image, found, union=True)), image)
    result = crop(image, empty, aspect="16:9", output="cutout")
    assert result.empty and result.box == (0, 0, 40, 30) and result.image.size == (40, 30)
    assert result.image.mode == "RGBA" and "no salient object" in result.message
    assert np.array_equal(rgb(highlight(image, empty, "outline")), image)


def test_boxes_are_plain_data():
    mask = np.zeros((50, 80), np.uint8)
    mask[5:20, 10:30] = 250
    mask[30:45, 50:75] = 200
    found = bounding_boxes(mask)
    data = json.loads(json.dumps(found.to_dict()))
    assert data["count"] == 2
    first = data["boxes"][0]
    assert first == {"x0": 50, "y0": 30, "x1": 75, "y1": 45, "area": 375, "score": round(200 / 255, 4),
                     "width": 25, "height": 15}
    assert data["union"]["x0"] == 10 and data["union"]["y1"] == 45 and data["union"]["area"] == 300 + 375
    assert isinstance(found.boxes[0], Box) and isinstance(found, Boxes)


def test_draw_boxes_draws_inside_each_box():
    image = np.zeros((60, 90, 3), np.uint8)
    mask = np.zeros((60, 90), np.uint8)
    mask[20:50, 10:40] = 255
    out = rgb(draw_boxes(image, bounding_boxes(mask), colour=(0, 255, 0), thickness=2, labels=False))
    green = (out == [0, 255, 0]).all(axis=2)
    ring = np.zeros_like(green)
    ring[20:50, 10:40] = True
    ring[22:48, 12:38] = False
    assert np.array_equal(green, ring)
    labelled = rgb(draw_boxes(image, bounding_boxes(mask), colour="yellow"))
    assert (labelled[:20] != 0).any()  # the label tag sits above the box


def test_readable_errors_for_bad_options():
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), np.uint8)
    bad = [
        lambda: highlight(image, mask, "sparkle"),
        lambda: highlight(image, mask, "dim", strength=1.5),
        lambda: replace_background(image, mask, "not-a-colour"),
        lambda: replace_background(image, mask, (300, 0, 0)),
        lambda: replace_background(image, mask, "white", fit="zoom"),
        lambda: crop(image, mask, padding="-5%"),
        lambda: crop(image, mask, padding="lots"),
        lambda: crop(image, mask, aspect="wide"),
        lambda: crop(image, mask, output="pdf"),
        lambda: cutout(image, mask, threshold=2),
        lambda: refine_mask(mask, feather=-1),
        lambda: bounding_boxes(mask, min_area=-1),
        lambda: draw_boxes(image, [], thickness=0),
    ]
    for call in bad:
        with pytest.raises(OptionError) as info:
            call()
        assert isinstance(info.value, U2NetError) and isinstance(info.value, ValueError)
        assert len(str(info.value)) > 20


def test_crop_leaves_the_image_only_when_it_must():
    mask = np.zeros((100, 200), np.uint8)
    mask[:, 20:180] = 255  # an object as tall as the photo
    square = crop(mask, mask, padding=0, aspect="1:1", output="mask")
    assert square.box[2] - square.box[0] == square.box[3] - square.box[1] == 160
    assert square.box[1] < 0 and "larger than the image" in square.message
    assert np.asarray(square.image)[0].max() == 0  # filled, not stretched
    wide = crop(mask, mask, padding="20%", aspect="16:9", output="mask")
    x0, y0, x1, y1 = wide.box
    assert (x0, y0, x1, y1) == (11, 0, 189, 100) and "padding reduced" in wide.message


# --------------------------------------------------------------------------- real weights


REAL_IMAGES = ("horse", "bike")


@pytest.fixture(scope="module")
def real(reference_dir, weights_dir):
    """(name, photo, our u2netp mask, the published u2netp mask) for two official test images."""
    from u2net.predictor import Predictor

    predictor = Predictor("u2netp", weights=weights_dir / "u2netp.onnx", device="cpu")
    out = []
    for name in REAL_IMAGES:
        path = next((reference_dir / "images").glob(f"{name}.*"))
        photo = Image.open(path).convert("RGB")
        mask = predictor.predict(photo)
        published = Image.open(reference_dir / "u2netp_results" / f"{name}.png").convert("L")
        if max(photo.size) > 1000:  # keep the suite quick on two shared cores
            size = (photo.width // 3, photo.height // 3)
            photo, mask, published = (im.resize(size, Image.BILINEAR) for im in (photo, mask, published))
        out.append((name, photo, mask, published))
    return out


@pytest.fixture(scope="module")
def shots(artifacts_dir):
    folder = artifacts_dir / "effects"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def published_box(published: Image.Image) -> tuple:
    ys, xs = np.nonzero(np.asarray(published) > 127)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_real_masks_agree_with_the_published_ones(real):
    for name, _, mask, published in real:
        err = np.abs(np.asarray(mask, float) - np.asarray(published, float)).mean() / 255
        assert err < 0.02, (name, err)


def test_real_cutout_on_dark_and_light(real, shots):
    for name, photo, mask, published in real:
        cut = cutout(photo, mask)
        assert np.array_equal(np.asarray(cut)[..., 3], np.asarray(mask))
        cut.save(shots / f"{name}_cutout.png")
        raw = cutout(photo, mask, decontaminate=False)
        pub = np.asarray(published) > 127
        for shade, value in (("dark", 20), ("light", 235)):
            board = Image.new("RGBA", photo.size, (value, value, value, 255))
            board.alpha_composite(cut)
            board.convert("RGB").save(shots / f"{name}_cutout_on_{shade}.png")
            arr = np.asarray(board.convert("L"), float)
            # The object shows, the old background does not.
            assert abs(arr[~pub & (np.asarray(mask) < 5)].mean() - value) < 3
            assert abs(arr[pub].mean() - np.asarray(photo.convert("L"), float)[pub].mean()) < 15
        # Decontamination moves colours only at soft edges, and only a little overall.
        diff = np.abs(np.asarray(cut, int) - np.asarray(raw, int))[..., :3].max(axis=2)
        soft = (np.asarray(mask) > 12) & (np.asarray(mask) < 243)
        assert diff[np.asarray(mask) == 255].max(initial=0) == 0
        assert diff[soft].mean() > diff[np.asarray(mask) > 250].mean()


def test_real_backgrounds(real, shots, reference_dir):
    other = Image.open(reference_dir / "images" / "sailboat3.jpg")
    for name, photo, mask, published in real:
        pub = np.asarray(published) > 200
        bg_area = np.asarray(published) < 5
        ours_zero = np.asarray(mask) == 0
        for label, background, kwargs in [("colour", "#1e90ff", {}), ("image_cover", other, {}),
                                          ("image_contain", other, {"fit": "contain"}),
                                          ("image_stretch", other, {"fit": "stretch"}),
                                          ("blur", "blur", {"blur_radius": 10}),
                                          ("grayscale", "grayscale", {}), ("transparent", "transparent", {})]:
            out = replace_background(photo, mask, background, **kwargs)
            assert out.size == photo.size
            out.save(shots / f"{name}_background_{label}.png")
            arr = np.asarray(out.convert("RGB"), float)
            src = np.asarray(photo, float)
            # The subject is the photo's; the background is new.
            assert np.abs(arr[pub] - src[pub]).mean() < 12, label
            if label == "colour":
                assert np.abs(arr[bg_area] - [30, 144, 255]).mean() < 3
            if label == "grayscale":
                spread = arr.max(axis=2) - arr.min(axis=2)
                assert spread[ours_zero].max() == 0 and spread[bg_area].mean() < 1
            if label == "blur":
                keep = bg_area[:, 1:]
                detail_out = np.abs(np.diff(arr.mean(axis=2), axis=1))[keep].mean()
                detail_in = np.abs(np.diff(src.mean(axis=2), axis=1))[keep].mean()
                assert detail_out < 0.5 * detail_in
            if label == "transparent":
                assert out.mode == "RGBA"


def test_real_boxes_find_the_object(real, shots):
    for name, photo, mask, published in real:
        found = bounding_boxes(mask)
        assert found.boxes, name
        target = published_box(published)
        assert iou((found.union.x0, found.union.y0, found.union.x1, found.union.y1), target) > 0.8
        biggest = found.boxes[0]
        assert iou((biggest.x0, biggest.y0, biggest.x1, biggest.y1), target) > 0.6
        drawn = draw_boxes(photo, found, union=True)
        drawn.save(shots / f"{name}_boxes.png")
        changed = np.any(np.asarray(drawn) != np.asarray(photo), axis=2)
        assert changed[biggest.y0, biggest.x0:biggest.x1].mean() > 0.9  # the top edge is drawn
        json.dumps(found.to_dict())


def test_real_highlights(real, shots):
    for name, photo, mask, published in real:
        pub = np.asarray(published) > 200
        bg = np.asarray(published) < 5
        src = np.asarray(photo, float)
        for mode in HIGHLIGHT_MODES:
            out = highlight(photo, mask, mode, strength=0.6)
            out.save(shots / f"{name}_highlight_{mode}.png")
            arr = np.asarray(out, float)
            obj_change = np.abs(arr[pub] - src[pub]).mean()
            bg_change = np.abs(arr[bg] - src[bg]).mean()
            if mode in ("dim", "desaturate", "blur"):
                assert obj_change < 3 and bg_change > 3 * max(obj_change, 1), (mode, obj_change, bg_change)
            if mode == "dim":
                assert abs(arr[bg].mean() / src[bg].mean() - 0.4) < 0.02
            if mode == "desaturate":
                sat = lambda a: (a.max(axis=1) - a.min(axis=1)).mean()  # noqa: E731
                assert sat(arr[bg]) < 0.5 * sat(src[bg])
            if mode == "tint":
                assert bg_change < 1 and obj_change > 20
                assert (arr[pub][:, 0] - src[pub][:, 0]).mean() > 10  # towards red
            if mode == "outline":
                line = np.all(np.asarray(out) == [255, 59, 48], axis=2)
                near = ndimage.binary_dilation(np.asarray(mask) > 127, iterations=8) & (np.asarray(mask) <= 127)
                assert line.sum() > 100 and line[near].sum() > 0.95 * line.sum()
            if mode == "heatmap":
                # The object goes red-ish, the background blue-ish.
                assert (arr[pub][:, 0] - arr[pub][:, 2]).mean() > (src[pub][:, 0] - src[pub][:, 2]).mean() + 30
                assert (arr[bg][:, 2] - arr[bg][:, 0]).mean() > (src[bg][:, 2] - src[bg][:, 0]).mean() + 30


def test_real_crops(real, shots):
    for name, photo, mask, published in real:
        target = published_box(published)
        for aspect in ASPECTS:
            for output in ("image", "cutout", "mask"):
                result = crop(photo, mask, padding="8%", aspect=aspect, output=output)
                assert not result.empty
                x0, y0, x1, y1 = result.box
                # Holds the object the published mask shows (up to a few pixels of edge haze).
                assert x0 <= target[0] + 3 and y0 <= target[1] + 3
                assert x1 >= target[2] - 3 and y1 >= target[3] - 3
                assert result.image.mode == {"image": "RGB", "cutout": "RGBA", "mask": "L"}[output]
                if aspect != "free":
                    a, b = (int(v) for v in aspect.split(":"))
                    assert abs(result.image.width - result.image.height * a / b) <= 1
                if output == "image" or aspect in ("free", "16:9"):
                    result.image.save(shots / f"{name}_crop_{aspect.replace(':', 'x')}_{output}.png")


def test_picture_background_from_a_path_bytes_or_array(tmp_path):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), np.uint8)
    mask[10:20, 10:30] = 255
    picture = Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8))
    path = tmp_path / "beach.png"
    picture.save(path)
    want = np.asarray(replace_background(image, mask, picture, fit="cover"))
    for source in (path, path.read_bytes(), np.asarray(picture)):
        assert np.array_equal(np.asarray(replace_background(image, mask, source, fit="cover")), want)
    # cover: scaled to fill the 50-wide frame (60 → 50 wide, 90 → 75 tall), centred, cropped.
    cover = np.asarray(picture.resize((50, 75), Image.LANCZOS))[22:52]
    assert np.array_equal(want[mask == 0], cover[mask == 0])
    # A string is a colour or a keyword, never a file name: the existing picture's path is
    # refused (not opened), like any other word that is not a colour.
    for name in (str(path), str(tmp_path / "missing.png")):
        with pytest.raises(OptionError, match="is not a colour"):
            replace_background(image, mask, name)

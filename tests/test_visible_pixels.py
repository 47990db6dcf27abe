"""The speed work must not change what a person sees.

The effects compute a big photo in stripes and tiles, skip the tiles where a cut-out is fully
transparent, and keep the photo as uint8 between stripes. Here every output is checked against
a straightforward whole-image computation written in this file (or the public
`estimate_foreground`, which still computes every pixel of the photo at once), with real u2netp
masks on real photos:

- visible pixels (RGB where alpha > 0 in an RGBA output, every pixel otherwise) differ by at
  most 1 grey level, on at most 0.1 % of them: the tiles scale the smooth colour fields up
  window by window, in another order of float operations than the whole image's, which can
  move a value across a rounding boundary;
- fully transparent pixels are (0, 0, 0, 0), as in rembg's cut-outs;
- where alpha is 255 a cut-out holds the photo's colour exactly.

The 1800 × 1200 photo is over 2 megapixels, so the decontamination's colour fields are made at
reduced resolution and scaled up tile by tile, the path that phone photos take.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from u2net import effects
from u2net.effects import crop, cutout, estimate_foreground, highlight, replace_background

MAX_LEVELS = 1  # grey levels
MAX_FRACTION = 1e-3  # of the visible pixels that may differ at all
# Against a float64 formula (the effects compute in float32), more values sit near a rounding
# boundary: still at most 1 grey level, on at most 1 % of the values.
FORMULA_FRACTION = 1e-2


@pytest.fixture(scope="module")
def photos(reference_dir, weights_dir):
    """(name, photo, real u2netp mask): a 2.2-megapixel bike, the horse, the examples' cat."""
    from pathlib import Path

    from u2net.predictor import Predictor

    predictor = Predictor("u2netp", weights=weights_dir / "u2netp.onnx", device="cpu", cache_size=0)
    examples = Path(__file__).resolve().parent.parent / "examples"
    sources = {
        "bike": Image.open(reference_dir / "images" / "bike.jpg").convert("RGB").resize(
            (1800, 1200), Image.BILINEAR),
        "horse": Image.open(reference_dir / "images" / "horse.jpg").convert("RGB"),
        "cat": Image.open(examples / "cat.jpg").convert("RGB"),
    }
    return [(name, photo, predictor.predict(photo)) for name, photo in sources.items()]


def rounded(values: np.ndarray) -> np.ndarray:
    """Float 0..255 to uint8, rounding half up (as the effects do)."""
    return np.clip(np.floor(np.asarray(values, np.float64) + 0.5), 0, 255).astype(np.uint8)


def assert_same_visible(got: Image.Image | np.ndarray, want: np.ndarray, alpha: np.ndarray | None = None,
                        what: str = "", fraction: float = MAX_FRACTION) -> None:
    """RGB of `got` against `want` where alpha > 0 (everywhere when alpha is None)."""
    got_rgb = np.asarray(got)[..., :3].astype(np.int16)
    diff = np.abs(got_rgb - want[..., :3].astype(np.int16))
    if alpha is not None:
        diff = diff[alpha > 0]
    worst = int(diff.max()) if diff.size else 0
    changed = float((diff > 0).mean()) if diff.size else 0.0
    assert worst <= MAX_LEVELS, f"{what}: visible pixels differ by {worst} grey levels"
    assert changed <= fraction, f"{what}: {changed:.4%} of visible values differ"


def assert_transparent_zero(rgba: Image.Image, what: str = "") -> None:
    arr = np.asarray(rgba)
    hidden = arr[..., 3] == 0
    assert hidden.any(), f"{what}: the test needs transparent pixels"
    assert not arr[hidden].any(), f"{what}: fully transparent pixels must be (0, 0, 0, 0)"


def full_estimate(photo: Image.Image, alpha8: np.ndarray) -> np.ndarray:
    """Decontaminated colours of every pixel, computed on the whole photo at once."""
    return estimate_foreground(np.asarray(photo, np.float32), alpha8.astype(np.float32) / 255.0)


def composite(fg: np.ndarray, bg: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """alpha·F + (1 − alpha)·B, in float64, exact at alpha 0 and 1."""
    a = (alpha8.astype(np.float64) / 255.0)[..., None]
    out = fg * a + np.broadcast_to(bg, fg.shape) * (1.0 - a)
    out = np.where(a >= 1.0, fg, out)
    return np.where(a <= 0.0, np.broadcast_to(bg, fg.shape), out)


def test_cutout_shows_the_whole_photo_estimate_and_zeros(photos):
    for name, photo, mask in photos:
        m = np.asarray(mask)
        cut = cutout(photo, mask)
        assert cut.mode == "RGBA" and cut.size == photo.size
        assert np.array_equal(np.asarray(cut)[..., 3], m), name
        assert_same_visible(cut, rounded(full_estimate(photo, m)), m, f"{name} cut-out")
        assert_transparent_zero(cut, name)
        # The same pixels whichever way the app asks for them.
        assert np.array_equal(np.asarray(replace_background(photo, mask, "transparent")),
                              np.asarray(cut)), name


def test_cutout_without_decontamination_is_the_photo_where_visible(photos):
    for name, photo, mask in photos:
        m = np.asarray(mask)
        cut = np.asarray(cutout(photo, mask, decontaminate=False))
        assert np.array_equal(cut[..., 3], m)
        visible = m > 0
        assert np.array_equal(cut[..., :3][visible], np.asarray(photo)[visible]), name
        assert not cut[~visible].any(), name


def test_opaque_pixels_keep_the_photo_exactly(photos):
    for name, photo, mask in photos:
        for feather in (0.0, 3.0):
            cut = np.asarray(cutout(photo, mask, threshold=0.5, feather=feather))
            opaque = cut[..., 3] == 255
            assert opaque.any()
            assert np.array_equal(cut[..., :3][opaque], np.asarray(photo)[opaque]), (name, feather)
            assert not cut[cut[..., 3] == 0].any(), (name, feather)
            refined = np.asarray(effects.refine_mask(mask, threshold=0.5, feather=feather))
            assert_same_visible(cut, rounded(full_estimate(photo, refined)), refined,
                                f"{name} hard edge, feather {feather}")


def test_crop_of_the_cutout_is_the_cutout_cropped(photos):
    for name, photo, mask in photos:
        whole = np.asarray(cutout(photo, mask))
        # 1:1 with wide padding: on these photos the box passes an edge of the picture.
        for aspect, padding in (("free", "5%"), ("1:1", "60%")):
            result = crop(photo, mask, padding=padding, aspect=aspect, output="cutout")
            x0, y0, x1, y1 = result.box
            got = np.asarray(result.image)
            assert got.shape == (y1 - y0, x1 - x0, 4)
            # The reference: the whole cut-out with a transparent border around it.
            pad = max(0, -x0, -y0, x1 - photo.width, y1 - photo.height)
            framed = np.pad(whole, ((pad, pad), (pad, pad), (0, 0)))
            want = framed[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
            assert np.array_equal(got[..., 3], want[..., 3]), (name, aspect)
            assert_same_visible(got, want, want[..., 3], f"{name} crop {aspect}")
            assert not got[got[..., 3] == 0].any(), (name, aspect)


def test_new_backgrounds_are_the_composite_of_the_estimate(photos, tmp_path):
    brick = Image.open(effects.__file__.replace("u2net/effects.py", "examples/background_brick.jpg"))
    for name, photo, mask in photos:
        m = np.asarray(mask)
        rgb = np.asarray(photo, np.float64)
        fg = full_estimate(photo, m).astype(np.float64)
        grey = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)[..., None]
        # "cover": the picture scaled to cover the frame and cropped in the middle.
        scale = max(photo.width / brick.width, photo.height / brick.height)
        sw, sh = max(1, round(brick.width * scale)), max(1, round(brick.height * scale))
        left, top = (sw - photo.width) // 2, (sh - photo.height) // 2
        picture = np.asarray(brick.convert("RGB").resize((sw, sh), Image.LANCZOS).crop(
            (left, top, left + photo.width, top + photo.height)), np.float64)
        cases = {"white": (np.array([255.0, 255.0, 255.0]), fg),
                 "grayscale": (grey, fg),
                 "picture": (picture, fg)}
        for background, (bg, front) in cases.items():
            arg = brick if background == "picture" else background
            got = replace_background(photo, mask, arg)
            assert got.mode == "RGB"
            assert_same_visible(got, rounded(composite(front, bg, m)), None, f"{name} {background}",
                                FORMULA_FRACTION)
        got = replace_background(photo, mask, "white", decontaminate=False)
        assert_same_visible(got, rounded(composite(rgb, np.array([255.0] * 3), m)), None,
                            f"{name} white, no decontamination", FORMULA_FRACTION)


def test_blurred_background_is_the_whole_image_blur(photos):
    """The "blur" background against the whole-image normalised convolution: the photo with
    the object's weight taken out, shrunk, blurred, divided and scaled up as one image."""
    for name, photo, mask in photos:
        m = np.asarray(mask)
        rgb = np.asarray(photo, np.float32)
        alpha = m.astype(np.float32) / 255.0
        h, w = m.shape
        sigma = 12.0
        factor = int(sigma // 3)
        small = (-(-w // factor), -(-h // factor))
        weight = (1.0 - alpha)[..., None]
        stack = np.concatenate([rgb * weight, weight, rgb], axis=2)
        g = ndimage.gaussian_filter(effects._resize(stack, small, Image.BOX),
                                    (sigma / factor, sigma / factor, 0), mode="nearest", truncate=4.0)
        blurred = effects._resize((g[..., :3] + 1e-3 * g[..., 4:]) / (g[..., 3:4] + 1e-3), (w, h),
                                  Image.BILINEAR)
        fg = full_estimate(photo, m).astype(np.float64)
        got = replace_background(photo, mask, "blur", blur_radius=sigma)
        assert_same_visible(got, rounded(composite(fg, blurred.astype(np.float64), m)), None,
                            f"{name} blur", FORMULA_FRACTION)


def test_highlights_are_their_formulas(photos):
    for name, photo, mask in photos:
        m = np.asarray(mask)
        rgb = np.asarray(photo, np.float64)
        a = (m.astype(np.float64) / 255.0)[..., None]
        grey = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)[..., None]
        red = np.array([255.0, 59.0, 48.0])  # the default colour, #ff3b30
        s = 0.6
        want = {
            "dim": rgb * (1.0 - s * (1.0 - a)),
            "desaturate": composite(rgb, rgb + s * (grey - rgb), m),
            "tint": rgb + s * a * (red * (0.35 + 0.65 * grey / 255.0) - rgb),
            "heatmap": rgb + s * (effects.colormap(m.astype(np.float32) / 255.0) - rgb),
        }
        for mode, expected in want.items():
            got = highlight(photo, mask, mode=mode, strength=s)
            assert_same_visible(got, rounded(expected), None, f"{name} {mode}", FORMULA_FRACTION)
        assert np.array_equal(np.asarray(highlight(photo, mask, "dim", strength=0)), np.asarray(photo))


def test_box_blur_is_scipys_uniform_filter():
    # The decontamination's box blur runs on OpenCV for speed; it must keep scipy's window
    # (even sizes included) and its mirrored edges, or every soft edge's colour would move.
    rng = np.random.default_rng(7)
    for shape in ((37, 53), (37, 53, 3), (40, 31, 1), (5, 9, 4)):
        arr = rng.random(shape, dtype=np.float32)
        for size in (1, 2, 5, 6, 12, 31, 60):
            sizes = (size, size, 1) if arr.ndim == 3 else size
            want = ndimage.uniform_filter(arr.astype(np.float64), sizes, mode="reflect")
            got = effects._box_blur(arr, size)
            assert got.shape == arr.shape and got.dtype == np.float32, (shape, size)
            assert np.abs(got - want).max() < 1e-5, (shape, size)


def pillow_resized(arr: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Pillow's float ("F") resampling of each channel: what the effects' resizes must equal."""
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], np.float32), "F")
                               .resize(size, resample)) for c in range(planes.shape[2])], axis=2)
    return out[..., 0] if arr.ndim == 2 else out


def test_resizes_are_pillows_box_and_bilinear():
    # The colour fields are reduced (box filter) and enlarged (bilinear) on OpenCV for speed;
    # the weights must stay Pillow's, including the inputs Pillow's rounding gives to no output
    # (51 -> 26 skips pixel 25) and reductions by factors that are not whole numbers.
    rng = np.random.default_rng(11)
    for (h, w), (th, tw) in [((51, 60), (26, 60)), ((717, 873), (66, 80)), ((1433, 1745), (717, 873)),
                             ((37, 53), (5, 7)), ((9, 9), (1, 1)), ((30, 41), (30, 41)), ((120, 97), (12, 97))]:
        for shape in ((h, w), (h, w, 1), (h, w, 3), (h, w, 4)):
            arr = rng.random(shape, dtype=np.float32)
            for src in (arr, (arr * 255).astype(np.uint8)):
                got = effects._resize(src, (tw, th), Image.BOX)
                want = pillow_resized(src, (tw, th), Image.BOX)
                assert got.shape == want.shape and got.dtype == np.float32, (shape, src.dtype)
                assert np.abs(got - want).max() <= 2e-6 * max(1.0, float(want.max())), (shape, (th, tw))
            small = rng.random((th, tw, *shape[2:]), dtype=np.float32)
            got = effects._resize(small, (w, h), Image.BILINEAR)
            want = pillow_resized(small, (w, h), Image.BILINEAR)
            assert got.shape == want.shape and np.abs(got - want).max() < 1e-6, (shape, (th, tw))


def test_windows_of_an_enlarged_field_are_pillows_whole_enlargement():
    # Big photos enlarge the colour fields one tile at a time: every window must hold the
    # values of Pillow's bilinear enlargement of the whole field (to float rounding).
    rng = np.random.default_rng(5)
    for (hs, ws), (h, w) in [((70, 106), (141, 212)), ((50, 67), (150, 200)), ((66, 80), (717, 873)), ((1, 1), (9, 9))]:
        for shape in ((hs, ws), (hs, ws, 3)):
            small = rng.random(shape, dtype=np.float32)
            whole = pillow_resized(small, (w, h), Image.BILINEAR)
            window = effects._upscaler(small, (w, h))
            for r0, r1, c0, c1 in ((0, h, 0, w), (0, min(h, 9), 0, w), (h // 2, h, w // 3, w // 2), (h - 1, h, w - 1, w)):
                got = window(r0, r1, c0, c1)
                assert got.shape == whole[r0:r1, c0:c1].shape, (shape, (r0, r1, c0, c1))
                assert np.abs(got - whole[r0:r1, c0:c1]).max() < 1e-6, (shape, (r0, r1, c0, c1))


def test_correction_is_blur_fusions_formula():
    # F = F̂ + α(I − αF̂ − (1 − α)B̂), clipped to 0..1 (Forte & Pitié); the effects compute it
    # rearranged in place, which must not change it beyond float32 rounding.
    rng = np.random.default_rng(3)
    photo, f, b = (rng.random((30, 40, 3), dtype=np.float32) for _ in range(3))
    alpha = rng.random((30, 40, 1), dtype=np.float32)
    alpha[:5] = 0.0
    alpha[-5:] = 1.0
    a, i, f64, b64 = (x.astype(np.float64) for x in (alpha, photo, f, b))
    want = np.clip(f64 + a * (i - a * f64 - (1 - a) * b64), 0, 1)
    got = effects._correct(photo.copy(), alpha, f, b)
    assert np.abs(got - want).max() < 1e-6


@pytest.mark.parametrize("background", ["white", "blur", "grayscale", "transparent"])
def test_cutout_and_background_at_once_are_the_two_calls(photos, background):
    # render makes both from one colour estimate when both are asked for: the same bytes.
    for name, photo, mask in photos[:2]:
        for decontaminate in (True, False):
            cut, composite = effects.cutout_and_background(photo, mask, background, decontaminate=decontaminate)
            assert np.array_equal(np.asarray(cut), np.asarray(cutout(photo, mask, decontaminate=decontaminate))), name
            alone = replace_background(photo, mask, background, decontaminate=decontaminate)
            assert composite.mode == alone.mode and np.array_equal(np.asarray(composite), np.asarray(alone)), name


def test_narrow_pass_by_windows_is_the_whole_photos(photos):
    # Up to ~2 MP the decontamination's narrow pass runs window by window (with a margin, the
    # box mirrored only at the photo's edges): any window, at the edges, in the middle, one
    # row or one column thin, holds the whole photo's colours to float rounding.
    for name, photo, mask in photos[1:]:  # the horse and the cat: under 2 MP
        rgb = np.asarray(photo)
        alpha = np.asarray(mask, np.float32) / 255.0
        windowed = effects._BlurFusion(rgb, alpha)
        whole = effects._BlurFusion(rgb, alpha, windows=False)
        assert windowed._windowed and not whole._windowed, name
        h, w = alpha.shape
        everything = whole.colours(0, h, 0, w)
        for r0, r1, c0, c1 in ((0, h, 0, w), (0, 1, 0, w), (h - 1, h, 0, w), (0, h, w - 1, w),
                               (3, 40, 5, 17), (h // 2, h // 2 + 128, w // 3, w // 3 + 128),
                               (h - 7, h, w - 130, w)):
            got = windowed.colours(r0, r1, c0, c1)
            assert got.shape == (r1 - r0, c1 - c0, 3), (name, r0, r1, c0, c1)
            assert np.abs(got - everything[r0:r1, c0:c1]).max() < 1e-3, (name, r0, r1, c0, c1)

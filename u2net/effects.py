"""What people do with a saliency mask: cut-outs, new backgrounds, boxes, highlights and crops.

Pure functions on (image, mask): nothing here runs a network or touches the caller's objects,
and the same inputs always give the same output. `image` is anything `images.load_image` takes
(any size and mode); `mask` is an "L" image or an array (0..255, or float 0..1), resized to the
image when the sizes differ. Every output has the image's size, except `crop`.

A pixel is "foreground at threshold t" when its mask value / 255 is above t (strictly), the one
rule shared by `refine_mask`, `bounding_boxes` and `crop`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import ImageInput, load_image, load_mask
from .vocabulary import (
    ASPECTS,
    CROP_OUTPUTS,
    DEFAULT_MARK_COLOUR,
    FITS,
    HIGHLIGHT_MODES,
    Background,
    Colour,
    OptionError,
    PictureInput,
    parse_background,
    parse_colour,
)

# --------------------------------------------------------------------------- helpers


def _ndimage():
    """scipy.ndimage, imported on first use: most outputs never need it, and every process
    that imports the effects (each batch worker, the app) saved its ~0.12 s import."""
    from scipy import ndimage

    return ndimage


def _inputs8(image: ImageInput, mask: ImageInput) -> tuple[np.ndarray, np.ndarray]:
    """The image as uint8 H×W×3 and the mask as uint8 H×W, read-only: effects convert one
    stripe at a time to float, so a big photo is never a full-size float copy."""
    img = load_image(image, copy=False)  # read only, and np.asarray copies it anyway
    m = load_mask(mask, size=img.size)
    return np.asarray(img), np.asarray(m)


# Full-resolution float work runs on stripes of this many rows at most (and ~1 MP), so that
# a 24-megapixel photo holds uint8 arrays and a few stripe-sized float ones, and so that the
# parts of a cut-out where alpha is 0 or 255 can be skipped tile by tile (see _tile_runs).
_STRIPE_ROWS = 128
_BLOCK = 128  # columns: tiles of a stripe with no visible pixel are skipped


def _stripes(h: int, w: int) -> Iterable[tuple[int, int]]:
    rows = max(1, min(_STRIPE_ROWS, 1_000_000 // max(1, w)))
    for r0 in range(0, h, rows):
        yield r0, min(h, r0 + rows)


_STRIPE_THREADS = min(4, os.cpu_count() or 1)
_PARALLEL_PIXELS = 1_000_000  # smaller photos: threads cost more than they save (measured)
_PLANES_SIDE_BY_SIDE = 16_000_000  # pixels: above, a resize's planes go one at a time


_this_thread = threading.local()


def use_threads(count: int) -> None:
    """How many threads the effects may use on a big photo (default: the CPU cores, at most
    4). Batch worker processes, one per core, set 1."""
    global _STRIPE_THREADS
    _STRIPE_THREADS = max(1, int(count))
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(_STRIPE_THREADS)


@functools.cache
def _cv2():
    """OpenCV, imported on first use (the app's start-up does not pay for it), with no more
    threads than the effects may use."""
    import cv2

    cv2.setNumThreads(_STRIPE_THREADS)
    return cv2


@contextlib.contextmanager
def threads_here(count: int):
    """Within the block, effects called from this thread use at most `count` threads (a
    front end that already runs several outputs side by side asks for 1)."""
    before = getattr(_this_thread, "count", None)
    _this_thread.count = max(1, int(count))
    try:
        yield
    finally:
        _this_thread.count = before


def thread_count() -> int:
    """How many threads work on one big photo here: `threads_here`'s count within its block,
    else `use_threads`' (the PNG encoder follows the same rules)."""
    return getattr(_this_thread, "count", None) or _STRIPE_THREADS


def _each_task(pixels: int, tasks: Iterable, work) -> None:
    """Run `work(task)` for every task, on a few threads when the photo has `pixels` enough to
    repay them: each task writes its own part of the result, and numpy and Pillow release the
    GIL, so the tasks share the cores. The result is the same as one after the other."""
    count = thread_count()
    if pixels < _PARALLEL_PIXELS or count < 2:
        for task in tasks:
            work(task)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(work, tasks))  # a task's exception is raised here


def _each_stripe(h: int, w: int, work) -> None:
    """Run `work(r0, r1)` on every stripe (threads as `_each_task`)."""
    _each_task(h * w, list(_stripes(h, w)), lambda rows: work(*rows))


def _tile_runs(alpha: np.ndarray) -> list[tuple[int, int, str]]:
    """Column ranges (whole _BLOCK-wide tiles, merged) of a stripe of a uint8 alpha array, each
    with what its tiles hold: "clear" (alpha 0 throughout: only the background shows),
    "solid" (255 throughout: only the photo shows) or "mixed" (anything else)."""
    w = alpha.shape[1]
    n = -(-w // _BLOCK)
    pad = n * _BLOCK - w
    lo = np.pad(alpha.min(axis=0), (0, pad), mode="edge").reshape(n, _BLOCK).min(axis=1)
    hi = np.pad(alpha.max(axis=0), (0, pad), mode="edge").reshape(n, _BLOCK).max(axis=1)
    states = np.where(hi == 0, 0, np.where(lo == 255, 1, 2))
    names = ("clear", "solid", "mixed")
    edges = np.flatnonzero(np.diff(states)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    return [(int(a) * _BLOCK, min(w, int(b) * _BLOCK), names[states[a]]) for a, b in zip(starts, ends, strict=True)]


def _upscaler(small: np.ndarray, size: tuple[int, int]):
    """A function (r0, r1, c0=0, c1=width) → that window of `small` (a smooth float H×W or
    H×W×C field) enlarged bilinearly to `size` (width, height), as float32: the full-size field
    one stripe or tile at a time, with Pillow's bilinear weights (half-pixel centres, edges
    held)."""
    w, h = size
    hs, ws = small.shape[:2]
    if (ws, hs) == (w, h):
        return lambda r0, r1, c0=0, c1=w: small[r0:r1, c0:c1]
    field = np.ascontiguousarray(small[..., None] if small.ndim == 2 else small, np.float32)
    cv2 = _cv2()

    def taps(start: int, stop: int, n_small: int, n_full: int):
        # Output pixel x samples the small field at (x + ½)·n_small/n_full − ½.
        where = (np.arange(start, stop) + 0.5) * (n_small / n_full) - 0.5
        below = np.floor(where)
        weight = (where - below).astype(np.float32)
        below = below.astype(np.intp)
        return np.clip(below, 0, n_small - 1), np.clip(below + 1, 0, n_small - 1), weight

    def window(r0: int, r1: int, c0: int = 0, c1: int = w) -> np.ndarray:
        top, bottom, down = taps(r0, r1, hs, h)
        first = int(top[0])
        rows = field[first:int(bottom[-1]) + 1]
        # The few rows of `small` the window needs, enlarged across the whole width (OpenCV:
        # the whole-image weights; a row count unchanged copies the rows), then cut to c0:c1.
        across = cv2.resize(rows, (w, rows.shape[0]), interpolation=cv2.INTER_LINEAR)
        across = across.reshape(rows.shape[0], w, -1)[:, c0:c1]
        upper = across[top - first]
        lower = across[bottom - first]
        lower -= upper
        lower *= down[:, None, None]
        lower += upper
        return lower[..., 0] if small.ndim == 2 else lower

    return window


def _unit(alpha8: np.ndarray) -> np.ndarray:
    """uint8 0..255 → float32 0..1, without a float copy of the uint8 array on the way (a
    24-megapixel mask's float is 96 MB)."""
    return np.true_divide(alpha8, np.float32(255.0), dtype=np.float32)


def _to_image(arr: np.ndarray, mode: str | None = None) -> Image.Image:
    """Float 0..255 → rounded 8-bit PIL image."""
    return Image.fromarray(_to_uint8(arr), mode) if mode else Image.fromarray(_to_uint8(arr))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Round half up and clip to 0..255, with one temporary (big photos are big): x + ½ held
    to 0..255.999 and truncated is floor(x + ½) clipped."""
    tmp = np.add(arr, 0.5, dtype=np.float32)
    np.clip(tmp, 0, _JUST_UNDER_256, out=tmp)
    return tmp.astype(np.uint8)


_JUST_UNDER_256 = np.float32(255.999)


def _check_unit(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    try:
        ok = 0.0 <= float(value) <= 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionError(f"{name} must be a number from 0 to 1, got {value!r}")


def _check_nonneg(name: str, value: float) -> None:
    try:
        ok = float(value) >= 0.0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionError(f"{name} must be a number ≥ 0, got {value!r}")


def _foreground(m: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose value / 255 is above `threshold` (the shared foreground rule)."""
    return m > np.float32(threshold * 255.0)  # compared as float32, without a float copy


def _pixels(amount: float, total: int) -> float:
    """`amount` below 1 is a fraction of `total` pixels, from 1 up a pixel count."""
    return amount * total if amount < 1 else float(amount)


def _resize(arr: np.ndarray, size: tuple[int, int], resample: int,
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Resize a float H×W or H×W×C array (or the `box` region of it, in source pixels) to
    `size` (width, height), as Pillow's "F" resampling does. A box-filter reduction and a
    bilinear enlargement of the whole array run on OpenCV (the same weights, 5-10x faster);
    the rest channel by channel on Pillow."""
    h, w = arr.shape[:2]
    if box is None and resample == Image.BOX and size[0] <= w and size[1] <= h:
        return _box_reduced(arr, size)
    if box is None and resample == Image.BILINEAR and size[0] >= w and size[1] >= h:
        return _bilinear_enlarged(arr, size)
    return _resize_pillow(arr, size, resample, box)


def _box_runs(n_in: int, n_out: int) -> list[tuple[int, int, int, int, int]]:
    """Pillow's box reduction of n_in pixels to n_out, as runs (in0, in1, out0, out1, k):
    outputs out0..out1 each average k consecutive inputs. Pillow gives output i the inputs j
    with i·s < j + ½ ≤ (i + 1)·s (s = n_in / n_out; computed here as Pillow does, in double):
    runs of ⌈s⌉ or ⌊s⌋ pixels, so a reduction is a few integer-factor box filters (an input
    Pillow skips is in no run)."""
    scale = n_in / n_out
    support = 0.5 * scale
    centre = (np.arange(n_out) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    taps = first[:, None] + np.arange(math.ceil(scale) + 2)
    where = (taps - centre[:, None] + 0.5) * (1.0 / scale)  # Pillow's box: 1 on (-½, ½]
    inside = (where > -0.5) & (where <= 0.5) & (taps < n_in)
    start = taps[np.arange(n_out), inside.argmax(axis=1)]
    count = inside.sum(axis=1)
    # A run ends where the count changes or an input is skipped (at a boundary that falls
    # exactly between two outputs, Pillow's rounding can give a pixel to neither).
    cut = np.flatnonzero((np.diff(count) != 0) | (start[1:] != start[:-1] + count[:-1])) + 1
    bounds = np.concatenate([[0], cut, [n_out]])
    return [(int(start[a]), int(start[a] + count[a] * (b - a)), int(a), int(b), int(count[a]))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _box_reduced(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`_resize(arr, size, Image.BOX)` for a reduction, on OpenCV: each block of equal runs
    (at most ⌈s⌉² blocks) is an exact integer-factor area average. uint8 input is made float a
    stripe of rows at a time (a 24-megapixel photo never has a full float copy)."""
    cv2 = _cv2()
    h, w = arr.shape[:2]
    out = np.empty((size[1], size[0], *arr.shape[2:]), np.float32)
    x_runs = _box_runs(w, size[0])
    for y0, y1, o0, _, ky in _box_runs(h, size[1]):
        step = ky * max(1, 256 // ky)  # rows per stripe, whole runs
        for r0 in range(y0, y1, step):
            r1 = min(y1, r0 + step)
            rows = np.asarray(arr[r0:r1], np.float32)
            q0, q1 = o0 + (r0 - y0) // ky, o0 + (r1 - y0) // ky
            for x0, x1, p0, p1, _ in x_runs:
                small = cv2.resize(rows[:, x0:x1], (p1 - p0, q1 - q0), interpolation=cv2.INTER_AREA)
                out[q0:q1, p0:p1] = small.reshape(out[q0:q1, p0:p1].shape)
    return out


def _bilinear_enlarged(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`_resize(arr, size, Image.BILINEAR)` for an enlargement, on OpenCV (the same half-pixel
    weights and edge clamping as Pillow's)."""
    out = _cv2().resize(np.ascontiguousarray(arr, np.float32), size, interpolation=_cv2().INTER_LINEAR)
    return out.reshape(size[1], size[0], *arr.shape[2:])


def _resize_pillow(arr: np.ndarray, size: tuple[int, int], resample: int,
                   box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Pillow's "F" resampling, channel by channel."""
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr, np.float32), "F")
                          .resize(size, resample, box=box))
    out = np.empty((size[1], size[0], arr.shape[2]), np.float32)

    def plane(c: int) -> None:
        out[..., c] = _resize_pillow(arr[..., c], size, resample, box)

    # Planes side by side (each is a float copy of one channel) only while two of them stay
    # small: a 24-megapixel photo resizes one plane at a time, for its peak memory.
    pixels = arr.shape[0] * arr.shape[1]
    with threads_here(1) if pixels > _PLANES_SIDE_BY_SIDE else contextlib.nullcontext():
        _each_task(pixels, range(arr.shape[2]), plane)
    return out


def _reduced_size(h: int, w: int, factor: int) -> tuple[int, int]:
    """(width, height) of an h × w array reduced `factor` times, rounded up, at least 1 × 1."""
    return max(1, math.ceil(w / factor)), max(1, math.ceil(h / factor))


def _downscaled(arr: np.ndarray, factor: int, run) -> np.ndarray:
    """Apply `run` (a smooth, wide filter) at 1/`factor` resolution and scale back up: the
    result is smooth at that scale anyway, and this keeps a 12-megapixel photo fast."""
    if factor <= 1:
        return run(arr.astype(np.float32))
    h, w = arr.shape[:2]
    small = _reduced_size(h, w, factor)
    return _resize(run(_resize(arr, small, Image.BOX)), (w, h), Image.BILINEAR)


def _downscaled_rows(arr: np.ndarray, factor: int, run):
    """`_downscaled` as a function (r0, r1) → those rows of the result: the scaled-up field is
    made one stripe at a time instead of as one full-size float array."""
    h, w = arr.shape[:2]
    if factor <= 1:
        return _upscaler(run(arr.astype(np.float32)), (w, h))
    small = _reduced_size(h, w, factor)
    return _upscaler(run(_resize(arr, small, Image.BOX)), (w, h))


def _gaussian(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the two image axes only (channels stay apart). Wide blurs (sigma
    over 6 px) run at reduced resolution, which looks the same and is far faster."""
    if sigma <= 0:
        return arr.astype(np.float32, copy=True)
    factor = int(sigma // 3) if sigma > 6 else 1

    def run(a: np.ndarray) -> np.ndarray:
        s = sigma / factor
        sig = (s, s, 0) if a.ndim == 3 else s
        return _ndimage().gaussian_filter(a, sig, mode="nearest", truncate=4.0)

    return _downscaled(arr, factor, run)


def _box_blur(arr: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size×size window (edges mirrored), each channel apart. OpenCV's box filter
    is 3–5× faster than scipy's and gives the same window and values (to float rounding)."""
    size = max(1, int(size))
    h, w = arr.shape[:2]
    if size > min(h, w):  # a window wider than the picture: scipy mirrors it again and again
        sizes = (size, size, 1) if arr.ndim == 3 else size
        return _ndimage().uniform_filter(arr, sizes, mode="reflect")
    cv2 = _cv2()
    out = cv2.blur(np.ascontiguousarray(arr, np.float32), (size, size), borderType=cv2.BORDER_REFLECT)
    return out.reshape(arr.shape)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as Pillow's "L" conversion), H×W float."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# --------------------------------------------------------------------------- mask refinement


def refine_mask(mask: ImageInput, threshold: float | None = None, min_island: float = 0,
                fill_holes: bool = False, feather: float = 0.0) -> Image.Image:
    """Clean a saliency mask; every step is optional and off by default.

    Parameters:
        mask: the mask ("L" image or array).
        threshold: hard edge: values above `threshold` (0..1) become 255, the rest 0.
            None keeps the soft mask.
        min_island: drop separate blobs with fewer core pixels (above the threshold, or 0.5)
            than this; below 1 it is a fraction of the image's pixels. A blob's faint halo goes
            with it.
        fill_holes: fill background regions fully enclosed by the object.
        feather: soften the edge with a Gaussian blur of this sigma, in pixels.

    Returns:
        A new "L" mask of the same size; with every step off, an exact copy.
    """
    _check_unit("threshold", threshold, allow_none=True)
    _check_nonneg("min_island", min_island)
    _check_nonneg("feather", feather)
    m = np.array(load_mask(mask), dtype=np.uint8)
    level = 0.5 if threshold is None else float(threshold)
    if threshold is not None:
        m = np.where(_foreground(m, level), 255, 0).astype(np.uint8)
    if min_island > 0:
        core = _foreground(m, level)
        # A blob is its faint support (≥ 10 %) so that a dropped speck takes its halo along.
        support = core | (m >= 26)
        labels, count = _ndimage().label(support, structure=np.ones((3, 3), bool))
        if count:
            core_sizes = _ndimage().sum_labels(core, labels, index=np.arange(1, count + 1))
            small = np.concatenate([[False], core_sizes < _pixels(min_island, m.size)])
            m[small[labels]] = 0
    if fill_holes:
        core = _foreground(m, level)
        holes = _ndimage().binary_fill_holes(core) & ~core
        m[holes] = 255
    if feather > 0:
        return _to_image(_gaussian(m, feather), "L")
    return Image.fromarray(m, "L")


def _refined(mask: np.ndarray, threshold: float | None, feather: float,
             min_island: float = 0, fill_holes: bool = False) -> np.ndarray:
    """The refined mask as uint8 (the mask itself when nothing is asked)."""
    if threshold is not None or feather or min_island or fill_holes:
        return np.asarray(refine_mask(mask, threshold, min_island, fill_holes, feather))
    return mask


def _alpha(mask: np.ndarray, threshold: float | None, feather: float,
           min_island: float = 0, fill_holes: bool = False) -> np.ndarray:
    """Refined mask as float32 alpha 0..1."""
    return _unit(_refined(mask, threshold, feather, min_island, fill_holes))


# --------------------------------------------------------------------------- cut-out


def _per_channel(alpha: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An H×W or H×W×1 alpha as H×W×C for an H×W×C array: numpy multiplies by a broadcast
    last axis of 1 at half the speed, more than the copy costs."""
    if len(shape) != 3 or shape[2] == 1 or (alpha.ndim == 3 and alpha.shape[2] == shape[2]):
        return alpha
    plane = alpha[..., 0] if alpha.ndim == 3 else alpha
    return _cv2().merge([plane] * shape[2]).reshape(shape)


def _mask8(condition: np.ndarray) -> np.ndarray:
    """A boolean H×W (or H×W×1) array as OpenCV's uint8 mask (0 or 1), without a copy."""
    return condition.reshape(condition.shape[:2]).view(np.uint8)


def _correct(photo: np.ndarray, alpha: np.ndarray, blurred_f: np.ndarray,
             blurred_b: np.ndarray, top: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """Blur fusion's correction F = F̂ + α (I − α F̂ − (1 − α) B̂), clipped to 0..top (colours
    in 0..1 or 0..255), into `out` or one new array (big photos are big)."""
    # I − αF̂ − (1 − α)B̂ written as (I − B̂) − α(F̂ − B̂): no (1 − α) array.
    out = np.subtract(blurred_f, blurred_b, out=out)
    alpha = _per_channel(alpha, out.shape)
    out *= alpha
    np.subtract(photo, out, out=out)
    out -= blurred_b
    out *= alpha
    out += blurred_f
    return np.clip(out, 0.0, top, out=out)


class _BlurFusion:
    """`estimate_foreground` in two parts: the smooth local means of foreground and background
    colours, computed once for the whole photo at no more than ~2 megapixels, and the final
    correction at full resolution, for any window of the photo (`colours`). A cut-out asks
    only for the windows where alpha is above 0, the only pixels whose colour shows.

    Up to ~2 megapixels the narrow pass (a box of r2 ≤ 6 pixels) is computed window by window
    too, on the window and a margin of r2 around it, unless `windows` is False: a cut-out then
    makes no full-size float copy of the photo, its first estimate and its weights (1.5 MP
    cut-out, 2 threads: 87 → 60 ms), and skips the tiles where alpha is 0. The values are the
    whole photo's to float rounding (the box sums start elsewhere; `estimate_foreground`
    computes the whole photo at once, and tests/test_visible_pixels.py holds the two together).
    """

    def __init__(self, image: np.ndarray, alpha: np.ndarray, windows: bool = True) -> None:
        # image: H×W×3 uint8 or float (0..255); alpha: H×W float32 (0..1).
        self.image = image
        self.alpha = a = alpha[..., None]
        h, w = alpha.shape
        # The local means are smooth, so they are computed at no more than ~2 megapixels; only
        # the final correction, which restores the fine detail, runs at full resolution.
        k = max(1, math.ceil(math.sqrt(h * w / 2_000_000)))
        small = _reduced_size(h, w, k)
        hs, ws = small[1], small[0]
        # The paper's radii (90, then 6) are for ~2-megapixel photos; smaller photos get a
        # window of an eighth of their side, wide enough to reach solid foreground across a
        # soft edge.
        r1 = int(np.clip(round(max(hs, ws) / 8), 5, 90))
        r2 = int(np.clip(round(r1 / 15), 2, 6))
        factor = max(1, r1 // 8)
        # The narrow pass by windows (see above): only at full resolution, where the wide pass is
        # reduced (its means come in as full-size fields), and where a window with its margin
        # is as wide as the box (min(h, w) > 2 r2).
        self._windowed = windows and k == 1 and factor > 1 and min(h, w) > 2 * r2
        self._r2 = r2
        if k > 1:
            img_s = _resize(image, small, Image.BOX)
            img_s /= 255.0
        elif self._windowed:
            img_s = None  # no full-size float copy: the wide pass reads the photo reduced
        else:
            img_s = np.empty(image.shape, np.float32)
            _each_stripe(h, w, lambda r0, r1: np.divide(image[r0:r1], np.float32(255.0), out=img_s[r0:r1],
                                                        dtype=np.float32))
        a_s = _resize(a, small, Image.BOX) if k > 1 else a

        def means(fg: np.ndarray, bg: np.ndarray, alpha_: np.ndarray, r: int, scale: float = 1.0):
            # Alpha-weighted local means of foreground and background colours (times `scale`,
            # applied to the one-plane denominators). The arithmetic runs a stripe of rows at
            # a time, on threads for big arrays (the same values as whole arrays).
            rows, cols = alpha_.shape[:2]
            weighted_f = np.empty(np.broadcast_shapes(fg.shape, alpha_.shape), np.float32)
            weighted_b = np.empty(np.broadcast_shapes(bg.shape, alpha_.shape), np.float32)

            def weigh(r0: int, r1: int) -> None:
                np.multiply(fg[r0:r1], alpha_[r0:r1], out=weighted_f[r0:r1])
                np.multiply(bg[r0:r1], 1 - alpha_[r0:r1], out=weighted_b[r0:r1])

            def normalise(r0: int, r1: int) -> None:
                near = blurred_a[r0:r1]
                blurred_f[r0:r1] /= (near + 1e-5) / scale
                blurred_b[r0:r1] /= ((1 - near) + 1e-5) / scale

            _each_stripe(rows, cols, weigh)
            # The three blurs side by side: OpenCV's box filter runs on one thread.
            blurred: dict[int, np.ndarray] = {}
            _each_task(rows * cols, (1, 2, 0), lambda i: blurred.__setitem__(
                i, _box_blur((alpha_, weighted_f, weighted_b)[i], r)))
            blurred_a, blurred_f, blurred_b = blurred[0], blurred[1], blurred[2]
            _each_stripe(rows, cols, normalise)
            return blurred_f, blurred_b

        def confident_means(x: np.ndarray) -> np.ndarray:
            # Pass 1 averages only confident pixels (alpha near 1 for F, near 0 for B), so a
            # wide soft edge does not pull the estimate towards the mix; where no confident
            # pixel is in reach it falls back to the paper's alpha weights.
            photo, alpha_ = x[..., :3], x[..., 3:]
            r = max(1, round(r1 / factor))
            w_f = np.clip(2 * alpha_ - 1, 0, 1) ** 4
            w_b = np.clip(1 - 2 * alpha_, 0, 1) ** 4
            reach_f, reach_b = _box_blur(w_f, r), _box_blur(w_b, r)
            conf_f = _box_blur(photo * w_f, r) / (reach_f + 1e-5)
            conf_b = _box_blur(photo * w_b, r) / (reach_b + 1e-5)
            paper_f, paper_b = means(photo, photo, alpha_, r)
            return np.concatenate([np.where(reach_f > 1e-3, conf_f, paper_f),
                                   np.where(reach_b > 1e-3, conf_b, paper_b)], axis=2)

        # Pass 1, wide: its means are smooth at scale r1, so computed at a further reduced size
        # (as `_downscaled` does, plane by plane; foreground and background means come back as
        # two contiguous arrays, which the full-size arithmetic below reads 2-3x faster).
        if factor > 1:
            tiny = _reduced_size(hs, ws, factor)
            if img_s is None:
                photo_tiny = _resize(image, tiny, Image.BOX)
                photo_tiny /= 255.0
            else:
                photo_tiny = _resize(img_s, tiny, Image.BOX)
            both = confident_means(np.concatenate([photo_tiny, _resize(a_s, tiny, Image.BOX)], axis=2))
            size = (a_s.shape[1], a_s.shape[0])
            mean_f = _resize(both[..., :3], size, Image.BILINEAR)
            mean_b = _resize(both[..., 3:], size, Image.BILINEAR)
            if self._windowed:
                self._mean_f, self._mean_b = mean_f, mean_b
                return
        else:
            both = confident_means(np.concatenate([img_s, a_s], axis=2).astype(np.float32, copy=False))
            mean_f, mean_b = np.ascontiguousarray(both[..., :3]), np.ascontiguousarray(both[..., 3:])
        fg_s = np.empty(img_s.shape, np.float32)
        _each_stripe(hs, ws, lambda r0, r1: _correct(img_s[r0:r1], a_s[r0:r1], mean_f[r0:r1],
                                                     mean_b[r0:r1], out=fg_s[r0:r1]))
        # Pass 2, narrow; its means in 0..255, as the photo is.
        blurred_f, blurred_b = means(fg_s, mean_b, a_s, r2, 255.0)
        self._f, self._b = _upscaler(blurred_f, (w, h)), _upscaler(blurred_b, (w, h))

    def _narrow_means(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Pass 2's means (0..255) for one window, from the window and a margin of r2 pixels
        around it (inside the photo; at its edges the box blur mirrors as on the whole)."""
        h, w = self.alpha.shape[:2]
        m = self._r2
        y0, y1, x0, x1 = max(0, r0 - m), min(h, r1 + m), max(0, c0 - m), min(w, c1 + m)
        cv2 = _cv2()
        photo = np.divide(self.image[y0:y1, x0:x1], np.float32(255.0), dtype=np.float32)
        alpha = self.alpha[y0:y1, x0:x1, 0]
        alpha3 = _per_channel(alpha, photo.shape)  # made once: numpy is slow on a broadcast axis
        mean_b = self._mean_b[y0:y1, x0:x1]
        # `means` of the whole-photo path, unrolled for a window: the foreground estimate and
        # both weighted colours in place, the three box blurs, and the normalisation as a
        # product with the reciprocal.
        weighted_f = _correct(photo, alpha3, self._mean_f[y0:y1, x0:x1], mean_b)
        weighted_f *= alpha3
        np.subtract(np.float32(1.0), alpha3, out=alpha3)
        weighted_b = np.multiply(mean_b, alpha3, out=alpha3)
        blurred_a = cv2.blur(np.ascontiguousarray(alpha), (m, m), borderType=cv2.BORDER_REFLECT)
        blurred_f = cv2.blur(weighted_f, (m, m), borderType=cv2.BORDER_REFLECT)
        blurred_b = cv2.blur(weighted_b, (m, m), borderType=cv2.BORDER_REFLECT)
        near_f = np.add(blurred_a, np.float32(1e-5))
        near_b = np.subtract(np.float32(1.0), blurred_a)
        near_b += np.float32(1e-5)
        blurred_f *= _per_channel(np.divide(np.float32(255.0), near_f, out=near_f), blurred_f.shape)
        blurred_b *= _per_channel(np.divide(np.float32(255.0), near_b, out=near_b), blurred_b.shape)
        inner = (slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0))
        return blurred_f[inner], blurred_b[inner]

    def colours(self, r0: int, r1: int, c0: int, c1: int, opaque: bool = True) -> np.ndarray:
        """Foreground colours (float32, 0..255) of rows r0:r1, columns c0:c1; where alpha is 1
        they are the photo's (to float rounding only with `opaque=False`: the caller copies
        the photo there itself)."""
        photo = self.image[r0:r1, c0:c1].astype(np.float32, copy=False)
        alpha = self.alpha[r0:r1, c0:c1]
        if self._windowed:
            blurred_f, blurred_b = self._narrow_means(r0, r1, c0, c1)
        else:
            blurred_f, blurred_b = self._f(r0, r1, c0, c1), self._b(r0, r1, c0, c1)
        part = _correct(photo, alpha, blurred_f, blurred_b, 255.0)
        if opaque:
            _cv2().copyTo(photo, _mask8(alpha >= 1.0), part)
        return part


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours at soft edges, free of the old background's colour.

    Approximate fast foreground colour estimation ("blur fusion", Forte & Pitié, ICIP 2021):
    local means of foreground and background colours, corrected so that
    alpha·F + (1-alpha)·B reproduces the image; run twice, first with a wide then a narrow
    window. Our first pass averages only confident pixels (alpha near 1 / near 0), which
    keeps wide soft edges from biasing it. Where alpha is 1 the colour is the image's exactly.

    Parameters:
        image: H×W×3 float or uint8 (0..255).
        alpha: H×W float (0..1).

    Returns:
        H×W×3 float32 foreground colours (0..255), for every pixel (the effects compute them
        only where alpha is above 0).
    """
    if image.dtype != np.uint8:
        image = image.astype(np.float32, copy=False)
    h, w = alpha.shape[:2]
    fusion = _BlurFusion(image, alpha.astype(np.float32), windows=False)
    # Full-width stripes of ~2 megapixels: a 64-megapixel photo never holds more than a few
    # full-size float arrays at once.
    out = np.empty((h, w, 3), np.float32)
    rows = max(1, 2_000_000 // w)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        out[r0:r1] = fusion.colours(r0, r1, 0, w)
    return out


def _cutout_pixels(rgb: np.ndarray, alpha8: np.ndarray, decontaminate: bool,
                   box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The RGBA cut-out as uint8 H×W×4 (or only its `box` x0, y0, x1, y1, inside the image):
    alpha is `alpha8`; colour is 0 where alpha is 0 (invisible, and zeros compress), elsewhere
    the photo's or its decontaminated colour. Only tiles holding a visible pixel are computed."""
    h, w = alpha8.shape
    x0, y0, x1, y1 = box or (0, 0, w, h)
    out = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    out[..., 3] = alpha8[y0:y1, x0:x1]
    fusion = _BlurFusion(rgb, _unit(alpha8)) if decontaminate else None
    cv2 = _cv2()

    def stripe(r0: int, r1: int) -> None:
        r0, r1 = max(r0, y0), min(r1, y1)
        if r0 >= r1:
            return
        for c0, c1, state in _tile_runs(alpha8[r0:r1, x0:x1]):
            if state == "clear":
                continue  # (0, 0, 0, 0) already
            c0, c1 = c0 + x0, c1 + x0
            window = out[r0 - y0:r1 - y0, c0 - x0:c1 - x0, :3]
            photo = rgb[r0:r1, c0:c1]
            if state == "solid":  # where alpha is 255 the colour is the photo's
                window[...] = photo
                continue
            alpha = alpha8[r0:r1, c0:c1]
            colour = photo
            if fusion is not None:
                colour = _to_uint8(fusion.colours(r0, r1, c0, c1, opaque=False))
                cv2.copyTo(photo, _mask8(alpha == 255), colour)
            window[...] = cv2.bitwise_and(colour, colour, mask=_mask8(alpha > 0))  # 0 where alpha is 0

    _each_stripe(h, w, stripe)
    return out


def cutout(image: ImageInput, mask: ImageInput, threshold: float | None = None,
           feather: float = 0.0, decontaminate: bool = True, min_island: float = 0,
           fill_holes: bool = False) -> Image.Image:
    """The object on a transparent background.

    Parameters:
        image, mask: the photo and its saliency mask.
        threshold: None keeps the mask's soft edge as alpha; 0..1 gives a hard edge.
        feather: Gaussian sigma (pixels) that softens the edge.
        decontaminate: replace colours at soft edges by estimated foreground colours, so no
            fringe of the old background shows on a new dark or light one.
        min_island, fill_holes: see `refine_mask`.

    Returns:
        RGBA image of the image's size whose alpha is the (refined) mask; where the mask is 255
        the colours are the image's, where it is 0 the pixel is (0, 0, 0, 0), as rembg's (fully
        transparent pixels show nothing, and zeros make the PNG small and quick to write).
    """
    rgb, m = _inputs8(image, mask)
    refined = _refined(m, threshold, feather, min_island, fill_holes)
    return Image.fromarray(_cutout_pixels(rgb, refined, decontaminate), "RGBA")


# --------------------------------------------------------------------------- backgrounds

def _fit_image(background: ImageInput, size: tuple[int, int], fit: str) -> np.ndarray:
    """A background picture fitted to `size` (width, height) as uint8 H×W×3."""
    bg = load_image(background)
    w, h = size
    if fit == "stretch":
        out = bg.resize((w, h), Image.LANCZOS)
    else:
        cover = max(w / bg.width, h / bg.height)
        scale = cover if fit == "cover" else min(w / bg.width, h / bg.height)
        sw, sh = max(1, round(bg.width * scale)), max(1, round(bg.height * scale))
        scaled = bg.resize((sw, sh), Image.LANCZOS)
        if fit == "cover":
            left, top = (sw - w) // 2, (sh - h) // 2
            out = scaled.crop((left, top, left + w, top + h))
        else:
            # Letterbox bars show a blurred, covering copy of the same picture, not black.
            filler = _fit_image(bg, size, "cover")
            canvas = _to_image(_gaussian(filler, max(4.0, max(w, h) / 40)))
            canvas.paste(scaled, ((w - sw) // 2, (h - sh) // 2))
            out = canvas
    return np.asarray(out)


def _blurred_background(rgb: np.ndarray, alpha: np.ndarray, sigma: float):
    """The photo blurred with the object left out (normalised convolution), so the subject's
    colours do not smear into a halo around it.

    Returns a function (r0, r1) → those rows of it, float32 (r1 - r0)×W×3: wide blurs run at
    reduced resolution and are scaled up one stripe at a time."""
    if sigma <= 0:
        return lambda r0, r1: rgb[r0:r1].astype(np.float32)
    h, w = alpha.shape
    factor = int(sigma // 3) if sigma > 6 else 1
    small = _reduced_size(h, w, factor)
    k = 1e-3  # deep inside the object, fall back to the plain blur
    weight = 1.0 - alpha

    def blurred(plane: np.ndarray) -> np.ndarray:
        # One channel at a time (the same numbers as a 3-D filter with sigma 0 across
        # channels), shrunk first: a big photo never becomes a 7-channel float array.
        plane = _resize(plane, small, Image.BOX) if factor > 1 else plane.astype(np.float32)
        return _ndimage().gaussian_filter(plane, sigma / factor, mode="nearest", truncate=4.0)

    g_weight = blurred(weight)[..., None]
    g_bg = np.stack([blurred(rgb[..., c].astype(np.float32) * weight) for c in range(3)], axis=2)
    g_all = np.stack([blurred(rgb[..., c]) for c in range(3)], axis=2)
    return _upscaler((g_bg + k * g_all) / (g_weight + k), (w, h))


def _composite(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    out = foreground - background
    out *= _per_channel(alpha, out.shape)
    out += background
    # Exact at the ends: mask 255 is the foreground, mask 0 the background, bit for bit.
    cv2.copyTo(np.ascontiguousarray(foreground, np.float32), _mask8(alpha >= 1.0), out)
    clear = alpha <= 0.0
    if clear.any():
        cv2.copyTo(np.ascontiguousarray(np.broadcast_to(background, out.shape), np.float32), _mask8(clear), out)
    return out


def replace_background(image: ImageInput, mask: ImageInput,
                       background: Colour | PictureInput | Background = "white",
                       fit: str = "cover", blur_radius: float = 12.0, threshold: float | None = None,
                       feather: float = 0.0, decontaminate: bool = True, min_island: float = 0,
                       fill_holes: bool = False) -> Image.Image:
    """Put the object on a new background, compositing by the mask's alpha.

    Parameters:
        image, mask: the photo and its saliency mask.
        background: a colour (CSS name such as "white" or "grey", "#hex", "green screen" or
            (r, g, b)); "blur" (the photo itself blurred behind a sharp subject, a
            portrait-mode look); "grayscale" (a colour subject on a grey world); "transparent"
            (RGBA cut-out); or a picture given as an image (PIL image, array, bytes or a
            `Path`), fitted to the photo's frame so the subject stays where it was. A string
            is never opened as a file (see `vocabulary.parse_background`).
        fit: how a background picture fills the frame: "cover" (scale and crop), "contain"
            (scale to fit, bars show a blurred copy) or "stretch".
        blur_radius: Gaussian sigma in pixels for "blur".
        threshold, feather, min_island, fill_holes: mask refinement, see `refine_mask`.
        decontaminate: use estimated foreground colours at soft edges (see `cutout`).

    Returns:
        RGB image of the photo's size (RGBA for "transparent"). Pixels with mask 255 keep the
        photo's colour, pixels with mask 0 are the background's.
    """
    bg_spec = _check_background(background, fit, blur_radius)
    if bg_spec.kind == "transparent":
        return cutout(image, mask, threshold, feather, decontaminate, min_island, fill_holes)
    rgb, m = _inputs8(image, mask)
    refined = _refined(m, threshold, feather, min_island, fill_holes)
    return Image.fromarray(_background_pixels(rgb, refined, bg_spec, fit, blur_radius, decontaminate)[0], "RGB")


def cutout_and_background(image: ImageInput, mask: ImageInput,
                          background: Colour | PictureInput | Background = "white",
                          fit: str = "cover", blur_radius: float = 12.0,
                          decontaminate: bool = True) -> tuple[Image.Image, Image.Image]:
    """`cutout(image, mask)` and `replace_background(image, mask, background)` at once, the
    same pixels as the two calls, from one estimate of the foreground colours (the costly part
    of both on a big photo). For a "transparent" background both are the cut-out."""
    bg_spec = _check_background(background, fit, blur_radius)
    if bg_spec.kind == "transparent":
        cut = cutout(image, mask, decontaminate=decontaminate)
        return cut, cut.copy()
    rgb, m = _inputs8(image, mask)
    composite, cut = _background_pixels(rgb, m, bg_spec, fit, blur_radius, decontaminate, with_cutout=True)
    return Image.fromarray(cut, "RGBA"), Image.fromarray(composite, "RGB")


def _check_background(background: Colour | PictureInput | Background, fit: str,
                      blur_radius: float) -> Background:
    if fit not in FITS:
        raise OptionError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    _check_nonneg("blur_radius", blur_radius)
    return parse_background(background)


def _background_pixels(rgb: np.ndarray, refined: np.ndarray, bg_spec: Background, fit: str,
                       blur_radius: float, decontaminate: bool, with_cutout: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """The composite (uint8 H×W×3) and, with `with_cutout`, the cut-out's pixels (as
    `_cutout_pixels` makes them) from the same foreground colours."""
    alpha = _unit(refined)
    h, w = refined.shape
    if bg_spec.kind == "blur":
        background_rows = _blurred_background(rgb, alpha, float(blur_radius))
    elif bg_spec.kind == "grayscale":
        def background_rows(r0: int, r1: int) -> np.ndarray:
            return _luma(rgb[r0:r1].astype(np.float32))[..., None]
    elif bg_spec.kind == "picture":
        # Fitted once and kept as uint8; a stripe at a time becomes float.
        picture = _fit_image(bg_spec.picture, (w, h), fit)

        def background_rows(r0: int, r1: int) -> np.ndarray:
            return picture[r0:r1].astype(np.float32)
    else:
        colour = np.array(bg_spec.rgb, np.float32)  # one pixel that broadcasts

        def background_rows(r0: int, r1: int) -> np.ndarray:
            return colour
    fusion = _BlurFusion(rgb, alpha) if decontaminate else None
    cv2 = _cv2()
    out = np.empty((h, w, 3), np.uint8)
    cut = None
    if with_cutout:
        cut = np.zeros((h, w, 4), np.uint8)
        cut[..., 3] = refined

    def stripe(r0: int, r1: int) -> None:
        back = background_rows(r0, r1)
        for c0, c1, state in _tile_runs(refined[r0:r1]):
            window = out[r0:r1, c0:c1]
            # Where alpha is 0 or 255 throughout a tile the composite is the background or the
            # photo, bit for bit (see _composite): copied without the float work.
            bg = back if back.ndim == 1 else back[:, c0:c1]
            if state == "clear":
                window[...] = _to_uint8(np.broadcast_to(bg, window.shape))
                continue
            if state == "solid":
                window[...] = rgb[r0:r1, c0:c1]
                fg8 = rgb[r0:r1, c0:c1]
            else:
                fg = (fusion.colours(r0, r1, c0, c1) if fusion is not None
                      else rgb[r0:r1, c0:c1].astype(np.float32))
                fg8 = _to_uint8(fg) if cut is not None and fusion is not None else rgb[r0:r1, c0:c1]
                window[...] = _to_uint8(_composite(fg, bg, alpha[r0:r1, c0:c1]))
            if cut is not None:
                colour_window = cut[r0:r1, c0:c1, :3]
                colour_window[...] = fg8 if state == "solid" else cv2.bitwise_and(
                    fg8, fg8, mask=_mask8(refined[r0:r1, c0:c1] > 0))  # 0 where alpha is 0

    _each_stripe(h, w, stripe)
    return out, cut


# --------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class Box:
    """One rectangle in pixel coordinates: x0, y0 inclusive, x1, y1 exclusive."""

    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive
    area: int  # foreground pixels inside the component
    score: float  # mean mask value (0..1) over the component

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def to_dict(self) -> dict:
        """Plain JSON-serialisable data (with width and height added for convenience)."""
        d = asdict(self)
        d.update(width=self.width, height=self.height)
        return d


@dataclass(frozen=True)
class Boxes:
    """The salient objects of one mask: one box each, largest first, and their union."""

    boxes: list[Box]  # one per salient object, largest first
    union: Box | None  # around all of them; None when the mask is empty

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self):
        return iter(self.boxes)

    def to_dict(self) -> dict:
        """{"count", "boxes": [...], "union": {...} | None}: JSON-serialisable."""
        return {"count": len(self.boxes), "boxes": [b.to_dict() for b in self.boxes],
                "union": self.union.to_dict() if self.union else None}


def bounding_boxes(mask: ImageInput, threshold: float = 0.5, min_area: float = 0.001) -> Boxes:
    """One box per connected salient region (8-connected pixels above `threshold`).

    Parameters:
        mask: the saliency mask.
        threshold: 0..1; a pixel counts when its value / 255 is above it.
        min_area: regions smaller than this are specks and are dropped; below 1 it is a
            fraction of the image's pixels, from 1 up a pixel count.

    Returns:
        Boxes: largest first, plus the union box (None, with no boxes, for an empty mask).
    """
    _check_unit("threshold", threshold)
    _check_nonneg("min_area", min_area)
    m = np.array(load_mask(mask), dtype=np.uint8)
    fg = _foreground(m, float(threshold))
    cv2 = _cv2()
    # OpenCV's labelling gives each region's box and pixel count in one pass (scipy's label,
    # find_objects and a bincount took 3× as long on a phone photo's mask).
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg.view(np.uint8), connectivity=8,
                                                               ltype=cv2.CV_32S)
    limit = _pixels(float(min_area), m.size)
    kept = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= limit]
    # The mask's sum over each region (whole numbers, so exact): read within the kept regions'
    # boxes, unless they overlap so much (many long thin regions) that one pass over all is less.
    spans = stats[kept, cv2.CC_STAT_WIDTH].astype(np.int64) * stats[kept, cv2.CC_STAT_HEIGHT]
    every = None
    if spans.sum() > 2 * m.size:
        every = np.zeros(count, np.int64)
        for r0, r1 in _stripes(*m.shape):
            every += np.bincount(labels[r0:r1].ravel(), m[r0:r1].ravel(), minlength=count).astype(np.int64)
    boxes = []
    for i in kept:
        x, y, w, h, area = (int(v) for v in stats[i, :5])
        total = (int(every[i]) if every is not None else
                 int(np.sum(m[y:y + h, x:x + w], where=labels[y:y + h, x:x + w] == i, dtype=np.int64)))
        boxes.append(Box(x, y, x + w, y + h, area, round(float(total / area / 255.0), 4)))
    boxes.sort(key=lambda b: (-b.area, b.y0, b.x0))
    if not boxes:
        return Boxes([], None)
    total = sum(b.area for b in boxes)
    union = Box(min(b.x0 for b in boxes), min(b.y0 for b in boxes), max(b.x1 for b in boxes),
                max(b.y1 for b in boxes), total,
                round(sum(b.score * b.area for b in boxes) / total, 4))
    return Boxes(boxes, union)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow built without FreeType
        return ImageFont.load_default()


def draw_boxes(image: ImageInput, boxes: Boxes | Iterable[Box], colour: Colour = DEFAULT_MARK_COLOUR,
               thickness: int = 3, labels: bool = True, union: bool = False) -> Image.Image:
    """The image with a rectangle around each object.

    Parameters:
        image: the photo.
        boxes: from `bounding_boxes` (or any iterable of Box).
        colour: line colour (name, "#hex" or (r, g, b)).
        thickness: line width in pixels, drawn inside the box.
        labels: write "1 · 0.97" (rank and mean saliency) at each box's top-left corner.
        union: also draw the box around all objects (thinner, labelled "all").

    Returns:
        A new RGB image of the photo's size.
    """
    rgb = parse_colour(colour)
    try:
        thickness = int(thickness)
    except (TypeError, ValueError):
        thickness = 0
    if thickness < 1:
        raise OptionError(f"thickness must be a whole number ≥ 1, got {thickness!r}")
    out = load_image(image)
    items = list(boxes)
    union_box = boxes.union if isinstance(boxes, Boxes) else None
    draw = ImageDraw.Draw(out)
    font = _font(max(10, round(min(out.size) / 32)))
    text_colour = (0, 0, 0) if _luma(np.array(rgb, np.float32)) > 150 else (255, 255, 255)

    def rect(box: Box, width: int, label: str | None) -> None:
        if box.x1 <= box.x0 or box.y1 <= box.y0:
            return
        draw.rectangle((box.x0, box.y0, box.x1 - 1, box.y1 - 1), outline=rgb, width=width)
        if labels and label:
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            tw, th = right - left, bottom - top
            pad = max(2, th // 4)
            # The tag sits above the box, or inside it when the box touches the top edge.
            y = box.y0 - th - 2 * pad if box.y0 - th - 2 * pad >= 0 else box.y0
            x = min(max(0, box.x0), max(0, out.width - tw - 2 * pad))
            draw.rectangle((x, y, x + tw + 2 * pad, y + th + 2 * pad), fill=rgb)
            draw.text((x + pad - left, y + pad - top), label, fill=text_colour, font=font)

    if union and union_box is not None:
        rect(union_box, max(1, thickness // 2), "all")
    for i, box in enumerate(items):
        rect(box, thickness, f"{i + 1} · {box.score:.2f}")
    return out


# --------------------------------------------------------------------------- highlight

# Matplotlib's "jet" control points: dark blue → blue → cyan → yellow → red → dark red.
_JET = np.array([[0.0, 0, 0, 128], [0.125, 0, 0, 255], [0.375, 0, 255, 255],
                 [0.625, 255, 255, 0], [0.875, 255, 0, 0], [1.0, 128, 0, 0]], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """The "jet" colour map: values 0..1 (any shape) → float RGB 0..255 (shape + (3,))."""
    v = np.clip(values.astype(np.float32), 0.0, 1.0)
    return np.stack([np.interp(v, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)], axis=-1
                    ).astype(np.float32)


def highlight(image: ImageInput, mask: ImageInput, mode: str = "dim", strength: float = 0.6,
              colour: Colour = DEFAULT_MARK_COLOUR, threshold: float | None = None, feather: float = 0.0,
              thickness: int | None = None) -> Image.Image:
    """Draw the eye to the salient object.

    Modes:
        "dim": darken the background by `strength`.
        "desaturate": drain the background's colour by `strength`.
        "blur": blur the background (sigma up to 3 % of the image's longer side at strength 1).
        "tint": wash the object with `colour`, keeping its shading.
        "outline": a `colour` line around the object (opaque from strength 0.5 up).
        "heatmap": the saliency map in the "jet" colour map laid over the photo.

    Parameters:
        image, mask: the photo and its saliency mask.
        mode: one of HIGHLIGHT_MODES.
        strength: 0 (the photo unchanged) to 1 (strongest).
        colour: for "tint" and "outline".
        threshold, feather: mask refinement (see `refine_mask`).
        thickness: outline width in pixels; default about 0.6 % of the image's longer side.

    Returns:
        A new RGB image of the photo's size.
    """
    if mode not in HIGHLIGHT_MODES:
        raise OptionError(f"mode must be one of {', '.join(HIGHLIGHT_MODES)}, got {mode!r}")
    _check_unit("strength", strength)
    s = float(strength)
    rgb, m = _inputs8(image, mask)
    alpha = _alpha(m, threshold, feather)
    h, w = m.shape
    if s == 0:
        return Image.fromarray(rgb.copy(), "RGB")
    if mode == "blur":
        blurred = _blurred_background(rgb, alpha, s * 0.03 * max(h, w))
    elif mode in ("tint", "outline"):
        c = np.array(parse_colour(colour), np.float32)
    if mode == "outline":
        width = thickness if thickness is not None else max(2, round(max(h, w) / 160))
        _check_nonneg("thickness", width)
        inside = alpha > 0.5
        if not inside.any():
            return Image.fromarray(rgb.copy(), "RGB")
        # Distance outside the object; the line hugs its edge. A thick line's distance field is
        # smooth at its own scale, so it is computed at reduced resolution.
        factor = max(1, int(width) // 4)
        distance = _downscaled_rows(alpha, factor, lambda a: factor * _ndimage().distance_transform_edt(
            a <= 0.5).astype(np.float32))
    elif mode == "heatmap":
        jet = colormap(np.arange(256, dtype=np.float32) / 255.0)  # the map of each mask value

    def stripe(r0: int, r1: int) -> np.ndarray:
        # The effect on rows r0:r1: pixel by pixel, so the photo is float one stripe at a time.
        x, a = rgb[r0:r1].astype(np.float32), alpha[r0:r1]
        if mode == "dim":
            return x * _per_channel(1.0 - s * (1.0 - a), x.shape)
        if mode == "desaturate":
            grey = _luma(x)[..., None]
            return _composite(x, x + s * (grey - x), a)
        if mode == "blur":
            return _composite(x, blurred(r0, r1), a)
        if mode == "tint":
            # Multiply by the colour, lifted so dark parts still show the tint.
            tinted = c * (0.35 + 0.65 * _luma(x)[..., None] / 255.0)
            tinted -= x
            tinted *= _per_channel(s * a, x.shape)
            return x + tinted
        if mode == "outline":
            coverage = np.where(inside[r0:r1], 0.0,
                                np.clip(width + 0.5 - distance(r0, r1), 0.0, 1.0))
            weight = (min(1.0, 2 * s) * coverage).astype(np.float32)
            return x + _per_channel(weight, x.shape) * (c - x)
        return x + s * (jet[m[r0:r1]] - x)  # heatmap

    out = np.empty((h, w, 3), np.uint8)
    for r0, r1 in _stripes(h, w):
        out[r0:r1] = _to_uint8(stripe(r0, r1))
    return Image.fromarray(out, "RGB")


# --------------------------------------------------------------------------- crop


@dataclass(frozen=True)
class Crop:
    """A crop around the salient object."""

    image: Image.Image
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original image (may pass its edge)
    empty: bool  # the mask had no object: the whole image was returned
    message: str


def _parse_aspect(aspect: str) -> float | None:
    if aspect in (None, "", "free"):
        return None
    try:
        a, b = (float(v) for v in str(aspect).split(":"))
        if a > 0 and b > 0 and math.isfinite(a / b):
            return a / b
    except ValueError:
        pass
    raise OptionError(f"aspect must be 'free' or W:H such as {', '.join(ASPECTS[1:])}, got {aspect!r}")


def _parse_padding(padding: float | int | str, box_w: int, box_h: int) -> tuple[float, float]:
    """(x, y) padding in pixels: "10%" of the box's own width / height, or a pixel count.

    A float between 0 and 1 is a fraction like "10%" would be.
    """
    text = padding.strip() if isinstance(padding, str) else padding
    try:
        if isinstance(text, str) and text.endswith("%"):
            frac = float(text[:-1]) / 100.0
            if frac >= 0 and math.isfinite(frac):
                return frac * box_w, frac * box_h
        else:
            value = float(text)
            if value >= 0 and math.isfinite(value):
                if 0 < value < 1 and not isinstance(text, int):
                    return value * box_w, value * box_h
                return value, value
    except (TypeError, ValueError):
        pass
    raise OptionError(f"padding must be a percentage like '10%' or a pixel count ≥ 0, got {padding!r}")


def _ratio_size(w: int, h: int, r: float) -> tuple[int, int]:
    """The smallest (W, H) with W ≥ w, H ≥ h and W / H = r to within half a pixel."""
    if r >= 1:
        hh = max(h, math.ceil(w / r))
        ww = round(hh * r)
        while ww < w:  # float rounding at the boundary
            hh += 1
            ww = round(hh * r)
        return ww, hh
    ww = max(w, math.ceil(h * r))
    hh = round(ww / r)
    while hh < h:
        ww += 1
        hh = round(ww / r)
    return ww, hh


def _place(size: int, centre: float, limit: int, keep: tuple[int, int]) -> int:
    """Start of a span of `size` centred on `centre`, moved inside 0..limit when it fits;
    a span longer than the image is centred on the image (even bars on both sides)."""
    if size <= limit:
        start = min(max(math.floor(centre - size / 2), 0), limit - size)
    else:
        start = math.floor((limit - size) / 2)
    # Never lose the object to rounding.
    start = min(start, keep[0])
    return max(start, keep[1] - size)


def crop(image: ImageInput, mask: ImageInput, padding: float | int | str = "5%", aspect: str = "free",
         output: str = "image", threshold: float = 0.5, min_area: float = 0.001) -> Crop:
    """Crop the photo to its salient object(s).

    Parameters:
        image, mask: the photo and its saliency mask.
        padding: room around the object: "10%" (of the object's width and height) or pixels.
        aspect: "free", or "W:H" ("1:1", "4:5", "16:9", …): the box grows (never shrinks) to
            that ratio, to within one pixel, staying inside the photo; when that needs more
            room than the photo has, padding gives way first, and only if the object itself
            cannot fit does the crop pass the photo's edge (filled black / transparent).
        output: "image" (RGB), "cutout" (RGBA, see `cutout`) or "mask" ("L").
        threshold, min_area: which pixels and blobs count as the object (see `bounding_boxes`).

    Returns:
        Crop(image, box, empty, message). An empty mask gives the whole photo, empty=True.
    """
    if output not in CROP_OUTPUTS:
        raise OptionError(f"output must be one of {', '.join(CROP_OUTPUTS)}, got {output!r}")
    ratio = _parse_aspect(aspect)
    img = load_image(image, copy=False)  # read only, and np.asarray copies it anyway
    m = load_mask(mask, size=img.size)
    W, H = img.size

    def source(x0: int, y0: int, x1: int, y1: int) -> Image.Image:
        if output == "image":
            return img.crop((x0, y0, x1, y1))
        if output == "mask":
            return m.crop((x0, y0, x1, y1))
        # The cut-out of the crop only (its colours still come from the whole photo); where
        # the box passes the photo's edge the pixels stay transparent.
        inside = (max(0, x0), max(0, y0), min(W, x1), min(H, y1))
        pixels = _cutout_pixels(np.asarray(img), np.asarray(m), True, inside)
        if inside == (x0, y0, x1, y1):
            return Image.fromarray(pixels, "RGBA")
        out = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
        out.paste(Image.fromarray(pixels, "RGBA"), (inside[0] - x0, inside[1] - y0))
        return out

    found = bounding_boxes(m, threshold, min_area).union
    if found is None:
        _parse_padding(padding, W, H)  # still refuse a bad value
        return Crop(source(0, 0, W, H), (0, 0, W, H), True,
                    f"no salient object above threshold {threshold:g}: returned the whole image")
    ox0, oy0, ox1, oy1 = found.x0, found.y0, found.x1, found.y1
    px, py = _parse_padding(padding, ox1 - ox0, oy1 - oy0)
    # The padded box, kept inside the photo.
    bx0, by0 = max(0, math.floor(ox0 - px)), max(0, math.floor(oy0 - py))
    bx1, by1 = min(W, math.ceil(ox1 + px)), min(H, math.ceil(oy1 + py))
    note = ""
    if ratio is None:
        x0, y0, x1, y1 = bx0, by0, bx1, by1
    else:
        w, h = _ratio_size(bx1 - bx0, by1 - by0, ratio)
        centre = ((bx0 + bx1) / 2, (by0 + by1) / 2)
        if w > W or h > H:
            # The largest box of that ratio inside the photo: less padding, same ratio.
            w, h = (round(H * ratio), H) if W / H >= ratio else (W, round(W / ratio))
            centre = ((ox0 + ox1) / 2, (oy0 + oy1) / 2)
            note = f"; padding reduced to keep {aspect} inside the image"
            if w < ox1 - ox0 or h < oy1 - oy0:
                w, h = _ratio_size(ox1 - ox0, oy1 - oy0, ratio)
                note = f"; the {aspect} crop is larger than the image, the extra area is filled"
        x0 = _place(w, centre[0], W, (ox0, ox1))
        y0 = _place(h, centre[1], H, (oy0, oy1))
        x1, y1 = x0 + w, y0 + h
    return Crop(source(x0, y0, x1, y1), (x0, y0, x1, y1), False,
                f"cropped to {x1 - x0}×{y1 - y0} at ({x0}, {y0}){note}")

"""Make the mask right: full-resolution edges, paint-to-correct strokes, chosen objects.

Pure functions on (image, mask) in the style of `effects`: any image size and mode in, a new
"L" mask of the image's size out, the caller's objects untouched, the same answer every time.
They sit between `Predictor.predict` and the effects:

    mask = predictor.predict(photo)
    mask = refine_edges(photo, mask, "guided")          # edges at the photo's resolution
    mask = apply_strokes(photo, mask, strokes)          # the user's "keep" / "remove" paint
    mask = select_objects(mask, ranks=[1])              # only the largest object
    effects.cutout(photo, mask)

OpenCV (`cv2`), `pymatting` and scipy are imported inside the functions that need them, so
importing this module (or the app, or a batch worker parsing its options) costs nothing until
a refinement is asked for (scipy.ndimage alone took 0.17 s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from .effects import _check_nonneg, _check_unit, _ndimage, _pixels
from .images import ImageInput, load_image, load_mask
from .vocabulary import REFINE_METHODS, OptionError

NETWORK_SIDE = 320  # the network sees 320 × 320: one of its pixels spans long_side / 320 photo pixels
# Defaults measured on benchmarks/bench_refine.py's set (see README "Quality"): a wide window
# (6 network pixels) with a small eps, fitted on a ≤384-px copy, gave the lowest SAD and
# gradient error; a narrower window leaves more of the upsampling blur.
GUIDED_RADIUS = 6.0  # network pixels
GUIDED_EPS = 3e-4
GUIDED_WORK_SIDE = 384
MATTING_BAND = 6.0  # network pixels either side of the 0.5 contour
MATTING_MAX_PIXELS = 250_000


def _cv2():
    try:
        import cv2
    except ImportError:
        raise OptionError("mask refinement needs OpenCV: pip install opencv-python-headless==4.14.0.94") from None
    return cv2


def _arrays(image: ImageInput, mask: ImageInput) -> tuple[np.ndarray, np.ndarray]:
    """The image as uint8 H×W×3 and the mask as uint8 H×W of the image's size."""
    img = load_image(image)
    m = load_mask(mask, size=img.size)
    return np.asarray(img, np.uint8), np.asarray(m, np.uint8)


def _network_pixel(shape: tuple[int, ...]) -> float:
    """How many photo pixels one network pixel spans (the width of the upsampling blur)."""
    return max(shape[0], shape[1]) / NETWORK_SIDE


# --------------------------------------------------------------------------- guided filter


def _box(cv2, arr: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(arr, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def _guided_coefficients(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s colour guided filter (ECCV 2010): per pixel the linear model q = a·I + b that
    best explains p in a (2r+1)² window, averaged over windows. Returns H×W×4 (a_r, a_g, a_b, b)."""
    cv2 = _cv2()
    mean_i = _box(cv2, guide, r)
    mean_p = _box(cv2, p, r)
    cov_ip = _box(cv2, guide * p[..., None], r) - mean_i * mean_p[..., None]
    ir, ig, ib = guide[..., 0], guide[..., 1], guide[..., 2]
    mr, mg, mb = mean_i[..., 0], mean_i[..., 1], mean_i[..., 2]
    e = np.float32(eps)
    # The 3×3 covariance of the guide in each window (symmetric: 6 terms), plus eps on the diagonal.
    rr = _box(cv2, ir * ir, r) - mr * mr + e
    rg = _box(cv2, ir * ig, r) - mr * mg
    rb = _box(cv2, ir * ib, r) - mr * mb
    gg = _box(cv2, ig * ig, r) - mg * mg + e
    gb = _box(cv2, ig * ib, r) - mg * mb
    bb = _box(cv2, ib * ib, r) - mb * mb + e
    # Its inverse by the adjugate, all pixels at once.
    i_rr = gg * bb - gb * gb
    i_rg = gb * rb - rg * bb
    i_rb = rg * gb - gg * rb
    i_gg = rr * bb - rb * rb
    i_gb = rb * rg - rr * gb
    i_bb = rr * gg - rg * rg
    det = rr * i_rr + rg * i_rg + rb * i_rb
    cr, cg, cb = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    coef = np.empty(p.shape + (4,), np.float32)
    coef[..., 0] = (i_rr * cr + i_rg * cg + i_rb * cb) / det
    coef[..., 1] = (i_rg * cr + i_gg * cg + i_gb * cb) / det
    coef[..., 2] = (i_rb * cr + i_gb * cg + i_bb * cb) / det
    coef[..., 3] = mean_p - (coef[..., 0] * mr + coef[..., 1] * mg + coef[..., 2] * mb)
    return _box(cv2, coef, r)


def _band(p: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` of the mask's soft edge: where it is neither ~0 nor ~1, grown."""
    soft = (p > 0.02) & (p < 0.98)
    if width > 0:
        cv2 = _cv2()
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * width + 1, 2 * width + 1))
        soft = cv2.dilate(soft.view(np.uint8), k).view(bool)
    return soft


def _shrink(arr: np.ndarray, s: int) -> np.ndarray:
    """Box-average by the whole factor `s` (the last partial rows / columns are dropped): OpenCV's
    fast path for area resizing, about 5× quicker than a fractional factor on a 12 MP photo."""
    if s <= 1:
        return arr
    cv2 = _cv2()
    h, w = arr.shape[:2]
    sh, sw = max(1, h // s), max(1, w // s)
    return cv2.resize(arr[:sh * s, :sw * s], (sw, sh), interpolation=cv2.INTER_AREA)


TILE = 256  # full-resolution work happens in tiles of this side that touch the edge band


def _apply_coefficients(rgb: np.ndarray, out: np.ndarray, coef: np.ndarray, s: int,
                        band_small: np.ndarray) -> None:
    """q = a·I + b at full resolution, written into `out` (uint8) where the band is, tile by tile:
    only tiles that the band touches are computed, so the cost follows the edge's length and
    not the photo's area. `coef` (a_r, a_g, a_b, b) and `band_small` are at 1/`s` scale."""
    cv2 = _cv2()
    h, w = out.shape
    c4 = coef.copy()
    c4[..., :3] *= np.float32(1 / 255)  # guide in 0..255 at full size, 0..1 when fitted
    sh, sw = band_small.shape
    step = max(1, TILE // s)
    for ty in range(0, sh, step):
        for tx in range(0, sw, step):
            bs = band_small[ty:ty + step, tx:tx + step]
            if not bs.any():
                continue
            y0, x0 = ty * s, tx * s
            y1 = h if ty + step >= sh else min(h, (ty + step) * s)
            x1 = w if tx + step >= sw else min(w, (tx + step) * s)
            m = np.float32([[1 / s, 0, (x0 + 0.5) / s - 0.5], [0, 1 / s, (y0 + 0.5) / s - 0.5]])
            up = cv2.warpAffine(c4, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
            guide = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2RGBA).astype(np.float32)
            guide[..., 3] = 1.0
            q = cv2.transform(cv2.multiply(up, guide), np.ones((1, 4), np.float32) * 255)
            q = np.clip(q + 0.5, 0, 255).astype(np.uint8)
            sel = cv2.resize(bs.view(np.uint8), None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
            sel = np.pad(sel, ((0, max(0, y1 - y0 - sel.shape[0])), (0, max(0, x1 - x0 - sel.shape[1]))),
                         mode="edge")[:y1 - y0, :x1 - x0].view(bool)
            tile = out[y0:y1, x0:x1]
            tile[sel] = q[sel]


def _guided_full(rgb: np.ndarray, mask: np.ndarray, radius: float, eps: float, work_side: int,
                 band_width: float, p_small: np.ndarray | None = None, s: int | None = None,
                 band_small: np.ndarray | None = None) -> np.ndarray:
    """Fast guided filter (He & Sun 2015) of `mask` (uint8, full size) guided by the photo.

    The linear coefficients are fitted on copies reduced by a whole factor s (≤ `work_side`
    pixels a side), then interpolated back and applied to the full-resolution photo — which is
    where the fine detail comes from — only in the band within `band_width` photo pixels of
    the mask's soft edge; elsewhere the mask is returned unchanged. `p_small` (float 0..1 at
    1/s scale) replaces the reduced mask when given (matting hands its matte this way)."""
    h, w = mask.shape
    if s is None:
        s = max(1, math.ceil(max(h, w) / work_side))
    guide_small = _shrink(rgb, s).astype(np.float32) * np.float32(1 / 255)
    if p_small is None:
        p_small = _shrink(mask, s).astype(np.float32) * np.float32(1 / 255)
    r = max(1, round(radius / s))
    coef = _guided_coefficients(guide_small, p_small, r, eps)
    if band_small is None:
        band_small = _band(p_small, max(1, math.ceil(band_width / s)))
    out = mask.copy()
    _apply_coefficients(rgb, out, coef, s, band_small)
    return out


# --------------------------------------------------------------------------- matting


def _trimap(p: np.ndarray, width: int) -> np.ndarray:
    """Trimap from a soft mask: 1 sure object, 0 sure background, 0.5 unknown — the soft edge
    and every pixel within `width` of the 0.5 contour."""
    cv2 = _cv2()
    fg = (p > 0.5).view(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    sure_fg = cv2.erode(fg, k).view(bool) & (p > 0.95)
    sure_bg = ~cv2.dilate(fg, k).view(bool) & (p < 0.05)
    tri = np.full(p.shape, 0.5, np.float64)
    tri[sure_fg] = 1.0
    tri[sure_bg] = 0.0
    return tri


def _matting(rgb: np.ndarray, mask: np.ndarray, band_px: float | None, max_pixels: int,
             max_seconds: float) -> np.ndarray:
    """Closed-form matting (Levin et al. 2008, pymatting's solver) in a band around the edge, on
    a copy reduced by a whole factor to at most `max_pixels`, then brought back to full size by
    a fast guided filter on the full-resolution photo. Returns uint8 H×W."""
    try:
        from pymatting import estimate_alpha_cf
    except ImportError:
        raise OptionError("matting refinement needs pymatting: pip install pymatting==1.1.16") from None
    h, w = mask.shape
    s = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    rgb_small = _shrink(rgb, s)
    p_small = _shrink(mask, s).astype(np.float32) * np.float32(1 / 255)
    sh, sw = p_small.shape
    width = band_px if band_px is not None else MATTING_BAND * _network_pixel(mask.shape)
    width_small = max(2, round(width / s))
    tri = _trimap(p_small, width_small)
    unknown = tri == 0.5
    if not unknown.any() or unknown.all():
        return mask.copy()
    # Solve on the unknown band's bounding box grown by a margin (known pixels anchor it).
    rows, cols = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    pad = 4
    y0, y1 = max(0, rows[0] - pad), min(sh, rows[-1] + pad + 1)
    x0, x1 = max(0, cols[0] - pad), min(sw, cols[-1] + pad + 1)
    crop_rgb = rgb_small[y0:y1, x0:x1].astype(np.float64) * (1 / 255)
    crop_tri = tri[y0:y1, x0:x1]
    deadline = time.perf_counter() + max_seconds

    def stop(*_args) -> None:  # the conjugate-gradient solver calls this after each iteration
        if time.perf_counter() > deadline:
            raise _Deadline

    guided_radius = GUIDED_RADIUS * _network_pixel(mask.shape)
    if not ((crop_tri == 0).any() and (crop_tri == 1).any()):  # nothing to anchor the matte
        return _guided_full(rgb, mask, guided_radius, GUIDED_EPS, GUIDED_WORK_SIDE, guided_radius)
    try:
        alpha = estimate_alpha_cf(crop_rgb, crop_tri,
                                  cg_kwargs={"maxiter": 2000, "rtol": 1e-5, "callback": stop})
    except _Deadline:  # out of time: the guided refinement instead, never a half-solved matte
        return _guided_full(rgb, mask, guided_radius, GUIDED_EPS, GUIDED_WORK_SIDE, guided_radius)
    matte = p_small.copy()
    matte[y0:y1, x0:x1] = np.where(crop_tri == 0.5, np.clip(alpha, 0, 1), crop_tri)
    # Back to full size: a guided filter with a small window fitted to the matte at the working
    # scale (so it reproduces it there) and applied to the full-resolution photo (the detail).
    band_small = unknown | _band(matte, 1)
    return _guided_full(rgb, mask, 1.0 * s, 1e-5, 0, 0, p_small=matte.astype(np.float32), s=s,
                        band_small=band_small)


class _Deadline(Exception):
    pass


def refine_edges(image: ImageInput, mask: ImageInput, method: str = "guided", *,
                 radius: float | None = None, eps: float = GUIDED_EPS, band: float | None = None,
                 max_pixels: int = MATTING_MAX_PIXELS, max_seconds: float = 10.0) -> Image.Image:
    """The mask's edges redone at the photo's full resolution.

    The network sees the photo at 320 × 320, so on a 12-megapixel photo its upsampled edge is a
    band of blur about 12 px wide. Both methods change only a band around that edge.

    Parameters:
        image: the photo (anything `images.load_image` takes).
        mask: the network's mask ("L" image or array), resized to the photo if needed.
        method: "guided" — a colour guided filter guided by the full-resolution photo (fast:
            the fit runs on a ≤384-px copy, the full-size pass only over the edge band);
            "matting" — closed-form matting (pymatting) on a trimap made from the mask, solved
            at most `max_pixels` large, then brought to full size by a guided filter;
            "none" — the mask unchanged.
        radius: guided filter window radius in photo pixels (default: 6 network pixels, i.e.
            6 × long side / 320).
        eps: guided filter regularisation (guide on 0..1; larger = smoother, closer to the mask).
        band: half-width in photo pixels of the matting trimap's unknown band around the 0.5
            contour (default: 6 network pixels).
        max_pixels: matting works on a copy of at most this many pixels.
        max_seconds: matting's solver stops after this long and the guided result is returned.

    Returns:
        A new "L" mask of the photo's size.

    Raises:
        OptionError: unknown method or bad number (the message lists what is allowed).
    """
    if method not in REFINE_METHODS:
        raise OptionError(f"refine method must be one of {', '.join(REFINE_METHODS)}, got {method!r}")
    if radius is not None:
        _check_nonneg("radius", radius)
    _check_nonneg("eps", eps)
    if band is not None:
        _check_nonneg("band", band)
    _check_nonneg("max_seconds", max_seconds)
    if not isinstance(max_pixels, (int, float)) or max_pixels < 10_000:
        raise OptionError(f"max_pixels must be at least 10000, got {max_pixels!r}")
    rgb, m = _arrays(image, mask)
    if method == "none":
        return Image.fromarray(m.copy(), "L")
    if method == "guided":
        rad = max(1.0, radius if radius is not None else GUIDED_RADIUS * _network_pixel(m.shape))
        return Image.fromarray(_guided_full(rgb, m, rad, eps, GUIDED_WORK_SIDE, rad), "L")
    return Image.fromarray(_matting(rgb, m, band, int(max_pixels), float(max_seconds)), "L")


# --------------------------------------------------------------------------- strokes

STROKE_RULES = ("L image or H×W array: 255 (≥192) keep, 0 (≤63) remove, anything between (128) "
                "untouched; RGB: green-dominant keep, red-dominant remove, other colours untouched; "
                "RGBA/LA: only painted pixels (alpha ≥ 128) count — red-dominant remove, "
                "green-dominant keep, other colours by brightness (white keep, black remove)")


def stroke_masks(strokes: ImageInput | np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(keep, remove) boolean H×W arrays from a strokes picture (rules in STROKE_RULES),
    resized (nearest) to `size` (width, height)."""
    if isinstance(strokes, np.ndarray):
        arr = strokes
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
                arr = np.clip(arr, 0, 1) * 255
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
            raise OptionError(f"strokes array of shape {arr.shape} is not a picture; strokes are: "
                              + STROKE_RULES)
        mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]] if arr.ndim == 3 else "L"
        img = Image.fromarray(np.ascontiguousarray(arr[..., [0, 0, 0, 1]] if arr.ndim == 3
                                                   and arr.shape[2] == 2 else arr),
                              "RGBA" if mode == "L" and arr.ndim == 3 else mode)
    elif isinstance(strokes, Image.Image):
        img = strokes
    else:
        from .images import DEFAULT_MAX_PIXELS, _open  # keep the alpha channel: load_image drops it

        img = _open(strokes, DEFAULT_MAX_PIXELS)
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else
                          "L" if img.mode in ("1", "I", "I;16", "F") else "RGB")
    if img.size != tuple(size):
        img = img.resize(tuple(size), Image.NEAREST)
    a = np.asarray(img, np.int32)
    if img.mode == "L":
        return a >= 192, a <= 63
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    red = (r >= g + 64) & (r >= b + 64)
    green = (g >= r + 64) & (g >= b + 64)
    if img.mode == "RGB":
        return green, red
    painted = a[..., 3] >= 128
    bright = (r * 299 + g * 587 + b * 114) >= 128_000
    keep = painted & (green | (~red & bright))
    remove = painted & (red | (~green & ~bright))
    return keep, remove


def apply_strokes(image: ImageInput, mask: ImageInput, strokes: ImageInput | np.ndarray, *,
                  reach: float = 0.1, work_side: int = 640, iterations: int = 4) -> Image.Image:
    """The mask recomputed with painted "keep" and "remove" strokes as hard constraints.

    OpenCV's GrabCut runs on a copy at most `work_side` pixels a side, around the strokes only:
    stroked pixels are definite object / background, pixels within `reach` of a stroke take the
    network's answer as a probable label (so a stroke can spread over a part of similar colour),
    and pixels farther away are fixed to the network's answer (they only teach the colour
    models). Where GrabCut flips a pixel the new value is blended in with a soft edge; where it
    agrees, the network's soft value is kept; stroked pixels become exactly 255 / 0.
    Nothing farther than `reach` from every stroke changes.

    Parameters:
        image: the photo.
        mask: the network's mask.
        strokes: a picture of the image's size (resized if not); see STROKE_RULES: e.g. an
            "L" image 128 everywhere with 255 where to keep and 0 where to remove, or an RGBA
            layer with green "keep" and red "remove" paint on transparency.
        reach: how far a stroke's influence goes: below 1 a fraction of the photo's long side,
            from 1 up photo pixels.
        work_side: GrabCut's copy is at most this many pixels a side (speed).
        iterations: GrabCut iterations.

    Returns:
        A new "L" mask of the photo's size (the mask unchanged when nothing is painted).

    Raises:
        OptionError: a bad number, or strokes that are not a picture.
    """
    _check_nonneg("reach", reach)
    if not isinstance(work_side, int) or work_side < 64:
        raise OptionError(f"work_side must be a whole number ≥ 64, got {work_side!r}")
    if not isinstance(iterations, int) or not 1 <= iterations <= 20:
        raise OptionError(f"iterations must be a whole number from 1 to 20, got {iterations!r}")
    rgb, m = _arrays(image, mask)
    h, w = m.shape
    keep, remove = stroke_masks(strokes, (w, h))
    both = keep & remove  # painted both ways: neither wins
    keep &= ~both
    remove &= ~both
    if not (keep.any() or remove.any()):
        return Image.fromarray(m.copy(), "L")
    cv2 = _cv2()
    reach_px = float(reach) * max(h, w) if reach < 1 else float(reach)
    painted = keep | remove
    # GrabCut runs on the strokes' bounding box grown by twice the reach (the outer ring only
    # teaches the colour models), on a copy reduced by a whole factor.
    rows, cols = np.flatnonzero(painted.any(axis=1)), np.flatnonzero(painted.any(axis=0))
    margin = int(math.ceil(2 * reach_px)) + 2
    y0, y1 = max(0, int(rows[0]) - margin), min(h, int(rows[-1]) + margin + 1)
    x0, x1 = max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + margin + 1)
    ch, cw = y1 - y0, x1 - x0
    s = max(1, math.ceil(max(ch, cw) / work_side))
    crop_m = m[y0:y1, x0:x1]
    rgb_s = _shrink(np.ascontiguousarray(rgb[y0:y1, x0:x1]), s)
    p_s = _shrink(crop_m, s).astype(np.float32) * np.float32(1 / 255)
    keep_s = _shrink(keep[y0:y1, x0:x1].view(np.uint8), s) > 0
    remove_s = _shrink(remove[y0:y1, x0:x1].view(np.uint8), s) > 0
    both_s = keep_s & remove_s
    keep_s &= ~both_s
    remove_s &= ~both_s
    # Who may change: pixels within reach of a stroke (distance in copy pixels).
    near_s = _ndimage().distance_transform_edt(~(keep_s | remove_s)) <= reach_px / s
    fg_s = p_s > 0.5
    gc = np.where(fg_s, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
    gc[near_s & fg_s] = cv2.GC_PR_FGD
    gc[near_s & ~fg_s] = cv2.GC_PR_BGD
    gc[keep_s] = cv2.GC_FGD
    gc[remove_s] = cv2.GC_BGD
    if (gc == cv2.GC_FGD).any() and (gc == cv2.GC_BGD).any():
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means starts from random centres: same answer every time
        cv2.grabCut(np.ascontiguousarray(rgb_s[..., ::-1]), gc, None, bgd, fgd, iterations,
                    cv2.GC_INIT_WITH_MASK)
        new_fg_s = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    else:  # only one kind of label: GrabCut cannot model the other; the strokes alone decide
        new_fg_s = (fg_s | keep_s) & ~remove_s
    new_fg_s &= near_s | fg_s  # far pixels were fixed anyway; belt and braces
    new_fg_s |= fg_s & ~near_s
    flip_s = new_fg_s != fg_s
    out = m.copy()
    if flip_s.any():
        # The new region at the copy's scale: the flips take the new label, the rest keeps the
        # network's soft value; its edge is then snapped to the full-resolution photo by the
        # guided filter (fitted at the copy's scale, applied at full size near the flips).
        target_s = np.where(flip_s, new_fg_s.astype(np.float32), p_s)
        band_s = _band(flip_s.astype(np.float32) * 0.5, 1)
        crop_out = np.ascontiguousarray(crop_m)
        crop_out = _guided_full(np.ascontiguousarray(rgb[y0:y1, x0:x1]), crop_out, 2.0 * s, 1e-3, 0, 0,
                                p_small=target_s, s=s, band_small=band_s)
        # Locality is a promise: nothing beyond reach of a stroke changes, whatever GrabCut did.
        dist = _ndimage().distance_transform_edt(~painted[y0:y1, x0:x1]) if s == 1 else cv2.resize(
            _ndimage().distance_transform_edt(~(keep_s | remove_s)).astype(np.float32),
            (cw, ch), interpolation=cv2.INTER_LINEAR) * np.float32(s)
        out[y0:y1, x0:x1] = np.where(dist <= reach_px, crop_out, crop_m)
    out[keep] = 255
    out[remove] = 0
    return Image.fromarray(out, "L")


# --------------------------------------------------------------------------- objects


def parse_ranks(text: str | int | Iterable[int] | None) -> list[int] | None:
    """"1,2" / 1 / [1, 2] → [1, 2] (1-based ranks, largest object first); None or "" → None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int):
        items: Sequence = [text]
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",") if t.strip()]
    else:
        items = list(text)
    ranks = []
    for item in items:
        try:
            value = int(item)
            ok = value >= 1 and float(item) == value
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise OptionError(f"object ranks are whole numbers from 1 (the largest object), "
                              f"comma-separated like '1,2'; got {item!r}")
        ranks.append(value)
    return ranks


def select_objects(mask: ImageInput, ranks: str | Iterable[int] | None = None,
                   point: tuple[float, float] | None = None, threshold: float = 0.5,
                   min_area: float = 0.001) -> Image.Image:
    """Keep only the chosen objects of a mask, with their soft edges.

    Objects are numbered as `effects.bounding_boxes` numbers them: connected regions above
    `threshold` (8-connected), specks under `min_area` dropped, largest first, from 1. Every
    pixel belongs to its nearest object, so an object keeps its soft edge (hair, semi-
    transparent parts below the threshold) and loses nothing of its own.

    Parameters:
        mask: the mask.
        ranks: ranks to keep ("1,2", [1], 1); ranks beyond the number of objects are ignored.
        point: (x, y) in mask pixels: also keep the object there, or the nearest one.
        threshold, min_area: as in `effects.bounding_boxes`.

    Returns:
        A new "L" mask: the chosen objects' values, 0 elsewhere. With neither ranks nor point,
        the mask unchanged; with no object at all, an empty mask.

    Raises:
        OptionError: a rank that is not a whole number ≥ 1, a point outside the mask, bad
            threshold or min_area.
    """
    _check_unit("threshold", threshold)
    _check_nonneg("min_area", min_area)
    chosen = parse_ranks(ranks)
    m = np.array(load_mask(mask), np.uint8)
    h, w = m.shape
    if point is not None:
        try:
            px, py = float(point[0]), float(point[1])
            ok = 0 <= px < w and 0 <= py < h
        except (TypeError, ValueError, IndexError):
            ok = False
        if not ok:
            raise OptionError(f"point must be (x, y) inside the {w}×{h} mask, got {point!r}")
    if chosen is None and point is None:
        return Image.fromarray(m, "L")
    fg = m.astype(np.float32) > np.float32(threshold * 255.0)
    labels, count = _ndimage().label(fg, structure=np.ones((3, 3), bool))
    if count:
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        limit = _pixels(float(min_area), m.size)
        slices = _ndimage().find_objects(labels)
        order = sorted((i for i in range(count) if areas[i] >= limit),
                       key=lambda i: (-areas[i], slices[i][0].start, slices[i][1].start))
    else:
        order = []
    if not order:
        return Image.fromarray(np.zeros_like(m), "L")
    rank_of = np.zeros(count + 1, np.int32)  # label → rank (0: speck or background)
    for rank, i in enumerate(order, start=1):
        rank_of[i + 1] = rank
    ranked = rank_of[labels]
    # Nearest object for every pixel, worked out on a copy ≤ 1024 px a side (fast on big photos;
    # the boundary between two objects' territories only runs through background).
    s = max(1, math.ceil(max(h, w) / 1024))
    small = ranked[::s, ::s]
    if (small > 0).any():
        idx = _ndimage().distance_transform_edt(small == 0, return_distances=False, return_indices=True)
        nearest_small = small[idx[0], idx[1]]
    else:
        nearest_small = small
    nearest = np.repeat(np.repeat(nearest_small, s, axis=0), s, axis=1)[:h, :w]
    nearest = np.where(ranked > 0, ranked, nearest)  # exact at full resolution inside objects
    keep_ranks = set(r for r in (chosen or []) if r <= len(order))
    if point is not None:
        keep_ranks.add(int(nearest[int(py), int(px)]))
    keep = np.isin(nearest, sorted(keep_ranks))
    return Image.fromarray(np.where(keep, m, 0).astype(np.uint8), "L")


# --------------------------------------------------------------------------- all of it


def improve_mask(image: ImageInput, mask: ImageInput, edges: str = "none",
                 strokes: ImageInput | np.ndarray | None = None,
                 objects: str | Iterable[int] | None = None, point: tuple[float, float] | None = None,
                 threshold: float = 0.5, min_area: float = 0.001) -> Image.Image:
    """Every improvement in its one order, for front ends that hold the options: edges at full
    resolution first (they only move the soft edge), then the user's strokes (hard constraints
    win over any automatic step), then the chosen objects (picked on the corrected mask).

    Parameters: as `refine_edges` (`edges` is its method), `apply_strokes` and
    `select_objects` (`objects` are its ranks; `threshold` and `min_area` as for the boxes).
    With the defaults the mask comes back unchanged (as a new "L" image of the photo's size).
    """
    if edges not in REFINE_METHODS:
        raise OptionError(f"refine method must be one of {', '.join(REFINE_METHODS)}, got {edges!r}")
    ranks = parse_ranks(objects)  # checked before any slow step runs
    img = load_image(image)
    out = load_mask(mask, size=img.size)
    if edges != "none":
        out = refine_edges(img, out, edges)
    if strokes is not None:
        out = apply_strokes(img, out, strokes)
    if ranks is not None or point is not None:
        out = select_objects(out, ranks=ranks, point=point, threshold=threshold, min_area=min_area)
    return out if out is not mask else out.copy()

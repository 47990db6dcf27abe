"""An evaluation set for edges, built with code: a furry subject over a real photo, alpha known.

`composite(background, megapixels, seed)` draws a subject — a body with fur-like strands all
round its outline and a few long hair strands — on a canvas 4× larger in each direction, with
hard-edged shapes, and reduces it 4× with a box filter: every output pixel's alpha is exactly
the covered fraction of its 16 sub-pixels, so strands thinner than a pixel become
semi-transparent, as real hair does. The photo (one of ../shared/reference/images) is resized
to the target size and the subject composited over it: I = α·F + (1 − α)·B. Nothing of this
set is committed; it is made again, identically, from the seed.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPER = 4  # sub-pixels per pixel side


def _size(megapixels: float, aspect: float) -> tuple[int, int]:
    h = int(round(math.sqrt(megapixels * 1e6 / aspect)))
    return int(round(h * aspect)), h


def subject_alpha(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The subject's exact alpha (float32 0..1, H×W) for an image of `size` (width, height)."""
    rng = np.random.default_rng(seed)
    w, h = size
    big = Image.new("L", (w * SUPER, h * SUPER), 0)
    draw = ImageDraw.Draw(big)
    cx, cy = w * SUPER * 0.5, h * SUPER * 0.55
    rx, ry = w * SUPER * 0.22, h * SUPER * 0.30
    # The body: an irregular blob (a wobbling ellipse).
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    wobble = 1 + 0.06 * np.sin(3 * angles + rng.uniform(0, 6)) + 0.04 * np.sin(7 * angles + rng.uniform(0, 6))
    xs, ys = cx + rx * wobble * np.cos(angles), cy + ry * wobble * np.sin(angles)
    draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255)
    unit = h * SUPER / 1000  # strand lengths scale with the picture
    # Fur: many short strands leaving the outline, curving a little; sub-pixel widths.
    n_fur = int(2500 * math.sqrt(w * h / 2e6))
    for _ in range(n_fur):
        k = rng.integers(0, len(angles))
        x, y = xs[k], ys[k]
        direction = angles[k] + rng.normal(0, 0.35)
        length = rng.uniform(8, 28) * unit
        width = int(rng.integers(1, 4))  # 1..3 sub-pixels: 0.25..0.75 px
        bend = rng.normal(0, 0.04)
        points = [(x, y)]
        for _ in range(6):
            direction += bend
            x += math.cos(direction) * length / 6
            y += math.sin(direction) * length / 6
            points.append((x, y))
        draw.line(points, fill=255, width=width)
    # A few long hair strands (from the top of the body), flowing.
    for _ in range(int(60 * math.sqrt(w * h / 2e6))):
        k = rng.integers(int(len(angles) * 0.55), int(len(angles) * 0.95))
        x, y = xs[k], ys[k]
        direction = angles[k] + rng.normal(0, 0.2)
        length = rng.uniform(80, 200) * unit
        width = int(rng.integers(2, 6))
        bend = rng.normal(0, 0.015)
        points = [(x, y)]
        for _ in range(20):
            direction += bend
            x += math.cos(direction) * length / 20
            y += math.sin(direction) * length / 20
            points.append((x, y))
        draw.line(points, fill=255, width=width)
    small = big.reduce(SUPER)  # box filter: exact coverage of the 16 sub-pixels
    return np.asarray(small, np.float32) / 255.0


def subject_colour(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The subject's colour F (float32 0..255, H×W×3): a warm fur tone with slow variation."""
    rng = np.random.default_rng(seed + 1)
    w, h = size
    coarse = rng.uniform(0, 255, (6, 6)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC).filter(
        ImageFilter.GaussianBlur(max(1, w // 200))), np.float32) / 127.5 - 1
    base = np.array([196, 146, 92], np.float32)  # a light fur brown; brightness varies slowly
    return np.clip(base[None, None, :] * (1 + 0.18 * field[..., None]), 0, 255)


def background_region(photo: Image.Image, mask: Image.Image, aspect: float = 1.5) -> Image.Image:
    """The largest window of `photo` (of the given aspect) that holds none of its salient
    object (the published mask below 10 %): real scenery, without a second subject for the
    network to find."""
    m = np.asarray(mask.convert("L").resize(photo.size), np.float64) > 25
    integral = np.pad(m.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    w, h = photo.size
    for frac in np.linspace(1.0, 0.2, 33):
        ww = int(min(w, h * aspect) * frac)
        hh = int(ww / aspect)
        step = max(1, min(ww, hh) // 16)
        for y in range(0, h - hh + 1, step):
            for x in range(0, w - ww + 1, step):
                inside = (integral[y + hh, x + ww] - integral[y, x + ww] - integral[y + hh, x]
                          + integral[y, x])
                if inside == 0:
                    return photo.crop((x, y, x + ww, y + hh))
    return photo


def composite(background: str | Image.Image, megapixels: float, seed: int = 0,
              mask: str | Image.Image | None = None) -> tuple[Image.Image, np.ndarray, Image.Image]:
    """(photo with the subject, true alpha float32 0..1, trimap "L") at about `megapixels`.

    With the photo's published `mask`, only its largest object-free window is used (see
    `background_region`). The trimap marks as unknown (128) every pixel within 1/160 of the
    long side of a soft pixel of the truth (two network pixels: where an upsampled mask's
    edge can be wrong).
    """
    bg = background if isinstance(background, Image.Image) else Image.open(background)
    bg = bg.convert("RGB")
    if mask is not None:
        bg = background_region(bg, mask if isinstance(mask, Image.Image) else Image.open(mask))
    size = _size(megapixels, bg.width / bg.height)
    b = np.asarray(bg.resize(size, Image.BICUBIC), np.float32)
    alpha = subject_alpha(size, seed)
    f = subject_colour(size, seed)
    out = alpha[..., None] * f + (1 - alpha[..., None]) * b
    photo = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
    return photo, alpha, trimap(alpha)


def trimap(alpha: np.ndarray) -> Image.Image:
    """0 sure background, 255 sure object, 128 within 2 network pixels of a soft truth pixel."""
    from scipy import ndimage

    soft = (alpha > 0.001) & (alpha < 0.999)
    r = max(1, round(max(alpha.shape) / 160))
    band = ndimage.binary_dilation(soft, iterations=r) if r < 8 else _dilate(soft, r)
    tri = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    tri[band] = 128
    return Image.fromarray(tri, "L")


def _dilate(binary: np.ndarray, r: int) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(binary.astype(np.uint8), k).astype(bool)

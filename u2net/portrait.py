"""Portrait drawing with the official U²-Net portrait model, and its blend with the photo.

Both follow the official repository's portrait demo (xuebinqin/U-2-Net):
`u2net_portrait_test.py` feeds the photo at 512 × 512, takes the fused map d1, inverts it
(`1 - d1`, so the lines are dark on white), min-max normalises it and resizes it back with
bilinear filtering; `u2net_portrait_composite.py` blurs the photo with a Gaussian of `sigma`
and adds `alpha` of it to `1 - alpha` of the drawing.

The drawing is only as good as the weights: the published `u2net_portrait.pth` draws lines,
random weights draw noise (the tests use those to check the pipeline and the maths).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from .images import ImageInput, load_image, load_mask
from .vocabulary import PORTRAIT_MODEL, OptionError


def draw_portrait(image: ImageInput, predictor=None, weights=None, device: str | None = None
                  ) -> Image.Image:
    """The portrait drawing: dark lines on white, the photo's size.

    Parameters:
        image: the photo (anything `images.load_image` takes).
        predictor: a Predictor for the portrait model; None uses the shared
            `get_predictor("u2net_portrait", weights, device)`.
        weights, device: used only when `predictor` is None.

    Returns:
        An "L" image of the photo's size: 255 minus the model's min-max normalised fused map,
        which is the official `normPRED(1 - d1)` (min-max commutes with the inversion).

    Raises:
        WeightsError when the portrait weights cannot be found (they are not bundled).
    """
    if predictor is None:
        from .predictor import get_predictor

        predictor = get_predictor(PORTRAIT_MODEL, weights=weights, device=device)
    photo = load_image(image)
    mask = np.asarray(load_mask(predictor.predict(photo), size=photo.size), dtype=np.uint8)
    return Image.fromarray(255 - mask, "L")


def blend_portrait(image: ImageInput, drawing: ImageInput, sigma: float = 2.0, alpha: float = 0.5
                   ) -> Image.Image:
    """The official composite of photo and drawing.

    composite = gaussian(photo, sigma) · alpha + drawing / max(drawing) · 255 · (1 - alpha),
    as in `u2net_portrait_composite.py` (its Gaussian: each channel apart, edges repeated,
    truncated at 4 sigma; the drawing is stretched so that its brightest value is white).

    Parameters:
        image: the photo.
        drawing: the drawing from `draw_portrait` ("L"; resized to the photo if needed).
        sigma: Gaussian blur of the photo in pixels (0: no blur); the official default is 2.
        alpha: weight of the photo, 0..1 (1: the blurred photo, 0: the drawing alone).

    Returns:
        A new RGB image of the photo's size.
    """
    try:
        sigma = float(sigma)
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise OptionError(f"sigma and alpha must be numbers, got {sigma!r} and {alpha!r}") from None
    if not (np.isfinite(sigma) and sigma >= 0):
        raise OptionError(f"sigma must be a number ≥ 0 (pixels of blur), got {sigma!r}")
    if not 0.0 <= alpha <= 1.0:
        raise OptionError(f"alpha must be from 0 (drawing only) to 1 (photo only), got {alpha!r}")
    photo = load_image(image)
    lines = np.asarray(load_mask(drawing, size=photo.size), dtype=np.float64)
    lines = lines / (lines.max() + 1e-8) * 255.0
    rgb = np.asarray(photo, dtype=np.float64)
    if sigma > 0:
        rgb = ndimage.gaussian_filter(rgb, (sigma, sigma, 0), mode="nearest", truncate=4.0)
    composite = rgb * alpha + lines[..., None] * (1.0 - alpha)
    return Image.fromarray(np.clip(np.floor(composite + 0.5), 0, 255).astype(np.uint8), "RGB")

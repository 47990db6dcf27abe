"""CONTRACT SKELETON (the effects issue fills this in).

Portrait drawing with the official U²-Net portrait model, and its blend with the photo.
"""

from __future__ import annotations

from PIL import Image


def draw_portrait(image, predictor=None) -> Image.Image:
    """The drawing ("L", image size, dark lines on white) from the u2net_portrait model.
    `predictor` defaults to get_predictor("u2net_portrait")."""
    raise NotImplementedError


def blend_portrait(image, drawing, sigma: float = 2.0, alpha: float = 0.5) -> Image.Image:
    """The official composite: photo blurred with Gaussian `sigma`, weighted `alpha`, plus the
    drawing weighted 1 - alpha. RGB, image size."""
    raise NotImplementedError

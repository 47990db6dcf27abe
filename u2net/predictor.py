"""CONTRACT SKELETON (the core-engine issue fills this in; keep these signatures).

The one shared predictor: every front end gets its masks from here.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from .images import ImageInput


class Predictor:
    """Saliency masks from one U²-Net model on one device; thread-safe, loaded lazily.

    Parameters:
        model: registry name: "u2netp", "u2net", "u2net_human_seg" or "u2net_portrait".
        weights: explicit weights file (.onnx or .pth); None resolves it (U2NET_WEIGHTS,
            U2NET_HOME, then the Hugging Face Hub).
        device: "cpu", "cuda", "cuda:0"…; None picks CUDA when available.
        precision: "exact" (fp32, the published model's answer) or "fast" (see README).

    Attributes:
        inference_count: number of images that went through the network so far (a cached
            mask does not count). Tests use it to prove one pass per image.
    """

    inference_count: int

    def __init__(self, model: str = "u2netp", weights=None, device: str | None = None,
                 precision: str = "exact") -> None:
        raise NotImplementedError

    def predict(self, image: ImageInput) -> Image.Image:
        """Mask ("L", 0..255) the size of the upright image. Cached by image content."""
        raise NotImplementedError

    def predict_batch(self, images: Sequence[ImageInput]) -> list[Image.Image]:
        """Masks for several images, run through the network in batches."""
        raise NotImplementedError


def get_predictor(model: str = "u2netp", weights=None, device: str | None = None,
                  precision: str = "exact") -> Predictor:
    """The shared Predictor for these settings (created once, then reused; thread-safe)."""
    raise NotImplementedError

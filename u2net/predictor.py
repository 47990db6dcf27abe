"""The one shared predictor: every front end gets its masks from here.

Preprocessing and postprocessing follow the official test script step by step (see
../shared/reference/README.md), so a mask is the published model's mask:

1. the upright RGB image, resized to S × S (320, or 512 for the portrait model) with a plain
   bilinear resample on half-pixel centres — no anti-aliasing and a constant 0 beyond the
   border, as scikit-image 0.14's resize(mode="constant") did;
2. divided by its maximum, then per channel (x - mean) / std with ImageNet statistics;
3. the fused output d0, min–max normalised to 0..1 (a constant map gives zeros, not NaN);
4. × 255 to an 8-bit image, resized back to the image size with PIL bilinear.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import U2NetError
from .images import DEFAULT_MAX_PIXELS, ImageInput, load_image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_BATCH_SIZE = 8
DEFAULT_CACHE_SIZE = 64  # masks kept; re-rendering an effect with new controls reuses them
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024  # …but never more than this much mask memory


def _bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a bilinear resize with half-pixel centres, in float64.

    src = (dst + 0.5) · in/out − 0.5. Like scikit-image's resize(mode="constant") that made the
    published masks, a source position outside the image (only when enlarging, within half a
    pixel of the border) blends the edge pixel with 0 instead of repeating it.
    Returns (i0, i1, w0, w1): out = w0 · in[i0] + w1 · in[i1], indices clamped into the image.
    """
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    i0 = np.floor(src).astype(np.int64)
    i1 = i0 + 1
    w1 = src - i0
    w0 = 1.0 - w1
    w0[(i0 < 0) | (i0 >= in_size)] = 0.0  # outside the picture: the constant 0
    w1[(i1 < 0) | (i1 >= in_size)] = 0.0
    clamp = in_size - 1
    return (np.clip(i0, 0, clamp), np.clip(i1, 0, clamp),
            w0.astype(np.float32), w1.astype(np.float32))


_WHOLE_FLOAT_PIXELS = 2_000_000  # above, the whole photo as float costs more than reading its rows


def _rows(image: np.ndarray | Image.Image, index: np.ndarray) -> np.ndarray:
    """Rows `index` of an H × W × 3 image as uint8 (index into the result's first axis). From
    a PIL image only those rows are copied out, one crop per run of neighbouring rows, instead
    of the whole photo (`np.asarray` of a 24-megapixel photo takes 70 MB and ~55 ms)."""
    if isinstance(image, np.ndarray):
        return image[index]
    wanted = np.unique(index)
    runs = np.split(wanted, np.flatnonzero(np.diff(wanted) != 1) + 1)
    block = np.concatenate([np.asarray(image.crop((0, int(run[0]), image.width, int(run[-1]) + 1)))
                            for run in runs])
    return block[np.searchsorted(wanted, index)]


def resize_bilinear(rgb: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """An H × W × 3 uint8 image (array, or RGB PIL image) resized to size × size × 3 float32
    (values 0..255) as the official recipe does: bilinear on half-pixel centres, no
    anti-aliasing, a constant 0 beyond the border (scikit-image 0.14 `resize(..., mode="constant")`).

    Up to 2 megapixels, OpenCV's bilinear on the whole photo as float (the same half-pixel
    formula and float weights; 0.6 instead of 3.6 ms for a 400 × 267 photo). Above, two
    separable passes that read only the rows and columns the result needs, so a
    64-megapixel photo never becomes a 64-megapixel float array (nor, from a PIL image, a
    full-size array at all).
    """
    w, h = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
    if h * w <= _WHOLE_FLOAT_PIXELS:
        import cv2

        out = cv2.resize(np.asarray(rgb).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        # Enlarging, the samples within half a pixel of the border fall outside the picture.
        # OpenCV gives them the edge pixel; the recipe blends the edge with 0, i.e. the edge
        # times the weight that falls inside (w0 + w1 of the taps, 1 everywhere else).
        for axis, n in ((0, h), (1, w)):
            if size > n:
                _, _, w0, w1 = _bilinear_taps(size, n)
                inside = w0 + w1
                edge = np.flatnonzero(inside < 1)
                shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
                index = (edge,) if axis == 0 else (slice(None), edge)
                out[index] *= inside[edge].reshape(shape)
        return out
    r0, r1, wr0, wr1 = _bilinear_taps(size, h)
    c0, c1, wc0, wc1 = _bilinear_taps(size, w)
    both = _rows(rgb, np.concatenate([r0, r1]))
    rows = both[:size].astype(np.float32) * wr0[:, None, None] + both[size:].astype(np.float32) * wr1[:, None, None]
    return rows[:, c0] * wc0[None, :, None] + rows[:, c1] * wc1[None, :, None]  # size × size × 3


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """The network input for one upright RGB image: float32, shape (3, size, size).

    Parameters:
        image: an RGB PIL image (use u2net.images.load_image for anything else).
        size: the side of the square input (the model's input_size).
    Returns:
        The image resized, divided by its maximum and normalised with ImageNet mean/std.
    """
    import cv2

    # An RGB image is read as it is: convert("RGB") would copy a 12-megapixel photo first.
    x = resize_bilinear(image if image.mode == "RGB" else image.convert("RGB"), size)
    peak = float(x.max())
    # (x / peak - mean) / std as one multiply and one subtract per channel plane, written
    # straight into the channels-first input; an all-black picture stays 0 instead of 0/0.
    scale = 1.0 / (STD * peak) if peak > 0 else 1.0 / STD
    out = np.empty((3, size, size), np.float32)
    for c, plane in enumerate(cv2.split(x)):
        np.multiply(plane, np.float32(scale[c]), out=out[c])
        out[c] -= np.float32(MEAN[c] / STD[c])
    return out


def postprocess(saliency: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The mask for one image from the network's fused map.

    Parameters:
        saliency: the fused output d0 for one image, shape (S, S) (or (1, S, S)).
        size: (width, height) of the upright image.
    Returns:
        An "L" image of `size`: the map min–max normalised, ×255, resized with PIL bilinear.
    """
    pred = np.asarray(saliency, dtype=np.float32).reshape(saliency.shape[-2:])
    lo, hi = float(pred.min()), float(pred.max())
    # A constant map carries no saliency: all zeros, never NaN.
    norm = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
    # The official script: Image.fromarray(pred * 255).convert(...) — Pillow's float-to-8-bit
    # conversion, kept as is so rounding matches the published masks.
    mask = Image.fromarray(norm * 255.0).convert("L")  # float32 array -> mode "F"
    return mask.resize(tuple(size), resample=Image.BILINEAR)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _image_key(rgb: Image.Image) -> str:
    """Cache key: a hash of the RGB pixels and the size (two images with the same bytes but a
    different shape must not share a mask)."""
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=20)
    digest.update(f"{rgb.width}x{rgb.height}".encode())
    return digest.hexdigest()


class Predictor:
    """Saliency masks from one U²-Net model on one device; thread-safe, loaded lazily.

    Parameters:
        model: registry name: "u2netp", "u2net", "u2net_human_seg" or "u2net_portrait".
        weights: explicit weights file (.onnx or .pth); None resolves it (U2NET_WEIGHTS,
            U2NET_HOME, then the Hugging Face Hub).
        device: "cpu", "cuda", "cuda:0"…; None picks CUDA when available.
        precision: "exact" (fp32, the published model's answer) or "fast" (see README).
        batch_size: images per network call in predict_batch.
        cache_size: recent masks kept (0 turns the cache off).
        max_pixels: larger images are refused with ImageTooLargeError.

    Attributes:
        inference_count: number of images that went through the network so far (a cached
            mask does not count). Tests use it to prove one pass per image.
    """

    inference_count: int

    def __init__(self, model: str = "u2netp", weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, precision: str = "exact", *,
                 batch_size: int = DEFAULT_BATCH_SIZE, cache_size: int = DEFAULT_CACHE_SIZE,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        from . import accel
        from .weights import get_spec

        self.spec = get_spec(model)  # unknown names fail here, before any loading
        if precision not in accel.PRECISIONS:
            raise ValueError(f"precision must be one of {accel.PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = self.spec.name
        self.weights = weights
        self.device = torch.device(device) if device is not None else _default_device()
        self.precision = precision
        self.batch_size = int(batch_size)
        self.cache_size = max(0, int(cache_size))
        self.max_pixels = max_pixels
        self.inference_count = 0
        self.weights_path = None  # the resolved file, once loaded
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one forward at a time: torch already uses every core
        self._cache: OrderedDict[str, Image.Image] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._forward is not None else "not loaded"
        return (f"Predictor(model={self.model_name!r}, device={str(self.device)!r}, "
                f"precision={self.precision!r}, {state})")

    @property
    def input_size(self) -> int:
        """Side of the square network input (320, or 512 for the portrait model)."""
        return self.spec.input_size

    @property
    def loaded(self) -> bool:
        return self._forward is not None

    def load(self) -> Predictor:
        """Resolve, verify and load the weights now (otherwise the first prediction does it).

        Returns self. Raises WeightsError when the weights cannot be found or do not fit.
        """
        if self._forward is None:
            with self._load_lock:
                if self._forward is None:  # another thread may have loaded it meanwhile
                    from . import accel
                    from .model import load_model
                    from .weights import resolve_weights

                    path = resolve_weights(self.model_name, self.weights)
                    net = load_model(self.spec.architecture, path)
                    forward = accel.prepare(net, self.device, self.precision, self.input_size)
                    self.weights_path = path
                    self._forward = forward
        return self

    def predict(self, image: ImageInput) -> Image.Image:
        """Mask ("L", 0..255) the size of the upright image. Cached by image content.

        Parameters:
            image: a PIL image, numpy array, path or bytes (see u2net.images.load_image).
        Returns:
            A new "L" image, white where the salient object is.
        Raises:
            InvalidImageError / ImageTooLargeError for unreadable or oversized images,
            WeightsError when the model cannot be loaded.
        """
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput], batch_size: int | None = None
                      ) -> list[Image.Image]:
        """Masks for several images, run through the network in batches.

        Every image is read first, so one unreadable image raises before any work is done.
        Images already in the cache, and repeats within `images`, are not run again.

        Parameters:
            images: PIL images, arrays, paths or bytes.
            batch_size: images per network call (default: the predictor's batch_size).
        Returns:
            One "L" mask per image, in order, each the size of its upright image.
        """
        if isinstance(images, (str, bytes, bytearray, os.PathLike, Image.Image, np.ndarray)):
            raise TypeError("predict_batch takes a sequence of images; use predict for one image")
        step = self.batch_size if batch_size is None else int(batch_size)
        if step < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        # Read only (the network's input and the mask's size): the caller's RGB image itself.
        rgbs = [load_image(img, max_pixels=self.max_pixels, copy=False) for img in images]
        keys = [_image_key(rgb) for rgb in rgbs] if self.cache_size else [None] * len(rgbs)
        results: list[Image.Image | None] = [None] * len(rgbs)
        todo: dict[str, list[int]] = {}  # key -> indices of images that need it
        for i, key in enumerate(keys):
            hit = self._cache_get(key) if key is not None else None
            if hit is not None:
                results[i] = hit
            else:
                todo.setdefault(key if key is not None else f"#{i}", []).append(i)
        pending = list(todo.values())
        for start in range(0, len(pending), step):
            chunk = pending[start:start + step]
            masks = self._run([rgbs[idx[0]] for idx in chunk])
            for idx, mask in zip(chunk, masks, strict=True):
                if keys[idx[0]] is not None:
                    self._cache_put(keys[idx[0]], mask)
                for i in idx:
                    results[i] = mask
        # Callers get their own copies: a caller drawing on a mask must not change the cache.
        return [m.copy() for m in results]  # type: ignore[union-attr]

    def remember(self, image: ImageInput, mask: Image.Image) -> None:
        """Use `mask` for `image` from now on (a corrected mask: painted strokes, chosen
        objects): later `predict` calls for the same pixels return it without the network.
        Without a cache (cache_size 0) it is not kept.

        Raises:
            ValueError when the mask is not the image's size.
        """
        rgb = load_image(image, max_pixels=self.max_pixels)
        if mask.size != rgb.size:
            raise ValueError(f"the mask is {mask.size[0]}×{mask.size[1]}, the image "
                             f"{rgb.width}×{rgb.height}")
        if not self.cache_size:
            return
        key = _image_key(rgb)
        with self._cache_lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cache_bytes -= old.width * old.height
        self._cache_put(key, mask.convert("L").copy())

    def forget(self, image: ImageInput) -> None:
        """Drop the cached (or remembered) mask of `image`: the next `predict` runs the network."""
        key = _image_key(load_image(image, max_pixels=self.max_pixels))
        with self._cache_lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cache_bytes -= old.width * old.height

    def clear_cache(self) -> None:
        """Forget every cached mask."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network alone, for pipelines that preprocess and postprocess elsewhere (the Ray
        engine): `preprocess`ed inputs (N×3×S×S float32) in one call, the fused saliency maps
        (N×S×S float32, what `postprocess` takes) out. Loads the model on first use."""
        self.load()
        with self._run_lock:
            try:
                out = self._forward(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))  # type: ignore[misc]
            except torch.cuda.OutOfMemoryError as exc:
                raise U2NetError(f"the {self.device} device ran out of memory on a batch of "
                                 f"{len(batch)}; use a smaller batch size or the CPU ({exc})") from None
            self.inference_count += len(batch)
        return out.detach().float().cpu().numpy().reshape(len(batch), *batch.shape[-2:])

    def _run(self, rgbs: list[Image.Image]) -> list[Image.Image]:
        """The network on a list of RGB images (one call), masks at each image's size."""
        size = self.input_size
        sal = self.forward(np.stack([preprocess(rgb, size) for rgb in rgbs]))
        return [postprocess(sal[i], rgb.size) for i, rgb in enumerate(rgbs)]

    def _cache_get(self, key: str) -> Image.Image | None:
        with self._cache_lock:
            mask = self._cache.get(key)
            if mask is not None:
                self._cache.move_to_end(key)
            return mask

    def _cache_put(self, key: str, mask: Image.Image) -> None:
        nbytes = mask.width * mask.height
        if not self.cache_size or nbytes > DEFAULT_CACHE_BYTES:
            return
        with self._cache_lock:
            if key in self._cache:
                return
            self._cache[key] = mask
            self._cache_bytes += nbytes
            while len(self._cache) > self.cache_size or self._cache_bytes > DEFAULT_CACHE_BYTES:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.width * old.height


_shared: dict[tuple, Predictor] = {}
_shared_lock = threading.Lock()


def get_predictor(model: str = "u2netp", weights: str | os.PathLike | None = None,
                  device: str | torch.device | None = None, precision: str = "exact") -> Predictor:
    """The shared Predictor for these settings (created once, then reused; thread-safe).

    Parameters: as for Predictor. The instance is created without loading; the first
    prediction (or .load()) loads the weights.
    Returns:
        The same object for the same (model, weights, device, precision).
    """
    from .weights import get_spec

    name = get_spec(model).name
    dev = torch.device(device) if device is not None else _default_device()
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    wkey = os.path.abspath(os.path.expanduser(os.fspath(weights))) if weights is not None else None
    key = (name, wkey, str(dev), precision)
    with _shared_lock:
        pred = _shared.get(key)
        if pred is None:
            pred = Predictor(name, weights, dev, precision)
            _shared[key] = pred
        return pred

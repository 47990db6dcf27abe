"""Reading any image a user may hand us into an upright RGB picture, safely.

One place decides what counts as a readable image, so the app, the CLI, the batch and the
video front ends refuse the same files with the same words.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, InvalidImageError

try:  # HEIC/HEIF (iPhone photos): read when pillow-heif is installed (it is in requirements.txt)
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - without it, HEIC files are refused with a hint
    HEIF_SUPPORTED = False
else:
    register_heif_opener()
    HEIF_SUPPORTED = True

# ISO base-media brands of HEIF/HEIC files, to name the format when it cannot be read.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")

# 64 megapixels: a 9000 × 7000 photo passes, a 20000 × 20000 bomb does not.
DEFAULT_MAX_PIXELS = int(os.environ.get("U2NET_MAX_PIXELS", 64_000_000))

ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike, bytes, bytearray]


def _check_pixels(width: int, height: int, max_pixels: int, name: str = "image") -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; scale it down first (or raise U2NET_MAX_PIXELS)"
        )
    if width < 1 or height < 1:
        raise InvalidImageError(f"{name} has no pixels ({width}×{height})")


def _open(source: ImageInput, max_pixels: int) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise InvalidImageError("the file is empty (0 bytes)")
        fp, name = io.BytesIO(bytes(source)), "the data"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            # A folder, a device or a pipe is not a picture either; say which.
            what = "not a regular file" if path.exists() else "no such file"
            raise InvalidImageError(f"{path}: {what}")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{path.name}: the file is empty (0 bytes)")
        fp, name = path.open("rb"), path.name
    else:
        raise TypeError(f"expected an image, a path or bytes, got {type(source).__name__}")
    try:
        # No warnings.catch_warnings() here: it rewrites the process-wide filter list and is not
        # thread-safe (the app decodes in several threads). Our own pixel check below runs on the
        # header, before any pixel is decoded, so Pillow's bomb warning adds nothing.
        img = Image.open(fp)
        _check_pixels(img.width, img.height, max_pixels, name)
        img.seek(0)  # animated GIF / multi-page TIFF: the first frame
        img.load()
    except (ImageTooLargeError, InvalidImageError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_bomb_message(name, exc, max_pixels)) from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: {_unreadable_reason(fp)}") from None
    except MemoryError:
        raise ImageTooLargeError(f"{name}: not enough memory to decode this image; "
                                 "scale it down first") from None
    except Exception as exc:
        # Decoders (Pillow's and plugins' C code) answer hostile bytes with many exception
        # types (OSError, SyntaxError, struct.error, RuntimeError, TypeError…): all mean the
        # file is damaged, and none may reach the user as a traceback.
        raise InvalidImageError(f"{name}: the image is damaged or truncated ({exc})") from None
    finally:
        if not isinstance(source, Image.Image):
            # Pillow has read everything it needs; close our handle.
            fp.close()
    return img


def _bomb_message(name: str, exc: Exception, max_pixels: int) -> str:
    """Pillow's guard fired on the header: say how big it claims to be, in our words."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    claimed = f"declares {int(found.group(1)):,} pixels" if found else "declares a huge size"
    return (f"{name} {claimed}, over the limit of {max_pixels:,}: a decompression bomb or an "
            "image far too large to process; refused without decoding it")


def _unreadable_reason(fp) -> str:
    """Why Pillow could not identify the file, with a hint for the formats people expect."""
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError):
        head = b""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIC/HEIF image; install pillow-heif to read it, or convert it to JPEG/PNG"
    return "not an image format we can read (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC…)"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is flattened onto black like the official
    test script (which drops alpha), 16-bit and float data are scaled, not clipped."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode == "La":  # premultiplied grey + alpha: Pillow converts it only to "LA"
        img = img.convert("LA")
    if img.mode == "RGB":
        return img  # convert() would copy it
    return img.convert("RGB")


_ORIENTATION = 0x0112  # the EXIF tag


def load_image(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, copy: bool = True) -> Image.Image:
    """Return `source` as an upright 8-bit RGB PIL image.

    Parameters:
        source: a PIL image, a numpy array (H×W, H×W×3 or H×W×4; uint8, uint16 or float in
            0..1), a file path, or the bytes of an image file.
        max_pixels: refuse images with more pixels than this (decompression bombs included).
        copy: False hands back an upright RGB PIL `source` itself, for callers that only read
            it (a 12-megapixel copy costs ~40 ms).

    Returns:
        A new RGB image with EXIF orientation applied (or `source`, see `copy`); the caller's
        object is never modified.

    Raises:
        InvalidImageError: not an image, empty, truncated or unsupported.
        ImageTooLargeError: more than `max_pixels` pixels.
    """
    if isinstance(source, np.ndarray):
        img = _array_to_image(source)
    elif isinstance(source, Image.Image):
        img = source
        _check_pixels(img.width, img.height, max_pixels)
    else:
        img = _open(source, max_pixels)
    _check_pixels(img.width, img.height, max_pixels)
    try:
        # exif_transpose copies even an upright image (~40 ms at 12 MP): only when it turns.
        turned = img.getexif().get(_ORIENTATION, 1) not in (None, 1)
        upright = ImageOps.exif_transpose(img) if turned else img
    except Exception:  # a corrupt EXIF block must not cost the user their picture
        upright = img
    try:
        rgb = _to_rgb(upright)
    except Exception as exc:  # an exotic decoded mode; say so rather than crash
        raise InvalidImageError(f"image mode {upright.mode!r} is not supported ({exc})") from None
    return rgb.copy() if rgb is source and copy else rgb


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"array of shape {arr.shape} is not an image (H×W, H×W×3 or H×W×4)")
    if arr.size == 0:
        raise InvalidImageError(f"array of shape {arr.shape} has no pixels")
    if arr.dtype == np.uint8:
        data = arr
    elif arr.dtype == np.uint16:
        data = (arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif arr.dtype == bool:
        data = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidImageError("array holds NaN or infinite values")
        data = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        data = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(data))


def load_mask(source: ImageInput, size: tuple[int, int] | None = None) -> Image.Image:
    """A saliency mask as an 8-bit "L" image, resized (bilinear) to `size` if given."""
    if isinstance(source, Image.Image):
        mask = source if source.mode == "L" else source.convert("L")
    elif isinstance(source, np.ndarray):
        arr = source if source.ndim == 2 else source[..., 0]
        mask = _array_to_image(arr).convert("L")
    else:
        mask = load_image(source).convert("L")
    if size is not None and mask.size != tuple(size):
        mask = mask.resize(tuple(size), Image.BILINEAR)
    return mask

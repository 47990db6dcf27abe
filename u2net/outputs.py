"""What can be made from one mask: the options (parsed once, where the user gave them), one
`render()` that every front end calls, and how outputs are named and encoded.

    options = RenderOptions(background="grey", highlight_mode="tint")   # checked here, once
    result = render(image, mask, ["cutout", "background", "boxes"], options)
    result.images["cutout"], result.boxes.to_dict()
    encode(result.images["cutout"], "png")  -> bytes (no metadata: same pixels, same bytes)

The words (kinds, modes, backgrounds…) live in `u2net.vocabulary`; the pixels are made by the
pure functions of `u2net.effects` and `u2net.portrait`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from zlib_ng import zlib_ng

from . import effects
from .vocabulary import (
    CROP_OUTPUTS,
    DEFAULT_BACKGROUND,
    DEFAULT_MARK_COLOUR,
    FITS,
    HIGHLIGHT_MODES,
    IMAGE_FORMATS,
    OUTPUT_KINDS,
    REFINE_METHODS,
    Background,
    OptionError,
    _shown,
    check_choice,
    parse_background,
    parse_colour,
)

# Upper bounds for numbers a client sends: far beyond any sensible use, low enough that no
# request can ask for a blur or a line that takes minutes or gigabytes.
MAX_PIXELS_OPTION = 2000.0  # feather, blur radius, padding in pixels, outline thickness
MAX_SIGMA = 100.0  # portrait blend blur


def _number(name: str, value: Any, low: float, high: float, whole: bool = False) -> float:
    try:
        number = float(value)
        ok = math.isfinite(number) and low <= number <= high and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if ok and whole and not number.is_integer():
        ok = False
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise OptionError(f"{name} must be {kind} from {low:g} to {high:g}, got {_shown(value)}")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise OptionError(f"{name} must be true or false, got {_shown(value)}")


def parse_padding(value: str | float | int) -> str | float | int:
    """"5%" stays a percentage; "12" (or 12) is 12 pixels; checked against the bounds."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            _number("padding", text[:-1], 0, 1000)
            return text
        number = _number("padding", text, 0, MAX_PIXELS_OPTION)
        return int(number) if number.is_integer() else number
    return _number("padding", value, 0, MAX_PIXELS_OPTION)


@dataclass(frozen=True)
class RenderOptions:
    """Every setting of every output, checked when the object is made (OptionError names
    what is allowed). Defaults are the app's and the CLI's.

    Mask corrections (before every output; see u2net.refine): edges ("none", "guided" or
    "matting": the edge at the photo's resolution), strokes (a picture of "keep" / "remove"
    paint: an image, or a file path from the local CLI / library), objects (ranks to keep,
    "1,2"), object_point ((x, y): keep the object there).
    Mask refinement (used by every output): threshold (None keeps the soft mask),
    min_island, fill_holes, feather. Cut-out: decontaminate. Background: background (a
    colour or keyword, see `vocabulary.parse_background`), background_image (a picture: a
    PIL image, or a file path from the local CLI / library; wins over `background`), fit,
    blur_radius. Boxes: box_threshold, min_area, box_colour, thickness, labels, union.
    Highlight: highlight_mode, strength, highlight_colour. Crop: padding ("5%" or pixels),
    aspect, crop_output. Portrait: blend (drawing blended with the photo), portrait_sigma,
    portrait_alpha.
    """

    edges: str = "none"
    strokes: str | os.PathLike | Image.Image | None = None
    objects: str | None = None
    object_point: tuple[float, float] | None = None
    threshold: float | None = None
    min_island: float = 0
    fill_holes: bool = False
    feather: float = 0.0
    decontaminate: bool = True
    background: Any = DEFAULT_BACKGROUND
    background_image: str | os.PathLike | Image.Image | None = None
    fit: str = "cover"
    blur_radius: float = 12.0
    box_threshold: float = 0.5
    min_area: float = 0.001
    box_colour: Any = DEFAULT_MARK_COLOUR
    thickness: int = 3
    labels: bool = True
    union: bool = False
    highlight_mode: str = "dim"
    strength: float = 0.6
    highlight_colour: Any = DEFAULT_MARK_COLOUR
    padding: str | float = "5%"
    aspect: str = "free"
    crop_output: str = "image"
    blend: bool = False
    portrait_sigma: float = 2.0
    portrait_alpha: float = 0.5
    # The parsed background (a picture loaded once), filled in by __post_init__.
    parsed_background: Background = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from .refine import parse_ranks

        check_choice("edges", self.edges, REFINE_METHODS)
        parse_ranks(self.objects)
        if self.object_point is not None:
            point = self.object_point
            if not isinstance(point, (tuple, list)) or len(point) != 2:
                raise OptionError(f"object_point must be (x, y) in pixels, got {_shown(point)}")
            for value in point:
                _number("object_point", value, 0, 1e6)
        if self.threshold is not None:
            _number("threshold", self.threshold, 0, 1)
        _number("min_island", self.min_island, 0, 1e12)
        _number("feather", self.feather, 0, MAX_PIXELS_OPTION)
        _number("blur_radius", self.blur_radius, 0, MAX_PIXELS_OPTION)
        _number("box_threshold", self.box_threshold, 0, 1)
        _number("min_area", self.min_area, 0, 1e12)
        _number("thickness", self.thickness, 1, MAX_PIXELS_OPTION, whole=True)
        _number("strength", self.strength, 0, 1)
        _number("portrait_sigma", self.portrait_sigma, 0, MAX_SIGMA)
        _number("portrait_alpha", self.portrait_alpha, 0, 1)
        for name in ("fill_holes", "decontaminate", "labels", "union", "blend"):
            _flag(name, getattr(self, name))
        check_choice("fit", self.fit, FITS)
        check_choice("highlight_mode", self.highlight_mode, HIGHLIGHT_MODES)
        check_choice("crop_output", self.crop_output, CROP_OUTPUTS)
        effects._parse_aspect(self.aspect)
        parse_padding(self.padding)
        parse_colour(self.box_colour)
        parse_colour(self.highlight_colour)
        picture = self.background_image
        if isinstance(picture, str):
            # A file name is a picture only where it was given as one (the CLI's
            # --background-image, a library call); the background string never is.
            picture = Path(picture)
        object.__setattr__(self, "parsed_background",
                           parse_background(picture if picture is not None else self.background))

    @classmethod
    def from_dict(cls, options: dict | None) -> RenderOptions:
        """Options from a plain dict (the CLI's way); unknown keys are refused."""
        options = dict(options or {})
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(options) - names)
        if unknown:
            raise OptionError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**options)

    def corrects(self) -> bool:
        """Whether a mask correction (edges, strokes, chosen objects) is asked for."""
        return bool(self.edges != "none" or self.strokes is not None or self.objects
                    or self.object_point is not None)

    def refines(self) -> bool:
        """Whether any mask refinement is asked for."""
        return bool(self.threshold is not None or self.min_island or self.fill_holes or self.feather)

    def key(self) -> dict:
        """The options as plain JSON values (what a batch journal records to spot changes)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for name in ("background_image", "strokes"):
            picture = data[name]
            if picture is not None and not isinstance(picture, (str, os.PathLike)):
                data[name] = "<picture>"
            elif picture is not None:
                data[name] = os.fspath(picture)
        if data["object_point"] is not None:
            data["object_point"] = list(data["object_point"])
        if isinstance(data["background"], Background):
            data["background"] = f"<{data['background'].kind}:{data['background'].label}>"
        elif not isinstance(data["background"], str):
            data["background"] = list(data["background"])
        for name in ("box_colour", "highlight_colour"):
            if not isinstance(data[name], str):
                data[name] = list(data[name])
        return data


@dataclass
class Rendered:
    """What `render` made: one image per kind, and the boxes and crop details behind them."""

    images: dict[str, Image.Image]
    boxes: effects.Boxes | None = None
    crop: effects.Crop | None = None

    def boxes_json(self) -> bytes:
        """The boxes as the JSON file written beside the boxes picture."""
        data = self.boxes.to_dict() if self.boxes is not None else {}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def render(image: Image.Image, mask: Image.Image | None, kinds: Iterable[str],
           options: RenderOptions | None = None, portrait_predictor: Any = None,
           with_boxes: bool = False) -> Rendered:
    """Every requested output of one image from its one mask.

    Parameters:
        image: the upright RGB image.
        mask: its saliency mask ("L"); may be None when only "portrait" is asked for.
        kinds: output kinds (vocabulary.OUTPUT_KINDS), made in the order given.
        options: RenderOptions (default: the defaults).
        portrait_predictor: the u2net_portrait predictor; needed only for "portrait".
        with_boxes: find the boxes even when no output needs them (the batch's manifest
            lists every image's boxes).

    Returns:
        Rendered(images={kind: image}, boxes, crop).
    """
    options = options or RenderOptions()
    kinds = check_kinds(kinds)
    result = Rendered({})
    refined = mask
    if mask is not None:
        if options.corrects():
            from .refine import improve_mask

            strokes = options.strokes
            if isinstance(strokes, (str, os.PathLike)):
                strokes = Path(strokes)  # a file given as strokes (the local CLI, a library call)
            refined = improve_mask(image, refined, edges=options.edges, strokes=strokes,
                                   objects=options.objects, point=options.object_point,
                                   threshold=options.box_threshold, min_area=options.min_area)
        if options.refines():
            refined = effects.refine_mask(mask, options.threshold, options.min_island,
                                          options.fill_holes, options.feather)
        if with_boxes or "boxes" in kinds or "crop" in kinds:
            result.boxes = effects.bounding_boxes(refined, threshold=options.box_threshold,
                                                  min_area=options.min_area)
    elif set(kinds) - {"portrait"}:
        raise OptionError("every output but the portrait needs a mask")
    if {"cutout", "background"} <= set(kinds):
        # One estimate of the foreground colours for both (the costly part of each).
        result.images["cutout"], result.images["background"] = effects.cutout_and_background(
            image, refined, background=options.parsed_background, fit=options.fit,
            blur_radius=options.blur_radius, decontaminate=options.decontaminate)
    for kind in kinds:
        if kind in result.images:
            continue
        if kind == "mask":
            result.images[kind] = refined
        elif kind == "cutout":
            result.images[kind] = effects.cutout(image, refined, decontaminate=options.decontaminate)
        elif kind == "background":
            result.images[kind] = effects.replace_background(
                image, refined, background=options.parsed_background, fit=options.fit,
                blur_radius=options.blur_radius, decontaminate=options.decontaminate)
        elif kind == "boxes":
            result.images[kind] = effects.draw_boxes(image, result.boxes, colour=options.box_colour,
                                                     thickness=int(options.thickness),
                                                     labels=options.labels, union=options.union)
        elif kind == "highlight":
            result.images[kind] = effects.highlight(image, refined, mode=options.highlight_mode,
                                                    strength=options.strength,
                                                    colour=options.highlight_colour)
        elif kind == "crop":
            result.crop = effects.crop(image, refined, padding=parse_padding(options.padding),
                                       aspect=options.aspect, output=options.crop_output,
                                       threshold=options.box_threshold, min_area=options.min_area)
            result.images[kind] = result.crop.image
        elif kind == "portrait":
            from . import portrait

            if portrait_predictor is None:
                raise OptionError("the portrait output needs the u2net_portrait predictor")
            drawing = portrait.draw_portrait(image, predictor=portrait_predictor)
            result.images[kind] = (portrait.blend_portrait(image, drawing, sigma=options.portrait_sigma,
                                                           alpha=options.portrait_alpha)
                                   if options.blend else drawing)
    result.images = {kind: result.images[kind] for kind in kinds}  # in the order asked for
    return result


def check_kinds(kinds: Iterable[str], allowed: Sequence[str] = OUTPUT_KINDS) -> list[str]:
    """The kinds in order without repeats; OptionError for an unknown or empty list."""
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = list(dict.fromkeys(kinds))
    unknown = [_shown(k) for k in kinds if not isinstance(k, str) or k not in allowed]
    if unknown or not kinds:
        raise OptionError(f"unknown output(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(allowed)}")
    return kinds


# ---------------------------------------------------------------------------------- names


def safe_stem(name: str | os.PathLike | None) -> str:
    """A safe file-name stem from a user's file name ("my photo.JPG" -> "my_photo"): letters,
    digits, "_" and "-" only, at most 60 characters."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(os.fspath(name) if name else "image").stem).strip("_")
    return stem[:60] or "image"


def output_name(stem: str, kind: str, fmt: str = "png") -> str:
    """The file name of one output: "<stem>_<kind>.<fmt>" ("photo_cutout.png")."""
    return f"{stem}_{kind}.{fmt}"


def output_names(stem: str, kinds: Sequence[str]) -> list[str]:
    """Every file one image's outputs take, e.g. "sub/a" -> ["sub/a_mask.png", …]; the boxes
    also get their JSON file."""
    names = []
    for kind in kinds:
        names.append(output_name(stem, kind))
        if kind == "boxes":
            names.append(output_name(stem, kind, "json"))
    return names


# ---------------------------------------------------------------------------------- encoding


def encode(image: Image.Image, fmt: str = "png", *, fast: bool = False) -> bytes:
    """Lossless bytes with no timestamp or metadata: the same pixels always give the same bytes,
    whatever the threads.

    PNG of an RGBA, RGB or L image: strips of rows filtered and deflated side by side on
    `effects.thread_count()` threads (`effects.use_threads`, `effects.threads_here`) with
    zlib-ng's run-length deflate, RGB(A) rows with PNG's "Paeth" filter (`_png_filtered`);
    masks (L, PNG's "Up" filter) keep the smaller of that and level 6. Other modes: Pillow's
    default. The figures below predate the Paeth filter, which took 30 % off RGB(A) encodes
    (session 9, README "Performance"). Measured with benchmarks/bench_png.py on 2 shared
    cores (README "Performance"), at 12 MP:
    - cut-out: 1.02x Pillow's default level 6 (what rembg writes: 6.69 MB in 1.3 s), in
      0.42 CPU s shared by the threads (~0.22 s on 2); level 6 on the strips is no smaller
      here (1.03x) for about as much CPU again, so cut-outs keep run-length (the setting is
      `_LEVEL6_MODES`);
    - mask: 0.515 MB, 0.81x Pillow's default, in 0.06 CPU s (Pillow 0.17 s);
    - RGB (new backgrounds, boxes, highlights, crops): 1.009x Pillow's default, 0.30 CPU s.
    `fast`: run-length deflate only for masks too (1.02x Pillow's default, a third of the
    CPU): for many frames (a video's PNG frames).
    WebP lossless (method 4) is smaller still.
    """
    fmt = check_choice("format", str(fmt).lower(), IMAGE_FORMATS)
    buf = io.BytesIO()
    if fmt == "webp":
        image.save(buf, "WEBP", lossless=True, quality=80, method=4)
    elif image.mode in _PNG_MODES and image.width and image.height:
        return _png(image, () if fast else _LEVEL6_MODES)
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


# The PNG encoder. Each strip of rows is filtered (PNG's per-row predictors) and deflated on
# its own, on up to `effects.thread_count()` threads (OpenCV's filtering and zlib release the
# GIL); every strip but the last ends on a byte boundary (a full flush), so the raw deflate
# pieces join into one zlib stream. The bytes depend on the pixels only, never on the threads.
_PNG_MODES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # colour type, bytes per pixel
# Filtered bytes per strip, at least (under twice that): each strip costs ~100 bytes (a
# deflate block ends there), ~0.07% of 1 MB. Images under 2 MB (0.5 MP RGBA, 2 MP L) are one
# strip on the calling thread.
_PNG_STRIP_BYTES = 1_000_000
_WINDOW = 32768  # deflate's window: a strip may refer this far back into the one before
# Deflates, zlib-ng's (the same run-length output sizes as Python's zlib in half the CPU):
# the run-length strategy (quick; the smallest on flat, transparent or line-art rows, and on
# our cut-outs) and level 6 with the filtered strategy. Each strip keeps the smaller. Level 6
# is tried on masks only (cheap there, and 15-20% smaller with the Up filter); on a 12 MP
# cut-out and white background it came out 0.5-1% larger than run-length for 3x the CPU.
_RLE = (zlib.Z_RLE, 1)
_LEVEL6 = (zlib.Z_FILTERED, 6)
_LEVEL6_MODES = ("L",)


def _png(image: Image.Image, level6_modes: Sequence[str]) -> bytes:
    """A PNG of an RGBA, RGB or L image (8 bits, no interlace, no metadata); level 6 is tried
    for the modes in `level6_modes`."""
    image.load()  # a lazily opened file is read here, once, not by every thread's crop
    w, h = image.size
    colour_type, bpp = _PNG_MODES[image.mode]
    stride = w * bpp + 1  # the filter-type byte, then the row
    raw_bytes = stride * h
    rows = -(-h // max(1, raw_bytes // _PNG_STRIP_BYTES))  # strips of even height
    strips = [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]
    pixels = np.asarray(image) if image.mode == "L" else None

    def strip(i: int) -> tuple[bytes, int, int]:
        r0, r1 = strips[i]
        flush = zlib.Z_FINISH if i == len(strips) - 1 else zlib.Z_FULL_FLUSH
        context, lines = _png_filtered(image, pixels, r0, r1, stride)
        best = b""
        for strategy, level in (_RLE, _LEVEL6) if image.mode in level6_modes else (_RLE,):
            deflate = (zlib_ng.compressobj(level, zlib.DEFLATED, -15, 9, strategy, zdict=context)
                       if context else zlib_ng.compressobj(level, zlib.DEFLATED, -15, 9, strategy))
            out = deflate.compress(lines) + deflate.flush(flush)
            if not best or len(out) < len(best):
                best = out
        return best, zlib_ng.adler32(lines), len(lines)

    threads = min(effects.thread_count(), len(strips))
    if threads < 2:
        parts = [strip(i) for i in range(len(strips))]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(strip, range(len(strips))))
    checksum = 1
    for _, adler, length in parts:
        checksum = _adler32_combine(checksum, adler, length)
    # One IDAT chunk: the zlib header (deflate, 32 KiB window), the pieces, the checksum.
    stream = b"".join([b"\x78\x9c", *(part for part, _, _ in parts), checksum.to_bytes(4, "big")])
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", stream),
                     _png_chunk(b"IEND", b"")])


def _png_filtered(image: Image.Image, pixels: np.ndarray | None, r0: int,
                  r1: int, stride: int) -> tuple[memoryview | None, memoryview]:
    """Rows r0..r1 as PNG scanlines (filter byte + filtered row), and the scanlines just
    above them (up to deflate's window: the strip may refer back to them), or None at the top.

    RGB(A): PNG's "Paeth" on every row (`_paeth_filtered`). Pillow's encoder tries all five
    filters on each row and keeps the one with the smallest sums; on photos that is Paeth for
    nearly every row, so the files are the same size to 0.1-0.3 % (0.09 % for cut-outs over the
    reference images and examples; at worst 6 % on one small cut-out), for 30 % less time (12 MP
    cut-out PNG 193 -> 137 ms). "L" (masks, portrait drawings: smooth, scaled up from the
    network's size): PNG's "Up" on every row, 15-20% smaller there than Pillow's choice
    (though ~7% larger on a grey photo, which is not an output here).
    Either way a row's filtering depends on it and the row above only, so the rows above a
    strip come out the same as in the strip before.
    """
    back = 0 if r0 == 0 else min(r0, -(-_WINDOW // stride))  # rows above, for the window
    if pixels is not None:
        lines = _up_filtered(pixels, r0 - back, r1, stride)
        start = back * stride
    else:
        top = max(0, r0 - back - 1)  # the first row is filtered against zeros: dropped
        part = image.crop((0, top, image.width, r1))
        lines = memoryview(_paeth_filtered(part, stride))
        start = (r0 - top) * stride
    return (lines[max(0, start - _WINDOW):start] if back else None), lines[start:]


def _paeth_filtered(part: Image.Image, stride: int) -> bytes | memoryview:
    """An RGB(A) image's scanlines with PNG's Paeth filter on every row, by libpng through
    OpenCV (its level-0 PNG stores them, so inflating them is a copy).

    Only the columns between the first and one past the last nonzero pixel of any row are
    filtered: outside them the pixels are zero, so are their left and upper neighbours, and
    Paeth leaves zeros there, exactly as across the whole width (tested)."""
    cv2 = effects._cv2()
    pixels = np.asarray(part)
    bpp = (stride - 1) // part.width
    box = part.getbbox(alpha_only=False)
    if box is None:  # all zeros: every row "None" and zeros, as Pillow writes it
        return bytes(part.height * stride)
    x0, x1 = box[0], min(part.width, box[2] + 1)
    if x1 - x0 >= part.width * 0.9:
        x0, x1 = 0, part.width
    # PNG stores R, G, B(, A); OpenCV's images are B, G, R(, A).
    bgr = cv2.cvtColor(pixels[:, x0:x1], cv2.COLOR_RGB2BGR if bpp == 3 else cv2.COLOR_RGBA2BGRA)
    ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 0,
                                         cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH])
    if not ok:
        raise RuntimeError("OpenCV could not filter the image's rows")
    stream = b"".join(_png_chunks(png.data, b"IDAT"))
    lines = zlib.decompress(stream, bufsize=part.height * (1 + (x1 - x0) * bpp))
    if (x0, x1) == (0, part.width):
        return lines
    rows = np.zeros((part.height, stride), np.uint8)
    got = np.frombuffer(lines, np.uint8).reshape(part.height, -1)
    rows[:, 0] = got[:, 0]  # the filter types
    rows[:, 1 + x0 * bpp:1 + x1 * bpp] = got[:, 1:]
    return rows.reshape(-1).data


def _png_chunks(png: bytes | memoryview, kind: bytes) -> list[memoryview]:
    """The data of every chunk of type `kind` in a PNG, in order."""
    view = memoryview(png)
    out, at = [], 8  # after the signature
    while at + 8 <= len(view):
        length, = struct.unpack(">I", view[at:at + 4])
        if view[at + 4:at + 8] == kind:
            out.append(view[at + 8:at + 8 + length])
        at += 12 + length
    return out


def _up_filtered(pixels: np.ndarray, r0: int, r1: int, stride: int) -> memoryview:
    """Rows r0..r1 of an "L" image with PNG's "Up" filter: each byte minus the one above it
    (0 above the first row)."""
    up = np.empty((r1 - r0, stride), np.uint8)
    up[:, 0] = 2
    if r0:
        np.subtract(pixels[r0:r1], pixels[r0 - 1:r1 - 1], out=up[:, 1:])
    else:
        up[0, 1:] = pixels[0]
        np.subtract(pixels[1:r1], pixels[:r1 - 1], out=up[1:, 1:])
    return memoryview(up).cast("B")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte runs joined, from each one's (zlib's adler32_combine)."""
    base = 65521
    rem = second_length % base
    a = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % base
    b = (rem * (first & 0xFFFF) + (first >> 16) + (second >> 16) - rem) % base
    return (b << 16) | a


def encode_for(path: Path, image: Image.Image) -> bytes:
    """Bytes for `path`'s extension (PNG, JPEG, WebP, …); alpha is flattened onto white where
    the format has none. OptionError for an extension Pillow cannot write."""
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise OptionError(f"{path}: cannot write {ext or 'files without an extension'}; use .png, .jpg or .webp")
    if fmt == "PNG":
        return encode(image, "png")
    if fmt in ("JPEG", "BMP") and image.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()

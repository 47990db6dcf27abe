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
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

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


def encode(image: Image.Image, fmt: str = "png") -> bytes:
    """Lossless bytes with no timestamp or metadata: the same pixels always give the same bytes.

    PNG with zlib's run-length strategy (Z_RLE) after PNG's own row filters: at 12 MP it
    writes a cut-out in 0.47 s to 7.0 MB, where Pillow's default (level 6) takes 1.3 s for
    6.8–7.0 MB and level 1 takes 0.49 s for 8.0 MB (benchmarks/results, README Performance);
    masks, highlights and backgrounds alike. WebP lossless (method 4) is smaller still.
    """
    fmt = check_choice("format", str(fmt).lower(), IMAGE_FORMATS)
    buf = io.BytesIO()
    if fmt == "webp":
        image.save(buf, "WEBP", lossless=True, quality=80, method=4)
    else:
        image.save(buf, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buf.getvalue()


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

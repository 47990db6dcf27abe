"""Every word a user can type, written once: output kinds, background keywords and colours,
highlight modes, aspects, fits, crop outputs, models and the defaults.

The CLI's choices and help, the app's controls, the batch options and the effects all read
these names, so a word means one thing everywhere ("grey" is the colour grey in images, video
and the webcam alike; "grayscale" is the effect). Nothing here runs a network or opens a file
named by a string: a background *picture* is always an explicit image argument.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image, ImageColor

from .errors import U2NetError
from .weights import REGISTRY

Colour = Union[str, Sequence[int]]


class OptionError(U2NetError, ValueError):
    """An option is out of range or unknown; the message lists what is allowed."""


# ---------------------------------------------------------------------------------- models

PORTRAIT_MODEL = "u2net_portrait"
# Models that give a saliency mask (the portrait model draws lines instead), in the order the
# app and the CLI offer them: the small fast one first.
MASK_MODELS = ("u2netp",) + tuple(name for name in REGISTRY if name not in ("u2netp", PORTRAIT_MODEL))
DEFAULT_MODEL = "u2netp"
MODEL_LABELS = {"u2netp": "u2netp · fast", "u2net": "u2net · accurate",
                "u2net_human_seg": "u2net_human_seg · people"}
PRECISIONS = ("exact", "fast")  # accel.PRECISIONS holds the same words; a test compares them


def check_model(model: Any, allowed: Sequence[str] = MASK_MODELS) -> str:
    """`model` when it is one of `allowed`; OptionError naming them otherwise."""
    key = model.strip().lower() if isinstance(model, str) else None
    if key not in allowed:
        raise OptionError(f"unknown model {_shown(model)}; choose one of {', '.join(allowed)}")
    return key


# ---------------------------------------------------------------------------------- outputs

OUTPUT_KINDS = ("mask", "cutout", "background", "boxes", "highlight", "crop", "portrait")
# The portrait model is a separate 176 MB download: the app's batch offers the others.
APP_BATCH_KINDS = OUTPUT_KINDS[:-1]
OUTPUT_HELP = {
    "mask": "saliency mask (grey, 0..255)",
    "cutout": "the object on a transparent background (RGBA PNG)",
    "background": "the object on a new background (colour, picture, blur, grayscale)",
    "boxes": "bounding boxes: a drawn picture and a JSON file (also printed)",
    "highlight": "the object highlighted (dim, desaturate, blur, tint, outline, heatmap)",
    "crop": "the image cropped to the object",
    "portrait": "a line drawing of a face (u2net_portrait model)",
}
IMAGE_FORMATS = ("png", "webp")  # lossless formats offered for downloads

# How the mask's edge is brought to the photo's resolution (u2net.refine): off by default.
REFINE_METHODS = ("none", "guided", "matting")
HIGHLIGHT_MODES = ("dim", "desaturate", "blur", "tint", "outline", "heatmap")
ASPECTS = ("free", "1:1", "4:5", "16:9")
CROP_OUTPUTS = ("image", "cutout", "mask")
FITS = ("cover", "contain", "stretch")

DEFAULT_MARK_COLOUR = "#ff3b30"  # boxes, tint and outline
DEFAULT_BACKGROUND = "white"

# ---------------------------------------------------------------------------------- colours

# Chroma-key colours by the names video people use; plain "green" stays CSS green (#008000),
# and "grey"/"gray" stay CSS grey (#808080): a colour, never the grayscale effect.
SCREEN_COLOURS = {"green screen": "#00ff00", "greenscreen": "#00ff00",
                  "blue screen": "#0000ff", "bluescreen": "#0000ff"}


def _shown(value: Any, limit: int = 60) -> str:
    """`value` for a message, cut short (an attacker's megabyte string stays out of logs)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…'"


def parse_colour(colour: Colour) -> tuple[int, int, int]:
    """An RGB triple from a CSS colour name ("white", "grey"), "green screen" / "blue screen",
    "#rgb"/"#rrggbb", "rgb(…)" or (r, g, b).

    Raises OptionError for anything else.
    """
    if isinstance(colour, str):
        try:
            name = colour.strip()
            if len(name) > 64:
                raise ValueError
            rgb = ImageColor.getrgb(SCREEN_COLOURS.get(name.lower(), name))
        except ValueError:
            raise OptionError(f"{_shown(colour)} is not a colour: use a name like 'white', a hex "
                              "code like '#1e90ff' or an (r, g, b) triple") from None
        return int(rgb[0]), int(rgb[1]), int(rgb[2])
    try:
        values = [int(v) for v in colour]
    except (TypeError, ValueError):
        values = []
    if len(values) not in (3, 4) or not all(0 <= v <= 255 for v in values):
        raise OptionError(f"{_shown(colour)} is not a colour: an (r, g, b) triple needs three "
                          "whole numbers from 0 to 255")
    return values[0], values[1], values[2]


# ---------------------------------------------------------------------------------- backgrounds

# What a new background can be besides a colour or a picture. "mask" (the mask itself as the
# frame) exists for video only.
BACKGROUND_KEYWORDS = ("blur", "grayscale", "transparent")
VIDEO_BACKGROUND_KEYWORDS = BACKGROUND_KEYWORDS + ("mask",)
BACKGROUND_ALIASES = {"greyscale": "grayscale", "alpha": "transparent"}
# The choices a page offers for video and webcam backgrounds (any colour is also accepted).
VIDEO_BACKGROUND_CHOICES = ("blur", "white", "black", "green screen", "grayscale", "transparent", "mask")
# The app's "Change background" kinds: a colour, an uploaded picture, or a keyword.
BACKGROUND_KINDS = ("colour", "image") + BACKGROUND_KEYWORDS

PictureInput = Union[Image.Image, np.ndarray, bytes, bytearray, os.PathLike]


@dataclass(frozen=True)
class Background:
    """A parsed background: what goes behind the object.

    kind: "colour" (rgb), "picture" (picture: an RGB image), "blur", "grayscale",
    "transparent", or "mask" (video only: the mask itself). label: for summaries.
    """

    kind: str
    rgb: tuple[int, int, int] | None = None
    picture: Image.Image | None = None
    label: str = ""


def parse_background(background: Colour | PictureInput | Background,
                     keywords: Sequence[str] = BACKGROUND_KEYWORDS) -> Background:
    """Check a background once, where the user gave it.

    Parameters:
        background: a colour ("white", "grey", "#1e90ff", "green screen", (r, g, b)), one of
            `keywords` (an alias such as "greyscale" counts), or a picture given as an image:
            a PIL image, an array, bytes or an os.PathLike (a `Path`). A *string* is never
            taken as a file name: "photo.jpg" is refused, not opened.
        keywords: the keywords allowed here (video adds "mask").

    Returns:
        A Background (a picture is loaded, upright RGB, here).

    Raises:
        OptionError naming what is allowed; InvalidImageError for an unreadable picture.
    """
    if isinstance(background, Background):
        if background.kind in ("colour", "picture") or background.kind in keywords:
            return background
        raise OptionError(f"background {background.kind!r} is not allowed here; choose a colour, "
                          f"a picture or one of {', '.join(keywords)}")
    if isinstance(background, str):
        text = background.strip()
        key = BACKGROUND_ALIASES.get(text.lower(), text.lower())
        if key in keywords:
            return Background(key, label=key)
        try:
            return Background("colour", parse_colour(text), label=text)
        except OptionError:
            raise OptionError(
                f"background {_shown(background)} is not a colour (a name such as 'white' or "
                f"'grey', or '#1e90ff') or one of {', '.join(keywords)}; a picture is given as an "
                "image (an upload, --background-image, or a PIL image / Path in Python)") from None
    if isinstance(background, (Image.Image, np.ndarray, bytes, bytearray, os.PathLike)):
        from .images import load_image

        name = os.path.basename(os.fspath(background)) if isinstance(background, os.PathLike) else "picture"
        return Background("picture", picture=load_image(background), label=name)
    if isinstance(background, (tuple, list)):
        return Background("colour", parse_colour(background), label=f"rgb{tuple(background)}")
    raise OptionError(f"background must be a colour, a picture or one of {', '.join(keywords)}, "
                      f"got {type(background).__name__}")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` when it is one of `allowed` (exactly); OptionError naming them otherwise."""
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(f"{name} must be one of {', '.join(allowed)}, got {_shown(value)}")
    return value

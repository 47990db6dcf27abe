"""CONTRACT SKELETON (the effects issue fills this in; keep these names and parameters,
add optional keyword parameters freely).

Pure functions on (image, mask): nothing here runs a network or touches the caller's objects.
`image` is anything `images.load_image` takes; `mask` is an "L" image (or array) 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


def refine_mask(mask, threshold: float | None = None, min_island: int = 0,
                fill_holes: bool = False, feather: float = 0.0) -> Image.Image:
    """Optional mask post-processing used by every effect: hard threshold (0..1), drop islands
    smaller than `min_island` pixels, fill enclosed holes, feather the edge (Gaussian radius px)."""
    raise NotImplementedError


def cutout(image, mask, threshold: float | None = None, feather: float = 0.0,
           decontaminate: bool = True) -> Image.Image:
    """RGBA cut-out: alpha from the (refined) mask; colour bleed at soft edges removed."""
    raise NotImplementedError


def replace_background(image, mask, background="white", fit: str = "cover",
                       blur_radius: float = 12.0, threshold: float | None = None,
                       feather: float = 0.0) -> Image.Image:
    """New background: colour (name / "#hex" / (r, g, b)), an image (fit: cover, contain,
    stretch), "blur", "grayscale" or "transparent". RGB (RGBA for "transparent")."""
    raise NotImplementedError


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive
    area: int  # foreground pixels inside the component
    score: float  # mean mask value (0..1) over the component

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class Boxes:
    boxes: list[Box]  # one per salient object, largest first
    union: Box | None  # around all of them; None when the mask is empty

    def to_dict(self) -> dict: ...  # JSON-serialisable


def bounding_boxes(mask, threshold: float = 0.5, min_area: float = 0.001) -> Boxes:
    """One box per connected salient region; `min_area` below 1 is a fraction of the image,
    from 1 up a pixel count."""
    raise NotImplementedError


def draw_boxes(image, boxes: Boxes, colour="#ff3b30", thickness: int = 3,
               labels: bool = True, union: bool = False) -> Image.Image:
    raise NotImplementedError


HIGHLIGHT_MODES = ("dim", "desaturate", "blur", "tint", "outline", "heatmap")


def highlight(image, mask, mode: str = "dim", strength: float = 0.6, colour="#ff3b30") -> Image.Image:
    raise NotImplementedError


ASPECTS = ("free", "1:1", "4:5", "16:9")
CROP_OUTPUTS = ("image", "cutout", "mask")


@dataclass(frozen=True)
class Crop:
    image: Image.Image
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original image
    empty: bool  # the mask had no object: the whole image was returned
    message: str


def crop(image, mask, padding: float | int | str = "5%", aspect: str = "free",
         output: str = "image", threshold: float = 0.5) -> Crop:
    raise NotImplementedError

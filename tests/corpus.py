"""The bad-input corpus: every awkward file a stranger may hand us, built by code at test time.

Nothing here is downloaded or committed as a binary: `build_corpus(folder)` writes each case
into `folder` and returns the cases (by name) with the outcome each one must have — either a readable
image of a known upright size (plus, where it matters, a check of what the pixels must be),
or one of the clear errors from `u2net.errors`.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from u2net.errors import ImageTooLargeError, InvalidImageError

# Colours far apart, so a wrong frame, a wrong page or a wrong rotation cannot pass by accident.
RED, GREEN, BLUE, YELLOW = (220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 220, 20)


@dataclass
class Case:
    """One file of the corpus and what reading it must give.

    Attributes:
        name: short id, also the file's stem (unique, so batch outputs never collide).
        path: where the file was written.
        error: None when the file must load; else the exact error class it must raise.
        size: the upright (width, height) the image must have when it loads.
        check: optional extra test on the loaded RGB image (raises AssertionError).
        note: what the case is, for reports.
        words: for a bad case, what its message must say (a regular expression).
    """

    name: str
    path: Path
    error: type[Exception] | None
    size: tuple[int, int] | None = None
    check: Callable[[Image.Image], None] | None = field(default=None, repr=False)
    note: str = ""
    words: str = ""  # a regular expression the error message must match (case-insensitive)

    @property
    def ok(self) -> bool:
        return self.error is None


# --- small helpers -------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale 8-bit PNG declaring width×height, with `rows` rows of data (all if None).

    Written chunk by chunk with a streaming compressor, so a 65-megapixel image costs
    kilobytes of memory, and a "bomb" can declare any size over a few bytes of data.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte 0, then black pixels
    body = bytearray()
    for _ in range(height if rows is None else rows):
        body += comp.compress(row)
    body += comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", bytes(body))
            + _png_chunk(b"IEND", b""))


def quadrants(width: int, height: int) -> np.ndarray:
    """An H×W×3 picture of four solid quadrants: red, green / blue, yellow (top-left first).

    Asymmetric under every flip and rotation, so it proves an orientation was applied right.
    """
    arr = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    arr[:h2, :w2], arr[:h2, w2:], arr[h2:, :w2], arr[h2:, w2:] = RED, GREEN, BLUE, YELLOW
    return arr


def quadrant_colours(img: Image.Image) -> list[tuple[int, int, int]]:
    """The colour at the centre of each quadrant (TL, TR, BL, BR)."""
    w, h = img.size
    rgb = img.convert("RGB")
    return [rgb.getpixel((x, y)) for y in (h // 4, 3 * h // 4) for x in (w // 4, 3 * w // 4)]


def near(got: tuple[int, ...], want: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(got, want, strict=True))


def _expect_quadrants(img: Image.Image) -> None:
    got = quadrant_colours(img)
    for g, w in zip(got, (RED, GREEN, BLUE, YELLOW), strict=True):
        assert near(g, w), f"quadrants {got}, expected red, green, blue, yellow"


def _expect_colour(colour: tuple[int, int, int]) -> Callable[[Image.Image], None]:
    def check(img: Image.Image) -> None:
        got = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
        assert near(got, colour), f"centre pixel {got}, expected {colour} (the first frame/page)"
    return check


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def small_jpeg(width: int = 64, height: int = 48) -> bytes:
    return _encode(Image.fromarray(quadrants(width, height)), "JPEG", quality=90)


def small_png(width: int = 64, height: int = 48) -> bytes:
    return _encode(Image.fromarray(quadrants(width, height)), "PNG")


# The stored pixels for each EXIF orientation, given the upright picture U (EXIF 2.32, tag 274):
# the stored image is what a camera wrote; a viewer applies the tag to show U.
_STORED_FOR_ORIENTATION: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],                       # viewer mirrors left-right
    3: lambda u: u[::-1, ::-1],                    # viewer rotates 180°
    4: lambda u: u[::-1, :],                       # viewer mirrors top-bottom
    5: lambda u: u.transpose(1, 0, 2),             # viewer transposes (main diagonal)
    6: lambda u: np.rot90(u, 1),                   # viewer rotates 90° clockwise
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # viewer transverses (anti-diagonal)
    8: lambda u: np.rot90(u, -1),                  # viewer rotates 90° counter-clockwise
}


def exif_jpeg(orientation: int, width: int = 64, height: int = 32) -> bytes:
    """A JPEG whose upright picture is `quadrants(width, height)`, stored per `orientation`."""
    stored = np.ascontiguousarray(_STORED_FOR_ORIENTATION[orientation](quadrants(width, height)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())


def corrupt_exif_jpeg() -> bytes:
    """A good JPEG with an APP1 "Exif" segment of garbage inserted right after SOI."""
    good = small_jpeg()
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(range(256)) * 2
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return good[:2] + app1 + good[2:]


def jpeg_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A small JPEG whose start-of-frame header declares width×height."""
    data = bytearray(small_jpeg())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _sixteen_bit_png() -> bytes:
    # A horizontal ramp over the full 16-bit range: it must arrive scaled, not clipped to 255.
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    return _encode(Image.fromarray(ramp), "PNG")  # uint16 -> mode "I;16"


def _check_ramp(img: Image.Image) -> None:
    row = np.asarray(img.convert("L"))[16]
    assert row[0] <= 5 and row[-1] >= 250, f"16-bit ramp arrived as {row[0]}..{row[-1]}, not 0..255"
    assert np.all(np.diff(row.astype(int)) >= 0), "16-bit ramp is not monotonic after loading"


def _cmyk_jpeg() -> bytes:
    return _encode(Image.fromarray(quadrants(64, 48)).convert("CMYK"), "JPEG", quality=95)


def _palette_transparent_png() -> bytes:
    img = Image.fromarray(quadrants(64, 48)).quantize(8)
    return _encode(img, "PNG", transparency=0)


def _grey_alpha_png() -> bytes:
    grey = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    alpha = np.full((30, 40), 255, np.uint8)
    alpha[:, :20] = 0
    return _encode(Image.fromarray(np.dstack([grey, alpha]), mode="LA"), "PNG")


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (48, 40), c) for c in (RED, BLUE, GREEN)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (50, 30), RED), Image.new("RGB", (80, 60), BLUE),
             Image.new("RGB", (20, 20), GREEN)]
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _heic() -> bytes | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return _encode(Image.fromarray(quadrants(64, 48)), "HEIF", quality=95)


# --- the corpus ----------------------------------------------------------------------------

# The over-limit image and the bombs are judged against the product's default limit (64 Mpx).
OVER_LIMIT_SIZE = (8200, 8000)  # 65.6 Mpx: a real, whole PNG of 64 kB


def _heif_readable() -> bool:
    from u2net.images import HEIF_SUPPORTED

    return HEIF_SUPPORTED


@dataclass(frozen=True)
class Spec:
    """How to make one case and what it must give (see Case)."""

    name: str
    ext: str
    make: Callable[[], bytes]
    error: type[Exception] | None = None
    size: tuple[int, int] | None = None
    check: Callable[[Image.Image], None] | None = None
    note: str = ""
    words: str = ""  # a regular expression the error message must match (case-insensitive)


EMPTY = r"empty \(0 bytes\)"
DAMAGED = r"damaged or truncated"
NOT_IMAGE = r"not an image format we can read"
TOO_LARGE = r"over the limit of [\d,]+"


def _specs() -> list[Spec]:
    specs = [
        Spec("animated", "gif", _animated_gif, size=(48, 40), check=_expect_colour(RED),
             note="animated GIF, 3 frames: the first is used"),
        Spec("sixteen_bit", "png", _sixteen_bit_png, size=(64, 32), check=_check_ramp,
             note="16-bit greyscale PNG: the full range scaled to 8 bits"),
        Spec("cmyk", "jpg", _cmyk_jpeg, size=(64, 48), check=_expect_quadrants, note="CMYK JPEG"),
        Spec("palette_alpha", "png", _palette_transparent_png, size=(64, 48),
             note="palette PNG with a transparent index"),
        Spec("grey_alpha", "png", _grey_alpha_png, size=(40, 30), note="greyscale + alpha PNG"),
        Spec("one_pixel", "png", lambda: _encode(Image.new("RGB", (1, 1), RED), "PNG"), size=(1, 1),
             note="1×1 image"),
        Spec("strip", "png", lambda: _encode(Image.new("RGB", (20000, 1), GREEN), "PNG"),
             size=(20000, 1), note="20000×1 strip"),
        *[Spec(f"exif_orientation_{o}", "jpg", lambda o=o: exif_jpeg(o, 64, 32), size=(64, 32),
               check=_expect_quadrants, note=f"EXIF orientation {o}: shown upright")
          for o in range(1, 9)],
        Spec("corrupt_exif", "jpg", corrupt_exif_jpeg, size=(64, 48), check=_expect_quadrants,
             note="JPEG with a garbage EXIF block: the picture still loads"),
        Spec("multipage", "tiff", _multipage_tiff, size=(50, 30), check=_expect_colour(RED),
             note="TIFF with 3 pages: the first is used"),
        Spec("webp", "webp", lambda: _encode(Image.fromarray(quadrants(64, 48)), "WEBP", quality=95),
             size=(64, 48), check=_expect_quadrants, note="WebP"),
        Spec("png_named_jpg", "jpg", small_png, size=(64, 48), check=_expect_quadrants,
             note="a PNG named .jpg: the content decides"),
    ]
    if _heif_readable():
        specs.append(Spec("heic", "heic", _heic, size=(64, 48), check=_expect_quadrants,
                          note="HEIC (iPhone photo), read through pillow-heif"))
    else:
        specs.append(Spec("heic", "heic", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
                          InvalidImageError, words="HEIC", note="HEIC without pillow-heif: refused clearly"))
    jpg = lambda: small_jpeg(320, 240)  # noqa: E731
    png = lambda: _encode(Image.fromarray(  # noqa: E731
        np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)), "PNG")
    specs += [
        Spec("zero_byte", "jpg", lambda: b"", InvalidImageError, words=EMPTY, note="empty file"),
        Spec("truncated_jpeg", "jpg", lambda: jpg()[: len(jpg()) // 2], InvalidImageError,
             words=DAMAGED, note="JPEG cut in half"),
        Spec("truncated_png", "png", lambda: png()[: len(png()) // 2], InvalidImageError,
             words=DAMAGED, note="PNG cut in half"),
        Spec("text_as_jpg", "jpg", lambda: b"Dear colleague,\nplease find the photo attached.\n" * 20,
             InvalidImageError, words=NOT_IMAGE, note="a text file named .jpg"),
        Spec("html_as_png", "png", lambda: b"<!doctype html><html><body><img src=x.png></body></html>\n",
             InvalidImageError, words=NOT_IMAGE, note="an HTML page named .png"),
        Spec("over_limit", "png", lambda: handmade_png(*OVER_LIMIT_SIZE), ImageTooLargeError,
             words=TOO_LARGE, note=f"{OVER_LIMIT_SIZE[0]}×{OVER_LIMIT_SIZE[1]} PNG, over the 64 Mpx limit"),
        Spec("bomb_png", "png", lambda: handmade_png(100_000, 100_000, rows=4), ImageTooLargeError,
             words="decompression bomb", note="PNG bomb: 467 bytes declaring 100000×100000"),
        Spec("bomb_jpeg", "jpg", jpeg_bomb, ImageTooLargeError, words="decompression bomb",
             note="JPEG bomb: a frame header declaring 60000×60000"),
    ]
    return specs


SPECS = _specs()
CASE_NAMES = [s.name for s in SPECS]
GOOD = [s.name for s in SPECS if s.error is None]
BAD = [s.name for s in SPECS if s.error is not None]


def build_corpus(folder: Path) -> dict[str, Case]:
    """Write every case into `folder` (created if needed); returns {name: Case}, good ones first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for spec in SPECS:
        path = folder / f"{spec.name}.{spec.ext}"
        path.write_bytes(spec.make())
        cases[spec.name] = Case(spec.name, path, spec.error, spec.size, spec.check, spec.note, spec.words)
    return cases

"""The PNG encoder (`outputs.encode(image, "png")`): strips of rows filtered and deflated on a
few threads, joined into one zlib stream by hand. Every file must be a valid PNG that decodes to
exactly the input's pixels, and the same pixels must give the same bytes whatever the threads.

The pictures are real: the examples' cat made into a cut-out (RGBA, transparent pixels zero),
a new background (RGB) and a smooth mask (L, scaled up from a small one as the predictor's
are), at sizes that make one strip (under 2 MB of scanlines) and several (over).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from u2net import effects, outputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _mask(size: tuple[int, int]) -> Image.Image:
    """A soft subject mask: an ellipse with a feathered edge, made at 320 px and scaled up
    bilinearly like a predictor's mask."""
    yy, xx = np.mgrid[0:240, 0:320]
    d = ((xx - 170) / 110.0) ** 2 + ((yy - 130) / 85.0) ** 2
    small = np.clip((1.15 - d) * 4, 0, 1) * 255
    return Image.fromarray(small.astype(np.uint8), "L").resize(size, Image.BILINEAR)


def _photo(size: tuple[int, int]) -> Image.Image:
    return Image.open(EXAMPLES / "cat.jpg").convert("RGB").resize(size, Image.BICUBIC)


def _pictures(size: tuple[int, int]) -> dict[str, Image.Image]:
    photo, mask = _photo(size), _mask(size)
    return {"RGBA": effects.cutout(photo, mask), "RGB": effects.replace_background(photo, mask, "white"),
            "L": mask}


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking each CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, found = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return found


def _check(image: Image.Image, data: bytes) -> None:
    """A valid PNG (Pillow's verify, chunk CRCs, the zlib stream with its Adler-32) that
    decodes to exactly `image`'s pixels."""
    Image.open(io.BytesIO(data)).verify()
    chunks = _chunks(data)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]  # no metadata, no time
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (w, h, depth, interlace) == (*image.size, 8, 0)
    inflate = zlib.decompressobj()
    scanlines = inflate.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert inflate.eof and not inflate.unused_data  # one zlib stream, checksum included
    assert len(scanlines) == h * (1 + w * len(image.getbands()))
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert decoded.mode == image.mode and decoded.size == image.size
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    # A second decoder: libpng, through OpenCV (it checks the CRCs and the Adler-32 too).
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.mode != "L":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if image.mode == "RGBA" else cv2.COLOR_BGR2RGB)
    assert np.array_equal(pixels.reshape(np.asarray(image).shape), np.asarray(image))


def _strips(image: Image.Image) -> int:
    w, h = image.size
    return max(1, (1 + w * len(image.getbands())) * h // outputs._PNG_STRIP_BYTES)


@pytest.mark.parametrize("size", [(640, 427), (1801, 1203)], ids=["one strip", "several strips"])
def test_pixels_come_back_exactly(size):
    for mode, image in _pictures(size).items():
        assert image.mode == mode
        strips = _strips(image)
        assert (strips == 1) if size[0] < 1000 else (strips >= 2), (mode, strips)
        _check(image, outputs.encode(image, "png"))
        fast = outputs.encode(image, "png", fast=True)  # run-length only (video frames)
        _check(image, fast)
        assert fast == outputs.encode(image, "png", fast=True)


@pytest.mark.parametrize("size", [(1, 1), (7, 1), (3001, 1), (1, 2501), (999, 2), (37, 3333), (2049, 1025)])
def test_odd_shapes(size):
    """Odd widths and heights, one row, one column, a strip of two rows; over 2 MB of
    scanlines (2049 × 1025 RGBA, and the 3333-row L) the strips do not divide the rows evenly."""
    rng = np.random.default_rng(size[0] * 7919 + size[1])
    photo = _photo(size)
    noisy = np.asarray(photo).astype(np.int16) + rng.integers(-3, 4, (size[1], size[0], 3))
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    for image in (effects.cutout(photo, _mask(size)), photo, _mask(size), photo.convert("L")):
        _check(image, outputs.encode(image, "png"))


def test_an_image_read_from_a_file(tmp_path):
    """A lazily loaded image (opened, not yet read) encodes the same as its pixels."""
    image = _pictures((1801, 1203))["RGBA"]
    path = tmp_path / "cut.png"
    path.write_bytes(outputs.encode(image, "png"))
    assert outputs.encode(Image.open(path), "png") == path.read_bytes()


def test_the_same_pixels_give_the_same_bytes_on_any_threads():
    """Bytes depend on the pixels only: the threads (the app's `threads_here(1)`, a batch
    worker's `use_threads(1)`, or four) change nothing, nor does encoding twice."""
    pictures = _pictures((1800, 1200))
    before = effects._STRIPE_THREADS
    try:
        effects.use_threads(4)
        first = {mode: outputs.encode(image, "png") for mode, image in pictures.items()}
        again = {mode: outputs.encode(image, "png") for mode, image in pictures.items()}
        with effects.threads_here(1):
            assert effects.thread_count() == 1
            alone = {mode: outputs.encode(image, "png") for mode, image in pictures.items()}
        effects.use_threads(1)
        worker = {mode: outputs.encode(image, "png") for mode, image in pictures.items()}
    finally:
        effects.use_threads(before)
    assert first == again == alone == worker
    # A copy of the pixels (a fresh image object) gives the same bytes too.
    copy = Image.fromarray(np.asarray(pictures["RGBA"]).copy(), "RGBA")
    assert outputs.encode(copy, "png") == first["RGBA"]


def test_files_are_no_larger_than_before_and_masks_than_rembgs():
    """Masks (L): no larger than Pillow's default (zlib level 6), what rembg writes. Cut-outs
    and RGB outputs keep the run-length deflate: no larger than the encoder before the strips
    (Pillow, level 1, Z_RLE), give or take 0.2 %: Paeth on every row instead of Pillow's choice
    per row (measured +0.06 % / +0.03 % here at 640 × 427, -0.1 % / -0.2 % at 1801 × 1203)."""
    for size in ((640, 427), (1801, 1203)):
        for mode, image in _pictures(size).items():
            buf = io.BytesIO()
            image.save(buf, "PNG", **({} if mode == "L" else {"compress_level": 1, "compress_type": zlib.Z_RLE}))
            slack = 1.0 if mode == "L" else 1.002
            assert len(outputs.encode(image, "png")) <= slack * len(buf.getvalue()), (size, mode)


def test_other_modes_go_through_pillow():
    """LA, P, 1, I;16 and CMYK are rare here: Pillow writes them, still exactly."""
    photo = _photo((300, 200))
    for image in (photo.convert("LA"), photo.quantize(64), photo.convert("1"), photo.convert("I;16")):
        data = outputs.encode(image, "png")
        decoded = Image.open(io.BytesIO(data))
        assert decoded.mode == image.mode
        assert np.array_equal(np.asarray(decoded), np.asarray(image))
    with pytest.raises(OSError):  # PNG has no CMYK: Pillow's own error, as before
        outputs.encode(photo.convert("CMYK"), "png")


def test_webp_is_unchanged():
    """WebP lossless: alpha and every visible pixel exact (libwebp may recolour the pixels
    under alpha 0, which nobody sees)."""
    image = _pictures((320, 240))["RGBA"]
    decoded = Image.open(io.BytesIO(outputs.encode(image, "webp")))
    assert decoded.format == "WEBP"
    got, want = np.asarray(decoded.convert("RGBA")), np.asarray(image)
    visible = want[..., 3] > 0
    assert np.array_equal(got[..., 3], want[..., 3]) and np.array_equal(got[visible], want[visible])


def test_adler32_combine_matches_zlib():
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 65520, 65521, 65522, 200_000, 300_000):
        first, second = data[:cut], data[cut:]
        assert outputs._adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(data)


def _paeth_scanlines(image: Image.Image) -> bytes:
    """PNG's Paeth filter on every row of the whole image, written from the specification
    (predictor: whichever of left, above, upper-left is nearest to left + above - upper-left;
    ties in that order; neighbours outside the image are 0)."""
    x = np.asarray(image).astype(np.int16).reshape(image.height, -1)
    bpp = x.shape[1] // image.width
    left = np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]
    up = np.pad(x, ((1, 0), (0, 0)))[:-1]
    upper_left = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    guess = left + up - upper_left
    pa, pb, pc = np.abs(guess - left), np.abs(guess - up), np.abs(guess - upper_left)
    predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
    rows = np.empty((image.height, x.shape[1] + 1), np.uint8)
    rows[:, 0] = 4
    rows[:, 1:] = (x - predictor) & 255
    return rows.tobytes()


def _filtered_rows(data: bytes | memoryview, image: Image.Image) -> np.ndarray:
    return np.frombuffer(bytes(data), np.uint8).reshape(image.height, -1)


def test_filtering_only_the_nonzero_columns_gives_the_whole_rows_paeth():
    """RGB(A) rows get PNG's Paeth filter, by OpenCV, only between the first and last nonzero
    columns (plus one): the scanlines are those of the whole rows, computed here from the
    specification. Objects away from the edges, at the left or right edge, a colour under
    alpha 0 (encode takes any RGBA, not only our cut-outs), one pixel, nothing at all, and RGB.
    A row that is zero throughout may carry filter type 0 instead of 4: both leave zeros."""
    rng = np.random.default_rng(11)
    cut = np.asarray(_pictures((900, 300))["RGBA"]).copy()
    assert (cut[..., 3] == 0).all(axis=0).any()  # columns with nothing: there is something to skip
    left, right = cut.copy(), cut.copy()
    left[:, :50] = rng.integers(0, 256, (300, 50, 4))  # the left edge, noise (no zeros)
    right[:, -3:, 3] = 200  # the right edge
    hidden = cut.copy()
    hidden[:, 5, :3] = 90  # colour under alpha 0 still counts as a nonzero column
    dot = np.zeros_like(cut)
    dot[150, 450] = (1, 2, 3, 4)
    nothing = np.zeros_like(cut)
    stride = 1 + 900 * 4

    def same(image: Image.Image, label: tuple) -> None:
        lines = outputs._paeth_filtered(image, stride)
        # The rows decode to the picture (Pillow reads them as a PNG)...
        header = struct.pack(">IIBBBBB", image.width, image.height, 8, 6, 0, 0, 0)
        png = b"".join([b"\x89PNG\r\n\x1a\n", outputs._png_chunk(b"IHDR", header),
                        outputs._png_chunk(b"IDAT", zlib.compress(bytes(lines))), outputs._png_chunk(b"IEND", b"")])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(image)), label
        if image.height == 1:
            return  # libpng writes a single row unfiltered: nothing above it to predict from
        # ...and are the specification's Paeth (a row of zeros may say type 0: both leave zeros).
        got, want = _filtered_rows(lines, image), _filtered_rows(_paeth_scanlines(image), image)
        empty = ~np.asarray(image).reshape(image.height, -1).any(axis=1)
        assert np.array_equal(got[:, 1:], want[:, 1:]), label
        assert np.array_equal(got[~empty, 0], want[~empty, 0]) and set(got[empty, 0]) <= {0, 4}, label

    for name, pixels in {"cut-out": cut, "left": left, "right": right, "hidden": hidden,
                         "one pixel": dot, "nothing": nothing}.items():
        image = Image.fromarray(pixels, "RGBA")
        same(image, (name,))
        for r0, r1 in ((0, 1), (0, 300), (140, 160), (299, 300)):
            same(image.crop((0, r0, 900, r1)), (name, r0, r1))
        _check(image, outputs.encode(image, "png"))
    rgb = _pictures((900, 300))["RGB"]
    got = _filtered_rows(outputs._paeth_filtered(rgb, 1 + 900 * 3), rgb)
    assert np.array_equal(got, _filtered_rows(_paeth_scanlines(rgb), rgb))

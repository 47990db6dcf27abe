"""Fuzzing the decode and predict path with hypothesis: random bytes and mutated valid images.

Property: `load_image` (and `Predictor.predict`) either return a sound picture (RGB, at least
one pixel, within the pixel limit; a mask of the same size) or raise InvalidImageError /
ImageTooLargeError. Anything else — a TypeError from deep inside a decoder, a RuntimeError
from a plugin, a crash — is a bug: a stranger's file must never become a traceback.

Bounded: about 1800 examples for decoding (seconds), eight for the network (u2netp on
tiny pictures). The @example lines are real finds of earlier fuzzing, kept as regressions.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.corpus import _animated_gif, _encode, _heic, _multipage_tiff, exif_jpeg, quadrants
from u2net.errors import InvalidImageError
from u2net.images import load_image

# Small limits keep every decode cheap even when a mutated header claims a big picture, and
# make the too-large path part of what is fuzzed.
MAX_PIXELS = 250_000


def _seeds() -> dict[str, bytes]:
    pic = Image.fromarray(quadrants(32, 24))
    seeds = {
        "png": _encode(pic, "PNG"),
        "png_palette": _encode(pic.quantize(16), "PNG", transparency=0),
        "jpeg": _encode(pic, "JPEG", quality=85),
        "jpeg_progressive": _encode(pic, "JPEG", quality=85, progressive=True),
        "jpeg_exif": exif_jpeg(6, 32, 16),
        "gif": _animated_gif(),
        "webp": _encode(pic, "WEBP", quality=80),
        "tiff": _multipage_tiff(),
        "bmp": _encode(pic, "BMP"),
        "ico": _encode(pic, "ICO"),
        "tga": _encode(pic, "TGA"),
        "avif": _encode(pic, "AVIF", quality=60),
    }
    heic = _heic()
    if heic is not None:
        seeds["heic"] = heic
    return seeds


SEEDS = _seeds()

# One mutation: (kind, position, value). Positions wrap around the data's length.
MUTATION = st.tuples(st.sampled_from(["set", "truncate", "insert", "delete"]),
                     st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8))


def mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    """Apply byte mutations (set, truncate, insert, delete) to a copy of `data`."""
    out = bytearray(data)
    for kind, pos, value in ops:
        if not out:
            break
        i = pos % len(out)
        if kind == "set":
            out[i:i + len(value)] = value[: len(out) - i]
        elif kind == "truncate":
            del out[max(1, i):]
        elif kind == "insert":
            out[i:i] = value
        else:
            del out[i:i + len(value)]
    return bytes(out)


def check_decode(data: bytes) -> Image.Image | None:
    """The property: a sound RGB picture or one of our two errors, nothing else."""
    try:
        img = load_image(data, max_pixels=MAX_PIXELS)
    except InvalidImageError as exc:  # ImageTooLargeError is a subclass
        assert str(exc), "an error without a message"
        return None
    assert img.mode == "RGB"
    assert img.width >= 1 and img.height >= 1 and img.width * img.height <= MAX_PIXELS, img.size
    np.asarray(img)  # the pixels are really there
    return img


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
# A longer hunt: U2NET_FUZZ_EXAMPLES=50000 pytest tests/test_fuzz.py -k decode
EXAMPLES = int(os.environ.get("U2NET_FUZZ_EXAMPLES", 1000))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=_QUIET)
FUZZ_SMALL = settings(max_examples=max(400, EXAMPLES // 2), deadline=None, database=None, suppress_health_check=_QUIET)


@FUZZ
@given(fmt=st.sampled_from(sorted(SEEDS)), ops=st.lists(MUTATION, min_size=1, max_size=6))
@example(fmt="tiff", ops=[("set", 72, b"\x07")])  # TypeError from Pillow's TIFF strip offsets
@example(fmt="avif", ops=[("set", 81, b"\x00")])  # RuntimeError: missing or empty image item
@example(fmt="avif", ops=[("set", 115, b"\x00")])  # RuntimeError: decoding of colour planes
@example(fmt="heic", ops=[("set", 257, b"\x00")])  # RuntimeError: libheif security limit
def test_mutated_images_decode_or_raise_the_clear_error(fmt, ops):
    check_decode(mutate(SEEDS[fmt], ops))


@FUZZ_SMALL
@given(data=st.binary(min_size=0, max_size=4096))
def test_random_bytes_decode_or_raise_the_clear_error(data):
    check_decode(data)


# Magic numbers followed by noise reach the format parsers instead of stopping at "unknown".
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0",
          b"MM\0*", b"BM", b"\0\0\0\x18ftypheic", b"\0\0\0\x1cftypavif", b"\0\0\1\0", b"8BPS", b"P6\n"]


@FUZZ_SMALL
@given(magic=st.sampled_from(MAGICS), tail=st.binary(min_size=0, max_size=2048))
def test_format_headers_with_noise_decode_or_raise_the_clear_error(magic, tail):
    check_decode(magic + tail)


@pytest.fixture(scope="module")
def predictor(weights_dir):
    from u2net.predictor import Predictor

    return Predictor("u2netp", device="cpu", cache_size=0, max_pixels=MAX_PIXELS)


def test_predict_path_survives_mutated_images(predictor):
    """The same property through the predictor (eight tiny mutated images, u2netp): a mask of
    the upright size, or the clear error; the predictor keeps serving."""

    @settings(max_examples=8, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(fmt=st.sampled_from(["png", "jpeg", "gif", "webp", "tiff", "heic"]),
           ops=st.lists(MUTATION, min_size=1, max_size=3))
    def run(fmt, ops):
        data = mutate(SEEDS.get(fmt, SEEDS["png"]), ops)
        expected = check_decode(data)
        try:
            mask = predictor.predict(data)
        except InvalidImageError:
            assert expected is None, "load_image read it, the predictor refused it"
            return
        assert expected is not None and mask.mode == "L" and mask.size == expected.size

    run()
    mask = predictor.predict(SEEDS["png"])
    assert mask.size == (32, 24)

"""Portrait drawing and blend.

The real u2net_portrait.pth is not on this machine, so the pipeline runs end to end on the real
U²-Net architecture with random weights, saved in the official checkpoint layout and loaded
through the normal weights path: that checks the 512 × 512 input, the inversion, the
normalisation, shapes and ranges, not the drawing's looks. The blend's maths is checked
exactly against an independent implementation of the official composite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from app_server import random_portrait_weights
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from u2net.effects import OptionError
from u2net.portrait import blend_portrait, draw_portrait

PROPS = settings(max_examples=40, deadline=None)


def official_checkpoint(path, seed: int = 0):
    """A randomly initialised U²-Net state dict as the official training code saves it:
    every REBNCONV as conv_s1 + bn_s1 (with non-trivial BatchNorm statistics), plus sides."""
    return random_portrait_weights(path, seed)


@pytest.fixture(scope="module")
def portrait_weights(tmp_path_factory):
    return official_checkpoint(tmp_path_factory.mktemp("portrait") / "u2net_portrait_random.pth")


@pytest.fixture(scope="module")
def photo(reference_dir) -> Image.Image:
    return Image.open(reference_dir / "images" / "girl.png").convert("RGB")


def reference_drawing(net, photo: Image.Image, size: int) -> np.ndarray:
    """The official u2net_portrait_test.py, step by step, on our model loader: input at
    size × size, pred = 1 - d1, min-max normalised, ×255 to an 8-bit image, bilinear resize."""
    from u2net.predictor import preprocess

    with torch.inference_mode():
        d1 = net(torch.from_numpy(preprocess(photo, size))[None])[0, 0].numpy()
    pred = 1.0 - d1
    pred = (pred - pred.min()) / (pred.max() - pred.min())
    im = Image.fromarray(pred * 255).convert("RGB").resize(photo.size, resample=Image.BILINEAR)
    return np.asarray(im)[..., 0].astype(int)


def test_drawing_runs_the_portrait_model_at_512_and_inverts(portrait_weights, photo, artifacts_dir):
    from u2net.model import load_model
    from u2net.predictor import Predictor

    predictor = Predictor(model="u2net_portrait", weights=portrait_weights, device="cpu")
    assert predictor.input_size == 512
    photo = photo.resize((512, 512), Image.BILINEAR)  # the network's own size: no resize blur
    drawing = draw_portrait(photo, predictor=predictor)
    assert drawing.mode == "L" and drawing.size == photo.size
    ours = np.asarray(drawing).astype(int)
    # 255 - mask is the official normPRED(1 - d1) up to 8-bit rounding: Pillow's float to
    # 8-bit conversion truncates, so the official file is about one level darker.
    net = load_model("u2net", portrait_weights)
    official = reference_drawing(net, photo, 512)
    assert np.abs(ours - official).max() <= 2 and 0 <= (ours - official).mean() <= 1.5
    assert ours.min() == 0 and ours.max() == 255  # min-max normalised: the full range
    # The 512 input matters: the same network at 320 draws something else.
    assert np.abs(ours - reference_drawing(net, photo, 320)).mean() > 3
    # Dark where the model's saliency is high: exactly the inverse of the mask.
    assert np.array_equal(ours, 255 - np.asarray(predictor.predict(photo)).astype(int))
    blend = blend_portrait(photo, drawing)
    assert blend.mode == "RGB" and blend.size == photo.size
    folder = artifacts_dir / "effects"
    folder.mkdir(parents=True, exist_ok=True)
    drawing.save(folder / "portrait_drawing_random_weights.png")
    blend.save(folder / "portrait_blend_random_weights.png")


def test_drawing_finds_the_weights_like_every_front_end(portrait_weights, photo, monkeypatch):
    """With no predictor given, draw_portrait uses the shared u2net_portrait predictor, whose
    weights resolve through the normal path (here U2NET_U2NET_PORTRAIT_WEIGHTS)."""
    from u2net.predictor import get_predictor

    monkeypatch.setenv("U2NET_U2NET_PORTRAIT_WEIGHTS", str(portrait_weights))
    small = photo.resize((120, 80))
    shared = get_predictor("u2net_portrait")
    before = shared.inference_count
    drawing = draw_portrait(small)
    assert shared.inference_count == before + 1
    assert drawing.size == (120, 80) and drawing.mode == "L"
    assert np.array_equal(np.asarray(drawing), 255 - np.asarray(shared.predict(small)))


# --------------------------------------------------------------------------- blend maths


def gaussian_like_skimage(image: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian(image, sigma, preserve_range=True) on an RGB image, written out:
    a separable kernel truncated at 4 sigma, edges repeated, channels apart."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded)
    return out


def official_composite(image: np.ndarray, drawing: np.ndarray, sigma: float, alpha: float) -> np.ndarray:
    pd = drawing.astype(np.float64)
    pd = pd / (pd.max() + 1e-8) * 255
    blurred = gaussian_like_skimage(image, sigma) if sigma > 0 else image.astype(np.float64)
    return blurred * alpha + pd[..., None] * (1 - alpha)


@st.composite
def photo_and_drawing(draw):
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    return draw(hnp.arrays(np.uint8, (h, w, 3))), draw(hnp.arrays(np.uint8, (h, w)))


@PROPS
@given(photo_and_drawing(), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.3]), st.floats(0, 1))
def test_blend_is_the_official_composite(data, sigma, alpha):
    image, drawing = data
    out = np.asarray(blend_portrait(image, drawing, sigma=sigma, alpha=alpha)).astype(float)
    expected = official_composite(image, drawing, sigma, alpha)
    assert out.shape == image.shape
    assert np.abs(out - expected).max() <= 0.5 + 1e-6  # rounding to 8 bits only


@PROPS
@given(photo_and_drawing())
def test_blend_ends(data):
    image, drawing = data
    # alpha 1, no blur: the photo. alpha 0: the drawing alone, stretched to white, in grey.
    assert np.array_equal(np.asarray(blend_portrait(image, drawing, sigma=0, alpha=1)), image)
    only = np.asarray(blend_portrait(image, drawing, sigma=2, alpha=0)).astype(int)
    stretched = np.floor(drawing / (drawing.max() + 1e-8) * 255 + 0.5).astype(int)
    assert (only == stretched[..., None]).all()


def test_blend_defaults_resizing_and_inputs_untouched():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    drawing = Image.fromarray(rng.integers(0, 128, (15, 20), dtype=np.uint8))
    before = (image.tobytes(), drawing.tobytes())
    out = blend_portrait(image, drawing)  # official defaults: sigma 2, alpha 0.5
    expected = official_composite(np.asarray(image), np.asarray(drawing.resize((40, 30), Image.BILINEAR)), 2.0, 0.5)
    assert out.size == (40, 30)
    assert np.abs(np.asarray(out) - expected).max() <= 0.5 + 1e-6
    assert (image.tobytes(), drawing.tobytes()) == before
    assert out.tobytes() == blend_portrait(image, drawing).tobytes()


def test_blend_refuses_bad_weights():
    image = np.zeros((4, 4, 3), np.uint8)
    for kwargs in ({"alpha": 1.5}, {"alpha": -0.1}, {"sigma": -1}, {"sigma": float("nan")}, {"alpha": "half"}):
        with pytest.raises(OptionError):
            blend_portrait(image, image[..., 0], **kwargs)


def test_blend_looks_like_a_pencil_overlay(photo, artifacts_dir):
    """With a stand-in line drawing (inverted edges of the photo, since the real model's
    weights are absent) the blend shows the blurred photo under dark lines."""
    from scipy import ndimage

    grey = np.asarray(photo.convert("L"), float)
    edges = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    drawing = Image.fromarray(255 - np.clip(edges / edges.max() * 255 * 3, 0, 255).astype(np.uint8))
    out = blend_portrait(photo, drawing, sigma=2, alpha=0.5)
    folder = artifacts_dir / "effects"
    folder.mkdir(parents=True, exist_ok=True)
    drawing.save(folder / "portrait_standin_drawing.png")
    out.save(folder / "portrait_standin_blend.png")
    arr = np.asarray(out, float).mean(axis=2)
    lines = np.asarray(drawing) < 100
    assert arr[lines].mean() < arr[~lines].mean() - 40  # the lines read dark

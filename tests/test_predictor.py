"""The shared Predictor: the published masks, every kind of input, batches, the cache, sharing."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from u2net.errors import ImageTooLargeError, InvalidImageError, WeightsError
from u2net.predictor import Predictor, get_predictor, postprocess, preprocess, resize_bilinear

MODEL_MAE_LIMIT = 0.001
IMAGE_MAE_LIMIT = 0.003


def _as_unit(mask: Image.Image | np.ndarray) -> np.ndarray:
    arr = np.asarray(mask, dtype=np.float64)
    if arr.ndim == 3:  # the published PNGs hold 3 equal channels
        arr = arr[..., 0]
    return arr / 255.0


# ------------------------------------------------------------------------------------------
# The published model's answer


@pytest.mark.parametrize("model", ["u2netp", "u2net"])
def test_masks_match_the_published_masks(model, reference_dir):
    """All 18 official test images: our masks vs the authors' published masks."""
    predictor = Predictor(model, device="cpu", cache_size=0)
    images = sorted((reference_dir / "images").iterdir())
    assert len(images) == 18
    rows, maes = [], []
    for path in images:
        published = Image.open(reference_dir / f"{model}_results" / f"{path.stem}.png")
        ours = predictor.predict(path)
        assert ours.mode == "L" and ours.size == published.size, path.name
        pub = np.asarray(published)
        assert pub.ndim == 2 or np.array_equal(pub[..., 0], pub[..., 1]), "published PNG channels differ"
        mae = float(np.abs(_as_unit(ours) - _as_unit(pub)).mean())
        maes.append(mae)
        rows.append(f"  {path.name:<20} {ours.width:>5}×{ours.height:<5} MAE {mae:.5f}")
    mean = float(np.mean(maes))
    table = "\n".join([f"{model}: mean absolute error vs published masks (0..1)", *rows,
                       f"  {'all 18 images':<32} MAE {mean:.5f} (max {max(maes):.5f})"])
    print("\n" + table)
    assert predictor.inference_count == 18
    assert mean <= MODEL_MAE_LIMIT, table
    assert max(maes) <= IMAGE_MAE_LIMIT, table


def test_resize_is_plain_bilinear_with_a_constant_border():
    """Our memory-light resize is scikit-image 0.14's resize(mode="constant") without
    anti-aliasing: bilinear on half-pixel centres, 0 beyond the border. Checked against
    scipy's map_coordinates(order=1, mode="grid-constant") (the same definition), and against
    torch's interpolate(bilinear, align_corners=False, antialias=False) when shrinking, where
    no sample falls outside the picture."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for h, w, size in [(737, 411, 320), (173, 290, 320), (45, 97, 320), (320, 320, 320), (1, 1, 320),
                       (600, 800, 512)]:
        rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        ours = resize_bilinear(rgb, size)
        assert ours.shape == (size, size, 3) and ours.dtype == np.float32
        rows = (np.arange(size) + 0.5) * h / size - 0.5
        cols = (np.arange(size) + 0.5) * w / size - 0.5
        grid = np.meshgrid(rows, cols, indexing="ij")
        ref = np.stack([ndimage.map_coordinates(rgb[..., k].astype(np.float64), grid, order=1,
                                                mode="grid-constant", cval=0.0) for k in range(3)], -1)
        assert np.abs(ours - ref).max() < 1e-3, (h, w, size)
        if h >= size and w >= size:
            t = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
            tref = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                                   align_corners=False, antialias=False)
            assert np.abs(ours - tref[0].permute(1, 2, 0).numpy()).max() < 1e-3, (h, w, size)
    # Enlarging 2 -> 8: the first row samples 0.375 px outside the picture: 0.625 · edge + 0.375 · 0.
    grey = np.full((2, 2, 3), 200, dtype=np.uint8)
    big = resize_bilinear(grey, 8)
    assert big[4, 4, 0] == pytest.approx(200) and big[0, 4, 0] == pytest.approx(200 * 0.625)


def test_big_photos_are_resized_from_their_rows_alone():
    """Above 2 megapixels a PIL photo is resized from the rows the result needs, copied out a
    run at a time, never as a whole array: the same numbers as from the whole array, also for
    a panorama whose rows are enlarged (repeated and edge rows)."""
    rng = np.random.default_rng(5)
    for h, w, size in [(1500, 1500, 320), (120, 20000, 320), (2001, 1003, 512)]:
        rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize_bilinear(Image.fromarray(rgb), size),
                                      resize_bilinear(rgb, size))


def test_preprocess_follows_the_official_recipe():
    rgb = Image.fromarray(np.random.default_rng(4).integers(0, 200, (50, 70, 3), dtype=np.uint8))
    x = preprocess(rgb, 320)
    assert x.shape == (3, 320, 320) and x.dtype == np.float32
    # Undo the normalisation: the resized image divided by its own maximum peaks at exactly 1.
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    unit = x * std + mean
    assert abs(unit.max() - 1.0) < 1e-5 and unit.min() >= -1e-5
    # An all-black picture has maximum 0: no division by zero, no NaN.
    black = preprocess(Image.new("RGB", (10, 10)), 320)
    assert np.isfinite(black).all()
    np.testing.assert_allclose(black[:, 0, 0], (-mean / std)[:, 0, 0], rtol=1e-6)


def test_a_constant_map_gives_an_empty_mask_not_nan():
    mask = postprocess(np.full((320, 320), 0.42, dtype=np.float32), (33, 21))
    assert mask.mode == "L" and mask.size == (33, 21)
    assert np.asarray(mask).max() == 0
    ramp = postprocess(np.linspace(0.2, 0.3, 320 * 320, dtype=np.float32).reshape(320, 320), (320, 320))
    arr = np.asarray(ramp)
    assert arr.min() == 0 and arr.max() == 255  # min–max normalised to the full range


# ------------------------------------------------------------------------------------------
# Every kind of input


@pytest.fixture(scope="module")
def photo(reference_dir) -> Image.Image:
    """A real photo, small (so the tests stay fast) and not square (so orientation shows)."""
    img = Image.open(reference_dir / "images" / "horse.jpg").convert("RGB")
    return img.resize((120, 93), Image.BILINEAR)


@pytest.fixture(scope="module")
def uncached() -> Predictor:
    """u2netp without a cache, so every call really runs the network."""
    return Predictor("u2netp", device="cpu", cache_size=0)


def _modes(photo: Image.Image) -> dict[str, Image.Image]:
    gray = np.asarray(photo.convert("L"))
    rgba = photo.copy()
    rgba.putalpha(255)
    la = photo.convert("L")
    la.putalpha(255)
    return {
        "1": photo.convert("1"),
        "L": photo.convert("L"),
        "LA": la,
        "P": photo.convert("P", palette=Image.ADAPTIVE, colors=256),
        "RGB": photo,
        "RGBA": rgba,
        "CMYK": photo.convert("CMYK"),
        "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
        "I": Image.fromarray(gray.astype(np.int32) * 1000 - 5000),
        "F": Image.fromarray(gray.astype(np.float32) / 255.0 * 3.5),
    }


def test_every_image_mode(photo, uncached, artifacts_dir):
    colour = _as_unit(uncached.predict(photo))
    grey = _as_unit(uncached.predict(photo.convert("L")))
    assert colour.std() > 0.2  # a real mask with object and background
    modes = _modes(photo)
    # What each mode's picture is, and how far its mask may be from that picture's mask:
    # 0 where the mode holds the same pixels losslessly; palette and stretched 32-bit / float
    # data change the pixels a little; "1" is dithered, so it is held to its own 8-bit copy.
    expected = {
        "1": (_as_unit(uncached.predict(modes["1"].convert("L"))), 0.0),
        "L": (grey, 0.0), "LA": (grey, 0.0), "I;16": (grey, 0.0),
        "I": (grey, 0.02), "F": (grey, 0.02),
        "RGB": (colour, 0.0), "RGBA": (colour, 0.0), "CMYK": (colour, 0.0), "P": (colour, 0.03),
    }
    report, row = [], []
    for mode, img in modes.items():
        assert img.mode == mode
        mask = uncached.predict(img)
        assert mask.mode == "L" and mask.size == photo.size, mode
        arr = _as_unit(mask)
        assert np.isfinite(arr).all()
        assert mode == "1" or arr.std() > 0.2, mode  # the dithered "1" picture is mostly noise
        target, limit = expected[mode]
        mae = float(np.abs(arr - target).mean())
        report.append(f"{mode}: {mae:.4f} (limit {limit})")
        row.append(mask)
        assert mae <= limit, report
    sheet = Image.new("L", (photo.width * len(row), photo.height))
    for i, mask in enumerate(row):
        sheet.paste(mask, (i * photo.width, 0))
    sheet.save(artifacts_dir / "predictor_modes.png")  # 1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F


# The stored picture is the upright one with the inverse of what exif_transpose undoes.
_STORE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_mask_follows_the_upright_image(orientation, photo, uncached):
    stored = photo if _STORE[orientation] is None else photo.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())  # lossless: the upright pixels are exact
    data = buf.getvalue()
    mask = uncached.predict(data)
    assert mask.size == photo.size  # width and height of the upright picture
    assert np.array_equal(np.asarray(mask), np.asarray(uncached.predict(photo)))
    if orientation in (5, 6, 7, 8):
        assert stored.size != photo.size  # the stored picture really was turned


def test_tiny_huge_and_uniform_images(uncached):
    one = uncached.predict(Image.new("RGB", (1, 1), (200, 30, 30)))
    assert one.mode == "L" and one.size == (1, 1)

    for colour in [(128, 128, 128), (0, 0, 0), (255, 255, 255)]:
        mask = uncached.predict(Image.new("RGB", (64, 48), colour))
        assert mask.size == (64, 48) and mask.mode == "L"
        assert np.isfinite(np.asarray(mask, dtype=np.float64)).all()

    small_limit = Predictor("u2netp", device="cpu", max_pixels=10_000)
    with pytest.raises(ImageTooLargeError, match="over the limit of 10,000"):
        small_limit.predict(Image.new("RGB", (200, 100)))
    with pytest.raises(ImageTooLargeError):
        small_limit.predict_batch([Image.new("RGB", (10, 10)), Image.new("RGB", (101, 100))])
    assert small_limit.inference_count == 0  # refused before anything ran
    with pytest.raises(InvalidImageError):
        small_limit.predict(b"definitely not an image")
    assert small_limit.inference_count == 0 and not small_limit.loaded  # nothing was loaded either


def test_path_bytes_array_and_pil_give_the_same_mask(photo, uncached, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    want = np.asarray(uncached.predict(photo))
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), np.asarray(photo)):
        assert np.array_equal(np.asarray(uncached.predict(source)), want), type(source)


# ------------------------------------------------------------------------------------------
# Batches, cache, sharing


def test_batch_equals_single(photo, uncached):
    images = [photo, photo.rotate(90, expand=True), photo.resize((50, 80)), photo.convert("L")]
    before = uncached.inference_count
    batch = uncached.predict_batch(images, batch_size=3)  # two network calls: 3 + 1
    assert uncached.inference_count == before + 4
    for img, mask in zip(images, batch, strict=True):
        single = uncached.predict(img)
        assert mask.size == img.size
        diff = np.abs(np.asarray(mask, dtype=int) - np.asarray(single, dtype=int))
        # Batched convolutions may round differently in the last float bit: ≤ 1 grey level.
        assert diff.max() <= 1, diff.max()
    assert uncached.predict_batch([]) == []
    with pytest.raises(TypeError):
        uncached.predict_batch(photo)


def test_cache_hits_do_not_run_the_network(photo):
    pred = Predictor("u2netp", device="cpu", cache_size=2)
    first = pred.predict(photo)
    assert pred.inference_count == 1
    # Same pixels, other object / other container: served from the cache.
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    again = [pred.predict(photo.copy()), pred.predict(buf.getvalue()), pred.predict(np.asarray(photo))]
    assert pred.inference_count == 1
    assert all(np.array_equal(np.asarray(m), np.asarray(first)) for m in again)
    # A caller scribbling on its mask does not change what the cache hands out next.
    again[0].paste(0, (0, 0, photo.width, photo.height))
    assert np.array_equal(np.asarray(pred.predict(photo)), np.asarray(first))
    # Repeats inside one batch run once; LRU eviction beyond cache_size.
    other, third = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo.resize((60, 60))
    pred.predict_batch([other, other, photo])
    assert pred.inference_count == 2
    pred.predict(third)  # evicts the least recently used: `photo`
    assert pred.inference_count == 3
    pred.predict(other)
    assert pred.inference_count == 3
    pred.predict(photo)
    assert pred.inference_count == 4
    # Same bytes, other shape: not a hit.
    pred.predict(Image.frombytes("RGB", (photo.height, photo.width), photo.tobytes()))
    assert pred.inference_count == 5
    pred.clear_cache()
    pred.predict(photo)
    assert pred.inference_count == 6


def test_shared_instances_and_threads(photo):
    results: list[Predictor] = []
    threads = [threading.Thread(target=lambda: results.append(get_predictor("u2netp", device="cpu")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in results}) == 1
    shared = results[0]
    assert get_predictor("U2NETP", device="cpu") is shared  # the registry's name spelling
    assert get_predictor("u2netp", device="cpu", precision="fast") is not shared

    # Several threads predicting at once on a fresh predictor: one load, every mask right.
    pred = Predictor("u2netp", device="cpu", cache_size=0)
    images = [photo.rotate(a, expand=True) for a in (0, 90, 180, 270)]
    want = [np.asarray(Predictor("u2netp", device="cpu").predict(img)) for img in images]
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            got[i] = np.asarray(pred.predict(images[i]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pred.inference_count == 4
    for i in range(4):
        assert np.array_equal(got[i], want[i])


def test_lazy_loading_and_bad_settings(weights_dir, tmp_path):
    pred = Predictor("u2netp", device="cpu")
    assert not pred.loaded  # constructing is free; weights load on first use
    pred.load()
    assert pred.loaded and pred.weights_path.name == "u2netp.onnx"
    with pytest.raises(WeightsError, match="unknown model"):
        Predictor("u3net")
    with pytest.raises(ValueError, match="precision"):
        Predictor("u2netp", precision="sloppy")
    # The full model's weights given to the small model: refused when it loads, clearly.
    wrong = Predictor("u2netp", weights=weights_dir / "u2net.onnx", device="cpu")
    with pytest.raises(WeightsError):
        wrong.predict(Image.new("RGB", (8, 8)))
    assert wrong.inference_count == 0


def test_load_image_copies_the_callers_picture_unless_told_not_to(photo, uncached):
    """load_image hands back a new RGB image by default (the caller may draw on either); the
    predictor asks for no copy, since it only reads the pixels, and leaves the picture as it was."""
    from u2net.images import load_image

    rgb = photo.copy()
    before = rgb.tobytes()
    assert load_image(rgb) is not rgb
    assert load_image(rgb, copy=False) is rgb
    uncached.predict(rgb)
    assert rgb.tobytes() == before and rgb.mode == "RGB"
    grey = rgb.convert("L")
    assert load_image(grey, copy=False).mode == "RGB"  # a conversion is a new image anyway

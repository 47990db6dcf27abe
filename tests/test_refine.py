"""Making the mask right (u2net/refine.py) with the real u2netp: full-resolution edges on a
synthetic furry subject whose alpha is known exactly, paint-to-correct strokes on the official
test images, and choosing objects. Pictures go to artifacts/refine/ for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from benchmarks.matte_set import composite
from u2net.effects import OptionError, bounding_boxes
from u2net.evaluate import matting_metrics
from u2net.predictor import Predictor
from u2net.refine import apply_strokes, improve_mask, refine_edges, select_objects, stroke_masks

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def predictor(weights_dir):
    return Predictor("u2netp", weights=weights_dir / "u2netp.onnx", device="cpu")


@pytest.fixture
def out_dir(artifacts_dir):
    path = artifacts_dir / "refine"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def furry(reference_dir, predictor):
    """A 0.3-megapixel furry subject over the bike photo's scenery, its true alpha and trimap,
    and u2netp's mask of it."""
    photo, alpha, trimap = composite(reference_dir / "images" / "bike.jpg", 0.3, seed=3,
                                     mask=reference_dir / "u2net_results" / "bike.png")
    return photo, alpha, np.asarray(trimap), predictor.predict(photo)


# --------------------------------------------------------------------------- edges


@pytest.mark.parametrize("method", ["guided", "matting"])
def test_refined_edges_are_closer_to_the_true_alpha(furry, method, out_dir):
    photo, alpha, trimap, mask = furry
    refined = refine_edges(photo, mask, method)
    assert refined.mode == "L" and refined.size == photo.size
    values = np.asarray(refined)
    assert values.min() >= 0 and values.max() <= 255
    before = matting_metrics(np.asarray(mask), alpha, trimap, connectivity=False)
    after = matting_metrics(values, alpha, trimap, connectivity=False)
    assert after["sad"] < 0.95 * before["sad"], (before, after)
    assert after["gradient"] < 0.9 * before["gradient"], (before, after)
    assert after["mse"] < before["mse"]
    refined.save(out_dir / f"furry_{method}.png")
    mask.save(out_dir / "furry_network.png")
    photo.save(out_dir / "furry_photo.jpg")


def test_refinement_changes_only_the_edge_band(furry):
    photo, _, _, mask = furry
    m = np.asarray(mask)
    guided = np.asarray(refine_edges(photo, mask, "guided"))
    # Far inside the object and far out in the background nothing moves.
    edge = (m > 5) & (m < 250)
    far = ndimage.distance_transform_edt(~edge) > 0.1 * max(m.shape)
    assert far.any()
    assert np.array_equal(guided[far], m[far])
    assert not np.array_equal(guided, m)


def test_refine_none_is_the_mask_and_inputs_are_untouched(furry):
    photo, _, _, mask = furry
    before_photo, before_mask = photo.copy(), mask.copy()
    same = refine_edges(photo, mask, "none")
    assert np.array_equal(np.asarray(same), np.asarray(mask))
    refine_edges(photo, mask, "guided")
    assert np.array_equal(np.asarray(photo), np.asarray(before_photo))
    assert np.array_equal(np.asarray(mask), np.asarray(before_mask))


def test_refine_takes_a_mask_of_another_size_and_is_deterministic(furry):
    photo, _, _, mask = furry
    small = mask.resize((mask.width // 3, mask.height // 3))
    a = refine_edges(photo, small, "guided")
    b = refine_edges(photo, small, "guided")
    assert a.size == photo.size
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 2), (40, 3)])
@pytest.mark.parametrize("method", ["guided", "matting"])
def test_tiny_and_thin_pictures(shape, method):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    for mask in (np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8),
                 np.where(np.arange(shape[1]) < shape[1] / 2, 255, 0).astype(np.uint8)[None].repeat(shape[0], 0)):
        assert refine_edges(image, mask, method).size == (shape[1], shape[0])
        strokes = np.full(shape, 128, np.uint8)
        strokes[0, 0] = 0
        assert apply_strokes(image, mask, strokes).size == (shape[1], shape[0])
        assert select_objects(mask, ranks=[1], point=(0, 0)).size == (shape[1], shape[0])


@pytest.mark.parametrize("kwargs, word", [
    ({"method": "sharp"}, "none, guided, matting"),
    ({"method": "guided", "radius": -1}, "radius"),
    ({"method": "guided", "eps": float("nan")}, "eps"),
    ({"method": "matting", "max_pixels": 10}, "max_pixels"),
])
def test_refine_rejects_bad_options_naming_what_is_allowed(kwargs, word):
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(OptionError, match=word):
        refine_edges(image, np.zeros((20, 20), np.uint8), **kwargs)


# --------------------------------------------------------------------------- strokes


def _stroke(size, line, value, width=5):
    strokes = Image.new("L", size, 128)  # 128: untouched
    ImageDraw.Draw(strokes).line(line, fill=value, width=width)
    return strokes


def _measure(before, after, strokes, box, reach):
    b, a = np.asarray(before, np.int16), np.asarray(after, np.int16)
    painted = np.asarray(strokes) != 128
    dist = ndimage.distance_transform_edt(~painted)
    x0, y0, x1, y1 = box
    return {"in_stroke": float(np.abs(a - b)[painted].mean()),
            "box_before": float(b[y0:y1, x0:x1].mean()), "box_after": float(a[y0:y1, x0:x1].mean()),
            "far_changed": int((a != b)[dist > reach].sum()), "far_pixels": int((dist > reach).sum())}


def test_a_remove_stroke_on_background_the_network_kept(reference_dir, predictor, out_dir):
    # hockey.png: u2netp keeps two spectators behind the boards (U²-Net drops them).
    photo = Image.open(reference_dir / "images" / "hockey.png").convert("RGB")
    mask = predictor.predict(photo)
    box = (96, 32, 141, 86)
    strokes = _stroke(photo.size, [(104, 40), (104, 78)], 0)
    out = apply_strokes(photo, mask, strokes)
    got = _measure(mask, out, strokes, box, reach=0.1 * max(photo.size))
    assert got["in_stroke"] > 100, got  # the painted pixels went from object to background
    assert np.asarray(out)[np.asarray(strokes) == 0].max() == 0
    assert got["box_after"] < got["box_before"] - 20, got  # the spectator, not only the line
    assert got["far_changed"] == 0 and got["far_pixels"] > 0.5 * mask.width * mask.height, got
    out.save(out_dir / "hockey_remove_stroke.png")


def test_a_keep_stroke_on_a_part_the_network_dropped(reference_dir, predictor, out_dir):
    # 0002-01.jpg: u2netp drops the white sleeve at the left (U²-Net keeps it).
    photo = Image.open(reference_dir / "images" / "0002-01.jpg").convert("RGB")
    mask = predictor.predict(photo)
    box = (66, 380, 191, 571)
    strokes = _stroke(photo.size, [(128, 400), (128, 550)], 255)
    out = apply_strokes(photo, mask, strokes)
    got = _measure(mask, out, strokes, box, reach=0.1 * max(photo.size))
    assert got["in_stroke"] > 100, got
    assert np.asarray(out)[np.asarray(strokes) == 255].min() == 255
    assert got["box_after"] > got["box_before"] + 40, got  # the sleeve around the stroke too
    assert got["far_changed"] == 0, got
    out.save(out_dir / "sleeve_keep_stroke.png")


def test_strokes_in_every_format_agree(reference_dir, predictor):
    photo = Image.open(reference_dir / "images" / "hockey.png").convert("RGB")
    mask = predictor.predict(photo)
    line = [(104, 40), (104, 78)]
    grey = _stroke(photo.size, line, 0)
    rgba = Image.new("RGBA", photo.size, (0, 0, 0, 0))  # a paint layer: red = remove
    ImageDraw.Draw(rgba).line(line, fill=(230, 30, 40, 255), width=5)
    rgb = Image.new("RGB", photo.size, (128, 128, 128))
    ImageDraw.Draw(rgb).line(line, fill=(255, 0, 0), width=5)
    outs = [np.asarray(apply_strokes(photo, mask, s)) for s in (grey, rgba, rgb, np.asarray(grey))]
    for other in outs[1:]:
        assert np.array_equal(outs[0], other)


def test_stroke_rules():
    size = (4, 1)
    la = np.array([[255, 0, 128, 200]], np.uint8)
    keep, remove = stroke_masks(la, size)
    assert keep.tolist() == [[True, False, False, True]] and remove.tolist() == [[False, True, False, False]]
    rgba = np.array([[[0, 200, 0, 255], [200, 0, 0, 255], [255, 255, 255, 255], [0, 0, 0, 255]]], np.uint8)
    keep, remove = stroke_masks(rgba, size)
    assert keep.tolist() == [[True, False, True, False]] and remove.tolist() == [[False, True, False, True]]
    rgba[..., 3] = 0  # nothing painted
    keep, remove = stroke_masks(rgba, size)
    assert not keep.any() and not remove.any()
    rgb = rgba[..., :3]  # without alpha only green and red count
    keep, remove = stroke_masks(rgb, size)
    assert keep.tolist() == [[True, False, False, False]] and remove.tolist() == [[False, True, False, False]]
    with pytest.raises(OptionError, match="keep"):
        stroke_masks(np.zeros((2, 2, 5), np.uint8), (2, 2))


def test_no_strokes_give_the_mask_back(reference_dir, predictor):
    photo = Image.open(reference_dir / "images" / "hockey.png").convert("RGB")
    mask = predictor.predict(photo)
    out = apply_strokes(photo, mask, Image.new("L", photo.size, 128))
    assert np.array_equal(np.asarray(out), np.asarray(mask))
    with pytest.raises(OptionError, match="reach"):
        apply_strokes(photo, mask, Image.new("L", photo.size, 128), reach=-1)


# --------------------------------------------------------------------------- objects


def test_select_objects_by_rank_and_by_point(reference_dir, predictor, out_dir):
    photo = Image.open(reference_dir / "images" / "hockey.png").convert("RGB")
    mask = predictor.predict(photo)
    m = np.asarray(mask)
    boxes = bounding_boxes(mask)
    assert len(boxes) >= 3
    second = boxes.boxes[1]
    only2 = np.asarray(select_objects(mask, ranks="2"))
    inside = (slice(second.y0, second.y1), slice(second.x0, second.x1))
    # The object keeps its soft values; everything far from it is gone.
    assert np.array_equal(only2[inside][m[inside] > 127], m[inside][m[inside] > 127])
    assert not only2[:, : boxes.boxes[0].x1 // 2].any()
    assert bounding_boxes(Image.fromarray(only2)).boxes[0] == second
    # The object under a point inside the second box is the same selection.
    cx, cy = next((x, y) for y in range(second.y0, second.y1) for x in range(second.x0, second.x1)
                  if m[y, x] > 200)
    by_point = np.asarray(select_objects(mask, point=(cx, cy)))
    assert np.array_equal(by_point, only2)
    both = np.asarray(select_objects(mask, ranks=[1, 2]))
    assert (both >= only2).all() and both.sum() > only2.sum()
    Image.fromarray(only2).save(out_dir / "hockey_object2.png")


def test_select_objects_edges_and_errors():
    m = np.zeros((40, 60), np.uint8)
    m[5:15, 5:25] = 255
    m[4, 5:25] = 60  # a soft edge below the threshold belongs to its object
    m[25:35, 40:50] = 200
    assert np.array_equal(np.asarray(select_objects(m)), m)  # nothing chosen: unchanged
    one = np.asarray(select_objects(m, ranks=[1]))
    assert one[4, 10] == 60 and not one[25:35, 40:50].any()
    assert not np.asarray(select_objects(m, ranks=[5])).any()  # no fifth object: empty
    assert not np.asarray(select_objects(np.zeros((5, 5), np.uint8), ranks=[1])).any()
    for bad in ("0", "x", [1.5], "-1"):
        with pytest.raises(OptionError, match="whole numbers from 1"):
            select_objects(m, ranks=bad)
    with pytest.raises(OptionError, match="inside the 60×40 mask"):
        select_objects(m, point=(60, 10))


def test_improve_mask_runs_each_step_in_order(reference_dir, predictor):
    photo = Image.open(reference_dir / "images" / "hockey.png").convert("RGB")
    mask = predictor.predict(photo)
    assert np.array_equal(np.asarray(improve_mask(photo, mask)), np.asarray(mask))
    strokes = _stroke(photo.size, [(104, 40), (104, 78)], 0)
    step_by_step = select_objects(apply_strokes(photo, refine_edges(photo, mask, "guided"), strokes),
                                  ranks=[1, 2])
    at_once = improve_mask(photo, mask, edges="guided", strokes=strokes, objects="1,2")
    assert np.array_equal(np.asarray(at_once), np.asarray(step_by_step))
    with pytest.raises(OptionError, match="whole numbers"):
        improve_mask(photo, mask, edges="guided", objects="first")


# ---------------------------------------------------------------------------------------------
# Through the options layer and the command line


def test_corrections_through_render_and_the_cli(tmp_path, weights_dir):
    """--refine, --objects and --strokes reach every output through RenderOptions / render: the
    CLI's mask equals improve_mask on the network's mask, and the cut-out's alpha is that mask."""
    from u2net.cli import main
    from u2net.outputs import RenderOptions, render
    from u2net.predictor import Predictor
    from u2net.refine import improve_mask

    photo = tmp_path / "cat.png"
    Image.open(ROOT / "examples" / "cat.jpg").convert("RGB").resize((180, 120)).save(photo)
    image = Image.open(photo).convert("RGB")
    mask = Predictor("u2netp", weights=weights_dir / "u2netp.onnx").predict(image)
    strokes = Image.new("L", image.size, 128)
    strokes.paste(0, (0, 0, 40, 40))  # "remove" in the top-left corner
    strokes.save(tmp_path / "strokes.png")
    want = np.asarray(improve_mask(image, mask, edges="guided", strokes=strokes, objects="1"))
    got = render(image, mask, ["mask", "cutout"],
                 RenderOptions(edges="guided", strokes=strokes, objects="1"))
    assert np.array_equal(np.asarray(got.images["mask"]), want)
    assert np.array_equal(np.asarray(got.images["cutout"])[..., 3], want)
    assert (want[:40, :40] == 0).all()

    out = tmp_path / "out"
    assert main(["batch", str(photo), "-o", str(out), "--outputs", "mask", "--refine", "guided",
                 "--objects", "1", "--strokes", str(tmp_path / "strokes.png"), "-q"]) == 0
    assert np.array_equal(np.asarray(Image.open(out / "cat_mask.png")), want)
    # Bad words are refused before anything runs; strokes belong to one photo.
    assert main(["mask", str(photo), "-o", str(tmp_path / "x.png"), "--objects", "first"]) == 2
    assert main(["batch", str(photo), str(photo), "-o", str(tmp_path / "y"), "--strokes",
                 str(tmp_path / "strokes.png")]) == 2
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y").exists()


def test_parsing_options_imports_no_scipy():
    # Every batch worker and app request parses RenderOptions, which checks the object ranks
    # with this module; scipy (0.17 s to import) waits until a refinement needs it.
    import subprocess
    import sys

    code = ("import sys; from u2net.outputs import RenderOptions; RenderOptions(objects='1,2'); "
            "print('scipy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    assert done.stdout.strip() == "False"

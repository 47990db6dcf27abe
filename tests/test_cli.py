"""The command line with the real u2netp weights: every subcommand writes a valid output; files,
folders (--recursive) and globs; refusals exit 2 and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from u2net.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _photo(path: Path, size=(160, 120), fmt=None) -> Path:
    """A bright disc on a dark, slightly noisy background."""
    rng = np.random.default_rng(len(str(path)))
    img = Image.fromarray(rng.integers(0, 50, (size[1], size[0], 3)).astype(np.uint8))
    w, h = size
    ImageDraw.Draw(img).ellipse([w * 0.3, h * 0.25, w * 0.7, h * 0.75], fill=(240, 200, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


@pytest.fixture()
def photo(tmp_path) -> Path:
    return _photo(tmp_path / "in" / "photo.png")


def run(*args: str) -> int:
    return main([*args, "--workers", "1", "-q"])


def test_mask_and_default_output_beside_the_input(photo):
    assert run("mask", str(photo)) == 0
    mask = Image.open(photo.with_name("photo_mask.png"))
    assert mask.mode == "L" and mask.size == (160, 120)
    m = np.asarray(mask)
    assert m[60, 80] > 200 and m[2, 2] < 60


def test_cutout_png_and_jpeg(photo, tmp_path):
    out = tmp_path / "cut.png"
    assert run("cutout", str(photo), "-o", str(out)) == 0
    cut = Image.open(out)
    assert cut.mode == "RGBA" and cut.size == (160, 120)
    alpha = np.asarray(cut.getchannel("A"))
    assert alpha[60, 80] > 200 and alpha[2, 2] < 60
    jpg = tmp_path / "cut.jpg"  # no alpha in JPEG: flattened onto white
    assert run("cutout", str(photo), "-o", str(jpg)) == 0
    flat = Image.open(jpg)
    assert flat.format == "JPEG" and flat.mode == "RGB"
    assert min(flat.getpixel((2, 2))) > 200


def test_background_colour_and_image(photo, tmp_path):
    out = tmp_path / "green.png"
    assert run("background", str(photo), "-o", str(out), "--background", "#00ff00") == 0
    img = Image.open(out).convert("RGB")
    assert img.getpixel((2, 2)) == (0, 255, 0)
    backdrop = tmp_path / "backdrop.png"
    Image.new("RGB", (40, 30), (10, 20, 200)).save(backdrop)
    out2 = tmp_path / "onimage.png"
    assert run("background", str(photo), "-o", str(out2), "--background-image", str(backdrop)) == 0
    assert Image.open(out2).convert("RGB").getpixel((2, 2)) == (10, 20, 200)


def test_background_word_is_never_opened_as_a_file(photo, tmp_path, capsys):
    """--background takes a colour or a keyword; a file name there is refused with a pointer
    to --background-image, before anything is written."""
    backdrop = tmp_path / "backdrop.png"
    Image.new("RGB", (40, 30), (10, 20, 200)).save(backdrop)
    out = tmp_path / "refused.png"
    assert run("background", str(photo), "-o", str(out), "--background", str(backdrop)) == 2
    assert "--background-image" in capsys.readouterr().err and not out.exists()


def test_boxes_writes_picture_json_and_prints(photo, tmp_path, capsys):
    out = tmp_path / "boxes.png"
    assert run("boxes", str(photo), "-o", str(out), "--union") == 0
    assert Image.open(out).size == (160, 120)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["count"] == 1
    box = data["boxes"][0]
    assert 40 <= box["x0"] <= 56 and 104 <= box["x1"] <= 120  # the disc spans x 48..112
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == [{"input": "photo.png", "boxes": data}]


def test_highlight_modes(photo, tmp_path):
    for mode in ("dim", "tint", "heatmap"):
        out = tmp_path / f"{mode}.png"
        assert run("highlight", str(photo), "-o", str(out), "--mode", mode) == 0
        assert Image.open(out).size == (160, 120)


def test_crop_to_the_object(photo, tmp_path):
    out = tmp_path / "crop.png"
    assert run("crop", str(photo), "-o", str(out), "--aspect", "1:1", "--padding", "4") == 0
    w, h = Image.open(out).size
    assert w == h and 60 <= w <= 90  # the disc is 64 × 60 plus 4 px each side


def test_portrait_writes_a_drawing_or_says_which_weights_are_missing(photo, tmp_path, capsys):
    out = tmp_path / "portrait.png"
    code = run("portrait", str(photo), "-o", str(out))
    err = capsys.readouterr().err
    if code == 0:
        drawing = Image.open(out)
        assert drawing.size == (160, 120)
    else:  # the portrait weights are a separate download: one clear message, not one per image
        assert code == 2 and not out.exists()
        assert "u2net_portrait" in err and "weights" in err.lower(), err
        assert err.count("no weights") == 1


def test_folder_recursive_glob_and_structure(tmp_path):
    src = tmp_path / "photos"
    _photo(src / "a.jpg", fmt="JPEG")
    _photo(src / "b.WEBP", (90, 70), fmt="WEBP")
    _photo(src / "deep" / "c.TIFF", (70, 90), fmt="TIFF")
    flat = tmp_path / "flat"
    assert run("mask", str(src), "-o", str(flat)) == 0
    assert sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*.png")) == ["a_mask.png", "b_mask.png"]
    deep = tmp_path / "deep"
    assert run("cutout", str(src), "-r", "-o", str(deep)) == 0
    assert sorted(p.relative_to(deep).as_posix() for p in deep.rglob("*.png")) == [
        "a_cutout.png", "b_cutout.png", "deep/c_cutout.png"]
    globbed = tmp_path / "globbed"
    assert run("mask", str(src / "**" / "*.TIFF"), "-o", str(globbed)) == 0
    assert [p.relative_to(globbed).as_posix() for p in globbed.rglob("*.png")] == ["deep/c_mask.png"]
    # A glob whose matches would include the outputs is refused (a rerun would read them back).
    assert run("mask", str(src / "**" / "*"), "-o", str(src / "masks")) == 2
    assert not (src / "masks").exists()
    # Effect subcommands write no manifest; batch does.
    assert not (flat / "manifest.csv").exists()


def test_batch_several_outputs(tmp_path):
    src = tmp_path / "photos"
    _photo(src / "a.png")
    _photo(src / "b.bmp", (100, 80), fmt="BMP")
    out = tmp_path / "out"
    assert run("batch", str(src), "-o", str(out), "--outputs", "mask,cutout,highlight,crop,background,boxes",
               "--mode", "desaturate", "--background", "blur", "--threshold", "0.5") == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted(["manifest.csv", "manifest.jsonl"] + [
        f"{s}_{k}" for s in ("a", "b") for k in ("mask.png", "cutout.png", "highlight.png", "crop.png",
                                                 "background.png", "boxes.png", "boxes.json")])
    assert set(np.unique(np.asarray(Image.open(out / "a_mask.png")))) <= {0, 255}  # --threshold


def test_output_equal_to_input_is_refused(photo, capsys):
    before = photo.read_bytes()
    assert run("cutout", str(photo), "-o", str(photo)) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert photo.read_bytes() == before
    assert run("batch", str(photo.parent), "-o", str(photo.parent / "out")) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in photo.parent.iterdir()) == ["photo.png"]


def test_bad_input_and_missing_output(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    assert run("mask", str(bad), "-o", str(tmp_path / "m.png")) == 1
    err = capsys.readouterr().err
    assert "0 of 1 images succeeded" in err and "bad.png" in err
    assert not (tmp_path / "m.png").exists()
    assert run("mask", str(tmp_path)) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert run("mask", str(tmp_path / "missing.png"), "-o", str(tmp_path / "x")) == 2
    with pytest.raises(SystemExit) as exit_info:  # argparse: unknown choice
        run("highlight", str(bad), "--mode", "sparkle")
    assert exit_info.value.code == 2


def test_python_dash_m_entry_point(photo, tmp_path, weights_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), U2NET_HOME=str(weights_dir))
    out = tmp_path / "m.png"
    proc = subprocess.run([sys.executable, "-m", "u2net", "mask", str(photo), "-o", str(out), "-q"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 images succeeded" in proc.stderr
    assert Image.open(out).mode == "L"
    version = subprocess.run([sys.executable, "-m", "u2net", "--version"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "u2net" in version.stdout

"""The render layer: every word declared once and meaning one thing, options checked once,
one render for every front end, one predictor per model handed down to every tab."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app_server import tiny_clip
from u2net import accel, effects, vocabulary
from u2net.outputs import RenderOptions, render
from u2net.video import video_background, webcam_frame
from u2net.vocabulary import OptionError
from u2net.weights import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GREY = (128, 128, 128)


# ---------------------------------------------------------------------------------------------
# One vocabulary


def _choices(parser: argparse.ArgumentParser, flag: str) -> tuple | None:
    for action in parser._actions:
        if flag in action.option_strings:
            return tuple(action.choices) if action.choices is not None else None
    raise AssertionError(f"{parser.prog} has no {flag}")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_the_library_reads_the_vocabulary():
    assert effects.HIGHLIGHT_MODES is vocabulary.HIGHLIGHT_MODES
    assert effects.ASPECTS is vocabulary.ASPECTS and effects.CROP_OUTPUTS is vocabulary.CROP_OUTPUTS
    assert effects.FITS is vocabulary.FITS and effects.OptionError is vocabulary.OptionError
    assert tuple(accel.PRECISIONS) == vocabulary.PRECISIONS
    # The model list is the registry's: every model is offered, the portrait model on its own.
    assert set(vocabulary.MASK_MODELS) | {vocabulary.PORTRAIT_MODEL} == set(REGISTRY)
    assert vocabulary.MASK_MODELS[0] == vocabulary.DEFAULT_MODEL
    assert set(vocabulary.OUTPUT_HELP) == set(vocabulary.OUTPUT_KINDS)
    # Every word is accepted by the options object; a word from outside is refused by name.
    for mode in vocabulary.HIGHLIGHT_MODES:
        RenderOptions(highlight_mode=mode)
    for fit in vocabulary.FITS:
        RenderOptions(fit=fit)
    for aspect in vocabulary.ASPECTS:
        RenderOptions(aspect=aspect)
    for output in vocabulary.CROP_OUTPUTS:
        RenderOptions(crop_output=output)
    for word in vocabulary.BACKGROUND_KEYWORDS:
        RenderOptions(background=word)
    for word in vocabulary.VIDEO_BACKGROUND_CHOICES:
        video_background(word)
    with pytest.raises(OptionError, match="dim, desaturate, blur, tint, outline, heatmap"):
        RenderOptions(highlight_mode="sparkle")


def test_the_cli_offers_the_vocabulary():
    from u2net.cli import build_parser

    subs = _subparsers(build_parser())
    assert set(vocabulary.OUTPUT_KINDS) | {"batch", "video", "eval"} == set(subs)
    batch = subs["batch"]
    assert _choices(batch, "--mode") == vocabulary.HIGHLIGHT_MODES
    assert _choices(batch, "--aspect") == vocabulary.ASPECTS
    assert _choices(batch, "--crop-output") == vocabulary.CROP_OUTPUTS
    assert _choices(batch, "--fit") == vocabulary.FITS
    for name in ("batch", "cutout", "video", "eval"):
        assert _choices(subs[name], "--model") == vocabulary.MASK_MODELS
        assert _choices(subs[name], "--precision") == vocabulary.PRECISIONS
    for kind in vocabulary.OUTPUT_KINDS:
        assert subs[kind].description == vocabulary.OUTPUT_HELP[kind]
    video_help = next(a.help for a in subs["video"]._actions if "--background" in a.option_strings)
    assert all(word in video_help for word in vocabulary.VIDEO_BACKGROUND_KEYWORDS)
    for flag in ("--device", "--weights", "--background-image"):  # the video CLI is like the others
        _choices(subs["video"], flag)


def test_the_app_offers_the_vocabulary():
    import gradio as gr

    import app

    by_label: dict[str, list[tuple]] = {}
    for block in app.demo.blocks.values():
        if isinstance(block, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)):
            values = tuple(value for _, value in block.choices)
            by_label.setdefault(block.label, []).append(values)
    assert by_label["Model"] == [vocabulary.MASK_MODELS]
    assert by_label["Mode"] == [vocabulary.HIGHLIGHT_MODES]
    assert by_label["Highlight"] == [vocabulary.HIGHLIGHT_MODES]
    assert by_label["Crop aspect"] == by_label["Aspect"] == [vocabulary.ASPECTS]
    assert by_label["Crop of"] == [vocabulary.CROP_OUTPUTS]
    assert by_label["Fit the picture"] == [vocabulary.FITS]
    assert by_label["Outputs"] == [vocabulary.APP_BATCH_KINDS]
    assert by_label["Background"] == [vocabulary.VIDEO_BACKGROUND_CHOICES] * 2  # video, webcam
    assert by_label["Edges"] == [vocabulary.REFINE_METHODS]
    new_background = by_label["New background"]
    assert vocabulary.BACKGROUND_KINDS in new_background
    for values in new_background:  # the All-outputs dropdown: colours and keywords
        if values != vocabulary.BACKGROUND_KINDS:
            for word in values:
                RenderOptions(background=word)


# ---------------------------------------------------------------------------------------------
# "grey" is one thing


@pytest.fixture(scope="module")
def cat_and_mask(weights_dir):
    from u2net.predictor import Predictor

    predictor = Predictor("u2netp", weights=weights_dir / "u2netp.onnx", device="cpu")
    image = Image.open(EXAMPLES / "cat.jpg").convert("RGB").resize((150, 100))
    return image, predictor.predict(image), predictor


@pytest.mark.parametrize("word", ["grey", "gray", " Grey "])
def test_grey_is_the_colour_grey_in_images_video_and_webcam(cat_and_mask, word):
    image, mask, predictor = cat_and_mask
    background = np.asarray(mask) == 0
    assert background.any()
    assert vocabulary.parse_background(word).rgb == GREY
    assert video_background(word).rgb == GREY
    pictures = {
        "image": np.asarray(effects.replace_background(image, mask, word)),
        "render": np.asarray(render(image, mask, ["background"], RenderOptions(background=word))
                             .images["background"]),
        "webcam": webcam_frame(np.asarray(image), background=word, predictor=predictor),
    }
    for where, picture in pictures.items():
        assert (picture[background] == GREY).all(), where
    # The effect has its own name, the same everywhere.
    for effect in ("grayscale", "greyscale"):
        assert vocabulary.parse_background(effect).kind == video_background(effect).kind == "grayscale"


def test_options_are_checked_once_where_they_are_made():
    with pytest.raises(OptionError, match="thickness"):
        RenderOptions(thickness=10**9)
    with pytest.raises(OptionError, match="blur_radius"):
        RenderOptions(blur_radius=float("inf"))
    with pytest.raises(OptionError, match="decontaminate must be true or false"):
        RenderOptions(decontaminate="/etc/passwd")
    with pytest.raises(OptionError, match="not a colour"):
        RenderOptions(box_colour=str(EXAMPLES / "cat.jpg"))
    with pytest.raises(OptionError, match="unknown option"):
        RenderOptions.from_dict({"backgroundd": "white"})
    # A picture is an explicit image argument; the same path as a word is refused.
    assert RenderOptions(background_image=str(EXAMPLES / "cat.jpg")).parsed_background.kind == "picture"
    with pytest.raises(OptionError, match="not a colour"):
        RenderOptions(background=str(EXAMPLES / "cat.jpg"))


# ---------------------------------------------------------------------------------------------
# One predictor per model, with the app's settings, in every tab

TABS_IN_ONE_PROCESS = r"""
import gc, json, sys, zipfile
from pathlib import Path
import numpy as np
from PIL import Image
from studio.settings import SETTINGS
SETTINGS.precision = "fast"
from studio import all_outputs, batch, video
from u2net.predictor import Predictor

out = Path(sys.argv[1])
cat = "examples/cat.jpg"
all_outputs.all_outputs(cat, "u2netp")
archive, summary = batch.batch([cat], ["mask"], "u2netp")
with zipfile.ZipFile(archive) as zf:
    zf.extract("cat_mask.png", out)
frame = video.webcam(np.asarray(Image.open(cat).convert("RGB")), "mask", "u2netp")
Image.fromarray(frame).save(out / "webcam_mask.png")
def u2netp():
    return next(p for p in gc.get_objects() if isinstance(p, Predictor) and p.model_name == "u2netp")
before = u2netp().inference_count
playable, path, summary = video.video(sys.argv[2], "mask", "u2netp", 0.0, "mp4")
predictors = [p for p in gc.get_objects() if isinstance(p, Predictor)]
print(json.dumps({"predictors": sorted([p.model_name, p.precision] for p in predictors),
                  "video_frames": u2netp().inference_count - before, "summary": summary}))
"""


def test_every_tab_runs_the_apps_one_fast_predictor(weights_dir, tmp_path, cat_and_mask):
    """With the app set to fast precision, All outputs, Batch, Webcam and Video all run the
    same fast predictor: the process holds one Predictor per model, all fast, the batch's and
    the webcam's masks are the fast model's (not the exact one's), and the video's frames went
    through that same predictor."""
    from u2net.predictor import Predictor

    env = dict(os.environ, U2NET_HOME=str(weights_dir), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", TABS_IN_ONE_PROCESS, str(tmp_path), str(tiny_clip(tmp_path / "c.mp4"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # One per model: u2netp, and the portrait model that All outputs asked for (its weights are
    # not on this machine, so it stays unloaded).
    assert report["predictors"] == [["u2net_portrait", "fast"], ["u2netp", "fast"]], report
    assert report["video_frames"] == 4, report

    cat = Image.open(EXAMPLES / "cat.jpg").convert("RGB")
    fast = np.asarray(Predictor("u2netp", device="cpu", precision="fast").predict(cat))
    exact = np.asarray(cat_and_mask[2].predict(cat))
    assert np.abs(fast.astype(int) - exact).max() > 0  # the two precisions differ on this picture
    batch_mask = np.asarray(Image.open(tmp_path / "cat_mask.png"))
    webcam_mask = np.asarray(Image.open(tmp_path / "webcam_mask.png").convert("L"))
    assert np.array_equal(batch_mask, fast)
    assert np.array_equal(webcam_mask, fast)


def test_the_app_started_with_precision_fast_serves_fast_masks(weights_dir, tmp_path, cat_and_mask):
    """The real server, `python app.py --precision fast`: the Batch tab's mask is the fast
    predictor's."""
    from gradio_client import Client, handle_file

    from tests.app_server import running_app
    from u2net.predictor import Predictor

    cat = Image.open(EXAMPLES / "cat.jpg").convert("RGB")
    fast = np.asarray(Predictor("u2netp", device="cpu", precision="fast").predict(cat))
    with running_app(env={"U2NET_HOME": str(weights_dir)}, args=["--precision", "fast"]) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        archive, _ = client.predict([handle_file(str(EXAMPLES / "cat.jpg"))], ["mask"], "u2netp",
                                    api_name="/batch")
    with zipfile.ZipFile(archive) as zf:
        mask = np.asarray(Image.open(io.BytesIO(zf.read("cat_mask.png"))))
    assert np.array_equal(mask, fast)

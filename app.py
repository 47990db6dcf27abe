"""U²-Net Studio: the Gradio app (a Hugging Face Space, `python app.py`, and an API).

The file reads like the page: settings, then what each tab does, then the page itself, then
the launch. Every image operation is a call into `u2net`; this file only wires controls to
those calls, names the downloads and turns library errors into messages.

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --preload u2netp,u2net
    python app.py --share              # a temporary public *.gradio.live link
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from u2net import effects
from u2net.batch import APP_OUTPUT_KINDS, batch_to_zip
from u2net.errors import U2NetError, WeightsError
from u2net.images import load_image
from u2net.portrait import blend_portrait, draw_portrait
from u2net.predictor import get_predictor
from u2net.video import PUBLIC_MAX_SECONDS, PUBLIC_MAX_SIDE, process_video, webcam_frame

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"

# ---------------------------------------------------------------------------------------------
# Settings: flags win over the environment, the environment over these defaults.

MODELS = [
    ("u2netp · fast", "u2netp"),
    ("u2net · accurate", "u2net"),
    ("u2net_human_seg · people", "u2net_human_seg"),
]
MODEL_NAMES = [value for _, value in MODELS]
PORTRAIT_MODEL = "u2net_portrait"


@dataclass
class Settings:
    """What `main` decided from flags and environment; handlers read it at call time."""

    device: str | None = os.environ.get("U2NET_DEVICE") or None
    precision: str = os.environ.get("U2NET_PRECISION", "exact")


SETTINGS = Settings()


def _default_concurrency() -> int:
    """Network calls that may run at once: the CPU threads already share one forward pass, so
    more than one at a time only adds queueing inside torch; a GPU keeps two busy."""
    try:
        import torch

        if torch.cuda.is_available():
            return 2
    except Exception:  # torch is always installed; a broken CUDA setup must not stop the app
        pass
    return 1


# ---------------------------------------------------------------------------------------------
# Inputs and outputs shared by every tab


def readable_errors(fn: Callable) -> Callable:
    """Show library errors (not an image, too large, no weights…) as a message in the page and
    in the API answer; the server goes on serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except U2NetError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper


def open_image(path: str | None, what: str = "image") -> Image.Image:
    """The upload as an upright RGB image, or a readable error."""
    if not path:
        raise gr.Error(f"Upload the {what} first (or click an example).")
    return load_image(path)


# Handlers take gr.Progress(track_tqdm=True): the Hub download's own progress bar (tqdm) then
# shows in the page while a model's weights are fetched for the first time.
_announced: set[str] = set()


def predictor_for(model: str, progress: gr.Progress | None = None):
    """The shared, loaded predictor. A model's first use says that its weights are being
    fetched (downloaded once when not cached) before loading them."""
    if model not in MODEL_NAMES + [PORTRAIT_MODEL]:
        raise gr.Error(f"Unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}.")
    predictor = get_predictor(model, device=SETTINGS.device, precision=SETTINGS.precision)
    if not predictor.loaded:
        if model not in _announced:  # once: a model whose weights are missing fails every time
            _announced.add(model)
            gr.Info(f"First use of {model}: loading its weights, downloading them once if they are "
                    "not cached yet (u2net and the portrait model are 176 MB each, u2netp 4.7 MB).",
                    duration=8)
        if progress is not None:
            progress(0.05, desc=f"Loading {model} weights (the first run downloads them)…")
        predictor.load()
    return predictor


def mask_of(image: Image.Image, model: str, progress: gr.Progress | None = None) -> Image.Image:
    """The saliency mask. The predictor caches masks by image content, so re-rendering with new
    controls costs no network pass."""
    predictor = predictor_for(model, progress)
    if progress is not None:
        progress(0.3, desc=f"Finding the salient object ({model})…")
    return predictor.predict(image)


# Downloads: every output is written at full resolution to a file named after the upload, and
# the component shows (and downloads) that very file.
_OUTPUT_ROOT = Path(tempfile.mkdtemp(prefix="u2net-studio-"))
atexit.register(shutil.rmtree, _OUTPUT_ROOT, ignore_errors=True)
_KEEP_OUTPUTS_S = 3600


def output_folder() -> Path:
    """A fresh folder for one request's files; folders older than an hour are removed (Gradio
    has copied their files into its own cache by then)."""
    now = time.time()
    for old in _OUTPUT_ROOT.iterdir():
        try:
            if now - old.stat().st_mtime > _KEEP_OUTPUTS_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=_OUTPUT_ROOT))


def stem_of(path: str | None) -> str:
    """A safe file-name stem from the uploaded file's name ("my photo.JPG" -> "my_photo")."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path or "image").stem).strip("_")
    return stem[:60] or "image"


def save(image: Image.Image, folder: Path, stem: str, what: str, fmt: str = "png") -> str:
    """Write one output losslessly (PNG, or lossless WebP) and return its path."""
    path = folder / f"{stem}_{what}.{fmt}"
    if fmt == "webp":
        image.save(path, "WEBP", lossless=True, quality=80, method=4)
    else:
        image.save(path, "PNG", compress_level=1)  # fast: these are shown right away
    return str(path)


def save_json(data: dict, folder: Path, stem: str, what: str) -> str:
    path = folder / f"{stem}_{what}.json"
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def soft_or_hard(threshold: float) -> float | None:
    """Slider 0 means "keep the soft edge of the mask" (no threshold)."""
    return float(threshold) if threshold and threshold > 0 else None


def background_value(kind: str, colour: str | None, background_image: str | None) -> Any:
    """What replace_background takes for the chosen kind of background."""
    if kind == "colour":
        return colour or "white"
    if kind == "image":
        return open_image(background_image, "background picture")
    return kind  # "blur", "grayscale", "transparent"


def portrait_drawing(image: Image.Image, progress: gr.Progress | None = None) -> Image.Image:
    """The portrait drawing from its own model (its own single network pass, cached too)."""
    predictor = predictor_for(PORTRAIT_MODEL, progress)
    if progress is not None:
        progress(0.7, desc="Drawing the portrait…")
    return draw_portrait(image, predictor=predictor)


PORTRAIT_MISSING = ("The portrait model's weights (u2net_portrait.pth, 176 MB) could not be found "
                    "or loaded here, so there is no drawing: put the file in U2NET_HOME, or set "
                    "U2NET_U2NET_PORTRAIT_WEIGHTS to it.")

# ---------------------------------------------------------------------------------------------
# Tab: All outputs — one network pass per model feeds every output.


@readable_errors
def all_outputs(image_path: str | None, model: str = "u2netp", background: str = "white",
                highlight_mode: str = "dim", aspect: str = "free",
                progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Mask, cut-out, new background, boxes, highlight, crop and portrait from one upload.

    Returns: mask, cut-out, background, boxes image, highlight, crop, portrait (or None),
    (before, after) for the slider, boxes as JSON, notes (Markdown).
    """
    if not image_path:
        return (None,) * 7 + (None, None, "")
    image = open_image(image_path)
    mask = mask_of(image, model, progress)
    progress(0.5, desc="Rendering the outputs…")
    folder, stem = output_folder(), stem_of(image_path)
    boxes = effects.bounding_boxes(mask)
    cut = effects.cutout(image, mask)
    cropped = effects.crop(image, mask, aspect=aspect)
    outputs = [
        save(mask, folder, stem, "mask"),
        save(cut, folder, stem, "cutout"),
        save(effects.replace_background(image, mask, background=background), folder, stem, "background"),
        save(effects.draw_boxes(image, boxes), folder, stem, "boxes"),
        save(effects.highlight(image, mask, mode=highlight_mode), folder, stem, "highlight"),
        save(cropped.image, folder, stem, "crop"),
    ]
    notes = [] if not cropped.empty else [f"**Crop:** {cropped.message}"]
    try:
        outputs.append(save(portrait_drawing(image, progress), folder, stem, "portrait"))
    except WeightsError:
        outputs.append(None)
        notes.append(f"**Portrait:** {PORTRAIT_MISSING} (The Portrait tab shows where it looked.)")
    return (*outputs, (image, outputs[1]), boxes.to_dict(), "\n\n".join(notes))


# ---------------------------------------------------------------------------------------------
# Tabs, one per feature. Each re-renders from the cached mask when a control changes.


@readable_errors
def remove_background(image_path: str | None, model: str = "u2netp", threshold: float = 0.0,
                      feather: float = 0.0, decontaminate: bool = True, file_format: str = "PNG",
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The cut-out (RGBA) as PNG or lossless WebP; threshold 0 keeps soft edges."""
    if not image_path:
        return None
    image = open_image(image_path)
    mask = mask_of(image, model, progress)
    cut = effects.cutout(image, mask, threshold=soft_or_hard(threshold), feather=float(feather),
                         decontaminate=bool(decontaminate))
    fmt = "webp" if str(file_format).lower() == "webp" else "png"
    return save(cut, output_folder(), stem_of(image_path), "cutout", fmt)


BACKGROUND_KINDS = ["colour", "image", "blur", "grayscale", "transparent"]
FITS = ["cover", "contain", "stretch"]


@readable_errors
def change_background(image_path: str | None, model: str = "u2netp", kind: str = "colour",
                      colour: str = "#ffffff", background_image: str | None = None,
                      blur: float = 12.0, fit: str = "cover", feather: float = 0.0,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The subject on a new background: a colour, a picture (cover/contain/stretch), the photo
    blurred, the photo in grey, or transparent."""
    if not image_path:
        return None
    if kind not in BACKGROUND_KINDS:
        raise gr.Error(f"Unknown background kind {kind!r}; choose one of {', '.join(BACKGROUND_KINDS)}.")
    if kind == "image" and not background_image:
        # The usual moment: "image" was just ticked. Keep the last result and ask, gently.
        gr.Warning("Now choose a background picture (or click the brick wall example).")
        return gr.skip()
    image = open_image(image_path)
    new_background = background_value(kind, colour, background_image)
    mask = mask_of(image, model, progress)
    result = effects.replace_background(image, mask, background=new_background, fit=fit,
                                        blur_radius=float(blur), feather=float(feather))
    return save(result, output_folder(), stem_of(image_path), f"background_{kind}")


@readable_errors
def bounding_boxes(image_path: str | None, model: str = "u2netp", threshold: float = 0.5,
                   min_area: float = 0.001, colour: str = "#ff3b30", thickness: float = 3,
                   labels: bool = True, union: bool = False,
                   progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """One box per salient object: the drawing, the boxes as JSON, and a .json download."""
    if not image_path:
        return None, None, None
    image = open_image(image_path)
    mask = mask_of(image, model, progress)
    boxes = effects.bounding_boxes(mask, threshold=float(threshold), min_area=float(min_area))
    drawn = effects.draw_boxes(image, boxes, colour=colour or "#ff3b30", thickness=int(thickness),
                               labels=bool(labels), union=bool(union))
    folder, stem = output_folder(), stem_of(image_path)
    data = boxes.to_dict()
    return save(drawn, folder, stem, "boxes"), data, save_json(data, folder, stem, "boxes")


@readable_errors
def highlight(image_path: str | None, model: str = "u2netp", mode: str = "dim",
              strength: float = 0.6, colour: str = "#ff3b30",
              progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The salient object stands out: the rest dimmed, desaturated, blurred, tinted, outlined,
    or a heatmap of the mask."""
    if not image_path:
        return None
    image = open_image(image_path)
    mask = mask_of(image, model, progress)
    result = effects.highlight(image, mask, mode=mode, strength=float(strength), colour=colour or "#ff3b30")
    return save(result, output_folder(), stem_of(image_path), f"highlight_{mode}")


@readable_errors
def crop(image_path: str | None, model: str = "u2netp", padding: float = 5.0, aspect: str = "free",
         output: str = "image", progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The image cropped to the salient object, with `padding` percent around it."""
    if not image_path:
        return None, ""
    image = open_image(image_path)
    mask = mask_of(image, model, progress)
    result = effects.crop(image, mask, padding=f"{float(padding):g}%", aspect=aspect, output=output)
    path = save(result.image, output_folder(), stem_of(image_path), f"crop_{output}")
    return path, result.message


@readable_errors
def portrait(image_path: str | None, sigma: float = 2.0, alpha: float = 0.5,
             progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The portrait drawing and its blend with the photo. Without the portrait weights the
    images are empty and the note says how to get them."""
    if not image_path:
        return None, None, ""
    image = open_image(image_path)
    try:
        drawing = portrait_drawing(image, progress)
    except WeightsError as exc:
        gr.Warning("The portrait model's weights are not available here; see the note.")
        return None, None, f"{PORTRAIT_MISSING}\n\n```\n{exc}\n```"
    folder, stem = output_folder(), stem_of(image_path)
    blended = blend_portrait(image, drawing, sigma=float(sigma), alpha=float(alpha))
    return save(drawing, folder, stem, "portrait"), save(blended, folder, stem, "portrait_blend"), ""


# ---------------------------------------------------------------------------------------------
# Tabs for many images, videos and the webcam.


@readable_errors
def batch(files: list[str] | None, outputs: list[str] | None = None, model: str = "u2netp",
          progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Many images (or .zip archives of images) in, one .zip of results + manifest.csv out."""
    if not files:
        raise gr.Error("Add some images or .zip archives first.")
    predictor_for(model, progress)

    def report(done: int, total: int, name: str) -> None:
        progress((done, total), desc=f"{name}", unit="images")

    archive, summary = batch_to_zip([Path(f) for f in files], output_folder(), list(outputs or ["cutout"]),
                                    model=model, progress=report)
    return str(archive), summary.summary


VIDEO_BACKGROUNDS = ["blur", "white", "black", "green screen", "grayscale", "transparent", "mask"]
VIDEO_FORMATS = ["mp4", "webm", "zip"]


@readable_errors
def video(video_path: str | None, background: str = "blur", model: str = "u2netp",
          smoothing: float = 0.5, file_format: str = "mp4",
          progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """A video with its background removed or replaced, frame by frame (the first
    U2NET_VIDEO_MAX_SECONDS seconds, frames scaled to U2NET_VIDEO_MAX_SIDE at most)."""
    if not video_path:
        raise gr.Error("Upload a video first.")
    if file_format not in VIDEO_FORMATS:
        raise gr.Error(f"Unknown format {file_format!r}; choose one of {', '.join(VIDEO_FORMATS)}.")
    predictor_for(model, progress)
    dst = output_folder() / f"{stem_of(video_path)}_{background.replace('#', '')}.{file_format}"

    def report(done: int, total: int) -> None:
        progress((done, total or None), desc="Processing frames", unit="frames")

    result = process_video(Path(video_path), dst, background=background, model=model,
                           smoothing=float(smoothing), max_seconds=PUBLIC_MAX_SECONDS,
                           max_side=PUBLIC_MAX_SIDE, progress=report)
    playable = str(dst) if file_format != "zip" else None
    return playable, str(dst), result.summary


def webcam(frame: Any, background: str = "blur", model: str = "u2netp") -> Any:
    """One webcam frame in, the same frame with its background replaced out."""
    try:
        return webcam_frame(frame, background=background, model=model)
    except U2NetError as exc:
        raise gr.Error(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# The page


def example_paths(*names: str) -> list[list[str]]:
    return [[str(EXAMPLES_DIR / name)] for name in names]


PEOPLE_FIRST = example_paths("astronaut.jpg", "camera.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg")
OBJECTS_FIRST = example_paths("cat.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg")

INTRO = """# U²-Net Studio
Salient object detection with [U²-Net](https://arxiv.org/abs/2005.09007): masks, cut-outs, new
backgrounds, boxes, highlights, crops and portrait drawings. Upload a picture or click an
example; moving a control re-renders from the cached mask, without running the network again.
Every output downloads at full size (⤓ on the image)."""

IMAGE_HEIGHT = 300


def image_input(label: str = "Image", elem_id: str | None = None) -> gr.Image:
    """An image upload that hands the handler the uploaded file untouched.

    gr.Image would open the file with Pillow before our code runs, so a corrupt upload would end
    in an unreadable error; here `u2net.images.load_image` decides what counts as an image and
    says what is wrong in words. (Overridden on the instance: a subclass of a Gradio component
    makes Gradio write an app.pyi stub next to this file.)
    """
    component = gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                         height=IMAGE_HEIGHT, elem_id=elem_id)
    gradio_preprocess = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return gradio_preprocess(payload)  # nothing, or a webcam / clipboard data: URL
        return str(payload.path)

    component.preprocess = preprocess
    return component


def image_output(label: str, elem_id: str | None = None) -> gr.Image:
    """Shows the saved output file itself, so ⤓ downloads it at full size under its own name."""
    return gr.Image(label=label, type="filepath", interactive=False, height=IMAGE_HEIGHT,
                    buttons=["download", "fullscreen"], elem_id=elem_id)


def background_controls(kind: str) -> tuple:
    """Show only the controls the chosen kind of background uses."""
    return (gr.update(visible=kind == "colour"), gr.update(visible=kind == "image"),
            gr.update(visible=kind == "blur"))


def rerender(triggers: list, fn: Callable, inputs: list, outputs: list, api_name: str) -> None:
    """One named endpoint per tab, fired by the upload, an example click or any control."""
    gr.on(triggers, fn, inputs=inputs, outputs=outputs, api_name=api_name,
          trigger_mode="always_last", concurrency_id="network")


def build_app() -> gr.Blocks:
    """The whole page; see the module docstring for the order."""
    with gr.Blocks(title="U²-Net Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        model = gr.Radio(MODELS, value="u2netp", label="Model",
                         info="u2netp is fast; u2net is more accurate; u2net_human_seg is trained on people.")

        with gr.Tabs():
            with gr.Tab("All outputs", id="all"):
                with gr.Row():
                    with gr.Column(scale=1):
                        all_image = image_input(elem_id="all-image")
                        with gr.Accordion("Options", open=False):
                            all_background = gr.Dropdown(
                                ["white", "black", "#00b140", "blur", "grayscale", "transparent"],
                                value="white", label="New background", allow_custom_value=True)
                            all_mode = gr.Dropdown(list(effects.HIGHLIGHT_MODES), value="dim", label="Highlight")
                            all_aspect = gr.Radio(list(effects.ASPECTS), value="free", label="Crop aspect")
                        gr.Examples(OBJECTS_FIRST, inputs=[all_image], label="Examples")
                    with gr.Column(scale=2):
                        all_slider = gr.ImageSlider(label="Before / after (cut-out)", type="filepath",
                                                    max_height=420, buttons=["fullscreen"],
                                                    elem_id="all-slider")
                all_notes = gr.Markdown(elem_id="all-notes")
                with gr.Row(equal_height=True):
                    all_mask = image_output("Mask", elem_id="all-mask")
                    all_cutout = image_output("Cut-out", elem_id="all-cutout")
                    all_new_bg = image_output("New background", elem_id="all-new-bg")
                    all_boxes = image_output("Boxes", elem_id="all-boxes")
                with gr.Row(equal_height=True):
                    all_highlight = image_output("Highlight", elem_id="all-highlight")
                    all_crop = image_output("Crop", elem_id="all-crop")
                    all_portrait = image_output("Portrait drawing", elem_id="all-portrait")
                    all_boxes_json = gr.JSON(label="Boxes (JSON)", height=IMAGE_HEIGHT, elem_id="all-boxes-json")
                rerender([all_image.change, model.change, all_background.change, all_mode.change,
                          all_aspect.change],
                         all_outputs, [all_image, model, all_background, all_mode, all_aspect],
                         [all_mask, all_cutout, all_new_bg, all_boxes, all_highlight, all_crop,
                          all_portrait, all_slider, all_boxes_json, all_notes], "all_outputs")

            with gr.Tab("Remove background", id="remove"):
                with gr.Row():
                    with gr.Column():
                        rm_image = image_input(elem_id="rm-image")
                        rm_threshold = gr.Slider(0, 1, value=0, step=0.05, label="Threshold",
                                                 info="0 keeps the soft edge; higher gives a hard edge.")
                        rm_feather = gr.Slider(0, 20, value=0, step=0.5, label="Feather (px)")
                        rm_clean = gr.Checkbox(True, label="Remove colour fringe at the edge")
                        rm_format = gr.Radio(["PNG", "WebP"], value="PNG", label="File format")
                        gr.Examples(OBJECTS_FIRST, inputs=[rm_image])
                    rm_out = image_output("Cut-out", elem_id="rm-out")
                rerender([rm_image.change, model.change, rm_threshold.release, rm_feather.release,
                          rm_clean.change, rm_format.change],
                         remove_background,
                         [rm_image, model, rm_threshold, rm_feather, rm_clean, rm_format], [rm_out],
                         "remove_background")

            with gr.Tab("Change background", id="background"):
                with gr.Row():
                    with gr.Column():
                        bg_image = image_input(elem_id="bg-image")
                        bg_kind = gr.Radio(BACKGROUND_KINDS, value="colour", label="New background")
                        bg_colour = gr.ColorPicker("#2e86de", label="Colour")
                        with gr.Column(visible=False) as bg_picture_box:
                            bg_picture = image_input("Background picture", elem_id="bg-picture")
                            bg_fit = gr.Radio(FITS, value="cover", label="Fit the picture")
                            gr.Examples(example_paths("background_brick.jpg"), inputs=[bg_picture],
                                        label="Background pictures")
                        bg_blur = gr.Slider(1, 50, value=12, step=1, label="Blur strength", visible=False)
                        bg_feather = gr.Slider(0, 20, value=0, step=0.5, label="Feather (px)")
                        gr.Examples(PEOPLE_FIRST, inputs=[bg_image])
                    bg_out = image_output("New background", elem_id="bg-out")
                bg_kind.change(background_controls, bg_kind, [bg_colour, bg_picture_box, bg_blur],
                               queue=False, show_progress="hidden", api_visibility="private")
                rerender([bg_image.change, model.change, bg_kind.change, bg_colour.change,
                          bg_picture.change, bg_fit.change, bg_blur.release, bg_feather.release],
                         change_background,
                         [bg_image, model, bg_kind, bg_colour, bg_picture, bg_blur, bg_fit, bg_feather],
                         [bg_out], "change_background")

            with gr.Tab("Bounding boxes", id="boxes"):
                with gr.Row():
                    with gr.Column():
                        bx_image = image_input(elem_id="bx-image")
                        bx_threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Threshold")
                        bx_min_area = gr.Slider(0, 0.2, value=0.001, step=0.001, label="Minimum area",
                                                info="Fraction of the image; smaller regions are ignored.")
                        bx_colour = gr.ColorPicker("#ff3b30", label="Colour")
                        bx_thickness = gr.Slider(1, 20, value=3, step=1, label="Line thickness (px)")
                        with gr.Row():
                            bx_labels = gr.Checkbox(True, label="Labels")
                            bx_union = gr.Checkbox(False, label="Box around all objects")
                        gr.Examples(OBJECTS_FIRST, inputs=[bx_image])
                    with gr.Column():
                        bx_out = image_output("Boxes", elem_id="bx-out")
                        bx_json = gr.JSON(label="Boxes (pixels; x1, y1 exclusive)", open=True, elem_id="bx-json")
                        bx_file = gr.File(label="Boxes as .json")
                rerender([bx_image.change, model.change, bx_threshold.release, bx_min_area.release,
                          bx_colour.change, bx_thickness.release, bx_labels.change, bx_union.change],
                         bounding_boxes,
                         [bx_image, model, bx_threshold, bx_min_area, bx_colour, bx_thickness,
                          bx_labels, bx_union], [bx_out, bx_json, bx_file], "bounding_boxes")

            with gr.Tab("Highlight", id="highlight"):
                with gr.Row():
                    with gr.Column():
                        hl_image = image_input(elem_id="hl-image")
                        hl_mode = gr.Radio(list(effects.HIGHLIGHT_MODES), value="dim", label="Mode")
                        hl_strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength")
                        hl_colour = gr.ColorPicker("#ff3b30", label="Colour (tint, outline)")
                        gr.Examples(OBJECTS_FIRST, inputs=[hl_image])
                    hl_out = image_output("Highlight", elem_id="hl-out")
                rerender([hl_image.change, model.change, hl_mode.change, hl_strength.release,
                          hl_colour.change],
                         highlight, [hl_image, model, hl_mode, hl_strength, hl_colour], [hl_out],
                         "highlight")

            with gr.Tab("Crop", id="crop"):
                with gr.Row():
                    with gr.Column():
                        cr_image = image_input(elem_id="cr-image")
                        cr_padding = gr.Slider(0, 50, value=5, step=1, label="Padding (% of the object)")
                        cr_aspect = gr.Radio(list(effects.ASPECTS), value="free", label="Aspect")
                        cr_output = gr.Radio(list(effects.CROP_OUTPUTS), value="image", label="Crop of")
                        gr.Examples(OBJECTS_FIRST, inputs=[cr_image])
                    with gr.Column():
                        cr_out = image_output("Crop", elem_id="cr-out")
                        cr_message = gr.Markdown()
                rerender([cr_image.change, model.change, cr_padding.release, cr_aspect.change,
                          cr_output.change],
                         crop, [cr_image, model, cr_padding, cr_aspect, cr_output], [cr_out, cr_message],
                         "crop")

            with gr.Tab("Portrait", id="portrait"):
                gr.Markdown("Line drawing of a face by the U²-Net portrait model (best on a "
                            "frontal, well-lit face), and its blend with the photo.")
                with gr.Row():
                    with gr.Column():
                        pt_image = image_input("Portrait photo", elem_id="pt-image")
                        pt_sigma = gr.Slider(0, 10, value=2, step=0.5, label="Photo blur (sigma)")
                        pt_alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Photo weight (alpha)")
                        gr.Examples(PEOPLE_FIRST[:2], inputs=[pt_image])
                    with gr.Column():
                        with gr.Row():
                            pt_drawing = image_output("Drawing", elem_id="pt-drawing")
                            pt_blend = image_output("Blend", elem_id="pt-blend")
                        pt_note = gr.Markdown(elem_id="pt-note")
                rerender([pt_image.change, pt_sigma.release, pt_alpha.release],
                         portrait, [pt_image, pt_sigma, pt_alpha], [pt_drawing, pt_blend, pt_note],
                         "portrait")

            with gr.Tab("Batch", id="batch"):
                gr.Markdown("Many images at once: add image files or .zip archives of images; get "
                            "one .zip with the chosen outputs and a manifest.csv.")
                with gr.Row():
                    with gr.Column():
                        bt_files = gr.File(label="Images or .zip archives", file_count="multiple",
                                           file_types=["image", ".zip"])
                        bt_outputs = gr.CheckboxGroup(list(APP_OUTPUT_KINDS), value=["mask", "cutout"], label="Outputs")
                        bt_run = gr.Button("Process", variant="primary")
                        gr.Examples([[[p[0] for p in OBJECTS_FIRST]]], inputs=[bt_files],
                                    label="Example: all five pictures")
                    with gr.Column():
                        bt_zip = gr.File(label="Results (.zip)")
                        bt_summary = gr.Textbox(label="Summary", lines=3)
                bt_run.click(batch, [bt_files, bt_outputs, model], [bt_zip, bt_summary],
                             api_name="batch", concurrency_id="long", concurrency_limit=1)

            with gr.Tab("Video", id="video"):
                gr.Markdown("The background of every frame removed or replaced (the first "
                            f"{PUBLIC_MAX_SECONDS:g} seconds, scaled to {PUBLIC_MAX_SIDE} px on the "
                            "longer side).")
                with gr.Row():
                    with gr.Column():
                        vd_in = gr.Video(label="Video", sources=["upload"])
                        vd_background = gr.Dropdown(VIDEO_BACKGROUNDS, value="blur", label="Background",
                                                    allow_custom_value=True,
                                                    info="A keyword, a colour name or #rrggbb.")
                        vd_smoothing = gr.Slider(0, 0.9, value=0.5, step=0.05, label="Smoothing",
                                                 info="Less flicker; lags behind fast motion.")
                        vd_format = gr.Radio(VIDEO_FORMATS, value="mp4", label="Output",
                                             info="webm keeps transparency; zip is a PNG sequence.")
                        vd_run = gr.Button("Process", variant="primary")
                    with gr.Column():
                        vd_out = gr.Video(label="Result", interactive=False)
                        vd_file = gr.File(label="Download")
                        vd_summary = gr.Textbox(label="Summary", lines=2)
                vd_run.click(video, [vd_in, vd_background, model, vd_smoothing, vd_format],
                             [vd_out, vd_file, vd_summary], api_name="video",
                             concurrency_id="long", concurrency_limit=1)

            with gr.Tab("Webcam", id="webcam"):
                gr.Markdown("Live background replacement from your camera (u2netp is the one "
                            "fast enough for this).")
                with gr.Row():
                    wc_background = gr.Dropdown(VIDEO_BACKGROUNDS, value="blur", label="Background",
                                                allow_custom_value=True)
                with gr.Row():
                    wc_in = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy", elem_id="wc-in")
                    wc_out = gr.Image(label="Result", type="numpy", interactive=False, elem_id="wc-out")
                wc_in.stream(webcam, [wc_in, wc_background, model], [wc_out], api_name="webcam_stream",
                             api_visibility="undocumented", stream_every=0.2, time_limit=120,
                             concurrency_id="network", show_progress="hidden")
                # gradio_client cannot feed a stream, so the API gets the same handler for one
                # frame at a time through components the page does not show.
                wc_frame = gr.Image(type="numpy", visible=False)
                wc_frame_out = gr.Image(type="numpy", format="png", visible=False)
                wc_frame.change(webcam, [wc_frame, wc_background, model], [wc_frame_out], api_name="webcam",
                                concurrency_id="network")
    return demo


demo = build_app()  # module level, so `gradio app.py` (live reload) finds it

# ---------------------------------------------------------------------------------------------
# Launch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="U²-Net Studio, the Gradio app.")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to bind (env GRADIO_SERVER_NAME; default 127.0.0.1, this machine only; "
                        "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                   help="port (env GRADIO_SERVER_PORT; default 7860)")
    p.add_argument("--share", action="store_true", default=env("GRADIO_SHARE", "").lower() in ("1", "true"),
                   help="also open a temporary public *.gradio.live link (env GRADIO_SHARE=1)")
    p.add_argument("--preload", default=env("U2NET_PRELOAD", ""),
                   help="comma-separated models to load before serving, e.g. u2netp,u2net "
                        "(env U2NET_PRELOAD; default none: each loads on first use)")
    p.add_argument("--device", default=SETTINGS.device,
                   help="cpu, cuda, cuda:0… (env U2NET_DEVICE; default: CUDA when available)")
    p.add_argument("--precision", default=SETTINGS.precision, choices=["exact", "fast"],
                   help="exact (fp32, the published answer) or fast (env U2NET_PRECISION)")
    p.add_argument("--concurrency", type=int, default=int(env("U2NET_CONCURRENCY", "0")) or None,
                   help="network calls at once (env U2NET_CONCURRENCY; default 1 on CPU, 2 on a GPU)")
    p.add_argument("--max-file-size", default=env("U2NET_MAX_FILE_SIZE", "50mb"),
                   help="largest upload (env U2NET_MAX_FILE_SIZE; default 50mb)")
    return p.parse_args(argv)


def preload(models: list[str]) -> None:
    """Load each model's weights now (fetching them if needed) so the first visitor waits less."""
    for name in models:
        predictor = get_predictor(name, device=SETTINGS.device, precision=SETTINGS.precision).load()
        print(f"preloaded {name} from {predictor.weights_path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    SETTINGS.device, SETTINGS.precision = args.device or None, args.precision
    preload([m.strip() for m in args.preload.split(",") if m.strip()])
    concurrency = args.concurrency or _default_concurrency()
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=args.max_file_size, allowed_paths=[str(EXAMPLES_DIR)],
                footer_links=["api", "gradio"])


if __name__ == "__main__":
    main()

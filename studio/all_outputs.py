"""Tab "All outputs": one network pass per model feeds every output, side by side."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gradio as gr

from u2net import effects
from u2net.errors import WeightsError
from u2net.outputs import RenderOptions, render
from u2net.vocabulary import ASPECTS, BACKGROUND_KEYWORDS, HIGHLIGHT_MODES

from .common import (
    IMAGE_HEIGHT,
    OBJECTS_FIRST,
    PORTRAIT_MISSING,
    image_input,
    image_output,
    mask_of,
    open_upload,
    output_folder,
    portrait_predictor,
    readable_errors,
    rerender,
    save,
    upload_key,
)

KINDS = ("mask", "cutout", "background", "boxes", "highlight", "crop")
BACKGROUND_CHOICES = ["white", "black", "grey", "#00b140"] + list(BACKGROUND_KEYWORDS)


# Outputs already made, so that moving one control re-renders only the output it changes:
# (the upload, model, mask, kind, the controls that kind reads) -> (file, extra data).
_made: OrderedDict[tuple, tuple[str, Any]] = OrderedDict()
_made_lock = threading.Lock()
MADE_KEPT = 64


def _controls(kind: str, background: str, highlight_mode: str, aspect: str) -> tuple:
    return {"background": (background,), "highlight": (highlight_mode,), "crop": (aspect,)}.get(kind, ())


@readable_errors
def all_outputs(image_path: str | None, model: str = "u2netp", background: str = "white",
                highlight_mode: str = "dim", aspect: str = "free",
                progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Mask, cut-out, new background, boxes, highlight, crop and portrait from one upload.

    `background` is a colour or a keyword (never a file). Returns: mask, cut-out, background,
    boxes image, highlight, crop, portrait (or None), (before, after) for the slider, boxes as
    JSON, notes (Markdown). Outputs whose controls did not change since the last call for
    this picture are not made again.
    """
    if not image_path:
        return (None,) * 7 + (None, None, "")
    options = RenderOptions(background=background, highlight_mode=highlight_mode, aspect=aspect)
    image = open_upload(image_path)
    mask = mask_of(image, model, progress)
    progress(0.5, desc="Rendering the outputs…")
    mask_digest = hashlib.blake2b(mask.tobytes(), digest_size=16).hexdigest()
    keys = {kind: (upload_key(image_path), model, mask_digest, kind,
                   _controls(kind, background, highlight_mode, aspect)) for kind in KINDS + ("before",)}
    with _made_lock:
        made = {kind: _made[key] for kind, key in keys.items()
                if key in _made and Path(_made[key][0]).exists()}
    todo = [kind for kind in KINDS if kind not in made]
    folder = output_folder()
    if "before" not in made:
        todo.append("before")  # the slider's "before": the upright photo, as a JPEG
    # The portrait drawing needs the photo only, so it is kept per upload, whatever the controls
    # or the mask model, and its network (U²-Net at 512², ~1 s on 2 cores for a new photo)
    # runs beside the other outputs instead of after them.
    portrait_key = (upload_key(image_path), "portrait")
    with _made_lock:
        if portrait_key[0] is not None and portrait_key in _made and Path(_made[portrait_key][0]).exists():
            made["portrait"] = _made[portrait_key]
    notes = []
    drawer = None
    if "portrait" not in made:
        try:
            drawer = portrait_predictor(progress)  # loaded here: progress belongs to this thread
        except WeightsError:
            notes.append(f"**Portrait:** {PORTRAIT_MISSING} (The Portrait tab shows where it looked.)")

    # The cut-out and the new background share one estimate of the object's colours.
    shared = ("cutout", "background")
    groups = ([("portrait",)] if drawer is not None else []) + (  # the longest first
        [shared] if set(shared) <= set(todo) else []) + [
        (kind,) for kind in todo if kind not in shared or not set(shared) <= set(todo)]
    # Several outputs side by side each keep to one thread (PNG encoding too); one alone (a
    # control moved) may use every core for its stripes and its PNG, and so may the cut-out
    # with the new background, the longest of them.
    per_group = max(1, effects.thread_count() // max(1, len(groups)))

    def make(kinds: tuple[str, ...]) -> dict[str, tuple[str, Any]]:
        # Each output rendered and written on its own thread: numpy, scipy and Pillow's
        # encoders release the GIL, so the outputs of a phone photo share the cores.
        if kinds == ("before",):
            return {"before": (save(image, folder, image_path, "before", "jpg"), None)}
        if kinds == ("portrait",):
            drawing = render(image, None, ["portrait"], options, drawer).images["portrait"]
            return {"portrait": (save(drawing, folder, image_path, "portrait"), None)}
        with effects.threads_here(effects.thread_count() if kinds == shared else per_group):
            result = render(image, mask, list(kinds), options)
            return {kind: (save(result.images[kind], folder, image_path, kind),
                           result.boxes.to_dict() if kind == "boxes" else result.crop if kind == "crop" else None)
                    for kind in kinds}

    with ThreadPoolExecutor(max_workers=4) as pool:
        for values in pool.map(make, groups):
            made.update(values)
    with _made_lock:
        for kind in todo:
            _made[keys[kind]] = made[kind]
        if drawer is not None and portrait_key[0] is not None:
            _made[portrait_key] = made["portrait"]
        while len(_made) > MADE_KEPT:
            _made.popitem(last=False)
    crop = made["crop"][1]
    if crop.empty:
        notes.insert(0, f"**Crop:** {crop.message}")
    outputs = [made[kind][0] for kind in KINDS] + [made.get("portrait", (None,))[0]]
    return (*outputs, (made["before"][0], made["cutout"][0]), made["boxes"][1], "\n\n".join(notes))


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(elem_id="all-image")
            with gr.Accordion("Options", open=False):
                background = gr.Dropdown(BACKGROUND_CHOICES, value="white", label="New background",
                                         allow_custom_value=True, info="A colour name, #rrggbb or a keyword.")
                mode = gr.Dropdown(list(HIGHLIGHT_MODES), value="dim", label="Highlight")
                aspect = gr.Radio(list(ASPECTS), value="free", label="Crop aspect")
            gr.Examples(OBJECTS_FIRST, inputs=[image], label="Examples")
        with gr.Column(scale=2):
            slider = gr.ImageSlider(label="Before / after (cut-out)", type="filepath", max_height=420,
                                    buttons=["fullscreen"], elem_id="all-slider")
    notes = gr.Markdown(elem_id="all-notes")
    with gr.Row(equal_height=True):
        mask = image_output("Mask", elem_id="all-mask")
        cutout = image_output("Cut-out", elem_id="all-cutout")
        new_bg = image_output("New background", elem_id="all-new-bg")
        boxes = image_output("Boxes", elem_id="all-boxes")
    with gr.Row(equal_height=True):
        highlight = image_output("Highlight", elem_id="all-highlight")
        crop = image_output("Crop", elem_id="all-crop")
        portrait = image_output("Portrait drawing", elem_id="all-portrait")
        boxes_json = gr.JSON(label="Boxes (JSON)", height=IMAGE_HEIGHT, elem_id="all-boxes-json")
    rerender([image.change, model.change, background.change, mode.change, aspect.change],
             all_outputs, [image, model, background, mode, aspect],
             [mask, cutout, new_bg, boxes, highlight, crop, portrait, slider, boxes_json, notes],
             "all_outputs")

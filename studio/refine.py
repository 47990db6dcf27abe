"""Tab "Refine": correct the mask by hand, and every tab uses the correction for that picture.

Paint over the photo (green keeps, red removes), choose an edge refinement, or click an object
to keep only it. The corrected mask is computed from the network's own mask every time (so
strokes and a picked point combine, and applying twice gives the same answer), then handed to
`Predictor.remember`: it replaces the picture's cached mask, which every tab reads through
`mask_of`, until Reset (`Predictor.forget`).

The API endpoint `/refine` takes the strokes as an uploaded picture (see
`u2net.refine.STROKE_RULES`), never as a server path.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from u2net.outputs import RenderOptions, render
from u2net.refine import improve_mask, parse_ranks
from u2net.vocabulary import REFINE_METHODS, OptionError, check_choice

from .common import (
    IMAGE_HEIGHT,
    OBJECTS_FIRST,
    image_input,
    image_output,
    open_upload,
    output_folder,
    predictor_for,
    readable_errors,
    save,
    save_all,
)

KEEP_COLOUR = "#16a34a"  # green: g exceeds r and b by ≥ 64, as STROKE_RULES asks
REMOVE_COLOUR = "#dc2626"  # red
EDITOR_SIDE = 1600
EDGE_CHOICES = [("none", "none"), ("guided filter (fast)", "guided"), ("matting (slower)", "matting")]


def _objects(objects: Any) -> list[int] | None:
    """Ranks from "1,2" / "" (a readable refusal for anything else, a server path included)."""
    if objects is not None and not isinstance(objects, str):
        objects = repr(objects)
    try:
        return parse_ranks(objects)
    except OptionError:
        raise OptionError(f"objects must be ranks like '1,2' (1 = the largest object) or empty, "
                          f"got {str(objects)[:60]!r}") from None


def _point(x: float | None, y: float | None) -> tuple[float, float] | None:
    if x is None and y is None:
        return None
    if x is None or y is None:
        raise OptionError("the point must be given as both x and y (photo pixels), or neither")
    return float(x), float(y)


@readable_errors
def refine(image_path: str | None, model: str = "u2netp", strokes_path: str | None = None,
           edges: str = "none", objects: str = "", x: float | None = None, y: float | None = None,
           progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The corrected mask and cut-out; every tab then uses this mask for the picture.

    Starts from the network's mask of `image_path` and applies, in order: edge refinement
    (`edges`: none, guided, matting), the painted strokes (`strokes_path`: an uploaded picture,
    green or white = keep, red or black = remove, transparent or grey = untouched), then keeps
    only the chosen objects (`objects`: ranks like "1,2", largest first; and/or the object
    under the point `x`, `y` in photo pixels). Returns: mask, cut-out, a note (Markdown).
    """
    if not image_path:
        return None, None, ""
    edges = check_choice("edges", edges, REFINE_METHODS)
    ranks = _objects(objects)
    point = _point(x, y)
    image = open_upload(image_path)
    predictor = predictor_for(model, progress)
    # From the network's own mask every time: a remembered correction must not compound.
    predictor.forget(image)
    progress(0.3, desc=f"Finding the salient object ({model})…")
    network = predictor.predict(image)
    progress(0.6, desc="Correcting the mask…")
    corrected = improve_mask(image, network, edges, strokes_path, ranks, point)
    predictor.remember(image, corrected)
    changed = corrected.tobytes() != network.tobytes()
    paths = save_all(render(image, corrected, ["mask", "cutout"], RenderOptions()).images,
                     output_folder(), image_path)
    if not predictor.cache_size:
        note = "The mask cache is off in this app, so the other tabs cannot use this correction."
    elif changed:
        note = (f"**Corrected.** Every tab now uses this mask for this picture with {model}, "
                "until you press Reset.")
    else:
        note = "The network's mask, uncorrected: paint, pick an object or choose an edge refinement."
    return paths["mask"], paths["cutout"], note


@readable_errors
def load_photo(image_path: str | None) -> tuple:
    """The upright photo into the editor (no layers) and the pick view; point and strokes
    cleared."""
    if not image_path:
        return None, None, None, None, None
    photo = open_upload(image_path)
    # The editor gets a copy at most EDITOR_SIDE a side (a 12 MP PNG would take seconds to
    # send); the strokes are scaled back to the photo's size when applied.
    canvas = photo.copy()
    canvas.thumbnail((EDITOR_SIDE, EDITOR_SIDE), Image.LANCZOS)
    return {"background": canvas, "layers": [], "composite": canvas}, photo, None, None, None


def strokes_of(editor: dict | None) -> str | None:
    """The editor's layers flattened into one RGBA strokes picture (a file), or None when
    nothing is painted."""
    layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    flat = Image.new("RGBA", layers[0].size, (0, 0, 0, 0))
    for layer in layers:
        layer = layer.convert("RGBA")
        flat.alpha_composite(layer if layer.size == flat.size else layer.resize(flat.size, Image.NEAREST))
    if not np.asarray(flat.getchannel("A")).any():
        return None
    return save(flat, output_folder(), "strokes.png", "layers")


def picked(editor: dict | None, evt: gr.SelectData) -> tuple:
    """A click on the photo: its (x, y) in photo pixels, with the strokes painted so far."""
    x, y = evt.index
    return strokes_of(editor), float(x), float(y)


@readable_errors
def reset(image_path: str | None, model: str = "u2netp") -> tuple:
    """Forget the correction: the network's mask again, everywhere; the paint and point go."""
    editor, photo, _, _, _ = load_photo(image_path)
    cleared = (editor, None, None, None, "none", "")  # editor, strokes, x, y, edges, objects
    if photo is None:
        return (*cleared, None, None, "")
    predictor = predictor_for(model)
    predictor.forget(photo)
    mask = predictor.predict(photo)
    paths = save_all(render(photo, mask, ["mask", "cutout"], RenderOptions()).images, output_folder(),
                     image_path)
    note = "Reset: every tab uses the network's mask for this picture again."
    return (*cleared, paths["mask"], paths["cutout"], note)


def build(model: gr.Radio) -> None:
    gr.Markdown("Paint **green** over what to keep and **red** over what to remove (the brush's two "
                "colours; layers are allowed), then Apply. Or click an object in the photo below to "
                "keep only it. The corrected mask is then used by **every tab** for this picture, "
                "until Reset.")
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input("Photo", elem_id="rf-image")
            gr.Examples(OBJECTS_FIRST, inputs=[image])
            edges = gr.Radio(EDGE_CHOICES, value="none", label="Edges",
                             info="Redo the mask's edge at the photo's full resolution.")
            objects = gr.Textbox("", label="Keep objects", placeholder="e.g. 1,2 (1 = the largest)",
                                 info="Ranks as in the Bounding boxes tab; empty keeps all.")
            with gr.Row():
                apply = gr.Button("Apply", variant="primary", elem_id="rf-apply")
                clear = gr.Button("Reset", elem_id="rf-reset")
        with gr.Column(scale=2):
            # RGBA: the layers keep their alpha (unpainted pixels may hold the brush's colour).
            editor = gr.ImageEditor(label="Paint: green keeps, red removes", type="pil", image_mode="RGBA",
                                    sources=(), transforms=(), format="png", layers=True,
                                    brush=gr.Brush(colors=[KEEP_COLOUR, REMOVE_COLOUR],
                                                   default_color=KEEP_COLOUR, color_mode="fixed"),
                                    height=520, elem_id="rf-editor")
    note = gr.Markdown(elem_id="rf-note")
    with gr.Row(equal_height=True):
        pick = gr.Image(label="Click an object to keep only it", type="pil", interactive=False,
                        height=IMAGE_HEIGHT, format="jpeg", elem_id="rf-pick")
        mask = image_output("Corrected mask", elem_id="rf-mask")
        cutout = image_output("Cut-out", elem_id="rf-cutout")
    with gr.Column(visible=False):  # the request's parts that the page fills in, not the user
        strokes = image_input("Strokes", elem_id="rf-strokes")
        x = gr.Number(None, label="Point x")
        y = gr.Number(None, label="Point y")

    inputs = [image, model, strokes, edges, objects, x, y]
    outputs = [mask, cutout, note]
    private: dict = {"api_visibility": "private"}
    # The public endpoint first: Gradio names later events of the same function refine_1, …
    applied = gr.on([apply.click, edges.input, objects.submit, model.change], strokes_of, [editor], [strokes],
                    trigger_mode="always_last", **private)
    applied.then(refine, inputs, outputs, api_name="refine", concurrency_id="network")
    loaded = image.change(load_photo, [image], [editor, pick, strokes, x, y], **private)
    loaded.then(refine, inputs, outputs, concurrency_id="network", **private)
    pick.select(picked, [editor], [strokes, x, y], **private).then(
        refine, inputs, outputs, concurrency_id="network", **private)
    clear.click(reset, [image, model], [editor, strokes, x, y, edges, objects, mask, cutout, note],
                concurrency_id="network", **private)

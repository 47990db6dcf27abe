"""Tab "Highlight": the salient object stands out (dim, desaturate, blur, tint, outline, heatmap)."""

from __future__ import annotations

import gradio as gr

from u2net.outputs import RenderOptions
from u2net.vocabulary import DEFAULT_MARK_COLOUR, HIGHLIGHT_MODES

from .common import (
    OBJECTS_FIRST,
    image_input,
    image_output,
    output_folder,
    readable_errors,
    render_upload,
    rerender,
    save,
)


@readable_errors
def highlight(image_path: str | None, model: str = "u2netp", mode: str = "dim",
              strength: float = 0.6, colour: str = DEFAULT_MARK_COLOUR,
              progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The photo with its salient object highlighted in the chosen mode."""
    if not image_path:
        return None
    options = RenderOptions(highlight_mode=mode, strength=strength,
                            highlight_colour=colour or DEFAULT_MARK_COLOUR)
    result = render_upload(image_path, model, ["highlight"], options, progress).images["highlight"]
    return save(result, output_folder(), image_path, f"highlight_{mode}")


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column():
            image = image_input(elem_id="hl-image")
            mode = gr.Radio(list(HIGHLIGHT_MODES), value="dim", label="Mode")
            strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength")
            colour = gr.ColorPicker(DEFAULT_MARK_COLOUR, label="Colour (tint, outline)")
            gr.Examples(OBJECTS_FIRST, inputs=[image])
        out = image_output("Highlight", elem_id="hl-out")
    rerender([image.change, model.change, mode.change, strength.release, colour.change],
             highlight, [image, model, mode, strength, colour], [out], "highlight")

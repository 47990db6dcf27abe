"""Tab "Crop": the photo cropped to its salient object, with padding and an aspect ratio."""

from __future__ import annotations

import gradio as gr

from u2net.outputs import RenderOptions
from u2net.vocabulary import ASPECTS, CROP_OUTPUTS, check_choice

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
def crop(image_path: str | None, model: str = "u2netp", padding: float = 5.0, aspect: str = "free",
         output: str = "image", progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The crop (with `padding` percent of the object around it) and a note about it."""
    if not image_path:
        return None, ""
    options = RenderOptions(padding=f"{padding:g}%" if isinstance(padding, (int, float)) else padding,
                            aspect=check_choice("aspect", aspect, ASPECTS), crop_output=output)
    result = render_upload(image_path, model, ["crop"], options, progress)
    return save(result.images["crop"], output_folder(), image_path, f"crop_{output}"), result.crop.message


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column():
            image = image_input(elem_id="cr-image")
            padding = gr.Slider(0, 50, value=5, step=1, label="Padding (% of the object)")
            aspect = gr.Radio(list(ASPECTS), value="free", label="Aspect")
            output = gr.Radio(list(CROP_OUTPUTS), value="image", label="Crop of")
            gr.Examples(OBJECTS_FIRST, inputs=[image])
        with gr.Column():
            out = image_output("Crop", elem_id="cr-out")
            message = gr.Markdown()
    rerender([image.change, model.change, padding.release, aspect.change, output.change],
             crop, [image, model, padding, aspect, output], [out, message], "crop")

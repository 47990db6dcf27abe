"""Tab "Remove background": the cut-out (RGBA) as PNG or lossless WebP."""

from __future__ import annotations

import gradio as gr

from u2net.outputs import RenderOptions
from u2net.vocabulary import IMAGE_FORMATS, check_choice

from .common import (
    OBJECTS_FIRST,
    image_input,
    image_output,
    output_folder,
    readable_errors,
    render_upload,
    rerender,
    save,
    soft_or_hard,
)

FORMAT_CHOICES = [f.upper() if f == "png" else "WebP" for f in IMAGE_FORMATS]  # "PNG", "WebP"


@readable_errors
def remove_background(image_path: str | None, model: str = "u2netp", threshold: float = 0.0,
                      feather: float = 0.0, decontaminate: bool = True, file_format: str = "PNG",
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The cut-out (RGBA) as PNG or lossless WebP; threshold 0 keeps soft edges."""
    if not image_path:
        return None
    fmt = check_choice("file_format", file_format, FORMAT_CHOICES).lower()
    options = RenderOptions(threshold=soft_or_hard(threshold), feather=feather, decontaminate=decontaminate)
    cut = render_upload(image_path, model, ["cutout"], options, progress).images["cutout"]
    return save(cut, output_folder(), image_path, "cutout", fmt)


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column():
            image = image_input(elem_id="rm-image")
            threshold = gr.Slider(0, 1, value=0, step=0.05, label="Threshold",
                                  info="0 keeps the soft edge; higher gives a hard edge.")
            feather = gr.Slider(0, 20, value=0, step=0.5, label="Feather (px)")
            clean = gr.Checkbox(True, label="Remove colour fringe at the edge")
            file_format = gr.Radio(FORMAT_CHOICES, value="PNG", label="File format")
            gr.Examples(OBJECTS_FIRST, inputs=[image])
        out = image_output("Cut-out", elem_id="rm-out")
    rerender([image.change, model.change, threshold.release, feather.release, clean.change,
              file_format.change],
             remove_background, [image, model, threshold, feather, clean, file_format], [out],
             "remove_background")

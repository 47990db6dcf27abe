"""Tab "Portrait": the U²-Net portrait drawing of a face and its blend with the photo."""

from __future__ import annotations

import gradio as gr

from u2net.errors import WeightsError
from u2net.outputs import RenderOptions, render

from .common import (
    PEOPLE_FIRST,
    PORTRAIT_MISSING,
    image_input,
    image_output,
    open_upload,
    output_folder,
    portrait_predictor,
    readable_errors,
    rerender,
    save_all,
)


@readable_errors
def portrait(image_path: str | None, sigma: float = 2.0, alpha: float = 0.5,
             progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The portrait drawing and its blend with the photo. Without the portrait weights the
    images are empty and the note says how to get them."""
    if not image_path:
        return None, None, ""
    blend = RenderOptions(blend=True, portrait_sigma=sigma, portrait_alpha=alpha)
    image = open_upload(image_path)
    try:
        predictor = portrait_predictor(progress)
        if progress is not None:
            progress(0.7, desc="Drawing the portrait…")
        drawing = render(image, None, ["portrait"], RenderOptions(), predictor).images["portrait"]
    except WeightsError as exc:
        gr.Warning("The portrait model's weights are not available here; see the note.")
        return None, None, f"{PORTRAIT_MISSING}\n\n```\n{exc}\n```"
    # The blend reuses the cached drawing: the predictor caches by image content.
    blended = render(image, None, ["portrait"], blend, predictor).images["portrait"]
    paths = save_all({"portrait": drawing, "portrait_blend": blended}, output_folder(), image_path)
    return paths["portrait"], paths["portrait_blend"], ""


def build(model: gr.Radio) -> None:
    gr.Markdown("Line drawing of a face by the U²-Net portrait model (best on a frontal, well-lit "
                "face), and its blend with the photo.")
    with gr.Row():
        with gr.Column():
            image = image_input("Portrait photo", elem_id="pt-image")
            sigma = gr.Slider(0, 10, value=2, step=0.5, label="Photo blur (sigma)")
            alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Photo weight (alpha)")
            gr.Examples(PEOPLE_FIRST[:2], inputs=[image])
        with gr.Column():
            with gr.Row():
                drawing = image_output("Drawing", elem_id="pt-drawing")
                blend = image_output("Blend", elem_id="pt-blend")
            note = gr.Markdown(elem_id="pt-note")
    rerender([image.change, sigma.release, alpha.release], portrait, [image, sigma, alpha],
             [drawing, blend, note], "portrait")

"""Tab "Bounding boxes": one box per salient object, drawn and as JSON."""

from __future__ import annotations

import gradio as gr

from u2net.outputs import RenderOptions
from u2net.vocabulary import DEFAULT_MARK_COLOUR

from .common import (
    OBJECTS_FIRST,
    image_input,
    image_output,
    output_folder,
    readable_errors,
    render_upload,
    rerender,
    save,
    save_json,
)


@readable_errors
def bounding_boxes(image_path: str | None, model: str = "u2netp", threshold: float = 0.5,
                   min_area: float = 0.001, colour: str = DEFAULT_MARK_COLOUR, thickness: float = 3,
                   labels: bool = True, union: bool = False,
                   progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """The drawing, the boxes as JSON, and a .json download."""
    if not image_path:
        return None, None, None
    options = RenderOptions(box_threshold=threshold, min_area=min_area, box_colour=colour or DEFAULT_MARK_COLOUR,
                            thickness=thickness, labels=labels, union=union)
    result = render_upload(image_path, model, ["boxes"], options, progress)
    folder, data = output_folder(), result.boxes.to_dict()
    return (save(result.images["boxes"], folder, image_path, "boxes"), data,
            save_json(data, folder, image_path, "boxes"))


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column():
            image = image_input(elem_id="bx-image")
            threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Threshold")
            min_area = gr.Slider(0, 0.2, value=0.001, step=0.001, label="Minimum area",
                                 info="Fraction of the image; smaller regions are ignored.")
            colour = gr.ColorPicker(DEFAULT_MARK_COLOUR, label="Colour")
            thickness = gr.Slider(1, 20, value=3, step=1, label="Line thickness (px)")
            with gr.Row():
                labels = gr.Checkbox(True, label="Labels")
                union = gr.Checkbox(False, label="Box around all objects")
            gr.Examples(OBJECTS_FIRST, inputs=[image])
        with gr.Column():
            out = image_output("Boxes", elem_id="bx-out")
            as_json = gr.JSON(label="Boxes (pixels; x1, y1 exclusive)", open=True, elem_id="bx-json")
            as_file = gr.File(label="Boxes as .json")
    rerender([image.change, model.change, threshold.release, min_area.release, colour.change,
              thickness.release, labels.change, union.change],
             bounding_boxes, [image, model, threshold, min_area, colour, thickness, labels, union],
             [out, as_json, as_file], "bounding_boxes")

"""Tab "Change background": the subject on a colour, an uploaded picture, the photo blurred,
the photo in grey, or transparent."""

from __future__ import annotations

import gradio as gr

from u2net.outputs import RenderOptions
from u2net.vocabulary import BACKGROUND_KINDS, FITS, check_choice, parse_colour

from .common import (
    PEOPLE_FIRST,
    example_paths,
    image_input,
    image_output,
    open_upload,
    output_folder,
    readable_errors,
    render_upload,
    rerender,
    save,
)


@readable_errors
def change_background(image_path: str | None, model: str = "u2netp", kind: str = "colour",
                      colour: str = "#ffffff", background_image: str | None = None,
                      blur: float = 12.0, fit: str = "cover", feather: float = 0.0,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str | None:
    """The subject on a new background. `kind` is one of BACKGROUND_KINDS; `colour` is only
    ever a colour, and a picture only ever an upload (`background_image`)."""
    if not image_path:
        return None
    kind = check_choice("kind", kind, BACKGROUND_KINDS)
    parse_colour(colour)  # checked even when another kind is chosen: no word goes unread
    if kind == "image" and not background_image:
        # The usual moment: "image" was just ticked. Keep the last result and ask, gently.
        gr.Warning("Now choose a background picture (or click the brick wall example).")
        return gr.skip()
    picture = open_upload(background_image, "background picture") if kind == "image" else None
    options = RenderOptions(background=colour if kind == "colour" else ("white" if kind == "image" else kind),
                            background_image=picture, fit=fit, blur_radius=blur, feather=feather)
    result = render_upload(image_path, model, ["background"], options, progress).images["background"]
    return save(result, output_folder(), image_path, f"background_{kind}")


def controls_for(kind: str) -> tuple:
    """Show only the controls the chosen kind of background uses."""
    return (gr.update(visible=kind == "colour"), gr.update(visible=kind == "image"),
            gr.update(visible=kind == "blur"))


def build(model: gr.Radio) -> None:
    with gr.Row():
        with gr.Column():
            image = image_input(elem_id="bg-image")
            kind = gr.Radio(list(BACKGROUND_KINDS), value="colour", label="New background")
            colour = gr.ColorPicker("#2e86de", label="Colour")
            with gr.Column(visible=False) as picture_box:
                picture = image_input("Background picture", elem_id="bg-picture")
                fit = gr.Radio(list(FITS), value="cover", label="Fit the picture")
                gr.Examples(example_paths("background_brick.jpg"), inputs=[picture],
                            label="Background pictures")
            blur = gr.Slider(1, 50, value=12, step=1, label="Blur strength", visible=False)
            feather = gr.Slider(0, 20, value=0, step=0.5, label="Feather (px)")
            gr.Examples(PEOPLE_FIRST, inputs=[image])
        out = image_output("New background", elem_id="bg-out")
    kind.change(controls_for, kind, [colour, picture_box, blur], queue=False, show_progress="hidden",
                api_visibility="private")
    rerender([image.change, model.change, kind.change, colour.change, picture.change, fit.change,
              blur.release, feather.release],
             change_background, [image, model, kind, colour, picture, blur, fit, feather], [out],
             "change_background")

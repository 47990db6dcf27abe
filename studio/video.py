"""Tabs "Video" and "Webcam": the background of every frame removed or replaced, with the
same effects (and the same words) as the image tabs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from u2net.errors import U2NetError
from u2net.outputs import safe_stem
from u2net.video import process_video, video_background, webcam_frame
from u2net.vocabulary import VIDEO_BACKGROUND_CHOICES, check_choice

from .common import output_folder, predictor_for, readable_errors
from .settings import SETTINGS

VIDEO_FORMATS = ("mp4", "webm", "zip")


@readable_errors
def video(video_path: str | None, background: str = "blur", model: str = "u2netp",
          smoothing: float = 0.5, file_format: str = "mp4",
          progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """A video with its background removed or replaced, frame by frame (the first
    U2NET_VIDEO_MAX_SECONDS seconds, frames scaled to U2NET_VIDEO_MAX_SIDE at most).
    `background` is a colour or a keyword, never a file."""
    if not video_path:
        raise gr.Error("Upload a video first.")
    file_format = check_choice("file_format", file_format, VIDEO_FORMATS)
    style = video_background(background if isinstance(background, str) else str(background))
    if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool):
        raise gr.Error(f"smoothing must be a number from 0 to below 1, got {smoothing!r}")
    predictor = predictor_for(model, progress)
    dst = output_folder() / f"{safe_stem(video_path)}_{safe_stem(style.label)}.{file_format}"

    def report(done: int, total: int) -> None:
        progress((done, total or None), desc="Processing frames", unit="frames")

    result = process_video(Path(video_path), dst, background=style, predictor=predictor,
                           smoothing=float(smoothing), max_seconds=SETTINGS.video_max_seconds,
                           max_side=SETTINGS.video_max_side, progress=report)
    playable = str(dst) if file_format != "zip" else None
    return playable, str(dst), result.summary


def webcam(frame: Any, background: str = "blur", model: str = "u2netp") -> Any:
    """One webcam frame in, the same frame with its background replaced out."""
    try:
        style = video_background(background if isinstance(background, str) else str(background))
        return webcam_frame(frame, background=style, predictor=predictor_for(model))
    except U2NetError as exc:
        raise gr.Error(str(exc)) from None


def build_video(model: gr.Radio) -> None:
    gr.Markdown("The background of every frame removed or replaced (the first "
                f"{SETTINGS.video_max_seconds:g} seconds, scaled to {SETTINGS.video_max_side} px on "
                "the longer side).")
    with gr.Row():
        with gr.Column():
            source = gr.Video(label="Video", sources=["upload"])
            background = gr.Dropdown(list(VIDEO_BACKGROUND_CHOICES), value="blur", label="Background",
                                     allow_custom_value=True, info="A keyword, a colour name or #rrggbb.")
            smoothing = gr.Slider(0, 0.9, value=0.5, step=0.05, label="Smoothing",
                                  info="Less flicker; lags behind fast motion.")
            file_format = gr.Radio(list(VIDEO_FORMATS), value="mp4", label="Output",
                                   info="webm keeps transparency; zip is a PNG sequence.")
            run = gr.Button("Process", variant="primary")
        with gr.Column():
            out = gr.Video(label="Result", interactive=False)
            download = gr.File(label="Download")
            summary = gr.Textbox(label="Summary", lines=2)
    run.click(video, [source, background, model, smoothing, file_format], [out, download, summary],
              api_name="video", concurrency_id="long", concurrency_limit=1)


def build_webcam(model: gr.Radio) -> None:
    gr.Markdown("Live background replacement from your camera (u2netp is the one fast enough for this).")
    with gr.Row():
        background = gr.Dropdown(list(VIDEO_BACKGROUND_CHOICES), value="blur", label="Background",
                                 allow_custom_value=True, info="A keyword, a colour name or #rrggbb.")
    with gr.Row():
        camera = gr.Image(label="Camera", sources=["webcam"], streaming=True, type="numpy", elem_id="wc-in")
        out = gr.Image(label="Result", type="numpy", interactive=False, elem_id="wc-out")
    camera.stream(webcam, [camera, background, model], [out], api_name="webcam_stream",
                  api_visibility="undocumented", stream_every=0.2, time_limit=120,
                  concurrency_id="network", show_progress="hidden")
    # gradio_client cannot feed a stream, so the API gets the same handler for one frame at a
    # time through components the page does not show.
    frame = gr.Image(type="numpy", visible=False)
    frame_out = gr.Image(type="numpy", format="png", visible=False)
    frame.change(webcam, [frame, background, model], [frame_out], api_name="webcam",
                 concurrency_id="network")

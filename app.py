"""U²-Net Studio: the Gradio app (a Hugging Face Space, `python app.py`, and an API).

This file only assembles the page: the header, the model selector, one call per tab (each tab
lives in `studio/<tab>.py` with its handlers, which are the API endpoints), then the launch.
Limits and settings are in `studio/settings.py`; what every tab shares is in
`studio/common.py`. Every image operation is a call into `u2net`.

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --preload u2netp,u2net --precision fast
    python app.py --share              # a temporary public *.gradio.live link
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from studio import all_outputs, background, batch, boxes, crop, cutout, highlight, portrait, refine, video
from studio.common import EXAMPLES_DIR, refuse_non_numbers, start_sweeper
from studio.settings import SETTINGS
from u2net.predictor import get_predictor
from u2net.vocabulary import DEFAULT_MODEL, MASK_MODELS, MODEL_LABELS, PORTRAIT_MODEL, PRECISIONS, check_model

INTRO = """# U²-Net Studio
Salient object detection with [U²-Net](https://arxiv.org/abs/2005.09007): masks, cut-outs, new
backgrounds, boxes, highlights, crops and portrait drawings. Upload a picture or click an
example; moving a control re-renders from the cached mask, without running the network again.
Every output downloads at full size (⤓ on the image)."""

TABS = [  # (title, id, builder): the page's tabs, in order
    ("All outputs", "all", all_outputs.build),
    ("Refine", "refine", refine.build),
    ("Remove background", "remove", cutout.build),
    ("Change background", "background", background.build),
    ("Bounding boxes", "boxes", boxes.build),
    ("Highlight", "highlight", highlight.build),
    ("Crop", "crop", crop.build),
    ("Portrait", "portrait", portrait.build),
    ("Batch", "batch", batch.build),
    ("Video", "video", video.build_video),
    ("Webcam", "webcam", video.build_webcam),
]


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


def build_app() -> gr.Blocks:
    """The whole page: header, model selector, then one tab per feature."""
    keep = max(1, SETTINGS.keep_files_s)
    # Gradio deletes uploads and results older than `keep` (checked every quarter of it).
    with gr.Blocks(title="U²-Net Studio", delete_cache=(max(1, min(keep // 4, 300)), keep)) as demo:
        gr.Markdown(INTRO)
        model = gr.Radio([(MODEL_LABELS.get(m, m), m) for m in MASK_MODELS], value=DEFAULT_MODEL,
                         label="Model",
                         info="u2netp is fast; u2net is more accurate; u2net_human_seg is trained on people.")
        with gr.Tabs():
            for title, tab_id, build in TABS:
                with gr.Tab(title, id=tab_id):
                    build(model)
    refuse_non_numbers(demo)
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
                   help="cpu, cuda, cuda:0… for every tab (env U2NET_DEVICE; default: CUDA when available)")
    p.add_argument("--precision", default=SETTINGS.precision, choices=PRECISIONS,
                   help="exact (fp32, the published answer) or fast, for every tab (env U2NET_PRECISION)")
    p.add_argument("--concurrency", type=int, default=int(env("U2NET_CONCURRENCY", "0")) or None,
                   help="network calls at once (env U2NET_CONCURRENCY; default 1 on CPU, 2 on a GPU)")
    p.add_argument("--max-file-size", default=SETTINGS.max_file_size,
                   help="largest upload (env U2NET_MAX_FILE_SIZE; default 50mb)")
    return p.parse_args(argv)


def preload(models: list[str]) -> None:
    """Load each model's weights now (fetching them if needed) so the first visitor waits less."""
    for name in models:
        model = check_model(name, MASK_MODELS + (PORTRAIT_MODEL,))
        predictor = get_predictor(model, device=SETTINGS.device, precision=SETTINGS.precision).load()
        print(f"preloaded {name} from {predictor.weights_path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    SETTINGS.device, SETTINGS.precision = args.device or None, args.precision
    preload([m.strip() for m in args.preload.split(",") if m.strip()])
    start_sweeper(SETTINGS.keep_files_s)
    concurrency = args.concurrency or _default_concurrency()
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=args.max_file_size, allowed_paths=[str(EXAMPLES_DIR)],
                footer_links=["api", "gradio"])


if __name__ == "__main__":
    main()

"""What every tab shares: uploads, the one predictor per model, downloads, the cleaning of old
files, readable errors, and the image components.

A request never names a server file: images come from uploads (Gradio hands us only files it
received), and every string option is checked against `u2net.vocabulary` by
`u2net.outputs.RenderOptions` before anything runs.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from u2net.errors import U2NetError, WeightsError
from u2net.images import load_image
from u2net.outputs import Rendered, RenderOptions, encode, output_name, render, safe_stem
from u2net.predictor import Predictor, get_predictor
from u2net.vocabulary import MASK_MODELS, PORTRAIT_MODEL, check_model

from .settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
IMAGE_HEIGHT = 300

# ---------------------------------------------------------------------------------------------
# Errors and uploads


def readable_errors(fn: Callable) -> Callable:
    """Show library errors (not an image, too large, no weights, an option not allowed…) as a
    message in the page and in the API answer; the server goes on serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except U2NetError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper


_decoded: OrderedDict[tuple, Image.Image] = OrderedDict()  # upload -> decoded picture
_decoded_lock = threading.Lock()
DECODED_KEPT = 4  # a 12-megapixel photo is 36 MB decoded


def upload_key(path: str) -> tuple | None:
    """What identifies an upload's content cheaply: its real path, size and modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def open_upload(path: str | None, what: str = "image") -> Image.Image:
    """The uploaded image, upright RGB, or a readable error. Moving a control sends the same
    upload again: its decoded picture is kept (the last few), so a re-render does not decode a
    phone photo again (~0.3 s at 12 MP)."""
    if not path:
        raise gr.Error(f"Upload the {what} first (or click an example).")
    key = upload_key(path)
    if key is None:
        return load_image(path)  # let the loader say what is wrong
    with _decoded_lock:
        if key in _decoded:
            _decoded.move_to_end(key)
            return _decoded[key].copy()
    image = load_image(path)
    with _decoded_lock:
        _decoded[key] = image
        while len(_decoded) > DECODED_KEPT:
            _decoded.popitem(last=False)
    return image.copy()


# ---------------------------------------------------------------------------------------------
# One predictor per model for the whole process, with the app's device and precision

_announced: set[str] = set()


def predictor_for(model: str, progress: gr.Progress | None = None,
                  allowed: tuple[str, ...] = MASK_MODELS) -> Predictor:
    """The process's one predictor for `model` (made with the app's --device and --precision,
    shared by every tab). A model's first use says that its weights are being fetched
    (downloaded once when not cached) before loading them."""
    model = check_model(model, allowed)
    predictor = get_predictor(model, device=SETTINGS.device, precision=SETTINGS.precision)
    if not predictor.loaded:
        if model not in _announced:  # once: a model whose weights are missing fails every time
            _announced.add(model)
            gr.Info(f"First use of {model}: loading its weights, downloading them once if they are "
                    "not cached yet (u2net and the portrait model are 176 MB each, u2netp 4.7 MB).",
                    duration=8)
        if progress is not None:
            progress(0.05, desc=f"Loading {model} weights (the first run downloads them)…")
        predictor.load()
    return predictor


_portrait_failed: list = []  # [(time, WeightsError)] of the last failed load
PORTRAIT_RETRY_S = 600.0


def portrait_predictor(progress: gr.Progress | None = None) -> Predictor:
    """The portrait model's predictor. Its weights are an optional 176 MB download: when they
    cannot be found (no file, no network), the same error is given at once for the next ten
    minutes instead of every request waiting for the Hub's retries (~25 s offline)."""
    if _portrait_failed and time.monotonic() - _portrait_failed[0][0] < PORTRAIT_RETRY_S:
        raise _portrait_failed[0][1]
    try:
        predictor = predictor_for(PORTRAIT_MODEL, progress, allowed=(PORTRAIT_MODEL,))
    except WeightsError as exc:
        _portrait_failed[:] = [(time.monotonic(), exc)]
        raise
    _portrait_failed.clear()
    return predictor


def mask_of(image: Image.Image, model: str, progress: gr.Progress | None = None) -> Image.Image:
    """The saliency mask. The predictor caches masks by image content, so re-rendering with new
    controls costs no network pass."""
    predictor = predictor_for(model, progress)
    if progress is not None:
        progress(0.3, desc=f"Finding the salient object ({model})…")
    return predictor.predict(image)


def render_upload(image_path: str, model: str, kinds: list[str], options: RenderOptions,
                  progress: gr.Progress | None = None) -> Rendered:
    """The outputs `kinds` of one upload: decoded (kept), its mask (cached), rendered."""
    image = open_upload(image_path)
    return render(image, mask_of(image, model, progress), kinds, options)


PORTRAIT_MISSING = ("The portrait model's weights (u2net_portrait.pth, 176 MB) could not be found "
                    "or loaded here, so there is no drawing: put the file in U2NET_HOME, or set "
                    "U2NET_U2NET_PORTRAIT_WEIGHTS to it.")

# ---------------------------------------------------------------------------------------------
# Downloads: every output is written at full resolution to a file named after the upload, and
# the component shows (and downloads) that very file. Our folder is inside Gradio's cache, so
# Gradio serves the file as it is instead of hashing and copying it (~60 MB, ~0.3 s for a 12 MP
# photo's outputs); `delete_cache` and `sweep_old_files` both remove old files, the sweep also
# our folders and Gradio's emptied ones.


def gradio_upload_folder() -> Path:
    """Gradio's cache (GRADIO_TEMP_DIR, or the system's temp folder / gradio): uploads land here."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


gradio_upload_folder().mkdir(parents=True, exist_ok=True)
OUTPUT_ROOT = Path(tempfile.mkdtemp(prefix="u2net-studio-", dir=gradio_upload_folder()))
atexit.register(shutil.rmtree, OUTPUT_ROOT, ignore_errors=True)


def output_folder() -> Path:
    """A fresh folder for one request's files. Gradio serves any file in its cache to whoever
    names its path, so the folder's name is 128 random bits (mkdtemp's 8 characters are ~41)."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)  # the sweep or a cache cleaner may have removed it
    folder = OUTPUT_ROOT / secrets.token_hex(16)
    folder.mkdir(mode=0o700)
    return folder


def save(image: Image.Image, folder: Path, upload: str | None, what: str, fmt: str = "png") -> str:
    """Write one output as "<upload>_<what>.<fmt>" and return its path: losslessly (PNG, or
    lossless WebP), or "jpg" for a preview of the photo itself."""
    path = folder / output_name(safe_stem(upload), what, fmt)
    if fmt == "jpg":
        image.save(path, "JPEG", quality=90)
    else:
        path.write_bytes(encode(image, fmt))
    return str(path)


def save_all(images: dict[str, Image.Image], folder: Path, upload: str | None,
             fmt: str = "png", formats: dict[str, str] | None = None) -> dict[str, str]:
    """Write several outputs at once (Pillow's encoders release the GIL); {what: path}.
    `formats` gives some of them another format than `fmt`."""
    from concurrent.futures import ThreadPoolExecutor

    formats = formats or {}
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(images)))) as pool:
        futures = {what: pool.submit(save, image, folder, upload, what, formats.get(what, fmt))
                   for what, image in images.items()}
        return {what: future.result() for what, future in futures.items()}


def save_json(data: dict, folder: Path, upload: str | None, what: str) -> str:
    path = folder / output_name(safe_stem(upload), what, "json")
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def sweep_old_files(max_age_s: float, roots: list[Path] | None = None) -> int:
    """Remove files and folders older than `max_age_s` under our output folder, and folders
    Gradio emptied in its upload cache (its `delete_cache` removes the files but leaves one
    folder per upload). Returns how many entries went."""
    now = time.time()
    removed = 0
    for old in OUTPUT_ROOT.iterdir() if OUTPUT_ROOT.exists() else ():
        try:
            if now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
                removed += 1
        except OSError:
            pass
    for root in roots if roots is not None else [gradio_upload_folder()]:
        if not root.is_dir():
            continue
        for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            try:
                if (folder != OUTPUT_ROOT and folder.is_dir() and not any(folder.iterdir())
                        and now - folder.stat().st_mtime > max_age_s):
                    folder.rmdir()
                    removed += 1
            except OSError:
                pass
    return removed


def start_sweeper(max_age_s: float) -> threading.Thread:
    """A daemon thread that sweeps old files every quarter of `max_age_s` (at most 5 min)."""
    every = max(1.0, min(max_age_s / 4, 300.0))

    def run() -> None:
        while True:
            time.sleep(every)
            sweep_old_files(max_age_s)

    thread = threading.Thread(target=run, name="u2net-sweeper", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------
# Components


def example_paths(*names: str) -> list[list[str]]:
    return [[str(EXAMPLES_DIR / name)] for name in names]


PEOPLE_FIRST = example_paths("astronaut.jpg", "camera.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg")
OBJECTS_FIRST = example_paths("cat.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg")


def image_input(label: str = "Image", elem_id: str | None = None) -> gr.Image:
    """An image upload that hands the handler the uploaded file untouched.

    gr.Image would open the file with Pillow before our code runs, so a corrupt upload would end
    in an unreadable error; here `u2net.images.load_image` decides what counts as an image and
    says what is wrong in words. (Overridden on the instance: a subclass of a Gradio component
    makes Gradio write a .pyi stub next to this file.)
    """
    component = gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                         height=IMAGE_HEIGHT, elem_id=elem_id)
    gradio_preprocess = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return gradio_preprocess(payload)  # nothing, or a webcam / clipboard data: URL
        return str(payload.path)

    component.preprocess = preprocess
    return component


def image_output(label: str, elem_id: str | None = None) -> gr.Image:
    """Shows the saved output file itself, so ⤓ downloads it at full size under its own name."""
    return gr.Image(label=label, type="filepath", interactive=False, height=IMAGE_HEIGHT,
                    buttons=["download", "fullscreen"], elem_id=elem_id)


def rerender(triggers: list, fn: Callable, inputs: list, outputs: list, api_name: str) -> None:
    """One named endpoint per tab, fired by the upload, an example click or any control."""
    gr.on(triggers, fn, inputs=inputs, outputs=outputs, api_name=api_name,
          trigger_mode="always_last", concurrency_id="network")


def refuse_non_numbers(demo: gr.Blocks) -> None:
    """Sliders refuse what is not a number with a message (Gradio's own check compares the
    value with its bounds and fails on a string with no message at all)."""
    for component in demo.blocks.values():
        if not isinstance(component, (gr.Slider, gr.Number)):
            continue
        gradio_preprocess = component.preprocess

        def preprocess(payload: Any, _original=gradio_preprocess, _c=component) -> Any:
            if payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
                bounds = (f" from {_c.minimum:g} to {_c.maximum:g}"
                          if _c.minimum is not None and _c.maximum is not None else "")
                raise gr.Error(f"{_c.label or 'this value'} must be a number{bounds}, "
                               f"got {str(payload)[:40]!r}")
            return _original(payload)

        component.preprocess = preprocess


def soft_or_hard(threshold: Any) -> Any:
    """Slider 0 means "keep the soft edge of the mask" (no threshold); anything else goes to
    RenderOptions, which refuses what is not a number from 0 to 1."""
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and threshold == 0:
        return None
    return threshold

"""Tab "Batch": many images (or .zip archives of images) in, one .zip of results and a
manifest.csv out, through the same batch engine as `u2net batch`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr

from u2net.archives import extract_zip
from u2net.batch import BatchReport, run_batch
from u2net.errors import BatchError
from u2net.outputs import check_kinds
from u2net.predictor import Predictor
from u2net.vocabulary import APP_BATCH_KINDS

from .common import OBJECTS_FIRST, output_folder, predictor_for, readable_errors
from .settings import SETTINGS


def batch_to_zip(files: Sequence[Path], work_dir: Path, outputs: Sequence[str], predictor: Predictor,
                 options: dict | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[Path, BatchReport]:
    """Uploaded images and/or .zip archives in, one .zip of results out.

    Parameters:
        files: uploaded files: images or zips of images (at most SETTINGS.batch_max_files files
            and SETTINGS.batch_max_bytes bytes together; each zip within archives.DEFAULT_LIMITS).
        work_dir: a folder this call may write in (the returned zip lives there).
        outputs: output kinds from APP_BATCH_KINDS.
        predictor: the app's predictor for the chosen model (no second copy of the weights).
        options: RenderOptions fields.
        progress: callback(done, total, input name) after each image.

    Returns:
        (path of the zip: the outputs in the uploaded folder structure plus manifest.csv,
        the BatchReport with .succeeded, .failed and .summary).

    Raises:
        BatchError: too many files, too many bytes, no images; OptionError: an unknown output
        or option; ArchiveError: a zip was refused (zip slip, absolute path, link, bomb, …).
    """
    kinds = check_kinds(outputs, APP_BATCH_KINDS)
    files = [Path(f) for f in files]
    if not files:
        raise BatchError("no files given; add images or .zip archives of images")
    if len(files) > SETTINGS.batch_max_files:
        raise BatchError(f"{len(files):,} files, over the limit of {SETTINGS.batch_max_files:,}; "
                         "put them in a .zip or split the batch")
    total = sum(f.stat().st_size for f in files if f.is_file())
    if total > SETTINGS.batch_max_bytes:
        raise BatchError(f"the files hold {total:,} bytes, over the limit of "
                         f"{SETTINGS.batch_max_bytes:,}; split the batch")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="batch-", dir=work_dir))
    inputs = run_dir / "inputs"
    inputs.mkdir()
    for f in files:
        if f.suffix.lower() == ".zip":
            # One archive keeps its own structure; several each get a folder named after them.
            extract_zip(f, inputs if len(files) == 1 else _unique(inputs / f.stem))
        elif f.is_file():
            shutil.copyfile(f, _unique(inputs / f.name))
        else:
            raise BatchError(f"{f.name}: no such file")
    archive = run_dir / "u2net-batch.zip"
    report = run_batch([inputs], archive, kinds, options=options, workers=1, recursive=True,
                       progress=progress or False, max_images=SETTINGS.batch_max_images,
                       predictor=predictor)
    shutil.rmtree(inputs, ignore_errors=True)
    return archive, report


def _unique(path: Path) -> Path:
    """`path`, or `name_2.ext`, `name_3.ext`… when two uploads share a name."""
    if not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.stem}_{n}{path.suffix}")).exists():
        n += 1
    return candidate


@readable_errors
def batch(files: list[str] | None, outputs: list[str] | None = None, model: str = "u2netp",
          progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Many images (or .zip archives of images) in, one .zip of results + manifest.csv out."""
    if not files:
        raise gr.Error("Add some images or .zip archives first.")
    kinds = check_kinds(outputs or ["cutout"], APP_BATCH_KINDS)
    predictor = predictor_for(model, progress)

    def report(done: int, total: int, name: str) -> None:
        progress((done, total), desc=f"{name}", unit="images")

    archive, summary = batch_to_zip([Path(f) for f in files], output_folder(), kinds, predictor,
                                    progress=report)
    return str(archive), summary.summary


def build(model: gr.Radio) -> None:
    gr.Markdown("Many images at once: add image files or .zip archives of images; get one .zip "
                "with the chosen outputs and a manifest.csv.")
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Images or .zip archives", file_count="multiple",
                            file_types=["image", ".zip"])
            outputs = gr.CheckboxGroup(list(APP_BATCH_KINDS), value=["mask", "cutout"], label="Outputs")
            run = gr.Button("Process", variant="primary")
            gr.Examples([[[p[0] for p in OBJECTS_FIRST]]], inputs=[files], label="Example: all five pictures")
        with gr.Column():
            result = gr.File(label="Results (.zip)")
            summary = gr.Textbox(label="Summary", lines=3)
    run.click(batch, [files, outputs, model], [result, summary], api_name="batch",
              concurrency_id="long", concurrency_limit=1)

"""Folders and archives of images: several outputs per image from one network run, worker
processes, a progress bar, a manifest, and runs that can be killed and resumed without losing
or damaging anything.

The rooms: `planning` turns the inputs into tasks and guards the output path; `journal` holds
the atomic writes, the journal, the manifest and the report; `outputs.render` makes every
output of an image from its one mask. This module runs the tasks: in this process or in
worker processes, one predictor per process.

Outputs are deterministic (PNG without timestamps, one image per network call in the default
setting), so a resumed run ends with the same bytes as an uninterrupted one. Inputs are never
written: output paths equal to an input, and output folders inside an input folder (or the
other way round), are refused before anything starts; a lock keeps two runs from writing into
the same folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .archives import DEFAULT_LIMITS, ArchiveLimits, write_zip
from .errors import BatchError, U2NetError, WeightsError
from .journal import (
    JOURNAL,
    MANIFEST,
    TMP_MARK,
    BatchReport,
    Journal,
    OutputLock,
    fsync_dir,
    is_finished,
    manifest_row,
    read_journal,
    remove_stray_temp_files,
    settings_hash,
    write_atomic,
    write_manifest,
)
from .outputs import RenderOptions, check_kinds, encode, encode_for, output_names, render
from .planning import Plan, Task, check_output_path, plan_inputs
from .vocabulary import DEFAULT_MODEL, OUTPUT_KINDS, PORTRAIT_MODEL

__all__ = ["BatchError", "BatchReport", "JOURNAL", "MANIFEST", "OUTPUT_KINDS", "TMP_MARK", "Job",
           "process_group", "run_batch"]

WORK_SUFFIX = ".u2net-work"  # beside an output .zip: the resumable folder it is built from

# Measured on the 2-core development machine (see README "Batch"): one process per core with
# one torch thread each beat one process with batched inference and every mix of the two.
DEFAULT_WORKERS = 0  # 0: one worker process per CPU core
DEFAULT_BATCH_SIZE = 1
SMALL_BATCH = 4  # fewer images than this run in this process unless --workers says otherwise

# Output-disk failures end the run (with a message from the CLI) instead of failing each image.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, picklable: the same for every image of a run."""

    kinds: tuple[str, ...]
    options: RenderOptions
    out_root: str
    model: str = DEFAULT_MODEL
    weights: str | None = None
    device: str | None = None
    precision: str = "exact"
    single_output: str | None = None  # one input, one kind: write exactly this path

    @property
    def settings_hash(self) -> str:
        """What the journal records so that a run with other settings redoes every image."""
        return settings_hash({"kinds": list(self.kinds), "model": self.model, "weights": self.weights,
                              "precision": self.precision, "options": self.options.key()})


# ------------------------------------------------------------------------------ predictors

# One predictor per settings per process. The caller's own predictor (the app hands its own
# down) is registered here too, so this process never holds a second copy of the weights.
_PREDICTORS: dict[tuple, Any] = {}


def _predictor_key(model: str, weights: str | None, device: str | None, precision: str) -> tuple:
    return model, weights, device, precision


def _predictor(model: str, job: Job) -> Any:
    """The predictor for `model` with the job's settings, made once per process, without a
    mask cache: a batch rarely repeats an image, and copies of one image must cost a network
    run each (honest benchmarks)."""
    from .predictor import Predictor

    weights = job.weights if model == job.model else None
    key = _predictor_key(model, weights, job.device, job.precision)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(model, weights, job.device, job.precision, cache_size=0)
    return _PREDICTORS[key]


# ------------------------------------------------------------------------------ one group


def _error_row(task: Task, exc: BaseException, started: float) -> dict:
    message = str(exc) if isinstance(exc, U2NetError) else f"{type(exc).__name__}: {exc}"
    return {"input": task.rel, "status": "error", "files": {}, "boxes": None,
            "error": message or type(exc).__name__, "fingerprint": task.fingerprint,
            "seconds": round(time.perf_counter() - started, 4)}


def render_and_write(task: Task, job: Job, image: Image.Image, mask: Image.Image | None,
                     started: float) -> dict:
    """Render every output of one image, write each atomically, and return its journal row."""
    portrait = _predictor(PORTRAIT_MODEL, job) if "portrait" in job.kinds else None
    result = render(image, mask, job.kinds, job.options, portrait_predictor=portrait, with_boxes=True)
    boxes = result.boxes.to_dict() if result.boxes is not None else {}
    out_root = Path(job.out_root)
    targets: list[tuple[Path, str, bytes]] = []
    if job.single_output:
        target = Path(job.single_output)
        targets.append((target, target.name, encode_for(target, result.images[job.kinds[0]])))
        if "boxes" in job.kinds:
            j = target.with_suffix(".json")
            targets.append((j, j.name, result.boxes_json()))
    else:
        for kind in job.kinds:
            for name in output_names(task.stem, [kind]):
                data = result.boxes_json() if name.endswith(".json") else encode(result.images[kind])
                targets.append((out_root / name, name, data))
    files: dict[str, int] = {}
    for path, name, data in targets:
        write_atomic(path, data)
        files[name] = len(data)
    for folder in {p.parent for p, _, _ in targets}:
        fsync_dir(folder)
    return {"input": task.rel, "status": "ok", "files": files, "boxes": boxes, "error": "",
            "fingerprint": task.fingerprint, "seconds": round(time.perf_counter() - started, 4)}


def process_group(tasks: Sequence[Task], job: Job) -> list[dict]:
    """Load, predict (one network call for the group), render and write a group of images;
    one journal row per task, in order. A bad image becomes an "error" row and the others
    go on; a missing model or a failing output disk stops the run."""
    from .images import load_image

    started = time.perf_counter()
    rows: dict[int, dict] = {}
    loaded: list[tuple[int, Image.Image]] = []
    for i, task in enumerate(tasks):
        try:
            loaded.append((i, load_image(task.source)))
        except Exception as exc:  # noqa: BLE001 - any failure is this image's, not the batch's
            rows[i] = _error_row(task, exc, started)
    masks: list[Image.Image | None] = [None] * len(loaded)
    if loaded and set(job.kinds) != {"portrait"}:  # a portrait needs no saliency mask
        try:
            predictor = _predictor(job.model, job)
            if len(loaded) == 1:
                masks = [predictor.predict(loaded[0][1])]
            else:
                masks = list(predictor.predict_batch([img for _, img in loaded], batch_size=len(loaded)))
        except WeightsError:
            raise  # no weights: no image can succeed; stop with one clear message
        except Exception as exc:  # noqa: BLE001
            for i, _ in loaded:
                rows[i] = _error_row(tasks[i], exc, started)
            loaded = []
    for (i, image), mask in zip(loaded, masks, strict=False):
        try:
            rows[i] = render_and_write(tasks[i], job, image, mask, started)
        except WeightsError:
            raise  # e.g. the portrait model is missing
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS:
                raise  # the output disk, not this image: stop rather than fail every image
            rows[i] = _error_row(tasks[i], exc, started)
        except Exception as exc:  # noqa: BLE001
            rows[i] = _error_row(tasks[i], exc, started)
    return [rows[i] for i in range(len(tasks))]


# ------------------------------------------------------------------------------ worker processes

_WORKER_JOB: list[Job] = []  # the job of this worker process (set by its initializer)


def _die_with_parent(parent: int) -> None:
    """Linux: a worker is killed with its parent, so a killed batch leaves no orphans writing."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _start_worker(job: Job, threads: int, parent: int) -> None:
    """Initializer of each worker process: torch threads, die with the parent, keep the job."""
    _die_with_parent(parent)
    import torch

    from . import effects

    torch.set_num_threads(max(1, threads))
    effects.use_threads(threads)  # one process per core already keeps the cores busy
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    _WORKER_JOB[:] = [job]


def _process_group_in_worker(tasks: Sequence[Task]) -> list[dict]:
    return process_group(tasks, _WORKER_JOB[0])


def _run_in_workers(groups: list[list[Task]], job: Job, workers: int,
                    record: Callable[[list[dict]], None]) -> None:
    """Run groups of tasks on `workers` spawned processes, a few groups in flight per worker.

    A worker that dies (killed, out of memory) stops the run with a BatchError instead of
    hanging; what finished is journalled, so the same command resumes.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # no fork after torch started threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    count = min(workers, len(groups))
    executor = ProcessPoolExecutor(count, mp_context=ctx, initializer=_start_worker,
                                   initargs=(job, threads, os.getpid()))
    pending: set = set()
    queue = iter(groups)
    try:
        for group in queue:
            pending.add(executor.submit(_process_group_in_worker, group))
            if len(pending) >= 2 * count:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                record(future.result())
                group = next(queue, None)
                if group is not None:
                    pending.add(executor.submit(_process_group_in_worker, group))
    except BrokenProcessPool:
        raise BatchError("a worker process died (out of memory or killed); finished images are "
                         "saved: run the same command again to resume") from None
    finally:
        # Ctrl-C or an error: stop the workers now; their unfinished outputs are temp files.
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ a whole run


def _execute_here_or_in_workers(todo: list[Task], job: Job, workers: int, batch_size: int,
                                record: Callable[[list[dict]], None]) -> None:
    """The local engine: groups of `batch_size` images, in this process or in worker processes."""
    groups = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    if workers <= 1:
        for group in groups:
            record(process_group(group, job))
    else:
        # Worker processes even for one group: the same thread count every run keeps the
        # bytes of a resumed run equal to those of an uninterrupted one.
        _run_in_workers(groups, job, workers, record)


def resolve_workers(workers: int | None) -> int:
    """0 or None: one per CPU core; never more than the cores."""
    cores = os.cpu_count() or 1
    if not workers or workers <= 0:
        return cores
    return workers


def run_batch(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
              outputs: Sequence[str] = ("mask",), model: str = DEFAULT_MODEL, weights: str | None = None,
              device: str | None = None, precision: str = "exact",
              options: dict | RenderOptions | None = None,
              workers: int | None = DEFAULT_WORKERS, batch_size: int = DEFAULT_BATCH_SIZE,
              recursive: bool = False, manifest: bool = True, resume: bool = True,
              progress: bool | Callable[[int, int, str], None] = True,
              archive_limits: ArchiveLimits = DEFAULT_LIMITS, max_images: int | None = None,
              predictor: Any = None) -> BatchReport:
    """Process many images into an output folder or .zip, resumably.

    Parameters:
        inputs: files, folders, quoted globs, or .zip archives.
        output: a folder (created), a .zip (built from a resumable work folder beside it), or,
            for one input file and one output kind, an image file path (e.g. cut.png).
        outputs: output kinds (vocabulary.OUTPUT_KINDS), all from one network run per image.
        model, weights, device, precision: the predictor to use (see u2net.predictor).
        options: RenderOptions (or a dict of its fields).
        workers: worker processes (each with cores/workers torch threads, so one each by
            default); 1 runs in this process; 0/None: one per CPU core (the fastest here),
            or this process for fewer than SMALL_BATCH images.
        batch_size: images per network call in each worker.
        recursive: look into sub-folders of folder inputs.
        manifest: keep the journal (manifest.jsonl) and manifest.csv, and resume from them.
        resume: skip images finished by an earlier run (needs `manifest`).
        progress: True for a tqdm bar on stderr (images/s, ETA), False for none, or a
            callback(done, total, input) called after each image.
        archive_limits: limits for zip inputs.
        max_images: refuse the batch when it holds more images than this.
        predictor: a Predictor to use in this process instead of making one (the app hands
            down its own); its model, weights, device and precision replace those arguments.
            Worker processes, when used, each load the same settings once.

    Returns:
        A BatchReport (exit status for a CLI: 0 when report.failed == 0).

    Raises:
        BatchError / ArchiveError / OptionError: the batch cannot start safely; nothing was
        written.
    """
    started = time.perf_counter()
    kinds = check_kinds(outputs)
    opts = options if isinstance(options, RenderOptions) else RenderOptions.from_dict(options)
    if predictor is not None:
        model, weights = predictor.model_name, predictor.weights
        device, precision = str(predictor.device), predictor.precision
    output = Path(output)
    if batch_size < 1:
        raise BatchError("batch size must be at least 1")

    with tempfile.TemporaryDirectory(prefix="u2net-inputs-") as extract_dir:
        plan = plan_inputs(inputs, recursive=recursive, extract_dir=Path(extract_dir),
                           archive_limits=archive_limits)
        if max_images is not None and len(plan.tasks) > max_images:
            raise BatchError(f"{len(plan.tasks):,} images, over the limit of {max_images:,} per batch")
        single = (output.suffix and output.suffix.lower() != ".zip" and not output.is_dir()
                  and len(kinds) == 1 and len(plan.tasks) == 1 and not plan.folders and not plan.patterns)
        to_zip = output.suffix.lower() == ".zip" and not single
        check_output_path(output, plan)
        if to_zip:
            out_root = output.with_name(output.name + WORK_SUFFIX)
        elif single:
            out_root = output.parent
        else:
            if output.exists() and not output.is_dir():
                raise BatchError(f"output {output} is a file; give a folder or a .zip")
            out_root = output
        if single:
            names = [output] + ([output.with_suffix(".json")] if kinds == ["boxes"] else [])
            encode_for(output, Image.new("L", (1, 1)))  # refuse an unwritable suffix up front
        else:
            names = [out_root / n for t in plan.tasks for n in output_names(t.stem, kinds)]
        check_output_path(out_root, plan, names)
        out_root.mkdir(parents=True, exist_ok=True)

        job = Job(tuple(kinds), opts, str(out_root), model, weights, device, precision,
                  single_output=str(output) if single else None)
        if predictor is not None:
            _PREDICTORS[_predictor_key(job.model, job.weights, job.device, job.precision)] = predictor
        use_journal = manifest and not single
        lock = OutputLock(out_root) if use_journal else contextlib.nullcontext()
        with lock:
            if not single:  # never sweep a user's folder that merely holds one output file
                remove_stray_temp_files(out_root)
            count = resolve_workers(workers)
            if not workers and len(plan.tasks) < SMALL_BATCH:
                # Starting processes costs more than it saves for a few images. Decided from
                # the whole plan, not what is left, so a resumed run works the same way.
                count = 1
            report = run_plan(plan, job, out_root, use_journal, resume and use_journal, progress,
                              lambda todo, record: _execute_here_or_in_workers(todo, job, count, batch_size,
                                                                               record))
        report.seconds = time.perf_counter() - started
        if to_zip:
            names = [n for r in report.rows for n in (r["outputs"].split(";") if r["outputs"] else [])]
            write_zip(output, out_root, names + ([MANIFEST] if report.manifest else []))
            shutil.rmtree(out_root, ignore_errors=True)
            report.manifest = None
        report.output = output
        return report


def run_plan(plan: Plan, job: Job, out_root: Path, use_journal: bool, resume: bool,
             progress: bool | Callable[[int, int, str], None],
             execute: Callable[[list[Task], Callable[[list[dict]], None]], None],
             engine: str = "local") -> BatchReport:
    """Skip what an earlier run finished, hand the rest to `execute(todo, record)` (which calls
    `record(rows)` as images finish: this process, worker processes, or a Ray pipeline), with
    one journal row per image, then write the manifest."""
    journal_path = out_root / JOURNAL
    previous, runs = read_journal(journal_path) if use_journal else ({}, 0)
    settings = job.settings_hash
    done = {t.rel for t in plan.tasks
            if resume and is_finished(previous.get(t.rel), t, job.kinds, settings, out_root)}
    todo = [t for t in plan.tasks if t.rel not in done]
    report = BatchReport(resumed=len(done), ignored=len(plan.ignored))
    results: dict[str, dict] = {}
    journal = Journal(journal_path) if use_journal else None
    run_no = runs + 1
    if journal:
        journal.append({"event": "run", "run": run_no, "pid": os.getpid(), "total": len(plan.tasks),
                        "todo": len(todo), "settings": settings, "engine": engine,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    bar = None
    if progress is True and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="u2net batch" + ("" if engine == "local" else f" ({engine})"),
                   file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    callback = progress if callable(progress) else None

    def record(rows: list[dict]) -> None:
        for row in rows:
            if row["input"] in results:
                continue  # a retried piece of work delivered again: recorded once
            row.update(event="image", run=run_no, settings=settings)
            if journal:
                journal.append(row)
            results[row["input"]] = row
            report.processed += 1
            if bar:
                bar.update(1)
            if callback:
                callback(report.processed, len(todo), row["input"])

    try:
        if todo:
            execute(todo, record)
    finally:
        if bar:
            bar.close()
        if journal:
            journal.close()

    rows = []
    for task in plan.tasks:
        row = results.get(task.rel) or previous.get(task.rel)
        rows.append(manifest_row(task.rel, row))
    rows += [manifest_row(rel, None, "ignored", why) for rel, why in plan.ignored]
    rows += [manifest_row(name, None, "error", why) for name, why in plan.rejected]
    rows.sort(key=lambda r: r["input"])
    report.rows = rows
    report.succeeded = sum(r["status"] == "ok" for r in rows)
    report.failed = sum(r["status"] == "error" for r in rows)
    if use_journal:
        write_manifest(out_root / MANIFEST, rows)
        report.manifest = out_root / MANIFEST
    return report


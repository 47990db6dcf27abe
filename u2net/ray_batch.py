"""The batch on a Ray cluster: the local engine's answers, spread over many machines.

A Ray Data pipeline in three stages, so each resource does its own part:

    plan (driver) -> decode + preprocess (CPU tasks) -> the network (actor pool: the model is
    loaded once per actor; CPU actors, or GPU actors sharing a GPU through fractional num_gpus)
    -> mask upsampling, rendering, encoding, atomic writes (CPU tasks) -> journal (driver)

Everything around the pipeline is the local engine's own code: the planning of inputs
(u2net.planning: files, folders with -r, globs, zips with the same archive rules), output
names (u2net.outputs), the rendering and atomic writing of one image
(u2net.batch.render_and_write), the journal and its resume rules (u2net.journal.is_finished,
with the same Job.settings_hash, so a run started by one engine resumes on the other),
manifest.csv and the report. Only the driver writes the journal, one line per image, the
first time a row for it arrives: a task Ray retries after a worker or node died rewrites the
same bytes atomically, and the image is still recorded once.

CPU actors run the network one image per call with one thread, as the local engine's workers
do, so outputs are byte-identical to the local engine's (exact precision; checked by
tests/test_ray_batch.py). GPU actors batch (`batch_size` images per call).

Ray is imported only here, and only when `run_batch_ray` runs: the app and the local engine
never import it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import batch as local
from . import journal, planning
from .archives import DEFAULT_LIMITS, ArchiveLimits, write_zip
from .batch import Job
from .errors import BatchError
from .journal import BatchReport
from .outputs import RenderOptions, check_kinds, output_names
from .planning import Plan, Task

# Environment variables the workers need to find the same weights as the driver.
_FORWARDED_ENV = ("U2NET_HOME", "U2NET_WEIGHTS", "HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT")

# On CPU actors the network runs one image per call, as the local engine does: batching gains
# nothing there and oneDNN may pick other kernels for other batch sizes, which could move a
# mask by a grey level; one image per call keeps the bytes identical on every CPU.
CPU_ACTOR_CPUS = 0.75  # a CPU actor: one torch thread; the rest of its core runs CPU tasks
CPU_TASK_CPUS = 0.25
GPU_ACTOR_CPUS = 1.0
GPU_TASK_CPUS = 1.0
DEFAULT_GPU_FRACTION = 0.25  # four actors share one GPU: one copies while another computes
DEFAULT_CPU_BATCH = 4
DEFAULT_GPU_BATCH = 32


def is_uri(text: str) -> bool:
    """Whether an input names a pyarrow file system path ("s3://…", "gs://…", "file://…")."""
    return "://" in text and not Path(text).exists()


# ------------------------------------------------------------------------------ planning


def _plan_uris(uris: Sequence[str], recursive: bool) -> Plan:
    """Tasks for object-storage inputs, listed with pyarrow: each URI is a file or a "folder"
    (prefix). Relative paths follow the local rules (prefixed with the folder's name when
    several are given); non-images are listed as ignored."""
    import pyarrow.fs as pafs

    exts = planning.image_extensions()
    found: list[tuple[str, str, str, bool]] = []  # (uri, rel, fingerprint, explicit)
    for uri in uris:
        fs, path = pafs.FileSystem.from_uri(uri)
        scheme = uri.split("://", 1)[0]
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            found.append((uri, Path(path).name, f"{info.size}:{info.mtime_ns}", True))
            continue
        if info.type != pafs.FileType.Directory:
            raise BatchError(f"{uri}: no such file or folder")
        head = (Path(path).name or "input") + "/" if len(uris) > 1 else ""
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
        for entry in sorted(entries, key=lambda e: e.path):
            rel = Path(entry.path).relative_to(path).as_posix()
            if entry.type != pafs.FileType.File or any(p.startswith(".") for p in rel.split("/")):
                continue
            location = f"{scheme}://{entry.path}" if scheme != "file" else f"file://{entry.path}"
            found.append((location, head + rel, f"{entry.size}:{entry.mtime_ns}", False))
    tasks, ignored, rejected, seen = [], [], [], {}
    for source, rel, fingerprint, explicit in found:
        if rel.casefold() in seen:
            rejected.append((source, f"same relative path {rel!r} as {seen[rel.casefold()]}; "
                                     "process them separately"))
            continue
        seen[rel.casefold()] = source
        if not explicit and Path(rel).suffix.lower() not in exts:
            ignored.append((rel, f"not an image format Pillow reads here ({Path(rel).suffix or 'no extension'})"))
            continue
        tasks.append(Task(source, rel, "", fingerprint))
    return Plan(planning.with_stems(tasks), sorted(ignored), [], set(), [], rejected)


# ------------------------------------------------------------------------------ the stages


def _read_source(source: str, data: bytes, scratch: Path) -> str:
    """A local path to decode: the file itself when this node sees it, else the bytes the
    driver shipped (zip members) or the object read from storage, saved under the same name
    so error messages name the same file as the local engine's."""
    if "://" not in source and Path(source).exists():
        return source
    if not data:
        if "://" not in source:
            raise BatchError(f"{source}: not visible on this Ray node; put the inputs on storage "
                             "every node can read (a shared folder or object storage)")
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(source)
        with fs.open_input_stream(path) as fh:
            data = fh.readall()
    target = scratch / Path(source.split("://", 1)[-1]).name
    target.write_bytes(data)
    return str(target)


def decode_stage(batch: dict[str, np.ndarray], job: Job, input_size: int) -> dict[str, np.ndarray]:
    """CPU task: read and decode each image, and make its network input.

    Adds: status ("ok"/"error"), row (an error's journal row as JSON), rgb (raw RGB bytes),
    width, height, x (float32 3×S×S; zeros for errors or when no mask is needed), decode_s.
    """
    from .images import load_image
    from .predictor import preprocess

    n = len(batch["rel"])
    status, rows, rgbs, widths, heights, seconds = [], [], [], [], [], []
    xs = np.zeros((n, 3, input_size, input_size) if input_size else (n, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="u2net-ray-") as scratch:
        for i in range(n):
            started = time.perf_counter()
            task = _task(batch, i)
            try:
                path = _read_source(task.source, bytes(batch["data"][i]), Path(scratch))
                image = load_image(path)
                if input_size:
                    xs[i] = preprocess(image, input_size)
            except Exception as exc:  # noqa: BLE001 - any failure is this image's, not the batch's
                status.append("error")
                rows.append(json.dumps(local._error_row(task, exc, started)))
                rgbs.append(b"")
                widths.append(0)
                heights.append(0)
            else:
                status.append("ok")
                rows.append("")
                rgbs.append(image.tobytes())
                widths.append(image.width)
                heights.append(image.height)
            seconds.append(time.perf_counter() - started)
    out = {k: batch[k] for k in ("source", "rel", "stem", "fingerprint")}
    out.update(status=np.array(status), row=np.array(rows, dtype=object),
               rgb=np.array(rgbs, dtype=object), width=np.array(widths, dtype=np.int64),
               height=np.array(heights, dtype=np.int64), x=xs,
               decode_s=np.array(seconds, dtype=np.float64))
    return out


class NetworkStage:
    """Actor: builds the Predictor once, then runs the network on batches of inputs.

    Replaces column x by sal (the fused saliency map, S×S float32) and adds network_s. A batch
    the network fails on becomes error rows; missing weights stop the run (no image could
    succeed).
    """

    def __init__(self, model: str, weights: str | None, device: str | None, precision: str,
                 threads: int, per_call: int) -> None:
        import torch

        from .predictor import Predictor

        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor(model, weights, device, precision, cache_size=0).load()
        self.per_call = max(1, per_call)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:

        from .errors import WeightsError

        out = {k: v for k, v in batch.items() if k != "x"}
        x = batch["x"]
        n, size = len(x), x.shape[-1]
        sal = np.zeros((n, size, size), dtype=np.float32)
        ok = np.flatnonzero(batch["status"] == "ok")
        started = time.perf_counter()
        if len(ok):
            try:
                # Predictor's own forward (the one `predict` uses); decoding and mask
                # upsampling run in the CPU stages around this actor.
                for start in range(0, len(ok), self.per_call):
                    chunk = ok[start:start + self.per_call]
                    sal[chunk] = self.predictor.forward(np.asarray(x[chunk], dtype=np.float32))
            except WeightsError:
                raise
            except Exception as exc:  # noqa: BLE001 - this batch's images fail, the run goes on
                status, rows = batch["status"].copy(), batch["row"].copy()
                for i in ok:
                    status[i] = "error"
                    rows[i] = json.dumps(local._error_row(_task(batch, i), exc, started))
                out.update(status=status, row=rows)
        out["sal"] = sal
        out["network_s"] = np.full(n, (time.perf_counter() - started) / max(1, n))
        return out


def render_stage(batch: dict[str, np.ndarray], job: Job, needs_mask: bool) -> dict[str, np.ndarray]:
    """CPU task: upsample each mask, render and encode every output, write them atomically
    (u2net.batch.render_and_write); returns each image's journal row as JSON."""
    from PIL import Image

    from .errors import WeightsError
    from .predictor import postprocess

    rows = []
    for i in range(len(batch["rel"])):
        task = _task(batch, i)
        stages = {"decode": float(batch["decode_s"][i]),
                  "network": float(batch["network_s"][i]) if "network_s" in batch else 0.0}
        started = time.perf_counter()
        if batch["status"][i] != "ok":
            row = json.loads(batch["row"][i])
        else:
            try:
                size = (int(batch["width"][i]), int(batch["height"][i]))
                image = Image.frombytes("RGB", size, bytes(batch["rgb"][i]))
                mask = postprocess(batch["sal"][i], size) if needs_mask else None
                row = local.render_and_write(task, job, image, mask, started)
            except WeightsError as exc:  # e.g. the portrait model is missing: stop the run
                row = {"input": task.rel, "stop": "weights", "error": str(exc)}
            except OSError as exc:
                if exc.errno in local._DISK_ERRNOS:  # the output disk, not this image: stop
                    row = {"input": task.rel, "stop": "disk", "errno": exc.errno,
                           "strerror": exc.strerror, "filename": exc.filename}
                else:
                    row = local._error_row(task, exc, started)
            except Exception as exc:  # noqa: BLE001
                row = local._error_row(task, exc, started)
        stages["render"] = time.perf_counter() - started
        row["seconds"] = round(sum(stages.values()), 4)
        row["stages"] = {k: round(v, 4) for k, v in stages.items()}
        rows.append(json.dumps(row))
    return {"rel": batch["rel"], "row": np.array(rows, dtype=object)}


def _task(batch: dict[str, np.ndarray], i: int) -> Task:
    return Task(str(batch["source"][i]), str(batch["rel"][i]), str(batch["stem"][i]),
                str(batch["fingerprint"][i]))


# ------------------------------------------------------------------------------ running


def run_batch_ray(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
                  outputs: Sequence[str] = ("mask",), model: str = "u2netp", weights: str | None = None,
                  device: str | None = None, precision: str = "exact",
                  options: dict | RenderOptions | None = None, recursive: bool = False,
                  resume: bool = True, ray_address: str | None = None,
                  progress: bool | Callable[[int, int, str], None] = True,
                  batch_size: int | None = None, actors: int | None = None,
                  gpu_fraction: float = DEFAULT_GPU_FRACTION, num_cpus: int | None = None,
                  archive_limits: ArchiveLimits = DEFAULT_LIMITS,
                  max_images: int | None = None) -> BatchReport:
    """Process many images on a Ray cluster into an output folder or .zip, resumably.

    The same inputs, outputs, manifest and resume rules as u2net.batch.run_batch, with
    byte-identical outputs (exact precision, CPU).

    Parameters:
        inputs: files, folders, quoted globs, .zip archives, or pyarrow URIs ("s3://bucket/
            photos", "gs://…", "file:///…"; not mixed with local inputs).
        output: a folder or a .zip, on storage every Ray node can write at the same path.
        outputs: output kinds (u2net.batch.OUTPUT_KINDS), all from one network run per image.
        model, weights, device, precision: the predictor each actor builds (device None: CUDA
            when the cluster has GPUs, else the CPU).
        options: RenderOptions (or a dict of its fields).
        recursive: look into sub-folders of folder inputs.
        resume: skip images finished by an earlier run (of either engine).
        ray_address: a running cluster ("ray://host:10001", "host:6379", "auto"); None reads
            RAY_ADDRESS, and without it starts a local Ray on this machine (127.0.0.1 only).
        progress: True for a bar on stderr, False for none, or callback(done, total, input).
        batch_size: images per Ray Data batch (default 4 on CPUs, 32 on GPUs); on GPU actors
            also the images per network call (CPU actors run one image per call).
        actors: most network actors (default: one per CPU, or 1 / gpu_fraction per GPU).
        gpu_fraction: the share of one GPU each GPU actor asks for.
        num_cpus: CPUs of a local Ray started here (default: all).
        archive_limits: limits for zip inputs.
        max_images: refuse the batch when it holds more images than this.

    Returns:
        A BatchReport (report.ok when nothing failed).

    Raises:
        BatchError / ArchiveError: the batch cannot start safely; nothing was written.
        WeightsError: the weights cannot be found.
    """
    started = time.perf_counter()
    try:
        import ray.data  # noqa: F401 - a missing Ray fails here, before any work
    except ImportError as exc:
        raise BatchError(f"the Ray engine needs Ray: pip install 'ray[data]' ({exc})") from None
    kinds = check_kinds(outputs)
    opts = options if isinstance(options, RenderOptions) else RenderOptions.from_dict(options)
    output = Path(output)
    if batch_size is not None and batch_size < 1:
        raise BatchError("batch size must be at least 1")
    if not 0 < gpu_fraction <= 1 or (actors is not None and actors < 1):
        raise BatchError("the GPU fraction must be in (0, 1] and actors at least 1")
    texts = [str(a) for a in inputs]
    uris = [t for t in texts if is_uri(t)]
    if uris and len(uris) != len(texts):
        raise BatchError("give either local inputs or URIs (s3://…), not both in one batch")
    if is_uri(str(output)):
        raise BatchError(f"output {output}: write to a folder every Ray node sees at the same "
                         "path (a shared or mounted file system); object storage outputs are "
                         "not supported (resume checks each output's size on disk)")

    if output.suffix and output.suffix.lower() != ".zip" and not output.is_dir():
        raise BatchError(f"output {output}: the Ray engine writes a folder or a .zip; for one "
                         "image file use the local engine")
    with tempfile.TemporaryDirectory(prefix="u2net-inputs-") as extract_dir:
        plan = (_plan_uris(uris, recursive) if uris else
                planning.plan_inputs(inputs, recursive=recursive, extract_dir=Path(extract_dir),
                                     archive_limits=archive_limits))
        if max_images is not None and len(plan.tasks) > max_images:
            raise BatchError(f"{len(plan.tasks):,} images, over the limit of {max_images:,} per batch")
        to_zip = output.suffix.lower() == ".zip"
        planning.check_output_path(output, plan)
        out_root = output.with_name(output.name + local.WORK_SUFFIX) if to_zip else output
        if out_root.exists() and not out_root.is_dir():
            raise BatchError(f"output {output} is a file; give a folder or a .zip")
        names = [out_root / n for t in plan.tasks for n in output_names(t.stem, kinds)]
        planning.check_output_path(out_root, plan, names)
        out_root.mkdir(parents=True, exist_ok=True)

        # Workers may run elsewhere or in another folder: every path they see is absolute.
        job = Job(tuple(kinds), opts, str(out_root.resolve()), model, weights, device, precision)
        with journal.OutputLock(out_root):
            journal.remove_stray_temp_files(out_root)
            report = _run(plan, job, out_root, resume, progress, ray_address, batch_size,
                          actors, gpu_fraction, num_cpus, Path(extract_dir))
        report.seconds = time.perf_counter() - started
        if to_zip:
            done = [n for r in report.rows for n in (r["outputs"].split(";") if r["outputs"] else [])]
            write_zip(output, out_root, done + [journal.MANIFEST])
            shutil.rmtree(out_root, ignore_errors=True)
            report.manifest = None
        report.output = output
        return report


def _run(plan: Plan, job: Job, out_root: Path, resume: bool,
         progress: bool | Callable[[int, int, str], None], ray_address: str | None,
         batch_size: int | None, actors: int | None, gpu_fraction: float, num_cpus: int | None,
         extract_dir: Path) -> BatchReport:
    """The local engine's `batch.run_plan` (resume rules, journal, manifest) with the Ray
    pipeline in place of its worker processes."""
    def execute(todo: list[Task], record: Callable[[list[dict]], None]) -> None:
        for row in _pipeline(todo, job, extract_dir, ray_address, batch_size, actors, gpu_fraction,
                             num_cpus):
            _stop_if_asked(row)
            record([row])

    return local.run_plan(plan, job, out_root, True, resume, progress, execute, engine="ray")


def _stop_if_asked(row: dict) -> None:
    """Raise here, in the driver, what a stage met that ends the whole run (missing weights,
    a full or read-only output disk), with the local engine's exception types: Ray would hand
    the driver its own wrapper instead, which the CLI could not explain."""
    from .errors import WeightsError

    if row.get("stop") == "weights":
        raise WeightsError(row["error"])
    if row.get("stop") == "disk":
        raise OSError(row["errno"], row["strerror"], row["filename"])


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the length of a batch: the session already open in this process (opened with
    `runtime_env=worker_runtime_env()`), else the cluster at `address` (or RAY_ADDRESS), else
    a local Ray on 127.0.0.1; one opened here is shut down afterwards."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env=worker_runtime_env())
    else:
        # A local Ray listens on loopback only (Ray otherwise binds the machine's address),
        # and reports no usage statistics to anyone.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING,
                 runtime_env=worker_runtime_env())
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_runtime_env() -> dict:
    """The job's runtime_env for ray.init: every worker gets this package as it is here (Ray uploads it once; their
    Python still needs torch, Pillow and the rest installed) and the driver's weight
    locations (U2NET_HOME, U2NET_WEIGHTS, the Hugging Face cache settings)."""
    import u2net

    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    return {"py_modules": [str(Path(u2net.__file__).parent)], "env_vars": env}


def _pipeline(todo: list[Task], job: Job, extract_dir: Path, ray_address: str | None,
              batch_size: int | None, actors: int | None, gpu_fraction: float,
              num_cpus: int | None):
    """Yield the journal row (a dict) of each image as the cluster finishes it."""
    from .weights import get_spec

    needs_mask = set(job.kinds) != {"portrait"}  # a portrait needs no saliency mask
    spec = get_spec(job.model)
    if needs_mask:
        from .weights import resolve_weights

        resolve_weights(job.model, job.weights)  # no weights: one clear error before any work

    with ray_session(ray_address, num_cpus) as ray:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own bar counts images, not blocks
        ctx.print_on_execution_start = False
        with contextlib.suppress(AttributeError):  # its advice (a memory= request) is printed
            ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
        logging.getLogger("ray.data").setLevel(logging.WARNING)

        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 1))
        device = job.device or ("cuda" if gpus else "cpu")
        on_gpu = device.startswith("cuda")
        if on_gpu and not gpus:
            raise BatchError(f"device {device}: the Ray cluster has no GPU; use --device cpu")
        step = batch_size or (DEFAULT_GPU_BATCH if on_gpu else DEFAULT_CPU_BATCH)
        if on_gpu:
            actor_args = {"num_gpus": gpu_fraction, "num_cpus": GPU_ACTOR_CPUS}
            task_cpus = GPU_TASK_CPUS
            most = actors or max(1, int(gpus / gpu_fraction))
        else:
            actor_args = {"num_cpus": CPU_ACTOR_CPUS}
            task_cpus = CPU_TASK_CPUS
            most = actors or max(1, int(cpus))

        # Zip members were extracted on this machine: their bytes travel with the rows, for
        # nodes that cannot see this machine's temporary folder.
        items = []
        for t in todo:
            source = t.source if "://" in t.source else os.path.abspath(t.source)
            inside = "://" not in source and Path(source).resolve().is_relative_to(extract_dir.resolve())
            items.append({"source": source, "rel": t.rel, "stem": t.stem, "fingerprint": t.fingerprint,
                          "data": Path(source).read_bytes() if inside else b""})
        blocks = max(1, math.ceil(len(items) / step))
        # Start every actor at once when there is work for them all; a small batch starts
        # one (each actor costs a process and a model load) and grows the pool if it lags.
        initial = max(1, min(most, blocks // 2))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        # Ray Data's defaults retry what a dead worker or node lost: tasks without limit
        # (max_retries=-1), actors restarted and their calls retried (max_restarts=-1,
        # max_task_retries=-1). Exceptions of our own code are not retried: each is an
        # image's error row, written by the stage that met it.
        # The weight locations as the driver sees them now (the job-level ones are those of
        # ray.init's time), merged by Ray into the job's runtime_env.
        env = {"env_vars": {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}}
        ds = ds.map_batches(decode_stage, batch_size=step, batch_format="numpy", num_cpus=task_cpus,
                            fn_kwargs={"job": job, "input_size": spec.input_size if needs_mask else 0},
                            runtime_env=env)
        if needs_mask:
            ds = ds.map_batches(
                NetworkStage, batch_size=step, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=initial),
                fn_constructor_kwargs={"model": job.model, "weights": job.weights, "device": device,
                                       "precision": job.precision,
                                       "threads": max(1, round(actor_args["num_cpus"])),
                                       "per_call": step if on_gpu else 1},
                runtime_env=env, **actor_args)
        ds = ds.map_batches(render_stage, batch_size=step, batch_format="numpy", num_cpus=task_cpus,
                            fn_kwargs={"job": job, "needs_mask": needs_mask}, runtime_env=env)
        for row in ds.iter_rows():
            yield json.loads(row["row"])

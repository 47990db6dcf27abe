"""Folders and archives of images: several outputs per image from one network run, worker
processes, a progress bar, a manifest, and runs that can be killed and resumed without losing
or damaging anything.

How nothing is lost:
- every output is written to a temporary name in its own folder, flushed to disk, then renamed
  (`os.replace`), so a file with the final name is always complete;
- after all outputs of an image are in place, one line is appended to the journal
  (`manifest.jsonl`) and flushed to disk; an image is "finished" when the journal says so AND
  every output it lists exists with the recorded size AND the input and the settings are
  unchanged; a rerun skips finished images and redoes the rest;
- outputs are deterministic (PNG without timestamps, one image per network call in the default
  setting), so a resumed run ends with the same bytes as an uninterrupted one;
- inputs are never written: output paths equal to an input, and output folders inside an input
  folder (or the other way round), are refused before anything starts;
- temporary files left by a killed run are removed by the next run; a lock keeps two runs from
  writing into the same folder at once.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fnmatch
import glob
import hashlib
import io
import json
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .archives import DEFAULT_LIMITS, ArchiveLimits, extract_zip, write_zip
from .errors import U2NetError, WeightsError

OUTPUT_KINDS = ("mask", "cutout", "background", "boxes", "highlight", "crop", "portrait")
APP_OUTPUT_KINDS = OUTPUT_KINDS[:-1]  # the portrait model is a separate download: CLI only
JOURNAL = "manifest.jsonl"
MANIFEST = "manifest.csv"
TMP_MARK = ".u2net-tmp-"
LOCK = ".u2net-batch.lock"
WORK_SUFFIX = ".u2net-work"  # beside an output .zip: the resumable folder it is built from

# Measured on the 2-core development machine (see README "Batch"): one process per core with
# one torch thread each beat one process with batched inference and every mix of the two.
DEFAULT_WORKERS = 0  # 0: one worker process per CPU core
DEFAULT_BATCH_SIZE = 1
SMALL_BATCH = 4  # fewer images than this run in this process unless --workers says otherwise

# Uploads to the app's batch tab (public, documented in the README).
MAX_UPLOAD_FILES = int(os.environ.get("U2NET_BATCH_MAX_FILES", 1000))
MAX_UPLOAD_BYTES = int(os.environ.get("U2NET_BATCH_MAX_BYTES", 1024**3))
MAX_BATCH_IMAGES = int(os.environ.get("U2NET_BATCH_MAX_IMAGES", 10_000))


# Output-disk failures end the run (with a message from the CLI) instead of failing each image.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class BatchError(U2NetError, ValueError):
    """The batch cannot start (unsafe output path, bad option, busy folder); nothing was written."""


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions Pillow can open here (".jpg", ".jpeg", ".webp", ".tiff", …)."""
    from . import images  # noqa: F401 - registers optional formats (HEIC via pillow-heif)

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


# ------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class BatchOptions:
    """The effect settings shared by a whole batch; they mirror the app's controls.

    Mask refinement (used by every output): threshold (None keeps the soft mask), min_island,
    fill_holes, feather. Cut-out: decontaminate. Background: background (colour name, "#hex",
    "blur", "grayscale", "transparent"), background_image (a file; wins over `background`), fit,
    blur_radius. Boxes: box_threshold, min_area, box_colour, thickness, labels, union.
    Highlight: highlight_mode, strength, highlight_colour. Crop: padding ("5%" or pixels),
    aspect, crop_output. Portrait: blend (drawing blended with the photo), portrait_sigma,
    portrait_alpha.
    """

    threshold: float | None = None
    min_island: float = 0
    fill_holes: bool = False
    feather: float = 0.0
    decontaminate: bool = True
    background: str = "white"
    background_image: str | None = None
    fit: str = "cover"
    blur_radius: float = 12.0
    box_threshold: float = 0.5
    min_area: float = 0.001
    box_colour: str = "#ff3b30"
    thickness: int = 3
    labels: bool = True
    union: bool = False
    highlight_mode: str = "dim"
    strength: float = 0.6
    highlight_colour: str = "#ff3b30"
    padding: str = "5%"
    aspect: str = "free"
    crop_output: str = "image"
    blend: bool = False
    portrait_sigma: float = 2.0
    portrait_alpha: float = 0.5

    @classmethod
    def from_dict(cls, options: dict | None) -> BatchOptions:
        """Options from a plain dict (the app's and the CLI's way); unknown keys are refused."""
        options = dict(options or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise BatchError(f"unknown batch option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
        return cls(**options)

    def refines(self) -> bool:
        return bool(self.threshold is not None or self.min_island or self.fill_holes or self.feather)


def _padding(value: str | float | int) -> str | float | int:
    """"5%" stays a percentage; "12" means 12 pixels."""
    if isinstance(value, str) and not value.strip().endswith("%"):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


# ------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Task:
    """One input image: where to read it, its path in the manifest, where its outputs go."""

    source: str  # file to read
    rel: str  # relative POSIX path shown in the manifest, e.g. "sub/photo.jpg"
    stem: str  # relative output stem, e.g. "sub/photo" (→ "sub/photo_mask.png")
    fingerprint: str  # size and modification time: a changed input is redone


@dataclass
class Plan:
    tasks: list[Task]
    ignored: list[tuple[str, str]]  # (rel, why) for files that are not images
    folders: list[Path]  # input folders (outputs must stay out of them)
    files: set[Path]  # every input file, resolved
    patterns: list[str] = field(default_factory=list)  # absolute glob patterns given as inputs
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (input, why): counted as failed


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _has_magic(arg: str) -> bool:
    return any(c in arg for c in "*?[")


def _scan_folder(folder: Path, recursive: bool) -> Iterator[Path]:
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    for path in pattern:
        rel_parts = path.relative_to(folder).parts
        # Hidden files and folders (".git", ".DS_Store", our own work files) are not inputs.
        if any(part.startswith(".") for part in rel_parts):
            continue
        if path.is_file():
            yield path


def plan_inputs(inputs: Sequence[str | os.PathLike], recursive: bool = False,
                extract_dir: Path | None = None,
                archive_limits: ArchiveLimits = DEFAULT_LIMITS) -> Plan:
    """Expand files, folders, globs and .zip archives into a sorted list of tasks.

    Parameters:
        inputs: files, folders, glob patterns (quoted, e.g. "photos/**/*.jpg") or zips.
        recursive: look into sub-folders of folder inputs.
        extract_dir: where zip inputs are extracted (required when a zip is given).
        archive_limits: limits for zip inputs.

    Returns:
        A Plan. Relative paths: a folder's or zip's files relative to it (prefixed with the
        folder or zip name when several folders/zips are given), a glob's matches relative to
        the folder before its first wildcard, a single file by its name.

    Raises:
        BatchError: an input does not exist or a glob matches nothing.
        ArchiveError: a zip input is refused.
    """
    exts = image_extensions()
    containers = [a for a in inputs if not _has_magic(str(a))
                  and (Path(a).is_dir() or (Path(a).is_file() and Path(a).suffix.lower() == ".zip"))]
    prefix = len(containers) > 1
    found: list[tuple[Path, str, bool]] = []  # (file, rel, explicit)
    folders: list[Path] = []
    patterns: list[str] = []
    for i, arg in enumerate(inputs):
        text = str(arg)
        path = Path(text)
        if _has_magic(text) and not path.exists():
            base = _static_prefix(text)
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise BatchError(f"{text}: the pattern matches no files")
            found += [(m, m.relative_to(base).as_posix() if m.is_relative_to(base) else m.name, True)
                      for m in matches]
            patterns.append(os.path.abspath(text))
        elif path.is_dir():
            folders.append(path)
            head = (path.resolve().name or "input") + "/" if prefix else ""
            found += [(f, head + f.relative_to(path).as_posix(), False)
                      for f in sorted(_scan_folder(path, recursive))]
        elif path.is_file() and path.suffix.lower() == ".zip":  # a damaged zip is refused
            if extract_dir is None:
                raise BatchError(f"{path}: zip inputs need a folder to extract into")
            dest = Path(extract_dir) / f"{i:03d}"
            extract_zip(path, dest, archive_limits)
            head = path.stem + "/" if prefix else ""
            found += [(f, head + f.relative_to(dest).as_posix(), False)
                      for f in sorted(_scan_folder(dest, True))]
        elif path.is_file():
            found.append((path, path.name, True))
        else:
            raise BatchError(f"{text}: no such file or folder")

    tasks: list[Task] = []
    ignored: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for file, rel, explicit in found:
        key = rel.casefold()
        if key in seen:
            rejected.append((str(file), f"same relative path {rel!r} as {seen[key]}; "
                                        "process them separately"))
            continue
        seen[key] = str(file)
        if not explicit and file.suffix.lower() not in exts:
            ignored.append((rel, f"not an image format Pillow reads here ({file.suffix or 'no extension'})"))
            continue
        tasks.append(Task(str(file), rel, "", _fingerprint(file)))

    tasks.sort(key=lambda t: t.rel)
    # Output stems: "sub/photo"; when two inputs in one folder share a stem (photo.jpg and
    # photo.png) both keep their extension in it ("sub/photo_jpg") so nothing collides.
    stems: dict[str, int] = {}
    for t in tasks:
        stems[str(Path(t.rel).with_suffix("")).casefold()] = stems.get(
            str(Path(t.rel).with_suffix("")).casefold(), 0) + 1
    named = []
    for t in tasks:
        base = Path(t.rel).with_suffix("").as_posix()
        if stems[base.casefold()] > 1:
            base = f"{base}_{Path(t.rel).suffix.lstrip('.').lower()}"
        named.append(dataclasses.replace(t, stem=base))
    return Plan(named, sorted(ignored), folders, {Path(f).resolve() for f, _, _ in found}, patterns,
                rejected)


def glob_matches(path: str, pattern: str) -> bool:
    """Whether `glob.glob(pattern, recursive=True)` would list `path` (both absolute): "**" is
    any number of folders, other wildcards stay within one name."""
    def match(parts: tuple[str, ...], pats: tuple[str, ...]) -> bool:
        if not pats:
            return not parts
        if pats[0] == "**":
            return any(match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
        return bool(parts) and fnmatch.fnmatch(parts[0], pats[0]) and match(parts[1:], pats[1:])

    return match(Path(path).parts, Path(pattern).parts)


def _static_prefix(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if _has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def output_names(stem: str, kinds: Sequence[str]) -> list[str]:
    """Relative output file names for one image stem, e.g. "sub/a" → ["sub/a_mask.png", …]."""
    names = []
    for kind in kinds:
        names.append(f"{stem}_{kind}.png")
        if kind == "boxes":
            names.append(f"{stem}_boxes.json")
    return names


def _check_kinds(kinds: Sequence[str], allowed: Sequence[str] = OUTPUT_KINDS) -> list[str]:
    kinds = list(dict.fromkeys(kinds))  # keep order, drop repeats
    unknown = [k for k in kinds if k not in allowed]
    if unknown or not kinds:
        raise BatchError(f"unknown output(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(allowed)}")
    return kinds


def check_output_path(output: Path, plan: Plan, names: Iterable[Path] = ()) -> None:
    """Refuse outputs that could overwrite an input or be read back as inputs.

    Raises:
        BatchError: `output` (or one of `names`) is an input, or output and input folders nest.
    """
    out = output.resolve()
    if out in plan.files:
        raise BatchError(f"output {output} is one of the inputs; choose another output path")
    for folder in plan.folders:
        src = folder.resolve()
        if out == src or out.is_relative_to(src):
            raise BatchError(f"output {output} is inside the input folder {folder}; outputs there "
                             "would mix with (and be read back as) inputs: choose a folder outside it")
        if src.is_relative_to(out):
            raise BatchError(f"input folder {folder} is inside the output {output}; choose an "
                             "output folder outside the inputs")
    for name in names:
        if name.resolve() in plan.files:
            raise BatchError(f"output {name} would overwrite an input; choose another output folder")
        hit = next((p for p in plan.patterns if glob_matches(os.path.abspath(name), p)), None)
        if hit:
            raise BatchError(f"output {name} matches the input pattern {hit}, so a second run "
                             "would read it as an input; choose another output folder or pattern")


# ---------------------------------------------------------------------- rendering & writing


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no timestamp or metadata: the same pixels always give the same bytes.

    zlib level 1: on photo cut-outs it encodes 2.6× faster than Pillow's default level 6 for
    files about 15 % larger (measured on the 6-megapixel reference image), and a batch spends
    a good part of its time encoding.
    """
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def encode_for(path: Path, image: Image.Image) -> bytes:
    """Bytes for `path`'s extension (PNG, JPEG, WebP, …); alpha is flattened onto white where
    the format has none."""
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise BatchError(f"{path}: cannot write {ext or 'files without an extension'}; use .png, .jpg or .webp")
    if fmt == "PNG":
        return encode_png(image)
    if fmt in ("JPEG", "BMP") and image.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def render(image: Image.Image, mask: Image.Image | None, kinds: Sequence[str],
           options: BatchOptions, portrait_predictor=None, portrait_weights: str | None = None,
           device: str | None = None) -> tuple[dict[str, Image.Image | bytes], dict]:
    """Every requested output of one image from its one mask.

    Parameters:
        image: the upright RGB image.
        mask: its saliency mask ("L"); may be None when only "portrait" is asked for.
        kinds: output names (see OUTPUT_KINDS).
        options: effect settings.
        portrait_predictor: the portrait model's predictor (None: the shared one, made from
            `portrait_weights` and `device`).

    Returns:
        ({"mask": image, …, "boxes.json": bytes}, boxes as a dict or {} without a mask).
    """
    from . import effects

    results: dict[str, Image.Image | bytes] = {}
    boxes_dict: dict = {}
    if mask is not None:
        refined = (effects.refine_mask(mask, options.threshold, options.min_island,
                                       options.fill_holes, options.feather)
                   if options.refines() else mask)
        boxes = effects.bounding_boxes(refined, threshold=options.box_threshold,
                                       min_area=options.min_area)
        boxes_dict = boxes.to_dict()
    for kind in kinds:
        if kind == "mask":
            results[kind] = refined
        elif kind == "cutout":
            results[kind] = effects.cutout(image, refined, decontaminate=options.decontaminate)
        elif kind == "background":
            background = options.background
            if options.background_image:
                from .images import load_image

                background = load_image(options.background_image)
            results[kind] = effects.replace_background(image, refined, background=background,
                                                       fit=options.fit, blur_radius=options.blur_radius)
        elif kind == "boxes":
            results[kind] = effects.draw_boxes(image, boxes, colour=options.box_colour,
                                               thickness=options.thickness, labels=options.labels,
                                               union=options.union)
            results["boxes.json"] = (json.dumps(boxes_dict, indent=2, sort_keys=True) + "\n").encode()
        elif kind == "highlight":
            results[kind] = effects.highlight(image, refined, mode=options.highlight_mode,
                                              strength=options.strength, colour=options.highlight_colour)
        elif kind == "crop":
            results[kind] = effects.crop(image, refined, padding=_padding(options.padding),
                                         aspect=options.aspect, output=options.crop_output,
                                         threshold=options.box_threshold).image
        elif kind == "portrait":
            from . import portrait

            drawing = portrait.draw_portrait(image, predictor=portrait_predictor,
                                             weights=portrait_weights, device=device)
            results[kind] = (portrait.blend_portrait(image, drawing, sigma=options.portrait_sigma,
                                                     alpha=options.portrait_alpha)
                             if options.blend else drawing)
    return results, boxes_dict


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete, never partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stray_temp_files(root: Path) -> int:
    """Delete temporary files that a killed run left under `root`; returns how many."""
    count = 0
    for path in root.rglob(f"*{TMP_MARK}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            count += 1
    return count


# ------------------------------------------------------------------------------ the workers


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, picklable: the same for every image of a run."""

    kinds: tuple[str, ...]
    options: BatchOptions
    out_root: str
    model: str = "u2netp"
    weights: str | None = None
    device: str | None = None
    precision: str = "exact"
    single_output: str | None = None  # one input, one kind: write exactly this path
    settings: str = ""


_WORKER: dict = {}


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


def _init_worker(job: Job, threads: int, parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    _WORKER.clear()
    _WORKER["job"] = job


_PREDICTORS: dict[tuple, object] = {}


def _predictor(job: Job):
    """One predictor per settings per process, without the mask cache: a batch rarely repeats
    an image, and copies of one image must cost a network run each (honest benchmarks)."""
    from .predictor import Predictor

    key = (job.model, job.weights, job.device, job.precision)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(job.model, job.weights, job.device, job.precision, cache_size=0)
    return _PREDICTORS[key]


def _error_row(task: Task, exc: BaseException, started: float) -> dict:
    message = str(exc) if isinstance(exc, U2NetError) else f"{type(exc).__name__}: {exc}"
    return {"input": task.rel, "status": "error", "files": {}, "boxes": None,
            "error": message or type(exc).__name__, "fingerprint": task.fingerprint,
            "seconds": round(time.perf_counter() - started, 4)}


def _finish(task: Task, job: Job, image: Image.Image, mask: Image.Image | None, started: float) -> dict:
    results, boxes = render(image, mask, job.kinds, job.options, device=job.device,
                            portrait_weights=job.weights if job.model == "u2net_portrait" else None)
    out_root = Path(job.out_root)
    files: dict[str, int] = {}
    targets: list[tuple[Path, str, bytes]] = []
    if job.single_output:
        target = Path(job.single_output)
        kind = job.kinds[0]
        targets.append((target, target.name, encode_for(target, results[kind])))
        if "boxes.json" in results:
            j = target.with_suffix(".json")
            targets.append((j, j.name, results["boxes.json"]))
    else:
        for name in output_names(task.stem, job.kinds):
            key = "boxes.json" if name.endswith("_boxes.json") else name[len(task.stem) + 1:-4]
            value = results[key]
            data = value if isinstance(value, bytes) else encode_png(value)
            targets.append((out_root / name, name, data))
    for path, name, data in targets:
        write_atomic(path, data)
        files[name] = len(data)
    for folder in {p.parent for p, _, _ in targets}:
        _fsync_dir(folder)
    return {"input": task.rel, "status": "ok", "files": files, "boxes": boxes, "error": "",
            "fingerprint": task.fingerprint, "seconds": round(time.perf_counter() - started, 4)}


def process_tasks(tasks: Sequence[Task], job: Job | None = None) -> list[dict]:
    """Load, predict (one network call for the group), render and write a group of images.

    A bad image becomes an "error" row and the others go on.
    """
    from .images import load_image

    job = job or _WORKER["job"]
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
            predictor = _predictor(job)
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
            rows[i] = _finish(tasks[i], job, image, mask, started)
        except WeightsError:
            raise  # e.g. the portrait model is missing
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS:
                raise  # the output disk, not this image: stop rather than fail every image
            rows[i] = _error_row(tasks[i], exc, started)
        except Exception as exc:  # noqa: BLE001
            rows[i] = _error_row(tasks[i], exc, started)
    return [rows[i] for i in range(len(tasks))]


def _worker_run(tasks: Sequence[Task]) -> list[dict]:
    return process_tasks(tasks)


# ------------------------------------------------------------------------------ the journal


def read_journal(path: Path) -> tuple[dict[str, dict], int]:
    """The last journal row of each input, and how many runs the journal records.

    A torn last line (a kill mid-append) is cut from the file so the next append starts on a
    fresh line; lines that do not parse are ignored.
    """
    if not path.exists():
        return {}, 0
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "rb+") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
        data = data[:keep]
    last: dict[str, dict] = {}
    runs = 0
    for line in data.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        if row.get("event") == "run":
            runs += 1
        elif row.get("event") == "image" and "input" in row:
            last[row["input"]] = row
    return last, runs


class Journal:
    """Append-only JSON lines, each flushed to disk before the next image is counted done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, row: dict) -> None:
        self._fh.write(json.dumps(row, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _is_finished(row: dict | None, task: Task, job: Job, out_root: Path) -> bool:
    if not row or row.get("status") != "ok" or row.get("fingerprint") != task.fingerprint:
        return False
    if row.get("settings") != job.settings:
        return False
    files = row.get("files") or {}
    if sorted(files) != sorted(output_names(task.stem, job.kinds)):
        return False
    for name, size in files.items():
        path = out_root / name
        try:
            if path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _settings(job: Job) -> str:
    data = {"kinds": list(job.kinds), "model": job.model, "weights": job.weights,
            "precision": job.precision, "options": dataclasses.asdict(job.options)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ the report


@dataclass
class BatchReport:
    """What a batch did.

    Attributes:
        succeeded: images whose outputs are all complete (this run or an earlier one).
        failed: images that could not be processed (see `rows` for why).
        ignored: files that are not images (listed in the manifest, not counted as failures).
        resumed: images finished by an earlier run and skipped this time.
        processed: images that went through the network in this run.
        rows: one manifest row per input, sorted by input path.
        output: the output folder or zip; manifest: the manifest.csv (None without one).
        seconds: wall time of this run.
    """

    succeeded: int = 0
    failed: int = 0
    ignored: int = 0
    resumed: int = 0
    processed: int = 0
    rows: list[dict] = field(default_factory=list)
    output: Path | None = None
    manifest: Path | None = None
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        """One readable paragraph: counts, speed and the first few errors."""
        total = self.succeeded + self.failed
        text = f"{self.succeeded} of {total} images succeeded"
        if self.failed:
            text += f", {self.failed} failed"
        if self.ignored:
            text += f", {self.ignored} other files ignored"
        if self.resumed:
            text += f" ({self.resumed} already done by an earlier run)"
        if self.processed and self.seconds > 0:
            text += f"; {self.processed} processed in {self.seconds:.1f} s ({self.processed / self.seconds:.2f} images/s)"
        text += "."
        errors = [r for r in self.rows if r["status"] == "error"]
        for row in errors[:5]:
            error = row["error"]
            name = Path(row["input"]).name + ": "
            text += f"\n  {row['input']}: {error[len(name):] if error.startswith(name) else error}"
        if len(errors) > 5:
            text += f"\n  … and {len(errors) - 5} more (see the manifest)"
        if self.output and (self.succeeded or self.manifest):
            text += f"\nOutput: {self.output}"
        return text

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _manifest_row(rel: str, row: dict | None, status: str | None = None, error: str = "") -> dict:
    if row is None:
        return {"input": rel, "status": status or "error", "outputs": "", "boxes": "", "error": error}
    return {"input": rel, "status": row["status"], "outputs": ";".join(sorted(row.get("files") or {})),
            "boxes": json.dumps(row["boxes"], sort_keys=True, separators=(",", ":")) if row.get("boxes") else "",
            "error": row.get("error", "")}


def write_manifest(path: Path, rows: Sequence[dict]) -> None:
    """manifest.csv: input, status (ok / error / ignored), outputs (;-separated), boxes (JSON), error."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["input", "status", "outputs", "boxes", "error"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


# ------------------------------------------------------------------------------ running


class _Lock:
    """An exclusive, non-blocking lock on the output folder for the length of a run."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._fh = None

    def __enter__(self) -> _Lock:
        self._fh = open(self.path, "a")  # noqa: SIM115
        try:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock, the rest still holds
            pass
        except OSError:
            self._fh.close()
            raise BatchError(f"another batch is writing to {self.path.parent}; wait for it to "
                             "finish or choose another output") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fh:
            self._fh.close()


def resolve_workers(workers: int | None) -> int:
    """0 or None: one per CPU core; never more than the cores."""
    cores = os.cpu_count() or 1
    if not workers or workers <= 0:
        return cores
    return workers


def run_batch(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
              outputs: Sequence[str] = ("mask",), model: str = "u2netp", weights: str | None = None,
              device: str | None = None, precision: str = "exact", options: dict | BatchOptions | None = None,
              workers: int | None = DEFAULT_WORKERS, batch_size: int = DEFAULT_BATCH_SIZE,
              recursive: bool = False, manifest: bool = True, resume: bool = True,
              progress: bool | Callable[[int, int, str], None] = True,
              archive_limits: ArchiveLimits = DEFAULT_LIMITS, max_images: int | None = None) -> BatchReport:
    """Process many images into an output folder or .zip, resumably.

    Parameters:
        inputs: files, folders, quoted globs, or .zip archives.
        output: a folder (created), a .zip (built from a resumable work folder beside it), or,
            for one input file and one output kind, an image file path (e.g. cut.png).
        outputs: output kinds (OUTPUT_KINDS), all from one network run per image.
        model, weights, device, precision: the predictor to use (see u2net.predictor).
        options: effect settings (BatchOptions or a dict of its fields).
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

    Returns:
        A BatchReport (exit status for a CLI: 0 when report.failed == 0).

    Raises:
        BatchError / ArchiveError: the batch cannot start safely; nothing was written.
    """
    started = time.perf_counter()
    kinds = _check_kinds(outputs)
    opts = options if isinstance(options, BatchOptions) else BatchOptions.from_dict(options)
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
        else:
            names = [out_root / n for t in plan.tasks for n in output_names(t.stem, kinds)]
        check_output_path(out_root, plan, names)
        out_root.mkdir(parents=True, exist_ok=True)

        job = Job(tuple(kinds), opts, str(out_root), model, weights, device, precision,
                  single_output=str(output) if single else None)
        job = dataclasses.replace(job, settings=_settings(job))
        use_journal = manifest and not single
        lock = _Lock(out_root) if use_journal else contextlib.nullcontext()
        with lock:
            if not single:  # never sweep a user's folder that merely holds one output file
                remove_stray_temp_files(out_root)
            count = resolve_workers(workers)
            if not workers and len(plan.tasks) < SMALL_BATCH:
                # Starting processes costs more than it saves for a few images. Decided from
                # the whole plan, not what is left, so a resumed run works the same way.
                count = 1
            report = _run(plan, job, out_root, use_journal, resume and use_journal, count,
                          batch_size, progress)
        report.seconds = time.perf_counter() - started
        if to_zip:
            names = [n for r in report.rows for n in (r["outputs"].split(";") if r["outputs"] else [])]
            write_zip(output, out_root, names + ([MANIFEST] if report.manifest else []))
            shutil.rmtree(out_root, ignore_errors=True)
            report.manifest = None
        report.output = output
        return report


def _run(plan: Plan, job: Job, out_root: Path, use_journal: bool, resume: bool, workers: int,
         batch_size: int, progress: bool | Callable[[int, int, str], None]) -> BatchReport:
    journal_path = out_root / JOURNAL
    previous, runs = read_journal(journal_path) if use_journal else ({}, 0)
    done = {t.rel for t in plan.tasks if resume and _is_finished(previous.get(t.rel), t, job, out_root)}
    todo = [t for t in plan.tasks if t.rel not in done]
    report = BatchReport(resumed=len(done), ignored=len(plan.ignored))
    results: dict[str, dict] = {}
    journal = Journal(journal_path) if use_journal else None
    run_no = runs + 1
    if journal:
        journal.append({"event": "run", "run": run_no, "pid": os.getpid(), "total": len(plan.tasks),
                        "todo": len(todo), "settings": job.settings, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    bar = None
    if progress is True and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="u2net batch", file=sys.stderr,
                   dynamic_ncols=True, smoothing=0.1)
    callback = progress if callable(progress) else None

    def record(rows: list[dict]) -> None:
        for row in rows:
            row.update(event="image", run=run_no, settings=job.settings)
            if journal:
                journal.append(row)
            results[row["input"]] = row
            report.processed += 1
            if bar:
                bar.update(1)
            if callback:
                callback(report.processed, len(todo), row["input"])

    groups = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    try:
        if workers <= 1:
            for group in groups:
                record(process_tasks(group, job))
        elif groups:
            # Worker processes even for one group: the same thread count every run keeps the
            # bytes of a resumed run equal to those of an uninterrupted one.
            _run_pool(groups, job, workers, record)
    finally:
        if bar:
            bar.close()
        if journal:
            journal.close()

    rows = []
    for task in plan.tasks:
        row = results.get(task.rel) or previous.get(task.rel)
        rows.append(_manifest_row(task.rel, row))
    rows += [_manifest_row(rel, None, "ignored", why) for rel, why in plan.ignored]
    rows += [_manifest_row(name, None, "error", why) for name, why in plan.rejected]
    rows.sort(key=lambda r: r["input"])
    report.rows = rows
    report.succeeded = sum(r["status"] == "ok" for r in rows)
    report.failed = sum(r["status"] == "error" for r in rows)
    if use_journal:
        write_manifest(out_root / MANIFEST, rows)
        report.manifest = out_root / MANIFEST
    return report


def _run_pool(groups: list[list[Task]], job: Job, workers: int,
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
    executor = ProcessPoolExecutor(count, mp_context=ctx, initializer=_init_worker,
                                   initargs=(job, threads, os.getpid()))
    pending: set = set()
    queue = iter(groups)
    try:
        for group in queue:
            pending.add(executor.submit(_worker_run, group))
            if len(pending) >= 2 * count:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                record(future.result())
                group = next(queue, None)
                if group is not None:
                    pending.add(executor.submit(_worker_run, group))
    except BrokenProcessPool:
        raise BatchError("a worker process died (out of memory or killed); finished images are "
                         "saved: run the same command again to resume") from None
    finally:
        # Ctrl-C or an error: stop the workers now; their unfinished outputs are temp files.
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ the app


def batch_to_zip(files: Sequence[Path], work_dir: Path, outputs: Sequence[str], model: str = "u2netp",
                 options: dict | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[Path, BatchReport]:
    """The app's batch tab: uploaded images and/or .zip archives in, one .zip of results out.

    Parameters:
        files: uploaded files: images or zips of images (at most MAX_UPLOAD_FILES files and
            MAX_UPLOAD_BYTES bytes together; each zip within archives.DEFAULT_LIMITS).
        work_dir: a folder this call may write in (the returned zip lives there).
        outputs: output kinds from APP_OUTPUT_KINDS.
        model: predictor model name.
        options: effect settings, a dict of BatchOptions fields.
        progress: callback(done, total, input name) after each image.

    Returns:
        (path of the zip: the outputs in the uploaded folder structure plus manifest.csv,
        the BatchReport with .succeeded, .failed and .summary).

    Raises:
        BatchError: too many files, too many bytes, no images, unknown output or option.
        ArchiveError: a zip was refused (zip slip, absolute path, link, zip bomb, …).
    """
    kinds = _check_kinds(outputs, APP_OUTPUT_KINDS)
    files = [Path(f) for f in files]
    if not files:
        raise BatchError("no files given; add images or .zip archives of images")
    if len(files) > MAX_UPLOAD_FILES:
        raise BatchError(f"{len(files):,} files, over the limit of {MAX_UPLOAD_FILES:,}; "
                         "put them in a .zip or split the batch")
    total = sum(f.stat().st_size for f in files if f.is_file())
    if total > MAX_UPLOAD_BYTES:
        raise BatchError(f"the files hold {total:,} bytes, over the limit of {MAX_UPLOAD_BYTES:,}; "
                         "split the batch")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="batch-", dir=work_dir))
    inputs = run_dir / "inputs"
    inputs.mkdir()
    zips = [f for f in files if f.suffix.lower() == ".zip"]
    for f in files:
        if f in zips:
            # One archive keeps its own structure; several each get a folder named after them.
            dest = inputs if len(files) == 1 else _unique(inputs / f.stem)
            extract_zip(f, dest)
        elif f.is_file():
            shutil.copyfile(f, _unique(inputs / f.name))
        else:
            raise BatchError(f"{f.name}: no such file")
    archive = run_dir / "u2net-batch.zip"
    report = run_batch([inputs], archive, kinds, model=model, options=options, workers=1,
                       recursive=True, progress=progress or False, max_images=MAX_BATCH_IMAGES)
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

"""Which images a batch reads and where their outputs go: files, folders, quoted globs and
.zip archives expanded into a sorted list of tasks, with output stems that never collide,
and the checks that keep outputs from overwriting (or being read back as) inputs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .archives import DEFAULT_LIMITS, ArchiveLimits, extract_zip
from .errors import BatchError


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions Pillow can open here (".jpg", ".jpeg", ".webp", ".tiff", …)."""
    from . import images  # noqa: F401 - registers optional formats (HEIC via pillow-heif)

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


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

    return Plan(with_stems(tasks), sorted(ignored), folders, {Path(f).resolve() for f, _, _ in found},
                patterns, rejected)


def with_stems(tasks: Iterable[Task]) -> list[Task]:
    """The tasks sorted by path, each with its output stem: "sub/photo"; when two inputs in one
    folder share a stem (photo.jpg and photo.png) both keep their extension in it
    ("sub/photo_jpg") so nothing collides."""
    tasks = sorted(tasks, key=lambda t: t.rel)
    count: dict[str, int] = {}
    for t in tasks:
        key = Path(t.rel).with_suffix("").as_posix().casefold()
        count[key] = count.get(key, 0) + 1
    named = []
    for t in tasks:
        base = Path(t.rel).with_suffix("").as_posix()
        if count[base.casefold()] > 1:
            base = f"{base}_{Path(t.rel).suffix.lstrip('.').lower()}"
        named.append(dataclasses.replace(t, stem=base))
    return named


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

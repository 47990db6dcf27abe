"""Reading zip archives that strangers upload, safely, and writing reproducible ones.

An archive is checked as a whole before a single byte is written: one bad entry (a path that
climbs out with `..`, an absolute path, a link, a password, an entry that expands far beyond
its compressed size, entries that overlap, too many entries or too many bytes) refuses the
archive with a message that names the entry and the rule. Extraction then streams each entry
and stops at the declared size, so a header that lies cannot write more than was checked.
"""

from __future__ import annotations

import os
import re
import stat
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import U2NetError


class ArchiveError(U2NetError, ValueError):
    """The archive is unreadable or breaks a safety rule; nothing was extracted."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Public limits on what one archive may expand to.

    Attributes:
        max_entries: files (and folders) in the archive.
        max_total_bytes: sum of the uncompressed sizes.
        max_entry_bytes: uncompressed size of any one entry.
        max_ratio: uncompressed / compressed size of an entry larger than `ratio_floor` bytes
            (images barely compress; a zip bomb expands about 1000:1).
        ratio_floor: entries up to this size are not ratio-checked (tiny files compress well).
    """

    max_entries: int = 10_000
    max_total_bytes: int = 2 * 1024**3
    max_entry_bytes: int = 512 * 1024**2
    max_ratio: float = 100.0
    ratio_floor: int = 1024**2


DEFAULT_LIMITS = ArchiveLimits()

# Junk that macOS and Windows add to archives: never user images.
_JUNK = re.compile(r"(^|/)(__MACOSX/|\._[^/]*$|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.I)
_DRIVE = re.compile(r"^[A-Za-z]:")
# Fixed timestamp for written entries: the same outputs always give the same zip bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SafeEntry:
    """One checked archive member: its original name and the relative path it extracts to."""

    info: zipfile.ZipInfo
    path: PurePosixPath  # relative, no "..", no drive, no leading "/"
    is_dir: bool


def _safe_name(name: str) -> PurePosixPath:
    if "\x00" in name:
        raise ArchiveError(f"archive entry {name!r} has a NUL character in its name; refused")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise ArchiveError(f"archive entry {name!r} has an absolute path; refused "
                           "(entries must be relative to the archive)")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive entry {name!r} climbs out of the archive folder with '..' "
                           "(zip slip); refused")
    if not parts:
        raise ArchiveError(f"archive entry {name!r} has an empty name; refused")
    return PurePosixPath(*parts)


def _file_type(info: zipfile.ZipInfo) -> int:
    """The Unix file-type bits of an entry (0 when the archive was made elsewhere)."""
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0


def inspect_zip(path: str | os.PathLike, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[SafeEntry]:
    """Check every entry of a zip against the safety rules without extracting anything.

    Parameters:
        path: the zip file.
        limits: the limits to enforce (DEFAULT_LIMITS unless a caller tightens them).

    Returns:
        The entries worth extracting (junk such as __MACOSX/ left out), in archive order.

    Raises:
        ArchiveError: not a zip, damaged, or an entry breaks a rule (the message says which).
    """
    name = Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{name}: not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise ArchiveError(f"{name}: cannot read the archive ({exc})") from None

    if len(infos) > limits.max_entries:
        raise ArchiveError(f"{name}: {len(infos):,} entries, over the limit of "
                           f"{limits.max_entries:,}; split it into smaller archives")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise ArchiveError(f"{name}: expands to {total:,} bytes, over the limit of "
                           f"{limits.max_total_bytes:,}; split it into smaller archives")

    entries: list[SafeEntry] = []
    seen: dict[str, str] = {}
    for info in infos:
        rel = _safe_name(info.filename)
        kind = _file_type(info)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"archive entry {info.filename!r} is a symbolic link; refused "
                               "(links could point outside the archive)")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"archive entry {info.filename!r} is not a regular file; refused")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"archive entry {info.filename!r} is password-protected; "
                               "unpack it yourself and upload the images")
        if info.file_size > limits.max_entry_bytes:
            raise ArchiveError(f"archive entry {info.filename!r} expands to {info.file_size:,} "
                               f"bytes, over the limit of {limits.max_entry_bytes:,} per file")
        if (info.file_size > limits.ratio_floor
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ArchiveError(f"archive entry {info.filename!r} expands {ratio:,.0f}× "
                               f"(limit {limits.max_ratio:g}×): this looks like a zip bomb; refused")
        key = rel.as_posix().casefold()  # a.png and A.PNG would collide on some file systems
        if key in seen:
            raise ArchiveError(f"archive entries {seen[key]!r} and {info.filename!r} extract to "
                               "the same file; refused")
        seen[key] = info.filename
        is_dir = info.is_dir() or kind == stat.S_IFDIR
        if not _JUNK.search(rel.as_posix() + ("/" if is_dir else "")):
            entries.append(SafeEntry(info, rel, is_dir))

    # Entries that share compressed bytes are the trick of non-recursive zip bombs.
    spans = sorted((i.header_offset, i.header_offset + i.compress_size, i.filename)
                   for i in infos if not i.is_dir())
    for (start_a, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a or start_b == start_a:
            raise ArchiveError(f"archive entries {name_a!r} and {name_b!r} overlap: this looks "
                               "like a zip bomb; refused")
    return entries


def extract_zip(path: str | os.PathLike, dest: str | os.PathLike,
                limits: ArchiveLimits = DEFAULT_LIMITS) -> list[Path]:
    """Check a zip (see `inspect_zip`), then extract its files under `dest`.

    Parameters:
        path: the zip file.
        dest: folder to extract into (created; existing files with the same names are refused).
        limits: the limits to enforce.

    Returns:
        The extracted files (not folders), in archive order. Each keeps the entry's timestamp,
        so re-extracting the same archive gives files that look unchanged.

    Raises:
        ArchiveError: the archive was refused or is damaged; files written so far are removed.
    """
    entries = inspect_zip(path, limits)
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    root_resolved = root.resolve()
    written: list[Path] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for entry in entries:
                target = root.joinpath(*entry.path.parts)
                # Belt and braces: the normalised name cannot leave `dest`, and dest is ours.
                if not target.resolve().is_relative_to(root_resolved):
                    raise ArchiveError(f"archive entry {entry.info.filename!r} leaves the "
                                       "extraction folder; refused")
                if entry.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    raise ArchiveError(f"{target} already exists; extract into an empty folder")
                written.append(target)  # before writing: a failure part-way removes it too
                _copy_entry(zf, entry.info, target, limits)
                stamp = _timestamp(entry.info)
                os.utime(target, (stamp, stamp))
    except ArchiveError:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC errors, truncation
        for p in written:
            p.unlink(missing_ok=True)
        raise ArchiveError(f"{Path(path).name}: the archive is damaged ({exc})") from None
    return written


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                limits: ArchiveLimits) -> None:
    budget = min(info.file_size, limits.max_entry_bytes)
    size = 0
    # "x": never overwrite; the folder is fresh and names were checked for duplicates.
    with zf.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(1024 * 1024):
            size += len(chunk)
            if size > budget:
                raise ArchiveError(f"archive entry {info.filename!r} holds more data than its "
                                   "header says; refused")
            out.write(chunk)


def _timestamp(info: zipfile.ZipInfo) -> float:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return 315532800.0  # 1980-01-01, the zip epoch


def is_zip(path: str | os.PathLike) -> bool:
    """True when `path` is a file that looks like a zip archive (by content, not by name)."""
    p = Path(path)
    return p.is_file() and zipfile.is_zipfile(p)


def write_zip(zip_path: str | os.PathLike, root: str | os.PathLike, names: Iterable[str]) -> Path:
    """Write a reproducible zip: the same files give the same bytes.

    Entries are stored in sorted order with a fixed timestamp and permissions; PNGs and other
    compressed formats are stored without recompression, text is deflated. The zip is written
    to a temporary name beside `zip_path` and renamed when complete.

    Parameters:
        zip_path: the archive to write.
        root: folder the names are relative to.
        names: relative POSIX paths of the files to include.

    Returns:
        `zip_path` as a Path.
    """
    zip_path = Path(zip_path)
    tmp = zip_path.with_name(f".{zip_path.name}.u2net-tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name in sorted(set(names)):
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3
                stored = name.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".zip"))
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                zf.writestr(info, Path(root, name).read_bytes())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, zip_path)
    finally:
        tmp.unlink(missing_ok=True)
    return zip_path

"""How a batch loses nothing: atomic writes, the journal that says which images are done, the
manifest a person reads, the report, and the lock that keeps two runs apart.

- every output is written to a temporary name in its own folder, flushed to disk, then
  renamed (`os.replace`), so a file with the final name is always complete;
- after all outputs of an image are in place, one line is appended to the journal
  (`manifest.jsonl`) and flushed to disk; an image is "finished" when the journal says so AND
  every output it lists exists with the recorded size AND the input and the settings are
  unchanged; a rerun skips finished images and redoes the rest;
- temporary files left by a killed run are removed by the next run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BatchError
from .outputs import output_names
from .planning import Task

JOURNAL = "manifest.jsonl"
MANIFEST = "manifest.csv"
TMP_MARK = ".u2net-tmp-"
LOCK = ".u2net-batch.lock"


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


def fsync_dir(folder: Path) -> None:
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


def is_finished(row: dict | None, task: Task, kinds: Sequence[str], settings_hash: str,
                out_root: Path) -> bool:
    """Whether `task` was finished by an earlier run with the same settings: the journal says
    "ok", the input is unchanged and every output it lists exists with the recorded size."""
    if not row or row.get("status") != "ok" or row.get("fingerprint") != task.fingerprint:
        return False
    if row.get("settings") != settings_hash:
        return False
    files = row.get("files") or {}
    if sorted(files) != sorted(output_names(task.stem, kinds)):
        return False
    for name, size in files.items():
        path = out_root / name
        try:
            if path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def settings_hash(settings: dict) -> str:
    """A short hash of a run's settings (kinds, model, precision, options): a journal row made
    with other settings does not count as finished."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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


def manifest_row(rel: str, row: dict | None, status: str | None = None, error: str = "") -> dict:
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


# ------------------------------------------------------------------------------ the lock


class OutputLock:
    """An exclusive, non-blocking lock on the output folder for the length of a run."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._fh = None

    def __enter__(self) -> OutputLock:
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

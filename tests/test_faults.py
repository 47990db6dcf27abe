"""Faults the product must survive with a clear message, nothing corrupt left behind, and a
rerun that recovers: the Hub unreachable, a download cut half-way, a file with the wrong
checksum, a full or read-only output disk during a batch, Ctrl-C during a batch — and the
security rule that weights never execute pickled code.

Covered elsewhere, not repeated here: checksum mismatch and a corrupted cache file at the
weights level (tests/test_weights.py), SIGKILL and a byte-identical resume (tests/test_batch.py),
hostile archives — zip slip, absolute paths, links, entry count, expansion ratio, overlapping
entries (tests/test_archives.py, and tests/test_batch.py for the same refusals end to end).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hub_server import FakeHub, go_online
from PIL import Image

from u2net.errors import WeightsError

ROOT = Path(__file__).resolve().parent.parent
REMBG = "tomjackson2023/rembg"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
TMP_MARK = ".u2net-tmp-"  # u2net.batch's temporary-file mark


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cache_files(cache: Path) -> list[Path]:
    """Every file in the Hub cache that could be taken for weights (blobs and snapshot entries)."""
    return [p for p in cache.rglob("*") if (p.is_file() or p.is_symlink())
            and ("blobs" in p.parts or "snapshots" in p.parts)]


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    child = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "u2net", *args], cwd=ROOT, env=child,
                          capture_output=True, text=True, timeout=timeout)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_photos(folder: Path, count: int, size: tuple[int, int] = (96, 72), seed: int = 0) -> list[Path]:
    """Small noisy pictures (their cut-outs compress badly, so a small disk fills up fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
        arr[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = (230, 40, 40)
        path = folder / f"photo{i:02d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def assert_outputs_whole(out: Path) -> list[Path]:
    """Every file with a final name is a complete, decodable PNG; no temporary file is left."""
    leftovers = [p for p in out.rglob("*") if TMP_MARK in p.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    pngs = sorted(out.rglob("*.png"))
    for path in pngs:
        with Image.open(path) as im:
            im.load()  # a half-written PNG fails here
    return pngs


# ------------------------------------------------------------------------------ the Hub


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """Online (HF_HUB_OFFLINE=0), a private Hub cache, an empty U2NET_HOME, no overrides."""
    return go_online(monkeypatch, tmp_path)


def test_hub_unreachable_gives_one_clear_error_and_no_output(hub_env, tmp_path):
    """The CLI with no weights anywhere and the Hub's address refusing connections: exit 2,
    one message naming every place tried and how to get the file by hand; nothing written."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    photo = write_photos(tmp_path / "in", 1)[0]
    out = tmp_path / "cut.png"
    proc = run_cli("cutout", str(photo), "-o", str(out), "-q", "--workers", "1",
                   env={"HF_ENDPOINT": endpoint})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr[proc.stderr.index("no weights for model 'u2netp'"):]
    assert str(hub_env["home"]) in message  # U2NET_HOME, looked at first
    assert f"{endpoint}/{REMBG}/resolve/main/u2netp.onnx" in message  # then the Hub, by address
    assert "could not be reached" in message and "To supply the file by hand" in message
    assert U2NETP_SHA256 in message  # what the hand-fetched file must be
    assert not out.exists()
    assert cache_files(hub_env["cache"]) == []


class CuttingHub(FakeHub):
    """tests/hub_server.FakeHub whose file server announces the whole file, sends half of it
    and hangs up — for as long as `cut` is true."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = True
        self.cuts = 0

    def _handler(self, role: str):
        base = super()._handler(role)
        if role != "cdn":
            return base
        hub = self

        class Cutting(base):
            def _send(self, status: int, headers: dict[str, str], data: bytes = b"") -> None:
                if not (hub.cut and status == 200 and self._with_body and data):
                    return super()._send(status, headers, data)
                hub.cuts += 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        return Cutting


@contextlib.contextmanager
def serving(hub: FakeHub, monkeypatch) -> Iterator[FakeHub]:
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    try:
        yield hub
    finally:
        hub.stop()


def test_download_cut_half_way_leaves_nothing_and_a_rerun_recovers(hub_env, weights_dir, monkeypatch):
    from u2net.predictor import Predictor

    with serving(CuttingHub(), monkeypatch) as hub:
        hub.add_file(REMBG, "u2netp.onnx", weights_dir / "u2netp.onnx")
        with pytest.raises(WeightsError) as info:
            Predictor("u2netp", device="cpu").predict(Image.new("RGB", (32, 32), "red"))
        message = str(info.value)
        assert hub.cuts >= 1
        assert f"{REMBG} / u2netp.onnx" in message, message
        assert re.search(r"closed connection|incomplete|complete message body", message, re.I), message
        assert "To supply the file by hand" in message
        assert cache_files(hub_env["cache"]) == [], "a partial download was left where it could be used"

        hub.cut = False  # the connection is back: the same call now works
        predictor = Predictor("u2netp", device="cpu")
        mask = predictor.predict(Image.new("RGB", (32, 32), "red"))
        assert mask.size == (32, 32)
        blobs = [p for p in cache_files(hub_env["cache"]) if "blobs" in p.parts]
        assert len(blobs) == 1 and sha256(blobs[0]) == U2NETP_SHA256


def test_wrong_checksum_through_the_predictor_leaves_a_clean_cache(hub_env, weights_dir, monkeypatch):
    """The weights tests prove the refusal in resolve_weights; here the user-level path: the
    predictor refuses the file, the cache holds nothing, and the right file later just works."""
    from u2net.predictor import Predictor

    data = bytearray((weights_dir / "u2netp.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: a damaged copy on a mirror
    with serving(FakeHub(), monkeypatch) as hub:
        hub.add_file(REMBG, "u2netp.onnx", bytes(data))
        with pytest.raises(WeightsError, match="corrupt or not the expected file"):
            Predictor("u2netp", device="cpu").predict(Image.new("RGB", (32, 32), "red"))
        assert cache_files(hub_env["cache"]) == []
        hub.add_file(REMBG, "u2netp.onnx", weights_dir / "u2netp.onnx")
        assert Predictor("u2netp", device="cpu").predict(Image.new("RGB", (32, 32), "red")).size == (32, 32)


# ------------------------------------------------------------------------------ the output disk


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` mounted at `path` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the tests with sudo)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


BATCH_ENV = {"HF_HUB_OFFLINE": "1"}



def test_full_disk_during_a_batch(weights_dir, tmp_path):
    """The output disk fills up part-way: the run ends with a clear message (no traceback),
    every output on disk is whole, no temporary file is left; with space again, the same
    command finishes the job."""
    photos = write_photos(tmp_path / "in", 8)
    with small_disk(tmp_path / "out", 40) as out:
        args = ("batch", str(photos[0].parent), "-o", str(out), "--outputs", "cutout,mask", "-q",
                "--workers", "1")
        proc = run_cli(*args, env=BATCH_ENV)
        assert proc.returncode != 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert re.search(r"no space left on device", proc.stderr, re.I), proc.stderr[-2000:]
        assert_outputs_whole(out)

        remount(out, "size=8m")
        again = run_cli(*args, env=BATCH_ENV)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(assert_outputs_whole(out)) == 2 * len(photos)


def test_read_only_output_disk(weights_dir, tmp_path):
    """A read-only output folder: a clear message, nothing written; once writable, it works."""
    photos = write_photos(tmp_path / "in", 2)
    with small_disk(tmp_path / "out", 1024) as out:
        remount(out, "ro")
        args = ("batch", str(photos[0].parent), "-o", str(out), "--outputs", "mask", "-q", "--workers", "1")
        proc = run_cli(*args, env=BATCH_ENV)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert re.search(r"read-only file system", proc.stderr, re.I), proc.stderr[-2000:]
        assert list(out.iterdir()) == []

        remount(out, "rw")
        again = run_cli(*args, env=BATCH_ENV)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(assert_outputs_whole(out)) == len(photos)


# ------------------------------------------------------------------------------ Ctrl-C


def journal_images(out: Path) -> int:
    journal = out / "manifest.jsonl"
    if not journal.exists():
        return 0
    return sum('"event": "image"' in line for line in journal.read_text().splitlines())


def test_ctrl_c_during_a_batch_then_the_same_command_resumes(weights_dir, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it, workers included)
    part-way through: exit 130 with a message saying how to resume, only whole outputs on
    disk; the same command then finishes, redoing only what was not done."""
    photos = write_photos(tmp_path / "in", 12, seed=1)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "u2net", "batch", str(photos[0].parent), "-o", str(out),
            "--outputs", "cutout,mask", "-q", "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **BATCH_ENV)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while journal_images(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the batch finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "interrupted" in stderr and "run the same command again to resume" in stderr, stderr[-2000:]
    done_before = journal_images(out)
    assert 2 <= done_before < len(photos)
    assert_outputs_whole(out)

    again = run_cli(*args[3:], env=BATCH_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(assert_outputs_whole(out)) == 2 * len(photos)
    # Only the unfinished images went through the network again.
    assert journal_images(out) <= len(photos) + 2


# ------------------------------------------------------------------------------ security


class _Payload:
    """Unpickling this calls open(marker, "w"): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_never_execute_pickled_code(tmp_path, monkeypatch):
    """A .pth that runs code when unpickled is refused (torch.load weights_only=True), through
    the model loader and through the predictor with the file given as weights; the code never
    ran."""
    import torch

    from u2net.model import load_model
    from u2net.predictor import Predictor

    marker = tmp_path / "pwned"
    evil = tmp_path / "u2netp_evil.pth"
    torch.save({"stage1.rebnconvin.conv_s1.weight": _Payload(marker)}, evil)
    with pytest.raises(WeightsError, match="never pickled code"):
        load_model("u2netp", evil)
    with pytest.raises(WeightsError):
        Predictor("u2netp", weights=evil, device="cpu").predict(Image.new("RGB", (16, 16)))
    monkeypatch.setenv("U2NET_U2NETP_WEIGHTS", str(evil))
    proc = run_cli("mask", str(write_photos(tmp_path / "in", 1)[0]), "-o", str(tmp_path / "m.png"),
                   "-q", "--workers", "1")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists(), "unpickling the weights ran code"

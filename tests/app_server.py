"""Start the real app (`python app.py`) in a subprocess on a free loopback port, for tests.

    from app_server import running_app   # tests/ is on sys.path under pytest

    with running_app() as url:                 # waits until the page is served
        client = gradio_client.Client(url)

Other test modules use it as a module-scoped fixture:

    @pytest.fixture(scope="module")
    def app_url(weights_dir):
        with running_app(env={"U2NET_HOME": str(weights_dir)}) as url:
            _LOGS[url] = log.name
        yield url

The child gets the weights from ../shared/weights (U2NET_HOME, unless `env` says otherwise),
HF_HUB_OFFLINE=1 and no analytics. Its output goes to a log file that is printed when the
server does not come up, or dies, so a failing start says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights"
# Importing torch + gradio on a busy two-core machine can take a while.
START_TIMEOUT_S = float(os.environ.get("U2NET_APP_START_TIMEOUT", 300))
_LOGS: dict[str, str] = {}  # url -> log file of the app serving it


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/config", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    child = dict(os.environ)
    if SHARED_WEIGHTS.exists():
        child.setdefault("U2NET_HOME", str(SHARED_WEIGHTS))
    child.update({
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    })
    # The parent may choose a host; the child must not inherit one that is not loopback.
    for key in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "GRADIO_SHARE"):
        child.pop(key, None)
    child.update(env or {})
    return child


@contextlib.contextmanager
def running_app(env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                timeout: float = START_TIMEOUT_S) -> Iterator[str]:
    """Run `python app.py` on a free 127.0.0.1 port until the `with` block ends.

    Parameters:
        env: extra environment for the app (e.g. U2NET_HOME, U2NET_U2NET_PORTRAIT_WEIGHTS).
        args: extra command-line flags for app.py.
        timeout: seconds to wait for the server to answer.
    Yields:
        The base URL, e.g. "http://127.0.0.1:43121".
    Raises:
        RuntimeError with the app's log when it exits or does not answer in time.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="u2net-app-", suffix=".log", delete=False)
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _serves(url):
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode} before serving:\n{_tail(log.name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not answer on {url} within {timeout:.0f} s:\n{_tail(log.name)}")
            time.sleep(0.5)
        _LOGS[url] = log.name
        yield url
        if proc.poll() is not None:
            raise RuntimeError(f"app.py died while in use (exit {proc.returncode}):\n{_tail(log.name)}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _LOGS.pop(url, None)
        log.close()
        os.unlink(log.name)


def server_log(url: str) -> str:
    """The end of the log of the app serving `url` (for assertion messages)."""
    return _tail(_LOGS[url]) if url in _LOGS else "(no log)"


def _tail(path: str, chars: int = 6000) -> str:
    text = Path(path).read_text(errors="replace")
    return text[-chars:]


def random_portrait_weights(path: Path, seed: int = 0) -> Path:
    """A U²-Net with random weights, saved as the official training checkpoint would be:
    every REBNCONV as conv_s1 + bn_s1 (identity statistics), plus the side outputs.

    The real u2net_portrait.pth is not in ../shared; point the app at this file with
    U2NET_U2NET_PORTRAIT_WEIGHTS to exercise the portrait plumbing (the drawing is noise).
    """
    import torch

    from u2net.model import build_model

    # Non-trivial BatchNorm statistics, so loading must really fold them.
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    state = {}
    for key, value in build_model("u2net").state_dict().items():
        state[key] = value.clone()
        if key.endswith(".conv_s1.bias"):
            bn = key[: -len("conv_s1.bias")] + "bn_s1"
            n = value.shape[0]
            state.update({
                f"{bn}.weight": 0.5 + torch.rand(n, generator=gen),
                f"{bn}.bias": 0.1 * torch.randn(n, generator=gen),
                f"{bn}.running_mean": 0.1 * torch.randn(n, generator=gen),
                f"{bn}.running_var": 0.5 + torch.rand(n, generator=gen),
                f"{bn}.num_batches_tracked": torch.tensor(100),
            })
    torch.save(state, path)
    return path


def upload(url: str, path: Path, filename: str | None = None) -> str:
    """Upload a file the way the page does (under `filename`, default its own name); returns
    the server-side path Gradio gave it."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename or path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)[0]


def tiny_clip(path: Path, width: int = 96, height: int = 64, frames: int = 4) -> Path:
    """A short H.264 clip made with code: a bright block moving over a grey ground."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = np.full((height, width, 3), 90, np.uint8)
            x = width // 10 + i * width // 12
            frame[height // 4:3 * height // 4, x:x + width // 3] = (220, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path

"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for tests (no mock objects).

It answers ``huggingface_hub.hf_hub_download`` the way huggingface.co does:

- ``HEAD``/``GET {endpoint}/[spaces/|datasets/]{repo_id}/resolve/{revision}/{filename}``
  - a large ("LFS") file: ``302`` to a second server on another port (the "CDN"), with
    ``X-Repo-Commit``, ``X-Linked-Etag`` (the file's sha256), ``X-Linked-Size`` and ``ETag``
    (the git blob id); the client then downloads from the CDN address;
  - a small file: ``200`` with the bytes, ``ETag``, ``X-Repo-Commit`` and ``Content-Length``;
  - ``404`` with ``X-Error-Code: RepoNotFound``, ``EntryNotFound`` or ``RevisionNotFound``.
- ``GET {cdn}/lfs/{sha256}``: the bytes.

Every request is recorded in ``requests`` so a test can prove that no network was used.

    with FakeHub() as hub:
        hub.add_file("tomjackson2023/rembg", "u2netp.onnx", Path(".../u2netp.onnx"))
        os.environ["HF_ENDPOINT"] = hub.endpoint
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_PREFIXES = {"spaces": "space", "datasets": "dataset"}


@dataclass
class _File:
    data: bytes
    sha256: str
    git_oid: str
    lfs: bool


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Two HTTP servers on 127.0.0.1 (random free ports): the Hub API and its file CDN."""

    def __init__(self) -> None:
        self._repos: dict[tuple[str, str], dict[str, _File]] = {}
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, "hub" or "cdn" + path)
        self._servers: list[ThreadingHTTPServer] = []
        self._ports: tuple[int, int] = (0, 0)

    # ---- content

    def add_file(self, repo_id: str, filename: str, content: bytes | Path, repo_type: str = "model",
                 lfs: bool = True) -> None:
        """Serve ``content`` (bytes, or the bytes of a file) as ``filename`` in ``repo_id``."""
        data = content.read_bytes() if isinstance(content, Path) else bytes(content)
        f = _File(data, hashlib.sha256(data).hexdigest(), _git_blob_id(data), lfs)
        with self._lock:
            self._repos.setdefault((repo_type, repo_id), {})[filename] = f
            self._blobs[f.sha256] = data

    def add_repo(self, repo_id: str, repo_type: str = "model") -> None:
        """An existing repository with no files (every file answers EntryNotFound)."""
        with self._lock:
            self._repos.setdefault((repo_type, repo_id), {})

    @staticmethod
    def commit(repo_type: str, repo_id: str) -> str:
        """The (fixed) commit hash the fake repository reports."""
        return hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()

    # ---- life cycle

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports[0]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._ports[1]}"

    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"fake-{role}", daemon=True).start()
            self._servers.append(server)
        self._ports = (self._servers[0].server_address[1], self._servers[1].server_address[1])
        return self

    def stop(self) -> None:
        """Shut both servers down; later connections are refused, like a machine with no network."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- HTTP

    def _handler(self, role: str):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                self._with_body = body  # a HEAD answer carries headers only
                with hub._lock:
                    hub.requests.append((self.command, role + self.path))
                if role == "cdn":
                    self._cdn()
                else:
                    self._resolve()

            def _send(self, status: int, headers: dict[str, str], data: bytes = b"") -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self._with_body and data:
                    self.wfile.write(data)

            def _not_found(self, code: str, headers: dict[str, str] | None = None) -> None:
                self._send(404, {"X-Error-Code": code, "X-Error-Message": code, **(headers or {})},
                           f"{code}\n".encode())

            def _cdn(self) -> None:
                parts = urlsplit(self.path).path.split("/")
                data = hub._blobs.get(parts[-1]) if len(parts) == 3 and parts[1] == "lfs" else None
                if data is None:
                    self._send(404, {}, b"no such blob\n")
                    return
                self._send(200, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                                 "ETag": f'"{parts[-1]}"'}, data)

            def _resolve(self) -> None:
                path = unquote(urlsplit(self.path).path).lstrip("/")
                if "/resolve/" not in path:
                    self._send(404, {}, b"not found\n")
                    return
                left, right = path.split("/resolve/", 1)
                head, _, rest = left.partition("/")
                repo_type = _PREFIXES.get(head, "model")
                repo_id = rest if head in _PREFIXES else left
                revision, _, filename = right.partition("/")
                files = hub._repos.get((repo_type, repo_id))
                if files is None:
                    self._not_found("RepoNotFound")
                    return
                commit = hub.commit(repo_type, repo_id)
                if revision not in ("main", commit):
                    self._not_found("RevisionNotFound")
                    return
                f = files.get(filename)
                if f is None:
                    self._not_found("EntryNotFound", {"X-Repo-Commit": commit})
                    return
                common = {"X-Repo-Commit": commit, "ETag": f'"{f.git_oid}"', "Accept-Ranges": "bytes"}
                if f.lfs:
                    self._send(302, {**common, "Location": f"{hub.cdn}/lfs/{f.sha256}",
                                     "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))})
                else:
                    self._send(200, {**common, "Content-Type": "application/octet-stream"}, f.data)

        return Handler


def go_online(monkeypatch, tmp_path: Path) -> dict:
    """Online (HF_HUB_OFFLINE=0), a private Hub cache, an empty U2NET_HOME, no weight overrides.

    Returns {"cache": the Hub cache folder, "home": the empty U2NET_HOME}.
    """
    import os

    from huggingface_hub import constants as hf_constants

    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; conftest may have set it to 1 first.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "U2NET_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("U2NET_U2NET"):
            monkeypatch.delenv(var)
    home = tmp_path / "u2net_home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    return {"cache": cache, "home": home}

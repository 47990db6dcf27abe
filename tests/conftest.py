"""Shared test fixtures: the real weights and reference images from ../shared, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WEIGHTS_DIR = SHARED / "weights"
REFERENCE_DIR = SHARED / "reference"
ARTIFACTS = ROOT / "artifacts"  # outputs saved for a person to look at (git-ignored)

# Tests never reach the network: the real Hub is off, the cache is private to this run.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: real weights/reference images live in ../shared "
                    "in this workplace (set U2NET_HOME to a folder with u2netp.onnx and u2net.onnx)")
    return path


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """Folder holding the real u2net.onnx and u2netp.onnx (used as U2NET_HOME)."""
    home = os.environ.get("U2NET_TEST_WEIGHTS")
    return _require(Path(home) if home else WEIGHTS_DIR)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official test images (images/) and published masks (u2net_results/, u2netp_results/)."""
    return _require(REFERENCE_DIR)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _weights_from_shared(monkeypatch, tmp_path_factory):
    """Every test resolves weights from ../shared/weights and a private, offline Hub cache."""
    if WEIGHTS_DIR.exists() and "U2NET_HOME" not in os.environ:
        monkeypatch.setenv("U2NET_HOME", str(WEIGHTS_DIR))
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf_home"))

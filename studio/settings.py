"""Every limit and setting of the app in one place: flags win over the environment, the
environment over these defaults (README "App" lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Settings:
    """What `app.main` decided from flags and environment; handlers read it at call time."""

    device: str | None = field(default_factory=lambda: os.environ.get("U2NET_DEVICE") or None)
    precision: str = field(default_factory=lambda: os.environ.get("U2NET_PRECISION", "exact"))
    # Uploads and results (people's photos) are deleted this many seconds after they were made.
    keep_files_s: int = field(default_factory=lambda: _env_int("U2NET_KEEP_FILES_S", 3600))
    # The Batch tab.
    batch_max_files: int = field(default_factory=lambda: _env_int("U2NET_BATCH_MAX_FILES", 1000))
    batch_max_bytes: int = field(default_factory=lambda: _env_int("U2NET_BATCH_MAX_BYTES", 1024**3))
    batch_max_images: int = field(default_factory=lambda: _env_int("U2NET_BATCH_MAX_IMAGES", 10_000))
    # The Video tab: the first seconds, scaled down (a shared public machine).
    video_max_seconds: float = field(default_factory=lambda: _env_float("U2NET_VIDEO_MAX_SECONDS", 20))
    video_max_side: int = field(default_factory=lambda: _env_int("U2NET_VIDEO_MAX_SIDE", 640))
    # Largest upload (Gradio's max_file_size).
    max_file_size: str = field(default_factory=lambda: os.environ.get("U2NET_MAX_FILE_SIZE", "50mb"))


SETTINGS = Settings()

"""Errors a user can act on. Every front end turns these into a readable message."""

from __future__ import annotations


class U2NetError(Exception):
    """Base class: the message says what was wrong and what to do."""


class InvalidImageError(U2NetError, ValueError):
    """The input is not a readable image (empty, truncated, not an image, unsupported)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured limit (or is a decompression bomb)."""


class WeightsError(U2NetError):
    """Model weights could not be found, downloaded, verified or loaded."""


class BatchError(U2NetError, ValueError):
    """A batch cannot start (unsafe output path, bad option, busy folder); nothing was written."""

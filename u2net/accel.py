"""CONTRACT SKELETON (the performance issue owns this file).

Turns a loaded U²-Net into the fastest callable that keeps the requested fidelity.
"""

from __future__ import annotations

from typing import Callable

import torch

PRECISIONS = ("exact", "fast")


def prepare(model: torch.nn.Module, device: torch.device, precision: str = "exact"
            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return fn(x) -> fused saliency map.

    x: normalised input batch, float32, shape (N, 3, S, S) on any device.
    returns: the fused output d0 after sigmoid, float32, shape (N, 1, S, S), on the CPU.
    "exact" keeps fp32 (published masks within 0.001 MAE); "fast" may trade a little fidelity.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device, torch.float32)).float().cpu()

    return run

"""Turns a loaded U²-Net into the fastest callable that keeps the requested fidelity.

Two precisions (README, "Performance", has the measurements behind every choice here):

- "exact" (the default): float32 throughout, the published model's answer (mask MAE against
  the published masks ≈ 0.0003). On the CPU the network runs in channels-last memory layout
  under `torch.inference_mode`, each convolution and its ReLU as one oneDNN call.
- "fast": reduced precision where the hardware computes it natively, with the layers that move
  the mask most kept in float32. On a CPU with native bfloat16 (AVX-512 BF16 / AMX) the
  convolutions run in bfloat16; on CUDA in float16. Where neither holds (an older CPU) "fast"
  runs the exact path: emulated bfloat16 is slower than float32 and less faithful.

Which layers stay in float32 was measured, one block at a time, against the published masks:
turning a single decoder block (stage2d) of U²-Netp to bfloat16 moves its masks by 0.008
mean absolute error, while every other block moves them by less than 0.0005; the final 1×1
fusion (outconv) must stay float32 too, or the fused map itself is rounded to 8 bits.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import types
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from .model import REBNCONV

PRECISIONS = ("exact", "fast")

# Blocks kept in float32 in "fast" mode; everything else runs in the reduced precision.
# Measured per block (see the module docstring); the side outputs and outconv are tiny.
FAST_FP32_BLOCKS: tuple[str, ...] = ("stage2d", "side1", "side2", "side3", "side4", "side5",
                                     "side6", "outconv")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), so the "fast"
    precision is both faster and faithful enough; False on older CPUs (e.g. AVX2 only)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers moved: read the flags Linux reports instead
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                flags = fh.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced precision "fast" uses on `device`, or None where it runs the exact path."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def describe(device: torch.device | str, precision: str = "exact") -> str:
    """One line saying what `prepare` runs for this device and precision (for logs and
    benchmarks), e.g. "cpu float32 channels-last" or "cpu bfloat16 (float32: stage2d, …)"."""
    _check_precision(precision)
    device = torch.device(device)
    dtype = fast_dtype(device) if precision == "fast" else None
    layout = " channels-last" if _layout(device, dtype) == torch.channels_last else ""
    if device.type == "cpu" and cpu_has_fused_conv():
        layout += ", fused conv+ReLU"
    elif device.type == "cuda" and dtype is None:
        layout += " (TF32 off)"
    if dtype is None:
        note = " (no native bfloat16 on this CPU: exact path)" if precision == "fast" else ""
        return f"{device.type} float32{layout}{note}"
    return f"{device.type} {str(dtype).removeprefix('torch.')}{layout} (float32: stage2d, side outputs, outconv)"


@functools.cache
def cpu_has_fused_conv() -> bool:
    """True when this PyTorch build has oneDNN's fused convolution + ReLU for the CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        x, w, b = torch.ones(1, 2, 4, 4), torch.ones(3, 2, 3, 3), torch.full((3,), -20.0)
        got = op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
    except (AttributeError, RuntimeError):
        return False
    want = torch.relu(torch.nn.functional.conv2d(x, w, b, padding=1))
    return bool(torch.allclose(got, want))


def _rebnconv_fused(self: REBNCONV, x: torch.Tensor) -> torch.Tensor:
    """REBNCONV.forward as one oneDNN call: ReLU as the convolution's post-op, so the
    activations are written once instead of being read and written again by a separate ReLU."""
    c = self.conv_s1
    return torch.ops.mkldnn._convolution_pointwise(
        x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups, "relu", [], "")


def fuse_conv_relu(model: nn.Module) -> nn.Module:
    """Make every REBNCONV of `model` (in place) run conv + ReLU fused, where the build has it.

    Same arithmetic as the two separate calls (ReLU commutes with the rounding), so results
    match the plain model to float32 rounding. Returns the same model.
    """
    if cpu_has_fused_conv():
        for mod in model.modules():
            if isinstance(mod, REBNCONV):
                mod.forward = types.MethodType(_rebnconv_fused, mod)
    return model


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _cast_inputs(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: hand a block its inputs in the dtype of its own weights."""
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def _blocks(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """The model's top-level blocks that hold weights (stages, side outputs, outconv)."""
    return ((name, mod) for name, mod in model.named_children()
            if any(True for _ in mod.parameters()))


def mixed_precision(model: nn.Module, dtype: torch.dtype,
                    keep_fp32: Iterable[str] = FAST_FP32_BLOCKS) -> nn.Module:
    """Convert `model`'s blocks to `dtype`, except those named in `keep_fp32`, in place.

    Every block casts its inputs to its own dtype (a forward pre-hook), and where a float32
    and a reduced-precision map meet (torch.cat) PyTorch promotes to float32, so each block
    sees the dtype it was converted to. Converted from the float32 weights directly: a block
    kept in float32 keeps its exact weights.

    Returns the same model.
    """
    keep = set(keep_fp32)
    for name, block in _blocks(model):
        if name not in keep:
            block.to(dtype)
        block.register_forward_pre_hook(_cast_inputs)
    return model


def prepare(model: nn.Module, device: torch.device | str, precision: str = "exact"
            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return fn(x) -> fused saliency map, the fastest way this device keeps `precision`.

    Parameters:
        model: a loaded U²-Net (float32, BatchNorm folded; see u2net.model.load_model). It is
            not modified: the callable runs on its own copy.
        device: where the network runs ("cpu", "cuda", "cuda:1", or a torch.device).
        precision: "exact" (float32, published masks within 0.001 MAE) or "fast" (reduced
            precision where native, sensitive layers in float32; masks within 0.003 MAE).

    Returns:
        fn(x): x is the normalised input batch, float32, shape (N, 3, S, S) on any device;
        the result is the fused output d0 after sigmoid, float32, shape (N, 1, S, S), on the
        CPU. Only d0 goes through a sigmoid; the side outputs are computed only as far as
        the fusion needs them.

    Raises:
        ValueError: unknown precision.
    """
    _check_precision(precision)
    device = torch.device(device)
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    dtype = fast_dtype(device) if precision == "fast" else None
    if dtype is not None:
        mixed_precision(net, dtype)
    if device.type == "cpu":
        fuse_conv_relu(net)
    net = net.to(device)
    layout = _layout(device, dtype)
    net = net.to(memory_format=layout)
    # PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by default; on an
    # H100 that moved U²-Netp's masks by 0.001 MAE from the CPU's, the whole exact budget.
    keep_fp32 = device.type == "cuda" and dtype is None

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, torch.float32, non_blocking=True).contiguous(memory_format=layout)
        if keep_fp32:
            with _no_tf32():
                out = net(x)
        else:
            out = net(x)
        return out.float().cpu().contiguous()

    return run


def _layout(device: torch.device, dtype: torch.dtype | None) -> torch.memory_format:
    """Memory layout of the activations, as measured fastest (README, "Performance").

    CPU: channels-last, so oneDNN runs the convolutions without reordering every activation
    (float32 and bfloat16). CUDA: channels-last in float16, where the tensor-core kernels want
    it (H100: U²-Net 642 vs 442 img/s); the default layout in float32, where channels-last was
    no faster (U²-Netp 490 vs 430 img/s).
    """
    if device.type == "cpu" or (device.type == "cuda" and dtype is not None):
        return torch.channels_last
    return torch.contiguous_format


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """cuDNN convolutions in true float32 for the duration (restores the caller's setting)."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before

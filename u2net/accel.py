"""Turns a loaded U²-Net into the fastest callable that keeps the requested fidelity.

Two precisions (README, "Performance", has the measurements behind every choice here):

- "exact" (the default): float32 throughout, the published model's answer (mask MAE against
  the published masks ≈ 0.0003). On the CPU the network runs in channels-last memory layout
  under `torch.inference_mode`, each convolution and its ReLU as one oneDNN call, except
  U²-Net's wide layers on small maps, which run by Winograd's algorithm (u2net.winograd:
  fewer multiplications, the same float32 answer to ~1e-5), and the one-channel side outputs.
- "fast": reduced precision where the hardware computes it natively, with the layers that move
  the mask most kept in float32. On a CPU with native bfloat16 (AVX-512 BF16 / AMX) the
  convolutions run in bfloat16; on CUDA in float16. Where neither holds (an older CPU) "fast"
  runs the exact path: emulated bfloat16 is slower than float32 and less faithful.

Which layers stay in float32 was measured against the published masks, first one block at a
time, then one layer at a time inside the blocks that mattered: of U²-Netp's decoder block
stage2d only its last two convolutions (rebnconv2d, rebnconv1d) move the masks when turned to
bfloat16 (0.006 and 0.008 mean absolute error; each of its ten other layers, and every other
block, by less than 0.0005). The final 1×1 fusion (outconv) stays float32 too, or the fused
map itself is rounded to 8 bits. The side outputs run in the reduced precision (no change in
the masks' error for either model). U²-Net's full-resolution decoder stage1d moves its masks
most (0.0014 alone, `benchmarks/bench_precision_blocks.py`); two of its layers in float32
(rebnconv2d and rebnconv3d, at 160² and 80²) take U²-Net's fast masks from 0.0015 to 0.0002
for ~6 % of the fast forward. The same two in U²-Netp would give 0.0007 → 0.0005 for ~11 %,
so U²-Netp keeps its three.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
import types
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from . import winograd
from .model import REBNCONV

PRECISIONS = ("exact", "fast")

# Modules kept in float32 in "fast" mode, per architecture; everything else runs in the
# reduced precision. Measured block by block and layer by layer (see the module docstring).
FAST_FP32: dict[str, tuple[str, ...]] = {
    "u2netp": ("stage2d.rebnconv2d", "stage2d.rebnconv1d", "outconv"),
    "u2net": ("stage2d.rebnconv2d", "stage2d.rebnconv1d", "stage1d.rebnconv2d", "stage1d.rebnconv3d",
              "outconv"),
}


def fast_fp32_layers(architecture: str) -> tuple[str, ...]:
    """The layers "fast" keeps in float32 for `architecture` ("u2net", "u2netp"; the portrait
    model is a U²-Net)."""
    return FAST_FP32.get(architecture, FAST_FP32["u2net"])


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


def describe(device: torch.device | str, precision: str = "exact", architecture: str = "u2netp") -> str:
    """One line saying what `prepare` runs for this device, precision and architecture (for logs
    and benchmarks), e.g. "cpu float32 channels-last" or "cpu bfloat16 … (float32: stage2d.rebnconv2d, …)"."""
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
    kept = ", ".join(fast_fp32_layers(architecture))
    return f"{device.type} {str(dtype).removeprefix('torch.')}{layout} (float32: {kept})"


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
        x, _onednn_weight(c), c.bias, c.padding, c.stride, c.dilation, c.groups, "relu", [], "")


def _conv_onednn(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Conv2d.forward (no activation) as one oneDNN call on the packed weights."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, _onednn_weight(self), self.bias, self.padding, self.stride, self.dilation,
        self.groups, "none", [], "")


def _conv_by_taps(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A side output's 3 × 3 convolution to one channel, as one matrix product and nine
    shifted sums: each of the nine taps' weighted channel sums is one row of
    (9 × C) @ (C × pixels), and the output adds each tap's plane shifted into place.

    oneDNN runs a one-channel convolution as if it had sixteen (its vector width), so
    U²-Netp's side1 (64 → 1 at 320²) took 6.4 ms; this takes 1.5 ms, 2.4e-6 from F.conv2d
    (oneDNN's own differs by 5.7e-6)."""
    n, c, h, w = x.shape
    pixels = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n, h * w, c)
    taps = torch.matmul(self.__dict__["tap_weight"], pixels.transpose(1, 2)).view(n, 9, h, w)
    out = torch.full((n, h, w), self.__dict__["tap_bias"], dtype=x.dtype)
    for t, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
        # out[y, x] += taps[t, y + dy, x + dx] wherever y + dy, x + dx fall inside
        out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] += \
            taps[:, t, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out.unsqueeze(1)


def _rebnconv_winograd(self: REBNCONV, x: torch.Tensor) -> torch.Tensor:
    """REBNCONV.forward by Winograd's F(4 × 4, 3 × 3) (u2net.winograd), ReLU included."""
    c = self.conv_s1
    return winograd.conv3x3([x], [c.__dict__["winograd_weight"]], c.bias, relu=True)


# Where Winograd's convolution beats oneDNN's direct one (benchmarks/bench_winograd.py on 2
# cores): at least 128 channels in and out and enough work per call, C_in · C_out · pixels
# ≥ 2**25 (e.g. 256 → 512 at 40², 2.2×; 128 → 128 at 80², 1.5×); with fewer, its transforms
# cost more than the multiplications it saves. Maps of at least 40 × 40: the 20² layers won
# alone (512 → 512, 1.8×) but not inside the forward, where their transformed weights (4× the
# direct ones: 38 MB for 512 → 512) are read from memory on every call. U²-Net's forward
# without them: 0.917× of oneDNN's in one A/B run (with them 0.917×), 0.910× in another (with
# them 0.886×), while its predictor holds 123 instead of 340 MiB more.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_SIDE = 40
WINOGRAD_MIN_WORK = 2**25


def _plain_float32_3x3(conv: nn.Conv2d) -> bool:
    """A float32 3 × 3 convolution with padding 1, stride 1, no dilation and no groups: the
    kind both `_conv_by_taps` and Winograd's algorithm compute."""
    return (conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1
            and conv.weight is not None and conv.weight.dtype == torch.float32)


def winograd_fits(conv: nn.Conv2d, input_shape: list[int]) -> bool:
    """True for a float32 3 × 3 convolution (padding 1, stride 1, no dilation) that Winograd's
    algorithm runs faster than oneDNN at this input shape (N × C × H × W)."""
    _, _, h, w = input_shape
    return (_plain_float32_3x3(conv)
            and min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS
            and min(h, w) >= WINOGRAD_MIN_SIDE
            and conv.in_channels * conv.out_channels * h * w >= WINOGRAD_MIN_WORK)


def run_by_taps(conv: nn.Conv2d) -> None:
    """Make a one-channel 3 × 3 convolution (in place) run as `_conv_by_taps`."""
    conv.__dict__["tap_weight"] = conv.weight.detach()[0].permute(1, 2, 0).reshape(9, -1).contiguous()
    conv.__dict__["tap_bias"] = float(conv.bias.detach())
    conv.forward = types.MethodType(_conv_by_taps, conv)


def _is_one_channel_3x3(conv: nn.Conv2d) -> bool:
    """The side outputs' shape of convolution: 3 × 3, padding 1, to a single float32 channel."""
    return conv.out_channels == 1 and conv.bias is not None and _plain_float32_3x3(conv)


def _onednn_weight(conv: nn.Conv2d) -> torch.Tensor:
    packed = conv.__dict__.get("packed_weight")
    return conv.weight if packed is None else packed


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


def pack_conv_weights(model: nn.Module, input_size: int = 320) -> nn.Module:
    """Reorder every convolution's weights once, now, into the blocked layout oneDNN's
    kernels read, and run each convolution as one oneDNN call on them (in place).

    Left as plain tensors, the weights are reordered again on every call: for U²-Netp at
    320 × 320 that was 249 → 209 ms of a 2-thread forward (ONNX Runtime also packs once).
    The layout oneDNN picks depends on the input shape, so each convolution's input shape
    for a 1 × 3 × `input_size`² image is worked out first (conv_input_shapes; a warm-up
    forward would also leave unused oneDNN kernels cached). Other sizes still run correctly:
    oneDNN reorders where its pick differs. The plain weights are dropped afterwards
    (U²-Net's would be 176 MB twice over).

    Same arithmetic as before, so results match to float32 rounding. Returns the same model;
    without oneDNN's fused convolution in this build it is returned unchanged.
    """
    if not cpu_has_fused_conv():
        return model
    fuse_conv_relu(model)
    shapes = conv_input_shapes(model, input_size)
    split = _split_decoder_concat(model, shapes)
    blocks = {m.conv_s1: m for m in model.modules() if isinstance(m, REBNCONV)}  # ReLU fused
    for conv, shape in shapes.items():
        if _is_one_channel_3x3(conv):
            run_by_taps(conv)
        elif conv in blocks and conv not in split and winograd_fits(conv, shape):
            conv.__dict__["winograd_weight"] = winograd.transform_weight(conv.weight)
            blocks[conv].forward = types.MethodType(_rebnconv_winograd, blocks[conv])
        elif conv not in split:
            conv.__dict__["packed_weight"] = _packed(conv, conv.weight, shape)
        conv.weight = None  # type: ignore[assignment]  # the packed copies are the ones used
        if conv not in blocks and "tap_weight" not in conv.__dict__:
            conv.forward = types.MethodType(_conv_onednn, conv)
    return model


def conv_input_shapes(model: nn.Module, input_size: int) -> dict[nn.Conv2d, list[int]]:
    """Input shape of every convolution of a U²-Net for one input_size × input_size image.

    Worked out from the architecture rather than by running it: each pooling halves the side
    rounding up (ceil_mode), a stage and its decoder twin run at the same size, an RSU's k-th
    encoder layer sits below k - 1 poolings (its dilated bottom shares the deepest size), and
    RSU-4F never pools. tests/test_accel.py checks this against a real forward pass.
    """
    sizes = [input_size]
    for _ in range(5):
        sizes.append(-(-sizes[-1] // 2))
    shapes: dict[nn.Conv2d, list[int]] = {}

    def put(conv: nn.Conv2d, side: int) -> None:
        shapes[conv] = [1, conv.in_channels, side, side]

    def block(rsu: nn.Module, side: int) -> None:
        levels = [side]
        for _ in range(getattr(rsu, "height", 2) - 2):  # RSU-4F has no height: no pooling
            levels.append(-(-levels[-1] // 2))
        for name, mod in rsu.named_children():
            if not isinstance(mod, REBNCONV):
                continue
            k = name.removeprefix("rebnconv").removesuffix("d")
            depth = 0 if k == "in" else min(int(k) - 1, len(levels) - 1)
            put(mod.conv_s1, levels[depth])

    for i in range(1, 7):
        block(getattr(model, f"stage{i}"), sizes[i - 1])
        put(getattr(model, f"side{i}"), sizes[i - 1])
        if i < 6:
            block(getattr(model, f"stage{i}d"), sizes[i - 1])
    put(model.outconv, input_size)
    return shapes


def _packed(conv: nn.Conv2d, weight: torch.Tensor, input_shape: list[int]) -> torch.Tensor:
    """`weight` reordered for `conv`'s oneDNN kernel on inputs of `input_shape`."""
    return torch.ops.mkldnn._reorder_convolution_weight(
        weight.contiguous(), list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, input_shape)


# Decoder stages whose input halves are at least this wide skip the torch.cat (measured: at
# 64 + 64 channels the split is 10-15 % faster than cat + one convolution, at 16 + 16 slower).
SPLIT_MIN_CHANNELS = 64


def _split_decoder_concat(model: nn.Module, shapes: dict[nn.Conv2d, list[int]]) -> set[nn.Conv2d]:
    """Run each wide decoder stage's first convolution without concatenating its inputs.

    A decoder stage starts with relu(conv(cat(up, skip))). That equals
    relu(conv_up(up) + conv_skip(skip)) with the weights split along the input channels, and
    oneDNN adds the first result into the second convolution as a post-op, so the
    concatenated map (52 MB at 320 × 320 for 64 + 64 channels in float32) is never written
    or read. For stages in one dtype: float32 (exact), or wholly bfloat16 ("fast": U²-Netp's
    forward 64-70 -> 62-64 ms), whose inputs are cast as their pre-hook would. Where
    `winograd_fits` (U²-Net's stage3d-4d, exact) the two halves' products are summed by
    Winograd's algorithm instead.
    A stage with float32 layers inside ("fast" stage2d) keeps its concatenation. Returns the
    convolutions it took over; their own packed weights are not needed.
    """
    if not hasattr(model, "decode"):
        return set()
    plans = {}
    for i in range(1, 6):
        stage = getattr(model, f"stage{i}d", None)
        if stage is None or stage._forward_hooks or any(
                hook is not _cast_inputs for hook in stage._forward_pre_hooks.values()):
            continue
        conv = stage.rebnconvin.conv_s1
        half = conv.in_channels // 2
        if half < SPLIT_MIN_CHANNELS or conv not in shapes:
            continue
        n, _, h, w = shapes[conv]
        if winograd_fits(conv, shapes[conv]):
            plans[i] = (stage, conv, winograd.transform_weight(conv.weight[:, :half]),
                        winograd.transform_weight(conv.weight[:, half:]), "winograd")
        else:
            plans[i] = (stage, conv, _packed(conv, conv.weight[:, :half], [n, half, h, w]),
                        _packed(conv, conv.weight[:, half:], [n, half, h, w]), "onednn")
    if not plans:
        return set()
    plain_decode = model.decode

    def decode(i: int, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        plan = plans.get(i)
        if plan is None:
            return plain_decode(i, up, skip)
        stage, conv, w_up, w_skip, how = plan
        if how == "winograd":  # float32 only: the two groups' products are summed in place
            # (a neighbour turned to bfloat16 by `mixed_precision` hands its map on as such)
            return stage.from_hxin(winograd.conv3x3([up.float(), skip.float()], [w_up, w_skip],
                                                    conv.bias, relu=True))
        dtype = w_up.dtype
        args = (conv.padding, conv.stride, conv.dilation, conv.groups)
        part = torch.ops.mkldnn._convolution_pointwise(up.to(dtype), w_up, conv.bias, *args, "none", [], "")
        hxin = torch.ops.mkldnn._convolution_pointwise.binary(
            skip.to(dtype), part, w_skip, None, *args, "add", None, "relu", [], "")
        return stage.from_hxin(hxin)

    model.decode = decode
    return {plan[1] for plan in plans.values()}


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
                    keep_fp32: Iterable[str] | None = None) -> nn.Module:
    """Convert `model` to `dtype`, except the modules named in `keep_fp32`, in place.

    Names are module paths: a block ("side1") or a layer inside one ("stage2d.rebnconv1d").
    None: the model's architecture's `FAST_FP32` layers.
    Every converted or kept unit casts its inputs to its own dtype (a forward pre-hook), and
    where a float32 and a reduced-precision map meet (torch.cat, the residual add) PyTorch
    promotes to float32, so each unit sees the dtype it was given. Converted from the float32
    weights directly: a kept unit keeps its exact weights.

    Returns the same model.
    """
    keep = set(fast_fp32_layers(getattr(model, "architecture", "u2net")) if keep_fp32 is None else keep_fp32)

    def convert(module: nn.Module, path: str) -> None:
        if path in keep:
            module.register_forward_pre_hook(_cast_inputs)
        elif not any(k.startswith(path + ".") for k in keep):
            module.to(dtype)
            module.register_forward_pre_hook(_cast_inputs)
        else:  # some layers inside stay float32: decide child by child
            for name, child in module.named_children():
                if any(True for _ in child.parameters()):
                    convert(child, f"{path}.{name}")
            # ...and hand the block's output on in `dtype`, like its neighbours: a float32 map
            # meeting reduced-precision ones would promote every torch.cat after it to float32.
            module.register_forward_hook(lambda _mod, _args, out: out.to(dtype))

    for name, block in _blocks(model):
        convert(block, name)
    return model


def prepare(model: nn.Module, device: torch.device | str, precision: str = "exact",
            input_size: int = 320) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return fn(x) -> fused saliency map, the fastest way this device keeps `precision`.

    Parameters:
        model: a loaded U²-Net (float32, BatchNorm folded; see u2net.model.load_model). It is
            not modified: the callable runs on its own copy.
        device: where the network runs ("cpu", "cuda", "cuda:1", or a torch.device).
        precision: "exact" (float32, published masks within 0.001 MAE) or "fast" (reduced
            precision where native, sensitive layers in float32; masks within 0.003 MAE).
        input_size: the side of the inputs it will mostly see (320; 512 for the portrait
            model); the CPU packs its weights for that size (other sizes still work).

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
    net = net.to(device)
    layout = _layout(device, dtype)
    net = net.to(memory_format=layout)
    if device.type == "cpu":
        pack_conv_weights(net, input_size)  # also fuses each conv with its ReLU
        keep_freed_memory()
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


_tf32_lock = threading.Lock()
_tf32_users = 0  # exact CUDA forwards running now (the app runs two at once on a GPU)
_tf32_before = True


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """cuDNN convolutions in true float32 while any exact forward runs; the caller's setting
    comes back when the last one ends. The flag is process-wide, so overlapping calls from
    several threads share one "off" instead of each restoring what another switched off."""
    global _tf32_users, _tf32_before
    with _tf32_lock:
        if _tf32_users == 0:
            _tf32_before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
        _tf32_users += 1
    try:
        yield
    finally:
        with _tf32_lock:
            _tf32_users -= 1
            if _tf32_users == 0:
                torch.backends.cudnn.allow_tf32 = _tf32_before


# glibc malloc settings for a CPU forward pass (see keep_freed_memory).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's own ceiling for this setting
# Past the forward's own peak on purpose: the heap is trimmed only when its free top passes
# this, and held memory never exceeds what the process already peaked at (bench_malloc.py).
KEEP_FREED_BYTES = 1024 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process's malloc (glibc) keep freed activation memory for the next forward.

    By default glibc hands large blocks straight back to the kernel when they are freed, so
    every forward pass maps its activations afresh and pays a page fault per 4 KiB the first
    time it writes them: U²-Netp's 2-thread forward went 209 → 176 ms with blocks up to 32 MiB
    served from the heap and freed heap kept (KEEP_FREED_BYTES). That was 128 MiB until a
    process-by-process count (benchmarks/bench_malloc.py) found about a third of fresh
    processes whose heap layout made each forward grow the heap by ~170 MB and trim it again,
    re-faulting 5,000-30,000 pages per image (U²-Netp 175 → 210 ms in the worst); at 1 GiB none
    did, and the peak resident memory moved by less than 15 MiB. The cost: what a forward peaked at stays
    resident between calls (README, "Performance"). Done once per process; skipped where
    the user tuned malloc already (MALLOC_*_ environment variables or GLIBC_TUNABLES) and
    where the C library is not glibc. Returns True when the settings took effect.
    """
    import ctypes
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES) == 1 and ok
    except (OSError, AttributeError):
        return False

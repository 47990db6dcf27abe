"""The accelerated forward passes (u2net.accel): same answer as the plain model, the published
masks within each precision's promise, and bad precisions refused. Timings live in
benchmarks/compare_rembg.py, never here."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from u2net import accel
from u2net.model import load_model
from u2net.predictor import Predictor, postprocess, preprocess

# The promise of each precision: mean absolute error (0..1) against the published masks.
MAX_MAE = {"exact": 0.001, "fast": 0.003}


@pytest.fixture(scope="module")
def u2netp(weights_dir):
    return load_model("u2netp", weights_dir / "u2netp.onnx")


@pytest.fixture(scope="module")
def batch(reference_dir) -> torch.Tensor:
    """Two real images as the network sees them: (2, 3, 320, 320) float32."""
    imgs = [Image.open(reference_dir / "images" / name).convert("RGB")
            for name in ("horse.jpg", "rifle2.jpeg")]
    return torch.from_numpy(np.stack([preprocess(img, 320) for img in imgs]))


def _plain(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_exact_equals_the_plain_model(u2netp, batch):
    run = accel.prepare(u2netp, "cpu", "exact")
    out = run(batch)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.shape == (2, 1, 320, 320) and out.is_contiguous()
    ref = _plain(u2netp, batch)
    assert float((out - ref).abs().max()) < 1e-4
    # One image at a time gives the same map as the batch.
    assert float((run(batch[1:]) - out[1:]).abs().max()) < 1e-4


def test_fast_stays_close_to_the_plain_model(u2netp, batch):
    out = accel.prepare(u2netp, "cpu", "fast")(batch)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 320, 320)
    ref = _plain(u2netp, batch)
    # bf16 where the CPU has it: the saliency maps agree to a few thousandths on average.
    assert float((out - ref).abs().mean()) < 0.003
    assert float((out - ref).abs().max()) < 0.15


def test_prepare_leaves_the_callers_model_alone(u2netp, batch):
    before = _plain(u2netp, batch)
    accel.prepare(u2netp, "cpu", "fast")
    accel.prepare(u2netp, "cpu", "exact")
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in u2netp.parameters())
    assert torch.equal(_plain(u2netp, batch), before)


def test_mixed_precision_keeps_the_sensitive_layers_in_float32(weights_dir, batch):
    net = accel.mixed_precision(load_model("u2netp", weights_dir / "u2netp.onnx"), torch.bfloat16)
    exact = load_model("u2netp", weights_dir / "u2netp.onnx")
    kept = set(accel.FAST_FP32["u2netp"])
    assert {"stage2d.rebnconv1d", "outconv"} <= kept
    for name, param in net.named_parameters():
        owner = name.rsplit(".", 2)[0] if ".conv_s1." in name else name.rsplit(".", 1)[0]
        if any(owner == k or owner.startswith(k + ".") for k in kept):
            # kept layers keep their exact weights, not bf16-rounded ones
            assert param.dtype == torch.float32 and torch.equal(param, exact.get_parameter(name)), name
        else:
            assert param.dtype == torch.bfloat16, name
    assert net.stage2d.rebnconv3d.conv_s1.weight.dtype == torch.bfloat16  # the rest of stage2d
    with torch.inference_mode():
        assert net(batch).dtype == torch.float32  # outconv is float32, so is the fused map


def test_each_architecture_keeps_its_own_float32_layers(weights_dir):
    net = accel.mixed_precision(load_model("u2net", weights_dir / "u2net.onnx"), torch.bfloat16)
    for name in ("stage1d.rebnconv2d", "stage1d.rebnconv3d", "stage2d.rebnconv1d"):
        assert net.get_submodule(name).conv_s1.weight.dtype == torch.float32, name
    assert net.stage1d.rebnconv1d.conv_s1.weight.dtype == torch.bfloat16
    assert net.outconv.weight.dtype == torch.float32
    assert "stage1d" not in "".join(accel.FAST_FP32["u2netp"])
    if accel.fast_dtype("cpu") is not None:
        assert "stage1d.rebnconv3d" in accel.describe("cpu", "fast", "u2net")
        assert "stage1d" not in accel.describe("cpu", "fast", "u2netp")


def test_fast_without_native_reduced_precision_is_the_exact_path(u2netp, batch, monkeypatch):
    # An older CPU (no AVX-512 BF16 / AMX): "fast" must not pick slow, emulated bf16.
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    assert accel.fast_dtype("cpu") is None
    assert "exact path" in accel.describe("cpu", "fast")
    fast = accel.prepare(u2netp, "cpu", "fast")(batch)
    assert torch.equal(fast, accel.prepare(u2netp, "cpu", "exact")(batch))


def test_cuda_fast_is_float16():
    assert accel.fast_dtype("cuda") == torch.float16
    assert accel.fast_dtype(torch.device("cuda", 0)) == torch.float16


@pytest.mark.parametrize("precision", ["half", "bf16", "", "EXACT", None])
def test_unknown_precision_is_refused(u2netp, precision):
    with pytest.raises(ValueError, match="precision must be one of"):
        accel.prepare(u2netp, "cpu", precision)
    with pytest.raises(ValueError, match="precision must be one of"):
        accel.describe("cpu", precision)


@pytest.mark.parametrize("model,precision", [("u2netp", "exact"), ("u2netp", "fast"),
                                             ("u2net", "exact"), ("u2net", "fast")])
def test_masks_match_the_published_ones(reference_dir, model, precision):
    """Every reference image through the real predictor, against the authors' masks."""
    paths = sorted((reference_dir / "images").iterdir())
    pred = Predictor(model, device="cpu", precision=precision, cache_size=0)
    masks = pred.predict_batch(paths, batch_size=6)
    errors = []
    for path, mask in zip(paths, masks, strict=True):
        ref = Image.open(reference_dir / f"{model}_results" / f"{path.stem}.png").convert("L")
        assert mask.size == ref.size
        errors.append(np.abs(np.asarray(mask, np.float32) - np.asarray(ref, np.float32)).mean() / 255)
    mae = float(np.mean(errors))
    assert mae <= MAX_MAE[precision], f"{model} {precision}: MAE {mae:.5f} over {len(paths)} images"
    if (model, precision) == ("u2net", "fast"):
        # stage1d's two sensitive layers in float32 (accel.FAST_FP32): measured 0.0002; with
        # U²-Netp's list alone it is 0.0015, inside the promise but seven times the error.
        assert mae <= 0.0005, mae
    # No single image may be far off either (an average can hide one broken mask).
    assert max(errors) <= 4 * MAX_MAE[precision], dict(zip([p.name for p in paths], errors, strict=True))


def test_fused_conv_relu_gives_the_plain_answer(weights_dir, u2netp, batch):
    net = accel.fuse_conv_relu(load_model("u2netp", weights_dir / "u2netp.onnx"))
    if accel.cpu_has_fused_conv():  # every PyTorch CPU wheel with oneDNN has it
        assert "fused conv+ReLU" in accel.describe("cpu", "exact")
    assert float((_plain(net, batch) - _plain(u2netp, batch)).abs().max()) < 1e-5


def test_cuda_layouts_follow_the_measurements():
    # H100: float16 is faster channels-last, float32 is not (README, "Performance").
    cuda = torch.device("cuda")
    assert accel._layout(cuda, torch.float16) == torch.channels_last
    assert accel._layout(cuda, None) == torch.contiguous_format
    assert accel._layout(torch.device("cpu"), None) == torch.channels_last
    assert accel.describe("cuda", "exact") == "cuda float32 (TF32 off)"
    assert "float16 channels-last" in accel.describe("cuda", "fast")


@pytest.mark.parametrize("caller_setting", [True, False])
def test_exact_turns_tf32_off_only_while_it_runs(caller_setting):
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = caller_setting
    try:
        with accel._no_tf32():
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is caller_setting
        with pytest.raises(RuntimeError), accel._no_tf32():
            raise RuntimeError("a failing forward must not leave TF32 switched off")
        assert torch.backends.cudnn.allow_tf32 is caller_setting
        # Overlapping forwards (two threads): the first to end must not switch TF32 back on
        # under the second; the caller's setting returns when the last one ends.
        first, second = accel._no_tf32(), accel._no_tf32()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32 is False
        second.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32 is caller_setting
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_float16_mixed_precision_keeps_the_published_masks(reference_dir, weights_dir):
    """The numbers "fast" computes on CUDA (float16, the sensitive blocks in float32), computed
    here by the CPU's float16 convolutions: the masks stay within the fast promise (measured
    0.0003 for both models; float16 everywhere, stage2d included, gives 0.0023 for U²-Netp)."""
    paths = sorted((reference_dir / "images").iterdir())[::3]
    imgs = [Image.open(p).convert("RGB") for p in paths]
    x = torch.from_numpy(np.stack([preprocess(img, 320) for img in imgs]))
    net = accel.mixed_precision(load_model("u2netp", weights_dir / "u2netp.onnx"), torch.float16)
    assert {p.dtype for p in net.stage1.parameters()} == {torch.float16}
    out = _plain(net, x).float().numpy()
    errors = []
    for i, (path, img) in enumerate(zip(paths, imgs, strict=True)):
        mask = postprocess(out[i, 0], img.size)
        ref = Image.open(reference_dir / "u2netp_results" / f"{path.stem}.png").convert("L")
        errors.append(np.abs(np.asarray(mask, np.float32) - np.asarray(ref, np.float32)).mean() / 255)
    assert float(np.mean(errors)) <= MAX_MAE["fast"], errors
    assert max(errors) <= 4 * MAX_MAE["fast"], errors



def test_packed_weights_give_the_plain_answer_at_any_batch_and_size(weights_dir, u2netp, batch):
    net = load_model("u2netp", weights_dir / "u2netp.onnx").to(memory_format=torch.channels_last)
    assert accel.cpu_has_fused_conv()  # the pinned PyTorch wheel has oneDNN
    accel.pack_conv_weights(net, 320)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    # Every convolution (stages, sides, outconv) runs on packed copies; the plain ones are gone.
    # The decoder stages' first convolutions run as two halves (the split test below).
    assert len(convs) == 119 and all(c.weight is None for c in convs)
    # ...the six one-channel side outputs as a matrix product of their taps (test below).
    assert sum("packed_weight" in c.__dict__ for c in convs) == 119 - 5 - 6
    assert sum("tap_weight" in c.__dict__ for c in convs) == 6
    for x in (batch, batch[:1], torch.nn.functional.interpolate(batch, size=(416, 384))):
        assert float((_plain(net, x) - _plain(u2netp, x)).abs().max()) < 1e-4


@pytest.mark.parametrize("n,c,h,w", [(1, 64, 320, 320), (2, 5, 7, 3), (1, 3, 1, 1), (3, 2, 1, 4),
                                     (1, 512, 10, 10)])
def test_one_channel_convolution_by_taps_is_the_convolution(n, c, h, w):
    # The side outputs' 3 × 3 convolutions to one channel (every border, batches, 1-pixel maps).
    gen = torch.Generator().manual_seed(c * h + w)
    conv = torch.nn.Conv2d(c, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.fill_(0.25)
    x = torch.randn(n, c, h, w, generator=gen).relu()
    want = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert accel._is_one_channel_3x3(conv)
    accel.run_by_taps(conv)
    with torch.inference_mode():
        for layout in (torch.channels_last, torch.contiguous_format):
            got = conv(x.contiguous(memory_format=layout))
            assert got.shape == (n, 1, h, w)
            scale = float(want.abs().max())
            assert float((got - want).abs().max()) <= 1e-6 * max(scale, 1.0) * c ** 0.5


def test_freed_memory_is_kept_unless_the_user_tuned_malloc():
    import subprocess
    import sys

    code = "from u2net import accel; print(accel.keep_freed_memory())"
    env = {k: v for k, v in os.environ.items()
           if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    run = functools.partial(subprocess.run, [sys.executable, "-c", code], capture_output=True,
                            text=True, check=True, cwd=Path(accel.__file__).parent.parent)
    assert run(env=env).stdout.strip() == str(platform.libc_ver()[0] == "glibc")
    assert run(env={**env, "MALLOC_ARENA_MAX": "2"}).stdout.strip() == "False"
    assert run(env={**env, "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}).stdout.strip() == "False"


def test_wide_decoder_stages_skip_the_concatenation(weights_dir, batch):
    # U²-Netp's decoder stages take 64 + 64 channels: all five run split on the exact path
    # (same answer, tested above); four on the fast path, where stage2d holds float32 layers
    # (its output hook hands bfloat16 on) and keeps its concatenation.
    for precision, want in (("exact", 5), ("fast", 4)):
        net = load_model("u2netp", weights_dir / "u2netp.onnx")
        if precision == "fast":
            accel.mixed_precision(net, torch.bfloat16)
        split = accel._split_decoder_concat(net, accel.conv_input_shapes(net, 320))
        assert len(split) == want, precision


@pytest.mark.parametrize("architecture,size", [("u2netp", 320), ("u2netp", 331), ("u2net", 512)])
def test_conv_input_shapes_match_a_real_forward_pass(architecture, size):
    from u2net.model import build_model

    net = build_model(architecture)
    seen: dict[torch.nn.Module, list[int]] = {}

    def record(mod: torch.nn.Module, args: tuple) -> None:
        seen.setdefault(mod, list(args[0].shape))

    for conv in net.modules():
        if isinstance(conv, torch.nn.Conv2d):
            conv.register_forward_pre_hook(record)
    _plain(net, torch.zeros(1, 3, size, size))
    assert accel.conv_input_shapes(net, size) == seen


def test_exact_decoder_takes_maps_from_a_bfloat16_neighbour(weights_dir, batch):
    # A model turned partly to bfloat16 by `mixed_precision` (here only U²-Net's stage3, the
    # way benchmarks measure each block's share of the error) hands stage3d a bfloat16 skip
    # map, and stage3d's split first convolution runs by Winograd in float32.
    net = load_model("u2net", weights_dir / "u2net.onnx")
    keep = [name for name, _ in accel._blocks(net) if name != "stage3"]
    accel.mixed_precision(net, torch.bfloat16, keep)
    want = _plain(net, batch)
    got = accel.prepare(net, "cpu", "exact")(batch)
    assert float((got - want).abs().mean()) < 1e-3

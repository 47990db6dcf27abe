"""Winograd's F(4 × 4, 3 × 3) convolution (u2net.winograd) against PyTorch's own convolution,
and the U²-Net layers u2net.accel hands to it. Timings: benchmarks/bench_winograd.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from u2net import accel, winograd
from u2net.model import build_model


def _case(seed: int, n: int, c_in: int, c_out: int, h: int, w: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=gen).relu()  # activations: after a ReLU
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5
    bias = torch.randn(c_out, generator=gen) * 0.1
    return x, weight, bias


# Sizes that are and are not multiples of the 4 × 4 block, 1-pixel maps, batches.
@pytest.mark.parametrize("n,c_in,c_out,h,w", [(1, 256, 512, 40, 40), (2, 7, 5, 9, 6),
                                              (1, 3, 2, 1, 1), (3, 4, 4, 5, 13), (1, 16, 8, 4, 4)])
@pytest.mark.parametrize("relu", [True, False])
def test_convolution_matches_torch(n, c_in, c_out, h, w, relu):
    x, weight, bias = _case(c_in * h + w, n, c_in, c_out, h, w)
    want = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    if relu:
        want = want.relu()
    for layout in (torch.channels_last, torch.contiguous_format):
        got = winograd.conv3x3([x.contiguous(memory_format=layout)],
                               [winograd.transform_weight(weight)], bias, relu)
        assert got.shape == (n, c_out, h, w) and got.dtype == torch.float32
        assert got.is_contiguous(memory_format=torch.channels_last)
        # float32 rounding through the transforms: ~1e-5 of the values' size, no more.
        assert float((got.double() - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


def test_channel_groups_are_the_concatenation():
    # The decoder's cat(up, skip) → conv, with no concatenation made.
    x, weight, bias = _case(3, 2, 24, 16, 10, 11)
    want = F.conv2d(x, weight, bias, padding=1).relu()
    parts = [winograd.transform_weight(weight[:, :10]), winograd.transform_weight(weight[:, 10:])]
    got = winograd.conv3x3([x[:, :10], x[:, 10:]], parts, bias, relu=True)
    assert float((got - want).abs().max()) <= 1e-4
    no_bias = winograd.conv3x3([x], [winograd.transform_weight(weight)], None, relu=False)
    assert float((no_bias - F.conv2d(x, weight, padding=1)).abs().max()) <= 1e-4


def test_only_a_3x3_kernel_is_taken():
    with pytest.raises(ValueError, match="3 × 3"):
        winograd.transform_weight(torch.zeros(4, 4, 5, 5))


def _packed(architecture: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(plain model with random weights at the published scale, its packed copy)."""
    torch.manual_seed(0)
    plain = build_model(architecture)
    with torch.no_grad():  # like BatchNorm-folded weights: activations stay of order 1
        for conv in plain.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.normal_(0, (2 / (9 * conv.in_channels)) ** 0.5)
                conv.bias.normal_(0, 0.05)
    net = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    accel.pack_conv_weights(net, 320)
    return plain, net


def test_u2net_runs_its_wide_layers_by_winograd_and_keeps_the_plain_answer():
    plain, net = _packed("u2net")
    shapes = accel.conv_input_shapes(plain, 320)
    wide = {name for (name, conv), (_, mine) in zip(plain.named_modules(), net.named_modules(),
                                                    strict=True)
            if isinstance(conv, torch.nn.Conv2d) and "winograd_weight" in mine.__dict__}
    # U²-Net's stages 3-4 and their decoders (128-1024 channels at 40-80 pixels; 8 layers, and
    # the split first convolutions of stage3d-4d), never the wide maps (64 channels at
    # 160-320), the 20² and 10² stages or a dilated layer.
    assert len(wide) == 8, sorted(wide)
    convs = dict(plain.named_modules())
    for name in wide:
        conv = convs[name]
        assert conv.dilation == (1, 1) and min(conv.in_channels, conv.out_channels) >= 128
        assert shapes[conv][2] >= 40
    assert "stage1.rebnconvin.conv_s1" not in wide and "stage5.rebnconvin.conv_s1" not in wide
    assert "stage4.rebnconvin.conv_s1" in wide
    x = torch.randn(1, 3, 320, 320)
    with torch.inference_mode():
        want, got = plain(x), net(x)  # also the decoder stages split by Winograd (stage4d, …)
    assert float((got - want).abs().max()) < 1e-4


def test_u2netp_has_no_layer_that_wide():
    _, net = _packed("u2netp")
    assert not any("winograd_weight" in m.__dict__ for m in net.modules())

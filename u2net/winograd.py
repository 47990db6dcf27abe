"""3 × 3 convolutions by Winograd's minimal filtering, F(4 × 4, 3 × 3), in float32 on the CPU.

Each 4 × 4 block of outputs is computed from a 6 × 6 block of inputs with 36 multiplications
per input and output channel pair instead of 144 (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016). Here that is three matrix products:

1. every 6 × 6 input block, transformed (V = Bᵀ d B): (36 × 36) @ (36 × blocks·C);
2. for each of the 36 positions, the blocks' channels times the transformed weights
   (U = G g Gᵀ, made once): a batched (blocks × C) @ (C × C_out);
3. the 4 × 4 outputs back (Aᵀ M A): (16 × 36) @ (36 × blocks·C_out).

Step 2 holds the multiplications and runs at the CPU's matrix-product rate, so the layers
with many channels on small maps (U²-Net's stages 3-4 and their decoders: 128-1024 channels
at 40-80 pixels) take 1.2-2.2× less time than oneDNN's direct convolution. With few channels
the transforms' memory traffic costs more than the multiplications saved, and the
transformed weights are 4× the direct ones, so u2net.accel uses this only where it measured
faster inside the forward (`accel.winograd_fits`). The results differ from a direct float32
convolution by ~1e-5 of the values' size (the transforms' constants, e.g. 1/6, are not exact
in binary); the published masks' error does not move (tests/test_accel.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_F64 = torch.float64
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=_F64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=_F64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=_F64)
# The 2-D transforms as one matrix each, acting on a 6 × 6 block flattened row by row.
_INPUT_TRANSFORM = torch.kron(_BT, _BT).float()  # 36 × 36, exact (small integers)
_OUTPUT_TRANSFORM = torch.kron(_AT, _AT).float()  # 16 × 36, exact (small integers)

OUT_TILE = 4  # outputs per block side
IN_TILE = OUT_TILE + 2  # inputs per block side (a 3 × 3 kernel)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3 × 3 convolution's weight (C_out × C_in × 3 × 3) as the 36 matrices step 2 uses:
    36 × C_in × C_out float32, computed in float64 and rounded once."""
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"a 3 × 3 kernel is needed, got {tuple(weight.shape[2:])}")
    c_out, c_in = weight.shape[:2]
    out = torch.empty((IN_TILE, IN_TILE, c_in, c_out), dtype=torch.float32)
    for o in range(0, c_out, 64):  # 64 outputs at a time: the float64 copy stays small
        part = weight.detach()[o:o + 64].to(_F64)
        out[..., o:o + 64] = torch.einsum("ak,oikl,bl->abio", _G, part, _G)
    return out.view(IN_TILE * IN_TILE, c_in, c_out)


def _transformed_input(x: torch.Tensor, blocks_h: int, blocks_w: int) -> torch.Tensor:
    """Step 1: 36 × (N·blocks) × C, from an N × C × H × W map (any memory layout)."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1)  # N, H, W, C: a view of a channels-last map
    # One zero row/column before (the convolution's padding), enough after to fill the blocks.
    padded = F.pad(rows, (0, 0, 1, OUT_TILE * blocks_w + 1 - w, 1, OUT_TILE * blocks_h + 1 - h))
    tiles = padded.unfold(1, IN_TILE, OUT_TILE).unfold(2, IN_TILE, OUT_TILE)  # N,bh,bw,C,6,6
    # Gathered with the block's 36 positions outermost, so the transform is a plain product
    # (20 % quicker than gathering each block's 36 values together and multiplying by its
    # transpose).
    flat = tiles.permute(4, 5, 0, 1, 2, 3).reshape(IN_TILE * IN_TILE, -1)
    return torch.mm(_INPUT_TRANSFORM, flat).view(IN_TILE * IN_TILE, n * blocks_h * blocks_w, c)


def conv3x3(inputs: list[torch.Tensor], weights: list[torch.Tensor], bias: torch.Tensor | None,
            relu: bool) -> torch.Tensor:
    """relu?(conv(cat(inputs), weight) + bias) for a 3 × 3 convolution with padding 1, stride 1,
    float32, without concatenating: `inputs` are the channel groups of the input (N × C_i × H
    × W each, the same N, H, W) and `weights` their `transform_weight` parts (36 × C_i × C_out).
    Returns N × C_out × H × W in channels-last memory layout."""
    n, _, h, w = inputs[0].shape
    bh, bw = -(-h // OUT_TILE), -(-w // OUT_TILE)
    prods = None
    for x, u in zip(inputs, weights, strict=True):
        v = _transformed_input(x, bh, bw)
        prods = torch.bmm(v, u) if prods is None else prods.baddbmm_(v, u)
    c_out = weights[0].shape[2]
    y = torch.mm(_OUTPUT_TRANSFORM, prods.view(IN_TILE * IN_TILE, -1))  # type: ignore[union-attr]
    y = y.view(OUT_TILE, OUT_TILE, n, bh, bw, c_out).permute(2, 3, 0, 4, 1, 5)  # N,bh,4,bw,4,C
    out = torch.empty((n, h, w, c_out), dtype=y.dtype)
    if h % OUT_TILE == 0 and w % OUT_TILE == 0:  # the blocks tile the map: no crop, no copy
        target = out.view(n, bh, OUT_TILE, bw, OUT_TILE, c_out)
    else:
        y = y.reshape(n, OUT_TILE * bh, OUT_TILE * bw, c_out)[:, :h, :w]
        target = out
    if bias is not None:
        torch.add(y, bias, out=target)
    else:
        target.copy_(y)
    if relu:
        out.relu_()
    return out.permute(0, 3, 1, 2)

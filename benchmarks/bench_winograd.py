"""Winograd's F(4 × 4, 3 × 3) against oneDNN's direct convolution, on U²-Net's own layers.

Two tables, both sides in the same process, in alternation:

1. every distinct undilated 3 × 3 layer shape of the model at its input size (channels in,
   out, map side): oneDNN's packed convolution + ReLU against `u2net.winograd.conv3x3`,
   milliseconds (medians) and the ratio, and whether `u2net.accel.winograd_fits` picks it;
2. the whole exact forward pass as `u2net.accel.prepare` makes it, with the chosen layers by
   Winograd against the same with none (accel.winograd_fits switched off), and the largest
   difference between their outputs.

    .venv/bin/python benchmarks/bench_winograd.py [--model u2net] [--size 320] [--repeats 15] \
        [--threads 1] [--forward-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from u2net import accel, winograd  # noqa: E402
from u2net.model import build_model, load_model  # noqa: E402


def _ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def layer_table(model: str, size: int, repeats: int) -> None:
    net = build_model(model)
    counts: dict[tuple[int, int, int], list] = {}
    for conv, shape in accel.conv_input_shapes(net, size).items():
        if conv.kernel_size == (3, 3) and conv.dilation == (1, 1) and conv.out_channels > 1:
            key = (conv.in_channels, conv.out_channels, shape[2])
            counts.setdefault(key, [0, accel.winograd_fits(conv, shape)])[0] += 1
    op = torch.ops.mkldnn._convolution_pointwise
    print(f"{model} at {size} × {size}: undilated 3 × 3 layers ({torch.get_num_threads()} threads)\n")
    print("| C_in → C_out | map | layers | oneDNN ms | Winograd ms | oneDNN / Winograd | chosen |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for (c_in, c_out, side), (count, chosen) in sorted(
            counts.items(), key=lambda kv: (-kv[0][2], -kv[0][0] * kv[0][1])):
        x = torch.randn(1, c_in, side, side).relu().contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c_out, c_in, 3, 3) / (9 * c_in) ** 0.5
        bias = torch.zeros(c_out)
        packed = torch.ops.mkldnn._reorder_convolution_weight(
            weight, [1, 1], [1, 1], [1, 1], 1, [1, c_in, side, side])
        u = winograd.transform_weight(weight)
        direct = _ms(lambda x=x, w=packed, b=bias: op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""),
                     repeats)
        wino = _ms(lambda x=x, u=u, b=bias: winograd.conv3x3([x], [u], b, relu=True), repeats)
        print(f"| {c_in} → {c_out} | {side}² | {count} | {direct:.2f} | {wino:.2f} | "
              f"{direct / wino:.2f}× | {'yes' if chosen else ''} |")


def forward_ab(model: str, size: int, repeats: int) -> None:
    home = Path(os.environ.get("U2NET_HOME", ROOT.parent / "shared" / "weights"))
    path = home / f"{model}.onnx"
    net = load_model(model, path) if path.is_file() else build_model(model)
    with_winograd = accel.prepare(net, "cpu", "exact", input_size=size)
    fits = accel.winograd_fits
    accel.winograd_fits = lambda conv, shape: False
    try:
        without = accel.prepare(net, "cpu", "exact", input_size=size)
    finally:
        accel.winograd_fits = fits
    x = torch.randn(1, 3, size, size)
    diff = float((with_winograd(x) - without(x)).abs().max())
    times: dict[str, list[float]] = {"oneDNN only": [], "with Winograd": []}
    runs = {"oneDNN only": without, "with Winograd": with_winograd}
    for _ in range(2):
        without(x), with_winograd(x)
    for i in range(repeats):
        for name in (list(runs) if i % 2 else list(reversed(runs))):
            t = time.perf_counter()
            runs[name](x)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["oneDNN only"])
    print(f"\n{model} exact forward at {size} × {size} "
          f"({'published weights' if path.is_file() else 'random weights'}), "
          f"{torch.get_num_threads()} threads, medians of {repeats} alternating runs, load average {os.getloadavg()[0]:.1f}:\n")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"- {name}: {1e3 * m:.1f} ms ({m / base:.3f}×)")
    print(f"- largest difference between the two saliency maps: {diff:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="u2net", choices=("u2net", "u2netp"))
    ap.add_argument("--size", type=int, default=320, help="network input side (portrait: 512)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--forward-only", action="store_true", help="skip the per-layer table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.forward_only:
        layer_table(args.model, args.size, args.repeats)
    forward_ab(args.model, args.size, args.repeats)


if __name__ == "__main__":
    main()

"""What each block of the network costs in fidelity and gives in speed when it alone runs in
bfloat16: the data behind "which layers may leave float32" (u2net.accel, FAST_FP32_BLOCKS).

For every top-level block (stages, decoder stages, side outputs, outconv) the model is run
with that block alone in bfloat16 and everything else in float32, through the product's own
`accel.prepare`. Printed per block: the mean absolute error (0..1) of the masks against the
published ones over the 18 reference images, its change from the all-float32 run, and the
forward's milliseconds (medians per image, 2 threads, in the same run). Asserts nothing.

    .venv/bin/python benchmarks/bench_precision_blocks.py [--models u2netp u2net] [--threads 2]

Needs a CPU with native bfloat16 (AVX-512 BF16 / AMX); elsewhere bfloat16 is emulated and the
timings mean nothing (the errors still do).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_engine import _weights as weights  # noqa: E402  (U2NET_HOME's .onnx, or exit)

from u2net import accel  # noqa: E402
from u2net.images import load_image  # noqa: E402
from u2net.model import load_model  # noqa: E402
from u2net.predictor import postprocess, preprocess  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference"


def reference_set(name: str) -> list[tuple[torch.Tensor, tuple[int, int], np.ndarray]]:
    """(network input, photo size, published mask as float32) for each reference image."""
    out = []
    for path in sorted((REFERENCE / "images").iterdir()):
        rgb = load_image(path.read_bytes())
        ref = Image.open(REFERENCE / f"{name}_results" / f"{path.stem}.png").convert("L")
        if ref.size != rgb.size:
            ref = ref.resize(rgb.size, Image.BILINEAR)
        out.append((torch.from_numpy(preprocess(rgb, 320))[None], rgb.size, np.asarray(ref, np.float32)))
    return out


def measure(name: str, in_bf16: str | None, images: list) -> tuple[float, float]:
    """(MAE against the published masks, median forward ms) with `in_bf16` alone in bfloat16."""
    model = load_model(name, weights(name)).eval()
    if in_bf16 is not None:
        keep = [block for block, _ in accel._blocks(model) if block != in_bf16]
        accel.mixed_precision(model, torch.bfloat16, keep)
    run = accel.prepare(model, "cpu", "exact")
    run(images[0][0])  # kernels picked, memory kept
    errors, times = [], []
    for x, size, ref in images:
        start = time.perf_counter()
        d0 = run(x)
        times.append((time.perf_counter() - start) * 1000)
        mask = postprocess(d0[0, 0].numpy(), size)
        errors.append(float(np.abs(np.asarray(mask, np.float32) - ref).mean() / 255))
    return float(np.mean(errors)), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["u2netp", "u2net"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, native bfloat16: {accel.cpu_has_native_bf16()}")
    for name in args.models:
        images = reference_set(name)
        base_mae, base_ms = measure(name, None, images)
        print(f"\n{name}: all float32  MAE {base_mae:.6f}  forward {base_ms:.0f} ms")
        print(f"{'block in bfloat16':>18}  {'MAE':>8}  {'change':>9}  {'forward':>8}")
        blocks = [block for block, _ in accel._blocks(load_model(name, weights(name)))]
        for block in blocks:
            mae, ms = measure(name, block, images)
            print(f"{block:>18}  {mae:.6f}  {mae - base_mae:+.6f}  {ms:6.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""U²-Net on one CUDA GPU: batch throughput per precision and layout, and fp16 fidelity.

Prints, for each model and batch size, images per second of

- "network": the 320 × 320 forward pass alone, input already on the GPU (what the paper's
  "30 images/s on a GTX 1080 Ti" measures);
- "engine": what the Predictor calls, `u2net.accel.prepare(...)`, which also copies the
  batch to the GPU and the fused map back;

for exact (float32, TF32 off) and fast (float16, the sensitive blocks in float32) in the
contiguous (NCHW) and channels-last (NHWC) layouts, and end to end (`Predictor.predict_batch`
on real pictures: decode, resize, network, mask at full size). Then the fidelity of each GPU
path: mean absolute mask error against this machine's CPU exact path on the pictures in
examples/ (CPU exact is within 0.0003 of the published masks; tests/test_accel.py).

    python benchmarks/bench_gpu.py [--weights-dir DIR] [--batch-sizes 1 8 32 64 128]

Weights: DIR/u2netp.onnx and DIR/u2net.onnx when present; a model whose file is missing runs
with random weights of the same architecture, which times the same (the GPU does the same
work whatever the values) and is marked "random weights" with no fidelity figure.
Writes the figures as JSON to --json when given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from u2net import accel  # noqa: E402
from u2net.model import build_model, load_model  # noqa: E402
from u2net.predictor import Predictor, postprocess, preprocess  # noqa: E402

PAPER_FPS = 30.0  # U²-Net, 320 × 320, GTX 1080 Ti (Qin et al. 2020)


def _images_per_s(fn, batch: int, min_seconds: float) -> float:
    """Images per second of fn() on a batch, timed with the GPU synchronised; median of
    several timed stretches after warm-up (the first calls choose cuDNN algorithms)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    rates = []
    deadline = time.perf_counter() + min_seconds
    while len(rates) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        rates.append(batch / (time.perf_counter() - start))
        if len(rates) >= 200:
            break
    return statistics.median(rates)


def _network(model: torch.nn.Module, precision: str, layout: torch.memory_format):
    """The network as prepare() builds it, but taking and returning GPU tensors."""
    import copy

    net = copy.deepcopy(model).eval().cuda()
    dtype = accel.fast_dtype("cuda") if precision == "fast" else None
    if dtype is not None:
        accel.mixed_precision(net, dtype)
    return net.to(memory_format=layout)


def _model(name: str, weights_dir: Path) -> tuple[torch.nn.Module, bool]:
    path = weights_dir / f"{name}.onnx"
    if path.is_file():
        return load_model(name, path), True
    torch.manual_seed(0)
    return build_model(name), False


def throughput(name: str, model: torch.nn.Module, batch_sizes: list[int], seconds: float,
               layouts: list[str]) -> list[dict]:
    rows = []
    formats = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}
    for precision in ("exact", "fast"):
        for layout_name in layouts:
            layout = formats[layout_name]
            net = _network(model, precision, layout)
            for bs in batch_sizes:
                x = torch.randn(bs, 3, 320, 320, device="cuda").contiguous(memory_format=layout)
                with torch.inference_mode():
                    try:
                        rate = _images_per_s(lambda net=net, x=x: net(x), bs, seconds)
                    except torch.cuda.OutOfMemoryError:
                        rate = float("nan")
                rows.append({"model": name, "precision": precision, "layout": layout_name,
                             "batch": bs, "network_img_s": rate})
                print(f"{name:<7} {precision:<5} {layout_name} batch {bs:>4}: network "
                      f"{rate:8.1f} img/s", flush=True)
            net = None  # free this copy before the next layout's
            torch.cuda.empty_cache()
    return rows


def engine_throughput(name: str, model: torch.nn.Module, batch_sizes: list[int], seconds: float) -> list[dict]:
    rows = []
    for precision in ("exact", "fast"):
        run = accel.prepare(model, "cuda", precision)
        for bs in batch_sizes:
            x = torch.randn(bs, 3, 320, 320).pin_memory()
            rate = _images_per_s(lambda run=run, x=x: run(x), bs, seconds)
            rows.append({"model": name, "precision": precision, "batch": bs, "engine_img_s": rate})
            print(f"{name:<7} {precision:<5} prepare() batch {bs:>4}: {rate:8.1f} img/s "
                  f"(host→GPU→host)", flush=True)
    return rows


def end_to_end(name: str, weights: Path, pictures: list[Path], batch: int) -> list[dict]:
    rows = []
    for precision in ("exact", "fast"):
        pred = Predictor(name, weights=weights, device="cuda", precision=precision,
                         cache_size=0, batch_size=batch).load()
        pred.predict_batch(pictures[:batch])  # warm-up
        start = time.perf_counter()
        pred.predict_batch(pictures)
        rate = len(pictures) / (time.perf_counter() - start)
        rows.append({"model": name, "precision": precision, "batch": batch, "end_to_end_img_s": rate})
        print(f"{name:<7} {precision:<5} predict_batch({len(pictures)} pictures, batch {batch}): "
              f"{rate:6.1f} img/s end to end", flush=True)
    return rows


def fidelity(name: str, model: torch.nn.Module, pictures: list[Path]) -> list[dict]:
    """Mask MAE (0..1) of each GPU path against the CPU exact path on the same pictures."""
    from PIL import Image

    imgs = [Image.open(p).convert("RGB") for p in pictures]
    x = torch.from_numpy(np.stack([preprocess(img, 320) for img in imgs]))
    cpu = accel.prepare(model, "cpu", "exact")(x).numpy()
    ref = [np.asarray(postprocess(cpu[i, 0], img.size), np.float32) for i, img in enumerate(imgs)]
    rows = []
    runs = {"exact": accel.prepare(model, "cuda", "exact"), "fast": accel.prepare(model, "cuda", "fast")}
    # PyTorch's own default for float32 convolutions on CUDA (TF32), which "exact" turns off.
    tf32_net = _network(model, "exact", torch.contiguous_format)

    @torch.inference_mode()
    def tf32(x: torch.Tensor) -> torch.Tensor:
        before = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = True
        try:
            return tf32_net(x.cuda()).float().cpu()
        finally:
            torch.backends.cudnn.allow_tf32 = before

    runs["float32 with TF32 (not used)"] = tf32
    for label, run in runs.items():
        out = run(x).numpy()
        errs = [float(np.abs(np.asarray(postprocess(out[i, 0], img.size), np.float32) - ref[i]).mean() / 255)
                for i, img in enumerate(imgs)]
        rows.append({"model": name, "path": label, "mae_vs_cpu_exact": statistics.mean(errs),
                     "worst": max(errs), "map_max_abs_diff": float(np.abs(out - cpu).max())})
        print(f"{name:<7} {label:<28}: mask MAE vs CPU exact {statistics.mean(errs):.5f} "
              f"(worst {max(errs):.5f}), saliency max |Δ| {rows[-1]['map_max_abs_diff']:.1e}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path,
                        default=Path(os.environ.get("U2NET_HOME", ROOT.parent / "shared" / "weights")))
    parser.add_argument("--models", nargs="+", default=["u2net", "u2netp"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64, 128])
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per figure")
    parser.add_argument("--layouts", nargs="+", default=["NCHW", "NHWC"], choices=["NCHW", "NHWC"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs one", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    torch.backends.cudnn.allow_tf32 = False  # "network" rows in float32 as "exact" runs it
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}; paper: {PAPER_FPS:.0f} img/s (u2net, GTX 1080 Ti)", flush=True)
    pictures = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix == ".jpg")
    result: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for name in args.models:
        model, real = _model(name, args.weights_dir)
        print(f"--- {name} ({'real weights' if real else 'random weights: timings only'})", flush=True)
        result["rows"] += throughput(name, model, args.batch_sizes, args.seconds, args.layouts)
        result["rows"] += engine_throughput(name, model, [b for b in args.batch_sizes if b >= 8][:2],
                                            args.seconds)
        if real:
            result["rows"] += fidelity(name, model, pictures)
            result["rows"] += end_to_end(name, args.weights_dir / f"{name}.onnx", pictures * 16, 32)
    best = max((r for r in result["rows"] if r.get("model") == "u2net" and "network_img_s" in r),
               key=lambda r: r["network_img_s"], default=None)
    if best:
        print(f"u2net best: {best['network_img_s']:.0f} img/s ({best['precision']}, {best['layout']}, "
              f"batch {best['batch']}) = {best['network_img_s'] / PAPER_FPS:.1f}× the paper's "
              f"{PAPER_FPS:.0f} img/s on a GTX 1080 Ti", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

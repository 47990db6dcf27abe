"""Milliseconds per 320 × 320 inference on the CPU: this engine vs onnxruntime, same run.

Both run the same rembg .onnx weights on the same input tensor with the same thread count
(torch.set_num_threads / onnxruntime intra_op_num_threads), measured alternately so a busy
machine slows both alike; the median of each is printed with their ratio.

    .venv/bin/python benchmarks/bench_engine.py [--threads N] [--repeats R] [--models u2netp u2net]

"engine" is what the Predictor runs: u2net.accel.prepare(model, cpu, "exact"); "torch eager"
is the plain inference-form model, for reference.
"""

from __future__ import annotations

import argparse
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
from u2net.model import load_model  # noqa: E402


def _weights(name: str) -> Path:
    home = Path(os.environ.get("U2NET_HOME", ROOT.parent / "shared" / "weights"))
    path = home / f"{name}.onnx"
    if not path.is_file():
        sys.exit(f"{path} not found: set U2NET_HOME to a folder holding {name}.onnx")
    return path


def _ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def bench(name: str, threads: int, repeats: int, with_eager: bool = True) -> dict[str, float]:
    """Median ms per inference for each runner on one model."""
    import onnxruntime as ort

    path = _weights(name)
    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    model = load_model(name, path)
    engine = accel.prepare(model, torch.device("cpu"), "exact")
    eager = load_model(name, path)

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 320, 320)).astype(np.float32))
    xn = x.numpy()

    def run_eager() -> None:
        with torch.inference_mode():
            eager(x)

    runners = {
        "onnxruntime": lambda: sess.run([sess.get_outputs()[0].name], {input_name: xn}),
        "engine": lambda: engine(x),
    }
    if with_eager:
        runners["torch eager"] = run_eager
    # Same answer before timing anything.
    diff = float(np.abs(engine(x).numpy() - sess.run(None, {input_name: xn})[0]).max())
    for fn in runners.values():  # warm-up (first calls allocate, pick kernels)
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for r in range(repeats):
        # Alternate, and rotate who goes first: onnxruntime's pool threads spin for a while
        # after each run, slowing whoever runs next; the pause lets them go idle.
        for key in order[r % len(order):] + order[:r % len(order)]:
            time.sleep(0.05)
            times[key].append(_ms(runners[key]))
    result = {k: statistics.median(v) for k, v in times.items()}
    result["max_abs_diff"] = diff
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", nargs="+", default=["u2netp", "u2net"])
    parser.add_argument("--no-eager", action="store_true",
                        help="leave out the plain-PyTorch runner (its allocations share the heap)")
    args = parser.parse_args(argv)
    print(f"CPU, {args.threads} thread(s), 1×3×320×320, median of {args.repeats} alternating runs; "
          f"torch {torch.__version__}")
    print(f"{'model':<8} {'onnxruntime ms':>15} {'engine ms':>10} {'eager ms':>9} "
          f"{'engine/ort':>11} {'eager/ort':>10} {'max|Δ|':>9}")
    for name in args.models:
        r = bench(name, args.threads, args.repeats, not args.no_eager)
        ort_ms = r["onnxruntime"]
        eager = r.get("torch eager", float("nan"))
        print(f"{name:<8} {ort_ms:>15.1f} {r['engine']:>10.1f} {eager:>9.1f} "
              f"{r['engine'] / ort_ms:>10.2f}× {eager / ort_ms:>9.2f}× {r['max_abs_diff']:>9.1e}",
              flush=True)


if __name__ == "__main__":
    main()

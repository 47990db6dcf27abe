"""U²-Net Studio against rembg: same images, same machine, same run, in alternation.

For each model (u2netp, u2net) and each precision mode (exact, fast) this prints the median
end-to-end latency of one image — the bytes of an image file in, the bytes of a PNG cut-out
out — next to rembg's `remove()` doing the same, the ratio, and the fidelity of each side
(mean absolute error of its masks against the published masks, 0..1 scale).

After the mask, --encoding pillow has both sides do the same work: rembg's naive cut-out
(Image.composite onto a transparent image) and a PNG encode with Pillow's defaults, so the
comparison is about the engine. --encoding product (the default, as in the --sizes rows) has
ours do what the app, CLI and batch do instead: the cut-out without decontamination (the
same work as rembg's: the mask as alpha) written by `u2net.outputs.encode`. rembg runs in a
worker process (its own onnxruntime threads never share a process with torch's); each side
times its own call, one call at a time, alternating who goes first.

This script installs nothing. rembg must be importable by this Python or by the one given
with --rembg-python, e.g.:

    python3.11 -m venv /tmp/rembg-venv && /tmp/rembg-venv/bin/pip install rembg onnxruntime
    .venv/bin/python benchmarks/compare_rembg.py --rembg-python /tmp/rembg-venv/bin/python

Weights: U2NET_HOME (default ../shared/weights) must hold u2netp.onnx and u2net.onnx; rembg
reads the same files from there.

Phone-size photos (--sizes 1.5 6 12 24): one photo per size, made at run time by scaling a
reference image (bike.jpg, 3000 × 2000) and saving it as JPEG in a temporary folder. Each
row is end to end — JPEG bytes in, PNG bytes out — for rembg's `remove()` (Pillow's default
PNG settings) and three columns of ours (--encoding pillow: the same PNG settings as rembg;
--encoding product, the default: `u2net.outputs.encode`, what the app, CLI and batch write): exact without decontamination (the same work as rembg), exact with the default
(decontaminated) cut-out, and fast with the default cut-out. It prints medians of alternating
runs, the ratio to rembg, seconds per megapixel and the output file sizes against rembg's:

    .venv/bin/python benchmarks/compare_rembg.py --rembg-python /tmp/rembg-venv/bin/python \
        --sizes 1.5 6 12 24 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

GOALS = {  # mode -> (max latency ratio vs rembg, max mask MAE vs published masks); issue #15
    "exact": (0.9, 0.001),
    "fast": (0.5, 0.003),
}

# The rembg side: one request per line on stdin (JSON), one answer per line on stdout.
WORKER = r"""
import io, json, sys, time
import numpy as np
import onnxruntime as ort
from PIL import Image
from rembg import new_session, remove

threads = int(sys.argv[1])
sessions = {}

def session(model):
    if model not in sessions:
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        sessions[model] = new_session(model, sess_opts=opts, providers=["CPUExecutionProvider"])
    return sessions[model]

print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    s = session(req["model"])
    if req.get("forward"):  # the network alone, on a random 320 x 320 input: the host's speed
        x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
        feed = {s.inner_session.get_inputs()[0].name: x}
        s.inner_session.run(None, feed)
        times = []
        for _ in range(req["forward"]):
            t = time.perf_counter()
            s.inner_session.run(None, feed)
            times.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"ms": sorted(times)[len(times) // 2]}), flush=True)
        continue
    with open(req["path"], "rb") as fh:
        data = fh.read()
    if req.get("mask"):
        mask = remove(data, session=s, only_mask=True, force_return_bytes=True)
        arr = np.asarray(Image.open(io.BytesIO(mask)).convert("L"))
        print(json.dumps({"mask": arr.tobytes().hex(), "size": [arr.shape[1], arr.shape[0]]}), flush=True)
        continue
    t, c = time.perf_counter(), time.process_time()
    out = remove(data, session=s)
    ms = (time.perf_counter() - t) * 1000
    cpu_ms = (time.process_time() - c) * 1000
    print(json.dumps({"ms": ms, "cpu_ms": cpu_ms, "bytes": len(out)}), flush=True)
"""


def find_rembg_python(explicit: str | None) -> str:
    """The Python that runs rembg: --rembg-python, else this one if it can import rembg."""
    if explicit:
        return explicit
    try:
        import rembg  # noqa: F401
    except ImportError:
        sys.exit("rembg is not importable here: install it in another environment and pass "
                 "--rembg-python PATH (see this script's docstring); this script installs nothing")
    return sys.executable


class RembgWorker:
    """rembg's remove() in another process, timed there, one request at a time."""

    def __init__(self, python: str, threads: int, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([python, "-c", WORKER, str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        hello = self._read()
        self.version = hello.get("onnxruntime", "?")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            sys.exit(f"the rembg worker stopped (exit code {self.proc.wait()}); see its error above")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


def naive_cutout_png(rgb, mask) -> bytes:
    """rembg's default output, made the same way: the image composited onto transparent
    black through the mask, saved as PNG with Pillow's defaults."""
    from PIL import Image

    cut = Image.composite(rgb, Image.new("RGBA", rgb.size, 0), mask)
    buf = io.BytesIO()
    cut.save(buf, "PNG")
    return buf.getvalue()


def network_alone(worker: RembgWorker, model: str, preds: dict, repeats: int = 7) -> str:
    """One line: each side's network alone on a random 320 x 320 input (medians), a reading of
    this host's speed at the time of the run, for comparing logs of different runs."""
    import numpy as np

    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    ours = []
    for mode, pred in preds.items():
        pred.forward(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            pred.forward(x)
            times.append((time.perf_counter() - t) * 1000)
        ours.append(f"ours {mode} {statistics.median(times):.0f} ms")
    theirs = worker.ask(model=model, forward=repeats)["ms"]
    return (f"{model} network alone (320 × 320, medians of {repeats}): {', '.join(ours)}; "
            f"onnxruntime {theirs:.0f} ms")


def mask_mae(mask, ref_path: Path) -> float | None:
    """Mean absolute error (0..1) of an "L" mask against a published mask file."""
    import numpy as np
    from PIL import Image

    if not ref_path.is_file():
        return None
    ref = Image.open(ref_path).convert("L")
    if ref.size != mask.size:
        ref = ref.resize(mask.size, Image.BILINEAR)
    diff = np.abs(np.asarray(mask, np.float32) - np.asarray(ref, np.float32))
    return float(diff.mean() / 255.0)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rembg-python", help="a Python with rembg installed (default: this one)")
    ap.add_argument("--images", type=Path, default=SHARED / "reference" / "images",
                    help="folder of test images (default: ../shared/reference/images)")
    ap.add_argument("--reference", type=Path, default=None,
                    help="folder holding <model>_results/ with published masks "
                         "(default: the parent of --images)")
    ap.add_argument("--models", nargs="+", default=["u2netp", "u2net"])
    ap.add_argument("--modes", nargs="+", default=["exact", "fast"], choices=list(GOALS))
    ap.add_argument("--repeats", type=int, default=2, help="passes over the images (default 2)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for both sides (torch.set_num_threads and onnxruntime's "
                         "intra-op threads); 0 keeps each library's default (all cores)")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--sizes", nargs="+", type=float, metavar="MP",
                    help="instead of the reference images: one photo per size in megapixels "
                         "(e.g. 1.5 6 12 24), made from --size-source, three columns of ours")
    ap.add_argument("--size-source", type=Path, default=SHARED / "reference" / "images" / "bike.jpg",
                    help="the picture scaled to each --sizes size (default: reference bike.jpg)")
    ap.add_argument("--encoding", choices=("product", "pillow"), default="product",
                    help="our cut-out's PNG: 'product' (u2net.outputs.encode, default) or "
                         "'pillow' (Image.save defaults, as rembg; on the reference images "
                         "also rembg's naive cut-out)")
    args = ap.parse_args(argv)
    if args.sizes:
        return run_sizes(args)

    os.environ.setdefault("U2NET_HOME", str(SHARED / "weights"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rembg_python = find_rembg_python(args.rembg_python)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        sys.exit(f"no images in {args.images}")
    reference = args.reference or args.images.parent

    sys.path.insert(0, str(ROOT))
    import torch

    from u2net import accel, effects
    from u2net.images import load_image
    from u2net.outputs import encode
    from u2net.predictor import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    worker = RembgWorker(rembg_python, args.threads, dict(os.environ))
    load_start = os.getloadavg()[0]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), rembg's onnxruntime {worker.version} "
          f"({args.threads or 'default'} threads); {len(images)} images × {args.repeats}; "
          f"our cut-out: " + ("u2net.effects.cutout (no decontamination) and u2net.outputs.encode"
                              if args.encoding == "product" else "rembg's, with Pillow's PNG defaults"))
    print(f"load average at start: {load_start:.1f} (other processes on this machine slow both "
          "sides alike; the ratio is the figure to read)")

    results: dict = {}
    for model in args.models:
        preds = {mode: Predictor(model, device="cpu", precision=mode, cache_size=0).load()
                 for mode in args.modes}
        for mode in args.modes:
            print(f"{model} {mode}: {accel.describe('cpu', mode, model)}")

        def ours(mode: str, data: bytes, preds: dict = preds):
            rgb = load_image(data)
            mask = preds[mode].predict(rgb)
            if args.encoding == "product":
                encode(effects.cutout(rgb, mask, decontaminate=False), "png")
            else:
                naive_cutout_png(rgb, mask)
            return mask

        # Warm-up: first calls allocate and pick kernels on both sides.
        data0 = images[0].read_bytes()
        worker.ask(model=model, path=str(images[0]))
        for mode in args.modes:
            ours(mode, data0)
        print(network_alone(worker, model, preds), flush=True)

        times: dict[str, list[float]] = {"rembg": [], **{m: [] for m in args.modes}}
        maes: dict[str, list[float]] = {m: [] for m in args.modes}
        for rep in range(args.repeats):
            for i, path in enumerate(images):
                data = path.read_bytes()
                ref = reference / f"{model}_results" / f"{path.stem}.png"
                sides = ["rembg", *args.modes]
                if (rep + i) % 2:  # alternate who goes first
                    sides.reverse()
                for side in sides:
                    time.sleep(0.02)  # let the other side's spinning threads go idle
                    if side == "rembg":
                        times["rembg"].append(worker.ask(model=model, path=str(path))["ms"])
                        continue
                    t = time.perf_counter()
                    mask = ours(side, data)
                    times[side].append((time.perf_counter() - t) * 1000)
                    if rep == 0:
                        err = mask_mae(mask, ref)
                        if err is not None:
                            maes[side].append(err)
            print(f"  {model}: pass {rep + 1}/{args.repeats} done", flush=True)

        # rembg's own fidelity (untimed): its masks against the same published masks.
        rembg_maes = []
        for path in images:
            from PIL import Image

            got = worker.ask(model=model, path=str(path), mask=True)
            mask = Image.frombytes("L", tuple(got["size"]), bytes.fromhex(got["mask"]))
            err = mask_mae(mask, reference / f"{model}_results" / f"{path.stem}.png")
            if err is not None:
                rembg_maes.append(err)

        base = statistics.median(times["rembg"])
        results[model] = {"rembg": {"median_ms": base, "times_ms": times["rembg"],
                                    "mae": statistics.mean(rembg_maes) if rembg_maes else None}}
        for mode in args.modes:
            paired = [o / r for o, r in zip(times[mode], times["rembg"], strict=True)]
            results[model][mode] = {
                "median_ms": statistics.median(times[mode]), "times_ms": times[mode],
                "ratio": statistics.median(times[mode]) / base,
                "paired_ratio": statistics.median(paired),
                "mae": statistics.mean(maes[mode]) if maes[mode] else None,
                "engine": accel.describe("cpu", mode, model),
            }
        del preds

    worker.close()
    load_end = os.getloadavg()[0]
    print(f"\nload average at end: {load_end:.1f}\n")
    print("| model | engine | median latency | vs rembg (medians) | vs rembg (paired) "
          "| mask MAE vs published | goal |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for model, res in results.items():
        r = res["rembg"]
        print(f"| {model} | rembg (onnxruntime) | {r['median_ms']:.0f} ms | 1.00× | 1.00× "
              f"| {fmt(r['mae'], '.4f')} | |")
        for mode in args.modes:
            m = res[mode]
            max_ratio, max_mae = GOALS[mode]
            ok = m["ratio"] <= max_ratio and m["mae"] is not None and m["mae"] <= max_mae
            goal = f"{'met' if ok else 'NOT met'} (≤ {max_ratio:.1f}×, MAE ≤ {max_mae})"
            print(f"| {model} | ours, {mode} | {m['median_ms']:.0f} ms | {m['ratio']:.2f}× "
                  f"| {m['paired_ratio']:.2f}× | {fmt(m['mae'], '.4f')} | {goal} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(),
                                         "threads": args.threads, "encoding": args.encoding,
                                         "load_start": load_start,
                                         "load_end": load_end, "results": results}, indent=1))
    return 0


# --sizes: the columns of ours, (precision, decontaminate).
SIZE_COLUMNS = {"exact, no decontamination": ("exact", False),
                "exact, default cut-out": ("exact", True),
                "fast, default cut-out": ("fast", True)}


def make_photo(source: Path, megapixels: float, folder: Path) -> Path:
    """`source` scaled to about `megapixels` (same aspect), saved as a JPEG in `folder`."""
    from PIL import Image

    img = Image.open(source).convert("RGB")
    ratio = img.width / img.height
    h = round((megapixels * 1e6 / ratio) ** 0.5)
    w = round(h * ratio)
    path = folder / f"{source.stem}-{megapixels:g}mp.jpg"
    img.resize((w, h), Image.BICUBIC).save(path, "JPEG", quality=92)
    return path


def run_sizes(args) -> int:
    """Rows per photo size: rembg's remove() against three columns of ours, end to end."""
    import tempfile

    os.environ.setdefault("U2NET_HOME", str(SHARED / "weights"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rembg_python = find_rembg_python(args.rembg_python)
    sys.path.insert(0, str(ROOT))
    import torch
    from PIL import Image

    from u2net import effects
    from u2net.images import load_image
    from u2net.predictor import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.encoding == "product":
        from u2net.outputs import encode
    else:
        def encode(image, fmt: str = "png") -> bytes:
            buf = io.BytesIO()
            image.save(buf, "PNG")
            return buf.getvalue()
    worker = RembgWorker(rembg_python, args.threads, dict(os.environ))
    tmp = tempfile.TemporaryDirectory(prefix="u2net-sizes-")
    photos = [make_photo(args.size_source, mp, Path(tmp.name)) for mp in args.sizes]
    load_start = os.getloadavg()[0]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), rembg's onnxruntime {worker.version}; "
          f"{args.repeats} alternating runs per cell; our PNG: "
          f"{'u2net.outputs.encode' if args.encoding == 'product' else 'Pillow defaults'}; "
          f"load average at start {load_start:.1f}")

    columns = list(SIZE_COLUMNS)
    results: dict = {}
    for model in args.models:
        preds = {p: Predictor(model, device="cpu", precision=p, cache_size=0).load()
                 for p in {prec for prec, _ in SIZE_COLUMNS.values()}}

        def ours(column: str, data: bytes, preds: dict = preds) -> int:
            precision, decontaminate = SIZE_COLUMNS[column]
            rgb = load_image(data)
            mask = preds[precision].predict(rgb)
            return len(encode(effects.cutout(rgb, mask, decontaminate=decontaminate), "png"))

        worker.ask(model=model, path=str(photos[0]))  # warm-up: kernels, arenas
        for column in columns:
            ours(column, photos[0].read_bytes())
        print("  " + network_alone(worker, model, preds), flush=True)
        for mp, path in zip(args.sizes, photos, strict=True):
            data = path.read_bytes()
            with Image.open(path) as im:
                size = im.size
            times: dict[str, list[float]] = {c: [] for c in ["rembg", *columns]}
            cpu: dict[str, list[float]] = {c: [] for c in ["rembg", *columns]}
            sizes: dict[str, int] = {}
            for rep in range(args.repeats):
                sides = ["rembg", *columns]
                if rep % 2:
                    sides.reverse()
                for side in sides:
                    time.sleep(0.05)
                    if side == "rembg":
                        got = worker.ask(model=model, path=str(path))
                        times[side].append(got["ms"] / 1000)
                        cpu[side].append(got["cpu_ms"] / 1000)
                        sizes[side] = got["bytes"]
                        continue
                    t, c = time.perf_counter(), time.process_time()
                    sizes[side] = ours(side, data)
                    times[side].append(time.perf_counter() - t)
                    cpu[side].append(time.process_time() - c)
            results[(model, mp)] = {"size": size, "times": times, "cpu": cpu, "bytes": sizes,
                                    "median": {k: statistics.median(v) for k, v in times.items()},
                                    "cpu_median": {k: statistics.median(v) for k, v in cpu.items()}}
            med = results[(model, mp)]["median"]
            print(f"  {model} {mp:g} MP {size[0]}×{size[1]}: rembg {med['rembg']:.2f} s; " + "; ".join(
                f"{c} {med[c]:.2f} s ({med[c] / med['rembg']:.2f}×)" for c in columns), flush=True)
        del preds
    worker.close()
    tmp.cleanup()

    print(f"\nload average at end: {os.getloadavg()[0]:.1f}\n")
    def table(key: str) -> None:
        print("| photo | model | rembg remove() | " + " | ".join(f"ours {c}" for c in columns) + " |")
        print("| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " |")
        for (model, mp), r in results.items():
            med = r[key]
            cells = [f"{med[c]:.2f} s ({med[c] / med['rembg']:.2f}×)" for c in columns]
            w, h = r["size"]
            print(f"| {w}×{h} ({mp:g} MP) | {model} | {med['rembg']:.2f} s | " + " | ".join(cells) + " |")

    table("median")
    print("\nCPU seconds (both sides' threads; steadier than wall time on a busy machine)\n")
    table("cpu_median")
    print("\nSeconds per megapixel, wall (a flat row: cost grows no faster than the pixel count)\n")
    print("| model | side | " + " | ".join(f"{mp:g} MP" for mp in args.sizes) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in args.sizes) + " |")
    for model in args.models:
        for side in ["rembg", *columns]:
            cells = []
            for mp in args.sizes:
                r = results[(model, mp)]
                cells.append(f"{r['median'][side] / (r['size'][0] * r['size'][1] / 1e6):.3f}")
            print(f"| {model} | {side} | " + " | ".join(cells) + " |")
    print("\nOutput file sizes (MB), ours against rembg's for the same photo\n")
    print("| photo | model | rembg | " + " | ".join(f"ours {c}" for c in columns) + " |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " |")
    for (model, mp), r in results.items():
        b = r["bytes"]
        cells = [f"{b[c] / 1e6:.2f} ({b[c] / b['rembg']:.2f}×)" for c in columns]
        print(f"| {mp:g} MP | {model} | {b['rembg'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "encoding": args.encoding,
                                         "results": [{"model": m, "megapixels": mp, **r}
                                                     for (m, mp), r in results.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Batch throughput: images/s for the 18 reference images × 10, against `rembg p` in the same run.

    .venv/bin/python benchmarks/bench_batch.py                       # best setting vs rembg
    .venv/bin/python benchmarks/bench_batch.py --grid                # + every worker setting
    .venv/bin/python benchmarks/bench_batch.py --rembg /tmp/rembg-venv/bin/rembg

The images are copied into a temporary folder at run time (never into the repository). Both
tools are timed end to end as a user runs them (`python -m u2net batch …` and `rembg p …`:
start-up, model load, decoding, inference, writing cut-out PNGs), on the same folder with the
same model file (rembg reads it from U2NET_HOME). The figure to compare is the ratio.

rembg is not a dependency and this script installs nothing. To get it, in a separate venv:
    python3.11 -m venv /tmp/rembg-venv && /tmp/rembg-venv/bin/pip install "rembg[cli]" onnxruntime
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "images"
WEIGHTS = SHARED / "weights"
GRID = [(1, 1), (1, 4), (2, 1), (2, 4)]  # (workers, batch size)


def make_folder(dest: Path, copies: int) -> int:
    images = sorted(p for p in REFERENCE.iterdir() if p.is_file())
    if not images:
        sys.exit(f"no reference images in {REFERENCE}")
    dest.mkdir(parents=True)
    for k in range(copies):
        for img in images:
            shutil.copyfile(img, dest / f"{k:02d}_{img.name}")
    return len(images) * copies


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("U2NET_HOME", str(WEIGHTS))
    e["HF_HUB_OFFLINE"] = "1"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def timed(cmd: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def ours(src: Path, out: Path, model: str, workers: int, batch: int, *extra: str) -> float:
    return timed([sys.executable, "-m", "u2net", "batch", str(src), "-o", str(out), "--outputs", "cutout",
                  "--model", model, "--workers", str(workers), "--batch-size", str(batch), "-q", *extra],
                 out)


def find_rembg(path: str | None) -> str | None:
    for candidate in (path, shutil.which("rembg"), "/tmp/rembg-venv/bin/rembg"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="copies of the 18 images (default 10)")
    parser.add_argument("--model", default="u2netp", choices=("u2netp", "u2net"))
    parser.add_argument("--workers", type=int, default=0, help="our setting (default: the CLI's default)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="exact", choices=("exact", "fast"),
                        help="our precision (default exact; fast = bf16 where the CPU has it natively)")
    parser.add_argument("--grid", action="store_true", help="also time every (workers, batch) setting")
    parser.add_argument("--rembg", help="path to the rembg executable (default: PATH, /tmp/rembg-venv)")
    args = parser.parse_args()

    print(f"CPU cores: {os.cpu_count()}  model: {args.model}  load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        src = Path(tmp) / "in"
        n = make_folder(src, args.copies)
        print(f"{n} images (18 reference images × {args.copies}) in {src}")
        if args.grid:
            print("\nworkers  batch  seconds  images/s   (processes × images per network call)")
            for workers, batch in GRID:
                s = ours(src, Path(tmp) / "grid", args.model, workers, batch)
                print(f"{workers:>7}  {batch:>5}  {s:7.1f}  {n / s:8.2f}")

        precision = ("--precision", args.precision)
        s_ours = ours(src, Path(tmp) / "ours", args.model, args.workers, args.batch_size, *precision)
        label = f"workers={args.workers or 'default'} batch={args.batch_size} precision={args.precision}"
        print(f"\nu2net batch ({label}): {s_ours:.1f} s, {n / s_ours:.2f} images/s")
        # rembg's cut-out keeps the colour fringe at soft edges; ours removes it by default.
        # The same work as rembg: --no-decontaminate.
        s_same = ours(src, Path(tmp) / "same", args.model, args.workers, args.batch_size,
                      *precision, "--no-decontaminate")
        print(f"u2net batch ({label}, --no-decontaminate): {s_same:.1f} s, {n / s_same:.2f} images/s")
        rembg = find_rembg(args.rembg)
        if rembg is None:
            print("rembg: not installed, no ratio. Install it in a separate venv:\n"
                  '  python3.11 -m venv /tmp/rembg-venv && /tmp/rembg-venv/bin/pip install "rembg[cli]" '
                  "onnxruntime\nthen rerun (or pass --rembg PATH).")
            return
        s_rembg = timed([rembg, "p", "-m", args.model, str(src), str(Path(tmp) / "rembg")],
                        Path(tmp) / "rembg")
        made = len(list((Path(tmp) / "rembg").glob("*.png")))
        print(f"rembg p -m {args.model}: {s_rembg:.1f} s, {n / s_rembg:.2f} images/s ({made} outputs)")
        print(f"ratio (ours / rembg, images/s): {s_rembg / s_ours:.2f}× with our default cut-out, "
              f"{s_rembg / s_same:.2f}× doing the same work (--no-decontaminate)")


if __name__ == "__main__":
    main()

"""Batch throughput against `rembg p` in the same run, on the folders people bring.

    .venv/bin/python benchmarks/bench_batch.py                       # three folders vs rembg
    .venv/bin/python benchmarks/bench_batch.py --folders phone --repeats 3
    .venv/bin/python benchmarks/bench_batch.py --grid                # + every worker setting

Folders, made at run time in a temporary folder (never in the repository):
- "small": the 18 reference images (most under 1 megapixel), once;
- "phone": 6 phone-size photos (12 megapixels, JPEG), reference images scaled up;
- "many": the 18 reference images × 5 (90 images), where start-up is spread thin.

Both tools are timed end to end as a user runs them (`python -m u2net batch …` and `rembg p …`:
start-up, model load, decoding, inference, writing cut-out PNGs), on the same folder with the
same model file (rembg reads it from U2NET_HOME), the sides in alternating order. Our columns:
the default cut-out (decontaminated), "fast" precision, and without decontamination (the same
work as rembg). Printed: seconds, images/s ratio against rembg p, and the outputs' total size
against rembg's. The figures to compare are the ratios.

rembg is not a dependency and this script installs nothing. To get it, in a separate venv:
    python3.11 -m venv /tmp/rembg-venv && /tmp/rembg-venv/bin/pip install "rembg[cli]" onnxruntime
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


PHONE_SOURCES = ("bike.jpg", "boat.jpg", "horse.jpg", "0002-01.jpg", "hockey.png", "sailboat3.jpg")


def make_folder(dest: Path, copies: int) -> int:
    images = sorted(p for p in REFERENCE.iterdir() if p.is_file())
    if not images:
        sys.exit(f"no reference images in {REFERENCE}")
    dest.mkdir(parents=True)
    for k in range(copies):
        for img in images:
            shutil.copyfile(img, dest / f"{k:02d}_{img.name}")
    return len(images) * copies


def make_phone_folder(dest: Path, megapixels: float = 12.0) -> int:
    """Reference images scaled up to phone size (same aspect), saved as JPEG quality 92."""
    from PIL import Image

    dest.mkdir(parents=True)
    for name in PHONE_SOURCES:
        img = Image.open(REFERENCE / name).convert("RGB")
        h = round((megapixels * 1e6 * img.height / img.width) ** 0.5)
        w = round(h * img.width / img.height)
        img.resize((w, h), Image.BICUBIC).save(dest / f"{Path(name).stem}-{megapixels:g}mp.jpg", quality=92)
    return len(PHONE_SOURCES)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.png"))


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


FOLDERS = {"small": "18 reference images", "phone": "6 phone photos (12 MP)",
           "many": "18 reference images × 5 (90)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side per folder (default 2)")
    parser.add_argument("--model", default="u2netp", choices=("u2netp", "u2net"))
    parser.add_argument("--workers", type=int, default=0, help="our setting (default: the CLI's default)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--grid", action="store_true", help="also time every (workers, batch) setting")
    parser.add_argument("--rembg", help="path to the rembg executable (default: PATH, /tmp/rembg-venv)")
    args = parser.parse_args()
    rembg = find_rembg(args.rembg)
    if rembg is None:
        sys.exit("rembg: not installed, no ratio. Install it in a separate venv:\n"
                 '  python3.11 -m venv /tmp/rembg-venv && /tmp/rembg-venv/bin/pip install "rembg[cli]" '
                 "onnxruntime\nthen rerun (or pass --rembg PATH).")

    print(f"CPU cores: {os.cpu_count()}  model: {args.model}  load average: {os.getloadavg()[0]:.1f}")
    sides = {
        "rembg p": lambda src, out: timed([rembg, "p", "-m", args.model, str(src), str(out)], out),
        "ours, default cut-out": lambda src, out: ours(src, out, args.model, args.workers, args.batch_size),
        "ours, fast": lambda src, out: ours(src, out, args.model, args.workers, args.batch_size,
                                            "--precision", "fast"),
        # rembg's cut-out keeps the colour fringe at soft edges; ours removes it by default.
        "ours, no decontamination": lambda src, out: ours(src, out, args.model, args.workers,
                                                          args.batch_size, "--no-decontaminate"),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for folder in args.folders:
            src = Path(tmp) / folder
            n = make_phone_folder(src) if folder == "phone" else make_folder(src, 5 if folder == "many" else 1)
            if args.grid:
                print(f"\n{FOLDERS[folder]}: workers  batch  seconds  images/s")
                for workers, batch in GRID:
                    s = ours(src, Path(tmp) / "grid", args.model, workers, batch)
                    print(f"{workers:>7}  {batch:>5}  {s:7.1f}  {n / s:8.2f}")
            times: dict[str, list[float]] = {side: [] for side in sides}
            sizes: dict[str, int] = {}
            for rep in range(args.repeats):
                order = list(sides) if rep % 2 == 0 else list(reversed(sides))
                for side in order:
                    out = Path(tmp) / "out"
                    times[side].append(sides[side](src, out))
                    sizes[side] = folder_bytes(out)
                    made = len(list(out.rglob("*.png")))
                    if made < n:
                        sys.exit(f"{side} wrote {made} of {n} cut-outs")
            med = {side: statistics.median(t) for side, t in times.items()}
            print(f"{FOLDERS[folder]}: " + "; ".join(f"{side} {med[side]:.1f} s" for side in sides), flush=True)
            rows.append((folder, n, med, sizes))

    print(f"\nload average at end: {os.getloadavg()[0]:.1f}; medians of {args.repeats} runs\n")
    print("| folder | " + " | ".join(sides) + " |")
    print("| --- | " + " | ".join("---:" for _ in sides) + " |")
    for folder, n, med, _sizes in rows:
        base = med["rembg p"]
        cells = [f"{med['rembg p']:.1f} s ({n / base:.2f} img/s)"]
        cells += [f"{med[s]:.1f} s ({base / med[s]:.2f}×)" for s in list(sides)[1:]]
        print(f"| {FOLDERS[folder]} | " + " | ".join(cells) + " |")
    print("\nOutputs' total size (MB; ours against rembg's)\n")
    print("| folder | " + " | ".join(sides) + " |")
    print("| --- | " + " | ".join("---:" for _ in sides) + " |")
    for folder, _n, _med, sizes in rows:
        base = sizes["rembg p"]
        cells = [f"{base / 1e6:.1f}"] + [f"{sizes[s] / 1e6:.1f} ({sizes[s] / base:.2f}×)" for s in list(sides)[1:]]
        print(f"| {FOLDERS[folder]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

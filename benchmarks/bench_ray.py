"""The Ray engine against the local engine: images/s on the same images in the same run, and
where the Ray engine's time goes, stage by stage.

    .venv/bin/python benchmarks/bench_ray.py                  # 18 reference images × 2
    .venv/bin/python benchmarks/bench_ray.py --copies 5 --outputs cutout,mask,boxes
    .venv/bin/python benchmarks/bench_ray.py --device cuda --batch-size 32 --megapixels 1.5 --copies 20

Both engines run in this process on the same folder, with the same outputs and the same
model: the local engine with its default worker processes (one per core), the Ray engine on a
local Ray started here (127.0.0.1 only; its start-up is printed apart, as a cluster is
started once for many batches). Each run is timed end to end as `run_batch` / `run_batch_ray`
run it (worker start-up, model loads, decoding, network, rendering, writing) and steady
(images/s from the first quarter of the images done to the last, start-up left out). The Ray engine's
per-stage seconds come from its journal (every image row records decode, network, render).
The images are copied into a temporary folder at run time (never into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference" / "images"
sys.path.insert(0, str(ROOT))

# Ray on loopback only, no usage statistics (set before Ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("U2NET_HOME", str(SHARED / "weights"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_folder(dest: Path, copies: int, megapixels: float | None = None) -> int:
    """Copies of the reference images; with `megapixels`, as JPEGs scaled to that size."""
    from PIL import Image

    images = sorted(p for p in REFERENCE.iterdir() if p.is_file())
    if not images:
        sys.exit(f"no reference images in {REFERENCE}")
    dest.mkdir(parents=True)
    for img in images:
        if megapixels:
            picture = Image.open(img).convert("RGB")
            scale = (megapixels * 1e6 / (picture.width * picture.height)) ** 0.5
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                                     Image.LANCZOS)
        for k in range(copies):
            if megapixels:
                picture.save(dest / f"{k:02d}_{img.stem}.jpg", quality=90)
            else:
                shutil.copyfile(img, dest / f"{k:02d}_{img.name}")
    return len(images) * copies


def steady(done: list[float]) -> float:
    """Images/s once running: from the first quarter of the images done to the last, so
    neither engine's start-up (processes, model loads) counts."""
    k = len(done) // 4
    return (len(done) - 1 - k) / (done[-1] - done[k]) if len(done) > 4 and done[-1] > done[k] else float("nan")


def network_alone(src: Path, args: argparse.Namespace) -> tuple[float, str]:
    """Images/s of the network by itself in this process (inputs preprocessed beforehand),
    as the Ray engine's actors call it: on the CPU one image per call on one thread, times
    the cores; on a GPU `--batch-size` (default 32) images per call."""
    import numpy as np
    import torch

    from u2net.images import load_image
    from u2net.predictor import Predictor, preprocess

    predictor = Predictor(args.model, None, args.device, args.precision, cache_size=0).load()
    size = predictor.input_size
    images = sorted(src.iterdir())[:18]
    x = np.stack([preprocess(load_image(p), size) for p in images])
    on_gpu = args.device.startswith("cuda")
    per_call = (args.batch_size or 32) if on_gpu else 1
    cores = 1 if on_gpu else os.cpu_count() or 1
    if not on_gpu:  # one thread, as each CPU actor runs, times the cores: the CPU's ceiling
        torch.set_num_threads(1)
    if per_call > len(x):
        x = np.concatenate([x] * -(-per_call // len(x)))[:per_call]
    calls = [torch.from_numpy(x[i:i + per_call]) for i in range(0, len(x), per_call)]
    predictor._forward(calls[0])  # warm-up
    started = time.perf_counter()
    done = 0
    for _ in range(2):
        for batch in calls:
            predictor._forward(batch)
            done += len(batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    rate = done / (time.perf_counter() - started) * cores
    return rate, f"{per_call} per call" + ("" if on_gpu else f", 1 thread × {cores} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of the 18 images (default 2)")
    parser.add_argument("--model", default="u2netp", choices=("u2netp", "u2net"))
    parser.add_argument("--outputs", default="cutout,mask")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="exact", choices=("exact", "fast"))
    parser.add_argument("--batch-size", type=int, default=None, help="Ray engine: images per network call")
    parser.add_argument("--megapixels", type=float, default=None,
                        help="scale the images to this size as JPEGs (the issue's GPU check: 1.5)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    args = parser.parse_args()

    import ray

    from u2net.batch import JOURNAL, run_batch
    from u2net.ray_batch import run_batch_ray, worker_runtime_env

    kinds = args.outputs.split(",")
    common = dict(model=args.model, device=args.device, precision=args.precision)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        src = Path(tmp) / "images"
        n = make_folder(src, args.copies, args.megapixels)
        print(f"{n} images ({args.copies} × the 18 reference images), outputs {args.outputs}, "
              f"{args.model} {args.precision} on {args.device}, {os.cpu_count()} CPU cores")

        local_done: list[float] = []
        local = run_batch([src], Path(tmp) / "local", kinds, **common,
                          progress=lambda *_: local_done.append(time.perf_counter()))
        print(f"local engine: {local.seconds:6.1f} s  {n / local.seconds:6.2f} img/s end to end, "
              f"{steady(local_done):6.2f} img/s steady")

        started = time.perf_counter()
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING", runtime_env=worker_runtime_env())
        print(f"ray.init (once per cluster, not counted below): {time.perf_counter() - started:.1f} s")
        try:
            ray_done: list[float] = []
            remote = run_batch_ray([src], Path(tmp) / "ray", kinds, batch_size=args.batch_size,
                                   **common, progress=lambda *_: ray_done.append(time.perf_counter()))
        finally:
            ray.shutdown()
        print(f"ray engine:   {remote.seconds:6.1f} s  {n / remote.seconds:6.2f} img/s end to end, "
              f"{steady(ray_done):6.2f} img/s steady")
        if local.ok and remote.ok:
            same = all((Path(tmp) / "local" / name).read_bytes() == (Path(tmp) / "ray" / name).read_bytes()
                       for row in local.rows for name in row["outputs"].split(";"))
            print(f"outputs byte-identical: {same}")
        ratio = local.seconds / remote.seconds
        print(f"ray / local throughput: {ratio:.2f} end to end (Ray's overhead {100 * (1 - ratio):.0f} %, "
              f"goal ≤ 20 %), {steady(ray_done) / steady(local_done):.2f} steady")

        alone = network_alone(src, args)
        print(f"network alone ({alone[1]}): {alone[0]:6.2f} img/s; ray engine end to end / network "
              f"alone: {n / remote.seconds / alone[0]:.2f}  (goal on a GPU ≥ 0.50)")

        rows = [json.loads(line) for line in (Path(tmp) / "ray" / JOURNAL).read_text().splitlines()]
        stages = [r["stages"] for r in rows if r.get("event") == "image" and "stages" in r]
        total = {k: sum(s[k] for s in stages) for k in ("decode", "network", "render")}
        busy = sum(total.values())
        print("ray engine, seconds per image by stage (summed over workers; wall time is shorter):")
        for name, label in (("decode", "decode + preprocess (CPU tasks)"),
                            ("network", "network (actor pool)"),
                            ("render", "upsample + render + encode + write (CPU tasks)")):
            print(f"  {label:48s} {total[name] / len(stages):6.3f} s  {100 * total[name] / busy:5.1f} %")


if __name__ == "__main__":
    main()

"""How much freed heap a process keeps, and what the forward pass pays when it keeps too little.

Each run is a fresh process (the heap's layout differs from process to process, so one
process says little): it loads the model the way the Predictor does, with glibc's trim
threshold set to one of the values compared, and then does what a batch worker does with each
reference image (decode, mask, default cut-out, PNG), timing each and counting the page
faults the process takes. The values alternate process by process so a
busy machine slows them alike. Printed per value: the share of processes that re-fault their
activations on every image, the faults and milliseconds per image (medians over
processes), and the peak resident memory.

    .venv/bin/python benchmarks/bench_malloc.py [--model u2netp] [--processes 8] \
        [--keep-mib 128 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, re, resource, statistics, sys, time
import numpy as np, torch
from u2net import accel
accel.KEEP_FREED_BYTES = int(sys.argv[1])
from u2net.predictor import Predictor
torch.set_num_threads(int(sys.argv[3]))
from u2net.images import load_image
from u2net.outputs import encode, render
p = Predictor(sys.argv[2], cache_size=0).load()
photos = [open(f, "rb").read() for f in sys.argv[5:]]

def one(data):  # what a batch worker does with a photo
    image = load_image(data)
    encode(render(image, p.predict(image), ["cutout"]).images["cutout"])

for data in photos[:3]:
    one(data)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
times = []
for i in range(int(sys.argv[4])):
    t = time.perf_counter()
    one(photos[i % len(photos)])
    times.append(time.perf_counter() - t)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(times)
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
print(json.dumps({"faults": faults, "ms": 1e3 * statistics.median(times), "hwm_mib": hwm}))
"""


def one_process(keep_bytes: int, model: str, threads: int, forwards: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    photos = sorted((ROOT.parent / "shared" / "reference" / "images").glob("*.jpg"))
    if not photos:
        sys.exit("no reference images: ../shared/reference/images beside the project")
    done = subprocess.run([sys.executable, "-c", CHILD, str(keep_bytes), model, str(threads),
                           str(forwards), *map(str, photos)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"a measuring process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--processes", type=int, default=8, help="fresh processes per value")
    ap.add_argument("--forwards", type=int, default=10, help="timed masks per process")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep-mib", type=int, nargs="+", default=[128, 1024],
                    help="trim thresholds compared (MiB); the first is the peer")
    args = ap.parse_args()

    runs: dict[int, list[dict]] = {k: [] for k in args.keep_mib}
    for _ in range(args.processes):
        for keep in args.keep_mib:
            runs[keep].append(one_process(keep * 2**20, args.model, args.threads, args.forwards))
    print(f"{args.model}, {args.threads} threads, {args.processes} fresh processes per value, "
          f"{args.forwards} masks each (load average {os.getloadavg()[0]:.1f})\n")
    print("| trim threshold | processes re-faulting (> 1000 faults/image) | faults/image "
          "(median) | ms per image (median) | vs the first | peak RSS MiB (median) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    peer = statistics.median(r["ms"] for r in runs[args.keep_mib[0]])
    for keep, rs in runs.items():
        ms = statistics.median(r["ms"] for r in rs)
        bad = sum(r["faults"] > 1000 for r in rs)
        print(f"| {keep} MiB | {bad} of {len(rs)} | {statistics.median(r['faults'] for r in rs):.0f} "
              f"| {ms:.1f} | {ms / peer:.2f}× | {statistics.median(r['hwm_mib'] for r in rs):.0f} |")
    print("\nper process (faults/image, ms):")
    for keep, rs in runs.items():
        print(f"  {keep} MiB: " + ", ".join(f"{r['faults']:.0f}/{r['ms']:.0f}" for r in rs))


if __name__ == "__main__":
    main()

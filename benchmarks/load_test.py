"""Load test: many gradio_client clients against the real app on loopback.

    .venv/bin/python benchmarks/load_test.py                  # 8 clients × 25 requests
    .venv/bin/python benchmarks/load_test.py --clients 4 --requests 10 --url http://127.0.0.1:7860

Starts `python app.py` on a free 127.0.0.1 port (tests/app_server.py) unless --url is given,
then:

1. the peer: one client alone, `--baseline` requests, one at a time;
2. the load: `--clients` clients at once, each sending `--requests` requests one after another
   to the all-outputs endpoint (/all_outputs: mask, cut-out, background, boxes, highlight,
   crop, portrait from one upload).

Every request uploads a different picture (an example photo with one pixel changed), so the
mask cache never answers and each request is a real network pass. Every answer is checked:
seven outputs where the portrait weights exist (six and a note where they do not), each a
decodable image of the upload's size in the right mode, and the boxes JSON. Printed: failed
requests, invalid outputs, p50/p95/max latency, throughput, and the server's peak resident
memory (the kernel's VmHWM of the app process, plus RSS before the load), with ratios
against the one-client peer measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

EXAMPLES = ["cat.jpg", "astronaut.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg"]
MODES = {0: "L", 1: "RGBA", 2: "RGB", 3: "RGB", 4: "RGB"}  # mask, cutout, background, boxes, highlight


def make_uploads(folder: Path, count: int) -> list[tuple[Path, tuple[int, int]]]:
    """`count` distinct PNGs from the example photos (one pixel differs), with their sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    for name in EXAMPLES:
        with Image.open(ROOT / "examples" / name) as im:
            bases.append(im.convert("RGB"))
    uploads = []
    for i in range(count):
        img = bases[i % len(bases)].copy()
        img.putpixel((i % img.width, (i // img.width) % img.height), (i % 256, 7, 200))
        path = folder / f"upload_{i:04d}.png"
        img.save(path, compress_level=1)
        uploads.append((path, img.size))
    return uploads


def server_pid(port: int) -> int | None:
    """The pid of the `app.py --port PORT` process (Linux /proc), for its memory figures."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"app.py") for a in args) and str(port).encode() in args:
            return int(entry.name)
    return None


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def check_answer(result, size: tuple[int, int]) -> str | None:
    """None when the answer is complete and valid, else what is wrong."""
    if not isinstance(result, (list, tuple)) or len(result) < 10:
        return f"unexpected answer shape: {type(result).__name__}"
    for i, mode in MODES.items():
        try:
            with Image.open(result[i]) as im:
                im.load()
                if (im.mode, im.size) != (mode, size):
                    return f"output {i}: {im.mode} {im.size}, expected {mode} {size}"
        except Exception as exc:  # noqa: BLE001 - any unreadable output is a failure to report
            return f"output {i} unreadable: {exc}"
    try:
        with Image.open(result[5]) as im:  # the crop: any size, but a real image
            im.load()
    except Exception as exc:  # noqa: BLE001
        return f"crop unreadable: {exc}"
    if result[6] is None and "Portrait" not in (result[9] or ""):
        return "no portrait and no note saying why"
    if not isinstance(result[8], dict) or "boxes" not in result[8]:
        return f"boxes JSON missing: {result[8]!r}"
    return None


def run_client(url: str, uploads: list[tuple[Path, tuple[int, int]]], downloads: Path,
               model: str) -> list[tuple[float, str | None]]:
    """One client sending its uploads one after another: [(seconds, problem or None)]."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(downloads))
    results = []
    for path, size in uploads:
        started = time.perf_counter()
        try:
            answer = client.predict(handle_file(str(path)), model, "white", "dim", "free",
                                    api_name="/all_outputs")
            problem = check_answer(answer, size)
        except Exception as exc:  # noqa: BLE001 - a failed request is what we count
            problem = f"request failed: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        results.append((seconds, problem))
        print(f"{time.strftime('%H:%M:%S')} {path.name} {seconds:.2f} s {problem or 'ok'}",
              file=sys.stderr, flush=True)  # progress, and partial figures if stopped early
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def phase(url: str, uploads, clients: int, per_client: int, work: Path, model: str,
          pid: int | None) -> dict:
    """Run `clients` clients × `per_client` requests; latency, failures, throughput, memory."""
    chunks = [uploads[i * per_client:(i + 1) * per_client] for i in range(clients)]
    peak = {"rss": 0}
    stop = threading.Event()

    def sample() -> None:  # RSS over time, alongside the kernel's own high-water mark
        while not stop.is_set() and pid:
            try:
                peak["rss"] = max(peak["rss"], memory_kb(pid)["VmRSS"])
            except (OSError, KeyError):
                return
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run_client, url, chunk, work / f"dl{i}", model) for i, chunk in enumerate(chunks)]
        results = [r for f in futures for r in f.result()]
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    latencies = [s for s, _ in results]
    problems = [p for _, p in results if p]
    return {"requests": len(results), "failed": len(problems), "problems": problems[:5], "wall": wall,
            "p50": statistics.median(latencies), "p95": percentile(latencies, 95), "max": max(latencies),
            "throughput": len(results) / wall, "rss_peak_sampled_kb": peak["rss"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=25, help="requests per client")
    p.add_argument("--baseline", type=int, default=10, help="requests of the one-client peer")
    p.add_argument("--model", default="u2netp")
    p.add_argument("--url", help="an app already running (default: start one on a free loopback port)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="u2net-load-"))
    uploads = make_uploads(work / "uploads", args.baseline + args.clients * args.requests + 1)
    with (contextlib.nullcontext(args.url) if args.url else _start_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        pid = server_pid(port)
        from gradio_client import Client, handle_file

        # Warm-up: the first request loads the model; it is not part of either figure.
        warm = Client(url, verbose=False, download_files=str(work / "warm"))
        warm.predict(handle_file(str(uploads[-1][0])), args.model, "white", "dim", "free",
                     api_name="/all_outputs")
        before = memory_kb(pid) if pid else {}
        peer = phase(url, uploads[: args.baseline], 1, args.baseline, work / "peer", args.model, pid)
        load = phase(url, uploads[args.baseline: args.baseline + args.clients * args.requests],
                     args.clients, args.requests, work / "load", args.model, pid)
        after = memory_kb(pid) if pid else {}

    print(f"\nLoad test: /all_outputs, model {args.model}, app on loopback "
          f"({os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the end)")
    print("| run | requests | failed | p50 s | p95 s | max s | requests/s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in ((f"1 client (peer) × {args.baseline}", peer),
                    (f"{args.clients} clients × {args.requests}", load)):
        print(f"| {name} | {r['requests']} | {r['failed']} | {r['p50']:.2f} | {r['p95']:.2f} | "
              f"{r['max']:.2f} | {r['throughput']:.2f} |")
    print(f"\nratios, {args.clients} clients vs 1: p50 ×{load['p50'] / peer['p50']:.2f}, "
          f"throughput ×{load['throughput'] / peer['throughput']:.2f}")
    if before:
        print(f"server memory: RSS {before['VmRSS'] / 1024:.0f} MiB after warm-up, "
              f"peak (VmHWM) {after['VmHWM'] / 1024:.0f} MiB, peak sampled during load "
              f"{load['rss_peak_sampled_kb'] / 1024:.0f} MiB, RSS at the end {after['VmRSS'] / 1024:.0f} MiB")
    for r in (peer, load):
        for problem in r["problems"]:
            print("problem:", problem)
    return 0 if peer["failed"] == 0 and load["failed"] == 0 else 1


def _start_app():
    from tests.app_server import running_app

    env = {"HF_HOME": tempfile.mkdtemp(prefix="u2net-load-hf-")}
    return running_app(env=env)


if __name__ == "__main__":
    sys.exit(main())

"""Phone-size photos through every effect: seconds per megapixel, and peak memory at 24 MP.

    .venv/bin/python benchmarks/bench_big_photos.py                 # 1.5, 6, 12, 24 MP
    .venv/bin/python benchmarks/bench_big_photos.py --sizes 12 --repeats 3
    .venv/bin/python benchmarks/bench_big_photos.py --memory-only

The photos are made at run time by scaling a reference image (bike.jpg, 3000 × 2000) to each
size; nothing is written to the repository. One u2netp mask per photo feeds every output.

Time: each effect on the same (photo, mask), median of --repeats, wall and CPU seconds, and
seconds per megapixel (a flat row means the cost grows no faster than the pixel count); the
app's "all outputs" set (cut-out, white background, boxes, highlight, crop) is summed, and the
cut-out followed by the product's PNG encode (`outputs.encode`) is shown beside it for scale.

Memory: a fresh process loads the model, predicts the 24-megapixel photo's mask and runs
every effect in turn; it prints the process's peak resident memory (VmHWM) after the model
and the mask, and each effect's own peak above what the process held before it (the kernel's
peak counter is reset between effects). The figure to compare with the README is the
process's overall peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SOURCE = SHARED / "reference" / "images" / "bike.jpg"
BRICK = ROOT / "examples" / "background_brick.jpg"

# The app's "all outputs" (app.py): one of each kind with the default options.
ALL_OUTPUTS = ("cutout", "background white", "boxes", "highlight dim", "crop image")


def effect_calls(effects, img, mask) -> dict:
    """Every effect kind on (img, mask), by name."""
    from PIL import Image

    brick = Image.open(BRICK)
    calls = {
        "cutout": lambda: effects.cutout(img, mask),
        "cutout, no decontamination": lambda: effects.cutout(img, mask, decontaminate=False),
        "background white": lambda: effects.replace_background(img, mask, "white"),
        "background blur": lambda: effects.replace_background(img, mask, "blur"),
        "background grayscale": lambda: effects.replace_background(img, mask, "grayscale"),
        "background picture": lambda: effects.replace_background(img, mask, brick),
        "boxes": lambda: effects.draw_boxes(img, effects.bounding_boxes(mask)),
    }
    for mode in effects.HIGHLIGHT_MODES:
        calls[f"highlight {mode}"] = (lambda mode=mode: effects.highlight(img, mask, mode=mode))
    for output in effects.CROP_OUTPUTS:
        calls[f"crop {output}"] = (lambda output=output: effects.crop(img, mask, output=output).image)
    return calls


def make_photo(megapixels: float):
    from PIL import Image

    img = Image.open(SOURCE).convert("RGB")
    ratio = img.width / img.height
    h = round((megapixels * 1e6 / ratio) ** 0.5)
    return img.resize((round(h * ratio), h), Image.BICUBIC)


def status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_child(megapixels: float, model: str) -> dict:
    """Runs in a fresh process: model, mask, then every effect; resident memory in MiB."""
    sys.path.insert(0, str(ROOT))
    from u2net import effects
    from u2net.predictor import Predictor

    img = make_photo(megapixels)
    predictor = Predictor(model, device="cpu", cache_size=0).load()
    out = {"size": img.size, "after model": status_mib("VmRSS")}
    mask = predictor.predict(img)
    out["after mask"] = status_mib("VmRSS")
    out["peak through mask"] = status_mib("VmHWM")
    overall = out["peak through mask"]
    per_effect = {}
    resettable = reset_peak()
    for name, call in effect_calls(effects, img, mask).items():
        before = status_mib("VmRSS")
        result = call()
        del result
        peak = status_mib("VmHWM")
        overall = max(overall, peak)
        per_effect[name] = peak - before if resettable else float("nan")
        reset_peak()
    out["per effect above before"] = per_effect
    out["peak overall"] = overall
    out["peak counter reset"] = resettable
    return out


def run_memory(megapixels: float, model: str) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_big_photos as b; print(json.dumps(b.memory_child({megapixels}, {model!r})))")
    env = dict(os.environ)
    env.setdefault("U2NET_HOME", str(SHARED / "weights"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode:
        sys.exit(f"the memory run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1.5, 6, 12, 24], metavar="MP")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--memory-mp", type=float, default=24.0, help="photo size of the memory run")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args(argv)
    os.environ.setdefault("U2NET_HOME", str(SHARED / "weights"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    report: dict = {"load_start": os.getloadavg()[0]}
    print(f"load average at start {report['load_start']:.1f} (2 shared cores: read CPU seconds "
          "and the shape of each row, not single wall times)")

    if not args.memory_only:
        from u2net import effects, outputs
        from u2net.predictor import Predictor

        predictor = Predictor(args.model, device="cpu", cache_size=0).load()
        times: dict[str, dict[float, tuple[float, float]]] = {}
        pixels = {}
        for mp in args.sizes:
            img = make_photo(mp)
            pixels[mp] = img.width * img.height / 1e6
            mask = predictor.predict(img)
            calls = effect_calls(effects, img, mask)

            def encoded(img=img, mask=mask) -> None:
                outputs.encode(effects.cutout(img, mask), "png")

            calls["cutout + outputs.encode PNG"] = encoded
            for name, call in calls.items():
                wall, cpu = [], []
                for _ in range(args.repeats):
                    t, c = time.perf_counter(), time.process_time()
                    call()
                    wall.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                times.setdefault(name, {})[mp] = (statistics.median(wall), statistics.median(cpu))
            print(f"  {mp:g} MP ({img.width}×{img.height}) done", flush=True)
        for mp in args.sizes:
            total = [sum(times[n][mp][i] for n in ALL_OUTPUTS) for i in (0, 1)]
            times.setdefault("all outputs (app set)", {})[mp] = tuple(total)
        print("\nSeconds (wall / CPU) and CPU seconds per megapixel\n")
        print("| effect | " + " | ".join(f"{mp:g} MP" for mp in args.sizes) + " | CPU s/MP "
              + " · ".join(f"{mp:g}" for mp in args.sizes) + " |")
        print("| --- | " + " | ".join("---:" for _ in args.sizes) + " | ---: |")
        for name, row in times.items():
            cells = [f"{row[mp][0]:.2f} / {row[mp][1]:.2f}" for mp in args.sizes]
            per_mp = " · ".join(f"{row[mp][1] / pixels[mp]:.3f}" for mp in args.sizes)
            print(f"| {name} | " + " | ".join(cells) + f" | {per_mp} |")
        report["times"] = {n: {str(mp): v for mp, v in row.items()} for n, row in times.items()}

    if not args.no_memory:
        mem = run_memory(args.memory_mp, args.model)
        w, h = mem["size"]
        print(f"\nPeak memory, {w}×{h} ({w * h / 1e6:.1f} MP), {args.model}, every effect in one "
              "process (MiB)\n")
        print(f"- after loading the model: {mem['after model']:.0f}; after the mask: "
              f"{mem['after mask']:.0f} (peak so far {mem['peak through mask']:.0f})")
        print(f"- **peak overall: {mem['peak overall']:.0f} MiB "
              f"({mem['peak overall'] / 1024:.2f} GiB)**")
        if mem["peak counter reset"]:
            print("- each effect's own peak above what the process held before it:")
            for name, extra in sorted(mem["per effect above before"].items(), key=lambda kv: -kv[1]):
                print(f"  - {name}: +{extra:.0f}")
        report["memory"] = mem
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

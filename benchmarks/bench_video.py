"""Video throughput at 640×360 on this machine: frames per second for u2netp and u2net, next to
peers measured in the same run (the network alone on the same frames, and the video plumbing
alone with a constant mask), plus the flicker measure with and without temporal smoothing.

    .venv/bin/python benchmarks/bench_video.py [--seconds 2] [--fps 12] [--models u2netp u2net]

The clip is made here: a slow pan across examples/coffee.jpg with a little sensor noise per
frame (noise is what makes masks flicker), H.264 + AAC, like a phone clip scaled down; and a
still view of the same photo, where every mask change is flicker.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from u2net.predictor import Predictor  # noqa: E402
from u2net.video import process_video  # noqa: E402

W, H = 640, 360


def make_clip(path: Path, seconds: float, fps: int, still: bool = False) -> Path:
    """A pan across the photo (still=False) or a fixed view of it; noise on every frame."""
    photo = Image.open(ROOT / "examples" / "coffee.jpg").convert("RGB")
    photo = photo.resize((int(photo.width * 1.6), int(photo.height * 1.6)), Image.LANCZOS)
    big = np.asarray(photo)
    n = int(round(seconds * fps))
    rng = np.random.default_rng(0)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    aus = out.add_stream("aac", rate=44100)
    aus.layout = "mono"
    for i in range(n):
        x = (big.shape[1] - W) // 2 if still else int((big.shape[1] - W) * i / max(n - 1, 1))
        y = (big.shape[0] - H) // 2
        window = big[y:y + H, x:x + W].astype(np.float32) + rng.normal(0, 4, (H, W, 3))
        frame = av.VideoFrame.from_ndarray(np.clip(window, 0, 255).astype(np.uint8), format="rgb24")
        frame.pts = i
        out.mux(vs.encode(frame))
    out.mux(vs.encode())
    total = int(seconds * 44100)
    for start in range(0, total, 1024):
        t = np.arange(start, min(start + 1024, total)) / 44100
        frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None],
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts = 44100, start
        out.mux(aus.encode(frame))
    out.mux(aus.encode())
    out.close()
    return path


class ConstantMask:
    """The plumbing's peer: a centred ellipse for every frame, no network."""

    def predict_batch(self, images):
        w, h = images[0].size
        yy, xx = np.mgrid[0:h, 0:w]
        m = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1
        mask = Image.fromarray((m * 255).astype(np.uint8), "L")
        return [mask] * len(images)


def frames_of(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as c:
        return [f.to_image() for f in c.decode(video=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["u2netp", "u2net"])
    parser.add_argument("--background", default="blur")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.seconds, args.fps)
        frames = frames_of(clip)
        n = len(frames)
        print(f"clip: {n} frames, {W}×{H}, {args.fps} fps, H.264 + AAC; background={args.background}; "
              f"batch {args.batch_size}; output .mp4 (H.264 veryfast + AAC copy)")

        t = time.perf_counter()
        process_video(clip, Path(tmp) / "plumbing.mp4", background=args.background,
                      predictor=ConstantMask(), batch_size=args.batch_size)
        plumbing = n / (time.perf_counter() - t)
        print(f"\n{'what':<44}{'frames/s':>10}{'× plumbing':>12}")
        print(f"{'plumbing only (decode+effect+encode)':<44}{plumbing:>10.1f}{1.0:>12.2f}")
        t = time.perf_counter()
        process_video(clip, Path(tmp) / "plumbing.mp4", background=args.background,
                      predictor=ConstantMask(), batch_size=args.batch_size, decontaminate=False)
        fast = n / (time.perf_counter() - t)
        print(f"{'  … with decontaminate=False':<44}{fast:>10.1f}{fast / plumbing:>12.2f}")

        results = {}
        for model in args.models:
            predictor = Predictor(model, cache_size=0)  # every frame through the network
            predictor.predict_batch(frames[:2])  # load weights, warm up
            t = time.perf_counter()
            for i in range(0, n, args.batch_size):
                predictor.predict_batch(frames[i:i + args.batch_size])
            network = n / (time.perf_counter() - t)
            report = process_video(clip, Path(tmp) / f"{model}.mp4", background=args.background,
                                   predictor=predictor, batch_size=args.batch_size)
            whole = report.frames / report.seconds
            results[model] = (network, whole, report)
            print(f"{model + ' network alone':<44}{network:>10.2f}{network / plumbing:>12.3f}")
            print(f"{model + ' whole video (process_video)':<44}{whole:>10.2f}{whole / plumbing:>12.3f}")
        if len(results) > 1:
            a, b = args.models[0], args.models[1]
            print(f"\n{a} is {results[a][1] / results[b][1]:.1f}× faster than {b} end to end "
                  f"(network alone: {results[a][0] / results[b][0]:.1f}×)")
        for model, (network, whole, _) in results.items():
            print(f"{model}: the video plumbing costs {100 * (1 - whole / network):.0f}% of the "
                  f"network-alone rate")

        model = args.models[0]
        cached = Predictor(model)  # the same masks for every smoothing value: run them once
        still = make_clip(Path(tmp) / "still.mp4", args.seconds, args.fps, still=True)
        print(f"\ntemporal smoothing ({model}): mean frame-to-frame mask change (0..1, lower = "
              "steadier) and lag (mean |mask used − frame's own mask|)")
        print(f"{'smoothing':>10}{'still: change':>15}{'ratio':>7}{'pan: change':>13}{'ratio':>7}{'pan: lag':>10}")
        for smoothing in (0.0, 0.3, 0.5, 0.7):
            rows = [process_video(c, Path(tmp) / "smooth.mp4", background="mask", predictor=cached,
                                  smoothing=smoothing, batch_size=args.batch_size) for c in (still, clip)]
            still_r, pan_r = rows
            print(f"{smoothing:>10.1f}{still_r.mask_change:>15.4f}"
                  f"{still_r.mask_change / still_r.raw_mask_change:>7.2f}{pan_r.mask_change:>13.4f}"
                  f"{pan_r.mask_change / pan_r.raw_mask_change:>7.2f}{pan_r.smoothing_lag:>10.4f}")


if __name__ == "__main__":
    main()

"""PNG encoding of phone-size outputs: the product's `outputs.encode` against Pillow's default
(zlib level 6, what rembg writes) and the encoder before the strips (Pillow, level 1, Z_RLE).

    .venv/bin/python benchmarks/bench_png.py                      # 1.5, 6, 12, 24 MP, 3 repeats
    .venv/bin/python benchmarks/bench_png.py --sizes 12 --repeats 5

The photos are made at run time by scaling a reference image (bike.jpg, 3000 × 2000) to each
size; one real u2netp mask per photo gives the three outputs encoded: the cut-out (RGBA,
decontaminated, zero where alpha is 0), a white background (RGB) and the mask itself (L).
Nothing is written to the repository.

Each encoder runs on the same image, interleaved, --repeats times; the medians of wall and CPU
seconds are printed with the file size, and ratios against Pillow's default from the same run.
"outputs.encode" runs with the product's threads (min(4, CPU cores)) and with one thread (a
batch worker, or one of the app's "All outputs" threads); the bytes are the same. The last
row is `encode(..., fast=True)` (a video's PNG frames): the same strips without zlib level 6,
as RGB outputs always are. Every file is decoded once and compared with the input's pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
SOURCE = SHARED / "reference" / "images" / "bike.jpg"


def make_photo(megapixels: float):
    from PIL import Image

    img = Image.open(SOURCE).convert("RGB")
    ratio = img.width / img.height
    h = round((megapixels * 1e6 / ratio) ** 0.5)
    return img.resize((round(h * ratio), h), Image.BICUBIC)


def pillow(image, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.5, 6, 12, 24], help="megapixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("U2NET_HOME", str(SHARED / "weights"))

    import numpy as np
    from PIL import Image

    from u2net import effects, outputs
    from u2net.predictor import Predictor

    threads = effects.thread_count()

    def product(image) -> bytes:
        return outputs.encode(image, "png")

    def product_one_thread(image) -> bytes:
        with effects.threads_here(1):
            return outputs.encode(image, "png")

    def run_length_only(image) -> bytes:
        return outputs.encode(image, "png", fast=True)

    encoders = {
        "Pillow default (level 6; rembg)": lambda image: pillow(image),
        "before: Pillow level 1, Z_RLE": lambda image: pillow(image, compress_level=1, compress_type=zlib.Z_RLE),
        f"outputs.encode, {threads} threads": product,
        "outputs.encode, 1 thread": product_one_thread,
        f"encode(fast=True), {threads} threads": run_length_only,
    }
    predictor = Predictor("u2netp", device="cpu", cache_size=0).load()
    print(f"PNG encoding, {os.cpu_count()} CPU cores, product threads {threads}; median of "
          f"{args.repeats}; wall s / CPU s / MB, and x Pillow's default (size; wall time)")
    for megapixels in args.sizes:
        photo = make_photo(megapixels)
        mask = predictor.predict(photo)
        pictures = {"cut-out RGBA": effects.cutout(photo, mask),
                    "white background RGB": effects.replace_background(photo, mask, "white"),
                    "mask L": mask}
        print(f"\n{megapixels:g} MP ({photo.width} x {photo.height})")
        for what, image in pictures.items():
            walls: dict[str, list[float]] = {name: [] for name in encoders}
            cpus: dict[str, list[float]] = {name: [] for name in encoders}
            sizes: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, encode in encoders.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    data = encode(image)
                    walls[name].append(time.perf_counter() - t0)
                    cpus[name].append(time.process_time() - c0)
                    if name not in sizes:
                        decoded = np.asarray(Image.open(io.BytesIO(data)))
                        assert np.array_equal(decoded, np.asarray(image)), (what, name)
                        sizes[name] = len(data)
                    assert len(data) == sizes[name], (what, name)  # the same bytes every time
            base = next(iter(encoders))
            base_wall, base_size = statistics.median(walls[base]), sizes[base]
            print(f"  {what}")
            for name in encoders:
                wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
                print(f"    {name:34s} {wall:6.3f} / {cpu:6.3f} s  {sizes[name] / 1e6:7.3f} MB"
                      f"   size x{sizes[name] / base_size:.4f}  time x{wall / base_wall:.2f}")


if __name__ == "__main__":
    main()

"""A ruler for masks: the salient-object-detection metrics and the matting metrics.

`evaluate(images_dir, truth_dir, predictor=..., ...)` runs a model over a folder of images (or
reads a folder of predictions) and scores the masks against ground-truth masks or alpha mattes
matched by file stem (`photo.jpg` ↔ `photo.png`).

Salient object detection (computed with `pysodmetrics`, the library the field uses; it
binarises the truth at 128 and min-max normalises each prediction, as the MATLAB toolboxes do):
    mae          mean absolute error
    max_f        maximum over 256 thresholds of the mean F-measure (β² = 0.3)
    mean_f       mean over thresholds of the mean F-measure (β² = 0.3)
    s_measure    structure measure (α = 0.5)
    mean_e       mean over thresholds of the enhanced-alignment measure
    max_e        maximum over thresholds of the enhanced-alignment measure
    weighted_f   weighted F-measure (Margolin et al.)
Each is the mean over images (F and E: the mean curve over images, then its max / mean).

Matting (written here, following the evaluation code of the alphamatting.com benchmark,
Rhemann et al. CVPR 2009, as released with Deep Image Matting, Xu et al. 2017). Alphas are on
the 0..1 scale; the sums are divided by 1000, the usual scaling of papers' tables:
    alpha_mae     mean |α − α*| (no binarising or normalising: "how far are the two mattes")
    sad           Σ |α − α*| / 1000
    mse           mean (α − α*)²   (papers often print it × 10³)
    gradient      Σ (‖∇G_σ α‖ − ‖∇G_σ α*‖)² / 1000, derivative-of-Gaussian σ = 1.4
    connectivity  Σ |φ(α) − φ(α*)| / 1000, threshold step 0.1, φ cut-off 0.15
The sums and means run over the unknown band of a trimap (pixels strictly between 0 and 255)
when a trimap folder is given, else over the whole image. Each is the mean over images.

`pysodmetrics` is imported only when SOD metrics are asked for (`u2net eval`), never at the
app's start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .images import load_image, load_mask
from .vocabulary import DEFAULT_MODEL, MASK_MODELS, PRECISIONS, OptionError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif")
SOD_METRICS = ("mae", "max_f", "mean_f", "s_measure", "mean_e", "max_e", "weighted_f")
MATTING_METRICS = ("alpha_mae", "sad", "mse", "gradient", "connectivity")
METRICS = SOD_METRICS + MATTING_METRICS
INSTALL_HINT = "pip install pysodmetrics==1.6.2"


# --------------------------------------------------------------------------- matting metrics


def _unit(alpha: np.ndarray | Image.Image) -> np.ndarray:
    """A matte as float64 0..1 (uint8 arrays and "L" images are divided by 255)."""
    arr = np.asarray(alpha)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64)


def _region(trimap: np.ndarray | Image.Image | None, shape: tuple[int, ...]) -> np.ndarray:
    """Where the matting metrics are summed: the trimap's unknown band, else everywhere."""
    if trimap is None:
        return np.ones(shape[:2], bool)
    t = np.asarray(trimap)
    if t.ndim == 3:
        t = t[..., 0]
    if t.dtype != np.uint8:
        t = np.round(np.clip(t, 0, 1) * 255).astype(np.uint8)
    return (t > 0) & (t < 255)


def sad(alpha: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Sum of absolute differences over the region, divided by 1000 (alphas 0..1)."""
    a, t = _unit(alpha), _unit(truth)
    return float(np.abs(a - t)[_region(trimap, a.shape)].sum() / 1000.0)


def mse(alpha: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean squared difference over the region (alphas 0..1); 0 for an empty region."""
    a, t = _unit(alpha), _unit(truth)
    r = _region(trimap, a.shape)
    return float(((a - t) ** 2)[r].mean()) if r.any() else 0.0


def _gauss_gradient(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """‖∇(G_σ * a)‖ with the benchmark's derivative-of-Gaussian kernel (ε = 0.01 sets the half
    size; the 2-D kernel g(y)·g'(x) is normalised to unit L2 norm). It is separable, so it runs
    as two 1-D passes: the same numbers as the 2-D convolution, in a fraction of the time."""
    half = int(math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -x * g / sigma ** 2
    norm = math.sqrt(float((g ** 2).sum() * (dg ** 2).sum()))
    gx = ndimage.convolve1d(ndimage.convolve1d(a, g, axis=0, mode="nearest"), dg / norm, axis=1,
                            mode="nearest")
    gy = ndimage.convolve1d(ndimage.convolve1d(a, dg / norm, axis=0, mode="nearest"), g, axis=1,
                            mode="nearest")
    return np.sqrt(gx ** 2 + gy ** 2)


def gradient_error(alpha: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Σ (‖∇α‖ − ‖∇α*‖)² over the region / 1000 (Gaussian derivative, σ = 1.4; alphas 0..1)."""
    a, t = _unit(alpha), _unit(truth)
    err = (_gauss_gradient(a) - _gauss_gradient(t)) ** 2
    return float(err[_region(trimap, a.shape)].sum() / 1000.0)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(binary)  # 4-connected, as the benchmark code
    if not count:
        return np.zeros_like(binary, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def connectivity_error(alpha: np.ndarray, truth: np.ndarray, trimap: np.ndarray | None = None,
                       step: float = 0.1) -> float:
    """Connectivity error (Rhemann et al.) over the region / 1000 (alphas 0..1).

    For each pixel, l is the highest threshold (steps of `step`) at which it is still in the
    largest component shared by both mattes; φ(α) = 1 − (α − l)·[α − l ≥ 0.15].
    """
    a, t = _unit(alpha), _unit(truth)
    levels = np.arange(0, 1 + step, step)
    level = np.full(a.shape, -1.0)
    for i in range(1, len(levels)):
        omega = _largest_component((a >= levels[i]) & (t >= levels[i]))
        level[(level == -1) & ~omega] = levels[i - 1]
    level[level == -1] = 1.0
    da, dt = a - level, t - level
    phi_a = 1 - da * (da >= 0.15)
    phi_t = 1 - dt * (dt >= 0.15)
    return float(np.abs(phi_a - phi_t)[_region(trimap, a.shape)].sum() / 1000.0)


def matting_metrics(alpha: np.ndarray | Image.Image, truth: np.ndarray | Image.Image,
                    trimap: np.ndarray | Image.Image | None = None,
                    connectivity: bool = True) -> dict[str, float]:
    """alpha_mae, SAD, MSE, gradient and (optionally, it is the slow one) connectivity error of
    one matte against the truth, over the trimap's unknown band if a trimap is given."""
    a, t = _unit(alpha), _unit(truth)
    if a.shape != t.shape:
        raise OptionError(f"the matte is {a.shape[1]}×{a.shape[0]} but the truth is "
                          f"{t.shape[1]}×{t.shape[0]}: give both at the same size")
    tri = None if trimap is None else np.asarray(trimap)
    r = _region(tri, a.shape)
    out = {"alpha_mae": float(np.abs(a - t)[r].mean()) if r.any() else 0.0,
           "sad": sad(a, t, tri), "mse": mse(a, t, tri), "gradient": gradient_error(a, t, tri)}
    if connectivity:
        out["connectivity"] = connectivity_error(a, t, tri)
    return out


# --------------------------------------------------------------------------- the folder run


def _by_stem(folder: str | os.PathLike, what: str) -> dict[str, Path]:
    path = Path(folder)
    if not path.is_dir():
        raise OptionError(f"{what} folder {str(path)!r} does not exist or is not a folder")
    files = {}
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(f.stem, f)
    return files


def _sod_meters():
    try:
        import py_sod_metrics as sod
    except ImportError:
        raise OptionError("the salient-object metrics need pysodmetrics: " + INSTALL_HINT) from None
    with warnings.catch_warnings():  # Fmeasure warns that a V2 exists; its numbers are the classic ones
        warnings.simplefilter("ignore")
        return {"mae": sod.MAE(), "f": sod.Fmeasure(), "s": sod.Smeasure(), "e": sod.Emeasure(),
                "wf": sod.WeightedFmeasure()}


def _sod_results(meters: dict) -> dict[str, float]:
    fm = meters["f"].get_results()["fm"]["curve"]
    em = meters["e"].get_results()["em"]["curve"]
    return {"mae": float(meters["mae"].get_results()["mae"]),
            "max_f": float(np.max(fm)), "mean_f": float(np.mean(fm)),
            "s_measure": float(meters["s"].get_results()["sm"]),
            "mean_e": float(np.mean(em)), "max_e": float(np.max(em)),
            "weighted_f": float(meters["wf"].get_results()["wfm"])}


def evaluate(images_dir: str | os.PathLike, truth_dir: str | os.PathLike, predictor=None,
             predictions_dir: str | os.PathLike | None = None,
             trimaps_dir: str | os.PathLike | None = None,
             refine: Callable[[Image.Image, Image.Image], Image.Image] | None = None,
             sod: bool = True, matting: bool = True, connectivity: bool = True,
             progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Score masks against ground truth, matched by file stem.

    Parameters:
        images_dir: folder of photos (the set: every image with a truth file is scored).
        truth_dir: folder of ground-truth masks or alpha mattes (any image format, "L" read).
        predictor: a `Predictor` (or anything with `.predict(image) -> "L" image`) to run.
        predictions_dir: instead of a predictor, a folder of masks already made.
        trimaps_dir: optional trimaps (0 background, 255 foreground, other values unknown):
            the matting metrics are then summed over the unknown band only.
        refine: optional `f(image, mask) -> mask` applied to each mask before scoring (e.g.
            `lambda im, m: refine.refine_edges(im, m, "guided")`).
        sod, matting, connectivity: which metric families to compute (connectivity is the
            slow one on big images).
        progress: called as progress(done, total, stem) after each image.

    Returns:
        {"count", "metrics": {name: mean value}, "images": [{"name", metric: value…}],
         "missing": [stems without a prediction or trimap], "seconds", "source"}.

    Raises:
        OptionError: neither or both of predictor / predictions_dir, a folder missing, no
            image with a truth file, pysodmetrics not installed (for sod=True).
    """
    if (predictor is None) == (predictions_dir is None):
        raise OptionError("give exactly one of predictor (run a model) or predictions_dir "
                          "(a folder of masks already made)")
    images = _by_stem(images_dir, "images")
    truths = _by_stem(truth_dir, "ground-truth")
    preds = _by_stem(predictions_dir, "predictions") if predictions_dir is not None else None
    trimaps = _by_stem(trimaps_dir, "trimaps") if trimaps_dir is not None else None
    stems = [s for s in images if s in truths]
    if not stems:
        raise OptionError(f"no image in {str(images_dir)!r} has a ground-truth file of the same "
                          f"name in {str(truth_dir)!r} (matched by name without the extension)")
    meters = _sod_meters() if sod else None
    rows: list[dict] = []
    missing: list[str] = []
    start = time.perf_counter()
    for i, stem in enumerate(stems):
        if (preds is not None and stem not in preds) or (trimaps is not None and stem not in trimaps):
            missing.append(stem)
            continue
        truth = load_mask(truths[stem])
        if preds is not None:
            mask = load_mask(preds[stem], size=truth.size)
            image = None
        else:
            image = load_image(images[stem])
            mask = load_mask(predictor.predict(image), size=truth.size)
        if refine is not None:
            image = image if image is not None else load_image(images[stem])
            mask = load_mask(refine(image, mask), size=truth.size)
        m, t = np.asarray(mask, np.uint8), np.asarray(truth, np.uint8)
        row: dict = {"name": stem}
        if meters is not None:
            meters["mae"].step(m, t)
            meters["f"].step(m, t)
            meters["s"].step(m, t)
            meters["e"].step(m, t)
            meters["wf"].step(m, t)
            row["mae"] = float(meters["mae"].maes[-1])
        if matting:
            tri = load_mask(trimaps[stem], size=truth.size) if trimaps is not None else None
            row.update(matting_metrics(m, t, tri, connectivity=connectivity))
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(stems), stem)
    if not rows:
        raise OptionError("no image could be scored: every one lacks a prediction or a trimap "
                          f"({', '.join(missing[:5])}…)")
    metrics: dict[str, float] = {}
    if meters is not None:
        metrics.update(_sod_results(meters))
    if matting:
        for name in MATTING_METRICS:
            values = [r[name] for r in rows if name in r]
            if values:
                metrics[name] = float(np.mean(values))
    source = (f"predictions {predictions_dir}" if predictions_dir is not None else
              f"model {getattr(predictor, 'model_name', type(predictor).__name__)}"
              f" ({getattr(predictor, 'precision', '?')})")
    return {"count": len(rows), "metrics": metrics, "images": rows, "missing": missing,
            "seconds": round(time.perf_counter() - start, 3), "source": source,
            "trimaps": trimaps_dir is not None}


def format_table(result: dict, per_image: bool = False) -> str:
    """The metrics as a small text table (↑ higher is better, ↓ lower is better)."""
    better = {"max_f": "↑", "mean_f": "↑", "s_measure": "↑", "mean_e": "↑", "max_e": "↑",
              "weighted_f": "↑"}
    names = [n for n in METRICS if n in result["metrics"]]
    lines = [f"{result['count']} images · {result['source']}"
             + (" · matting metrics over the trimaps' unknown band" if result.get("trimaps") else "")]
    lines.append(f"{'metric':<14}{'value':>12}")
    for n in names:
        lines.append(f"{n + ' ' + better.get(n, '↓'):<14}{result['metrics'][n]:>12.6g}")
    if per_image:
        cols = [n for n in names if n in result["images"][0]]
        lines.append("")
        lines.append(f"{'image':<20}" + "".join(f"{c:>13}" for c in cols))
        for r in result["images"]:
            lines.append(f"{r['name'][:19]:<20}" + "".join(f"{r[c]:>13.6g}" for c in cols))
    if result["missing"]:
        lines.append(f"skipped (no prediction or trimap): {', '.join(result['missing'])}")
    return "\n".join(lines)


def write_json(result: dict, path: str | os.PathLike) -> None:
    """The result as JSON (UTF-8, indented)."""
    Path(path).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")



# --------------------------------------------------------------------------- `u2net eval`

def add_eval_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add `eval IMAGES TRUTH [options]` to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "eval", help="score masks against ground truth (MAE, F, S, E, weighted F; SAD, MSE, "
                     "gradient, connectivity)",
        description="Run a model over a folder of images (or read a folder of masks already "
                    "made) and score the masks against ground-truth masks or alpha mattes of the "
                    "same names. Prints a table; --json writes every number.")
    p.add_argument("images", help="folder of images")
    p.add_argument("truth", help="folder of ground-truth masks or alpha mattes (same names)")
    p.add_argument("--predictions", help="score this folder of masks instead of running a model")
    p.add_argument("--trimaps", help="folder of trimaps: matting metrics over their unknown band only")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MASK_MODELS)
    p.add_argument("--weights", help="explicit weights file (.onnx or .pth)")
    p.add_argument("--device", help="cpu, cuda, cuda:0 … (default: CUDA when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="exact")
    from .refine import REFINE_METHODS

    p.add_argument("--refine", choices=REFINE_METHODS, default="none",
                   help="refine each mask's edges at full resolution before scoring")
    p.add_argument("--no-connectivity", dest="connectivity", action="store_false",
                   help="skip the connectivity error (the slow metric on big images)")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.set_defaults(func=run_eval_command)
    return p


def run_eval_command(args: argparse.Namespace) -> int:
    """Run `u2net eval` from parsed arguments; 0 when scored, 2 when refused."""
    import sys

    from .errors import U2NetError

    predictor = None
    if args.predictions is None:
        from .predictor import Predictor

        predictor = Predictor(args.model, args.weights, args.device, args.precision)
    refine = None
    if args.refine != "none":
        from .refine import refine_edges

        def refine(image: Image.Image, mask: Image.Image) -> Image.Image:
            return refine_edges(image, mask, method=args.refine)

    def progress(done: int, total: int, stem: str) -> None:
        if not args.quiet:
            print(f"\r{done}/{total} {stem[:40]:<40}", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

    try:
        result = evaluate(args.images, args.truth, predictor=predictor,
                          predictions_dir=args.predictions, trimaps_dir=args.trimaps, refine=refine,
                          connectivity=args.connectivity, progress=progress)
    except U2NetError as exc:
        print(f"u2net eval: {exc}", file=sys.stderr)
        return 2
    if args.refine != "none":
        result["refine"] = args.refine
        result["source"] += f" + refine {args.refine}"
    print(format_table(result, per_image=args.per_image))
    if args.json_path:
        write_json(result, args.json_path)
    return 0

"""`python -m u2net` / `u2net`: argument parsing only; the work is u2net.batch.run_batch (and
u2net.video.process_video). Every choice and default comes from u2net.vocabulary, and the
options are checked once, as u2net.outputs.RenderOptions, before anything runs.

    u2net cutout photo.jpg                      -> photo_cutout.png beside it
    u2net mask photos/ -r -o masks/             -> masks/<same structure>/<name>_mask.png
    u2net batch photos.zip -o out.zip --outputs cutout,mask,boxes --workers 2

Exit status: 0 when every image succeeded, 1 when some failed (the summary says which),
2 when the command was refused before anything ran (bad option, unsafe output path, hostile
archive), 130 when interrupted (run the same command again to resume a batch).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .vocabulary import (
    ASPECTS,
    CROP_OUTPUTS,
    DEFAULT_BACKGROUND,
    DEFAULT_MARK_COLOUR,
    DEFAULT_MODEL,
    FITS,
    HIGHLIGHT_MODES,
    MASK_MODELS,
    OUTPUT_HELP,
    OUTPUT_KINDS,
    PORTRAIT_MODEL,
    PRECISIONS,
    REFINE_METHODS,
    VIDEO_BACKGROUND_KEYWORDS,
)


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _nonneg(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _model_opts(parser: argparse.ArgumentParser) -> None:
    """The predictor's settings, the same for every command."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, choices=MASK_MODELS,
                       help="u2netp (small, fast; default), u2net (full), u2net_human_seg (people)")
    model.add_argument("--weights", help="explicit weights file (.onnx or .pth); for `portrait`, the "
                       "portrait model's")
    model.add_argument("--device", help="cpu, cuda, cuda:0 … (default: CUDA when available)")
    model.add_argument("--precision", choices=PRECISIONS, default="exact",
                       help="exact: the published model's answer; fast: may trade a little fidelity")


def _common(parser: argparse.ArgumentParser, batch: bool) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders, quoted globs ('photos/**/*.jpg') or .zip archives")
    parser.add_argument("-o", "--output", required=batch,
                        help="output folder or .zip" + ("" if batch else
                             "; for one input an image path (e.g. cut.png); default: beside the input"))
    parser.add_argument("-r", "--recursive", action="store_true", help="include sub-folders of folders")
    _model_opts(parser)
    run = parser.add_argument_group("running")
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes, one torch thread each (default: one per CPU core; "
                          "1: in this process)")
    run.add_argument("--batch-size", type=int, default=1, help="images per network call per worker")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    correct = parser.add_argument_group("mask corrections (used by every output)")
    correct.add_argument("--refine", dest="edges", choices=REFINE_METHODS, default="none",
                         help="bring the mask's edge to the photo's resolution: guided (fast) or "
                              "matting (finer, slower); default none")
    correct.add_argument("--strokes", metavar="FILE",
                         help="a picture of 'keep' (green, or white in a grey image) and 'remove' "
                              "(red, or black) paint over the photo; one input image only")
    correct.add_argument("--objects", metavar="RANKS",
                         help="keep only these objects, by rank as the boxes number them (1 = the "
                              "largest), e.g. 1 or 1,2")
    refine = parser.add_argument_group("mask refinement (used by every output)")
    refine.add_argument("--threshold", type=_unit, help="hard edge at this level (0..1); default soft")
    refine.add_argument("--min-island", type=_nonneg, default=0,
                        help="drop blobs smaller than this (pixels, or a fraction of the image below 1)")
    refine.add_argument("--fill-holes", action="store_true", help="fill holes inside the object")
    refine.add_argument("--feather", type=_nonneg, default=0.0, help="soften the edge (Gaussian sigma, px)")


def _cutout_opts(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cut-out")
    g.add_argument("--no-decontaminate", dest="decontaminate", action="store_false",
                   help="keep the original colours at soft edges (no colour-bleed removal)")


def _background_opts(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("background")
    g.add_argument("--background", "--bg", default=DEFAULT_BACKGROUND,
                   help="a colour (name such as white or grey, #hex, 'green screen'), blur, "
                        "grayscale or transparent")
    g.add_argument("--background-image", metavar="FILE",
                   help="a picture to put behind the object (wins over --background)")
    g.add_argument("--fit", choices=FITS, default="cover", help="how a background picture is fitted")
    g.add_argument("--blur-radius", type=_nonneg, default=12.0, help="blur strength for --background blur")


def _boxes_opts(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("boxes")
    g.add_argument("--box-threshold", type=_unit, default=0.5, help="mask level counted as object")
    g.add_argument("--min-area", type=_nonneg, default=0.001,
                   help="smallest object: below 1 a fraction of the image, else pixels")
    g.add_argument("--box-colour", "--box-color", default=DEFAULT_MARK_COLOUR, help="box colour")
    g.add_argument("--thickness", type=int, default=3, help="line width in pixels")
    g.add_argument("--no-labels", dest="labels", action="store_false", help="no numbers on boxes")
    g.add_argument("--union", action="store_true", help="also draw one box around all objects")


def _highlight_opts(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("highlight")
    g.add_argument("--mode", dest="highlight_mode", choices=HIGHLIGHT_MODES, default="dim")
    g.add_argument("--strength", type=_unit, default=0.6, help="how strong the effect is (0..1)")
    g.add_argument("--highlight-colour", "--highlight-color", default=DEFAULT_MARK_COLOUR,
                   help="colour for tint and outline")


def _crop_opts(parser: argparse.ArgumentParser, with_threshold: bool) -> None:
    g = parser.add_argument_group("crop")
    g.add_argument("--padding", default="5%", help="margin around the object: '5%%' or pixels")
    g.add_argument("--aspect", choices=ASPECTS, default="free")
    g.add_argument("--crop-output", choices=CROP_OUTPUTS, default="image",
                   help="what the crop shows: the image, the cut-out or the mask")
    if with_threshold:
        g.add_argument("--box-threshold", type=_unit, default=0.5, help="mask level counted as object")


def _portrait_opts(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("portrait")
    g.add_argument("--blend", action="store_true", help="blend the drawing with the photo")
    g.add_argument("--sigma", dest="portrait_sigma", type=_nonneg, default=2.0, help="photo blur for --blend")
    g.add_argument("--alpha", dest="portrait_alpha", type=_unit, default=0.5, help="photo weight for --blend")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per effect, plus `batch` for several outputs."""
    parser = argparse.ArgumentParser(
        prog="u2net", description="U²-Net salient object detection from the command line.",
        epilog="Exit status: 0 all succeeded, 1 some images failed, 2 refused, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    extra = {"cutout": [_cutout_opts], "background": [_background_opts], "boxes": [_boxes_opts],
             "highlight": [_highlight_opts], "crop": [lambda p: _crop_opts(p, True)],
             "portrait": [_portrait_opts], "mask": []}
    for name in OUTPUT_KINDS:
        sub = subs.add_parser(name, help=OUTPUT_HELP[name], description=OUTPUT_HELP[name])
        _common(sub, batch=False)
        for add in extra[name]:
            add(sub)
    batch = subs.add_parser(
        "batch", help="several outputs per image from one network run; resumable, with a manifest",
        description="Folders or .zip archives in, a folder or .zip out (structure kept), several "
                    "outputs per image from one network run. A killed run resumes when the same "
                    "command is run again. manifest.csv lists every input: status, outputs, boxes, error.")
    _common(batch, batch=True)
    batch.add_argument("--outputs", default="cutout,mask",
                       help=f"comma-separated, from: {', '.join(OUTPUT_KINDS)} (default: cutout,mask)")
    batch.add_argument("--no-resume", dest="resume", action="store_false",
                       help="redo every image even if an earlier run finished it")
    cluster = batch.add_argument_group("cluster")
    cluster.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="local: worker processes on this machine (default); ray: a Ray "
                              "cluster (pip install 'ray[data]'; see README 'On a cluster')")
    cluster.add_argument("--ray-address",
                         help="the Ray cluster to join (default: RAY_ADDRESS; without it a local "
                              "Ray on 127.0.0.1)")
    cluster.add_argument("--actors", type=int, default=None,
                         help="most network actors (default: one per CPU, or per GPU share)")
    cluster.add_argument("--gpu-fraction", type=float, default=0.25,
                         help="the share of a GPU each GPU actor takes (default 0.25: four per GPU)")
    for add in (_cutout_opts, _background_opts, _boxes_opts, _highlight_opts,
                lambda p: _crop_opts(p, False), _portrait_opts):
        add(batch)
    _video_parser(subs)
    from .evaluate import add_eval_subcommand

    add_eval_subcommand(subs)
    return parser


def _video_parser(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "video", help="remove or replace the background of a video",
        description="Remove or replace the background of every frame of a video, keeping the "
                    "audio and the frame rate. The output suffix chooses the kind: .mp4, .webm "
                    "(alpha when --background transparent) or .zip (PNG sequence).")
    p.add_argument("input", type=Path, help="input video")
    p.add_argument("output", type=Path, help="output .mp4, .webm or .zip")
    p.add_argument("--background", "-b", default="blur",
                   help="a colour (white, grey, '#00ff00', 'green screen') or one of "
                        f"{', '.join(VIDEO_BACKGROUND_KEYWORDS)} (default: blur)")
    p.add_argument("--background-image", metavar="FILE", type=Path,
                   help="a picture to put behind the object (wins over --background)")
    _model_opts(p)
    p.add_argument("--max-seconds", type=float, default=None, help="process only the first N seconds")
    p.add_argument("--max-side", type=int, default=None, help="scale down to at most N pixels on the long side")
    p.add_argument("--smoothing", type=float, default=0.0,
                   help="temporal mask smoothing 0..<1 against flicker (default 0 = off; try 0.5)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    p.add_argument("--no-decontaminate", dest="decontaminate", action="store_false",
                   help="skip cleaning old background colour from soft edges (about 2× faster effect)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _options(args: argparse.Namespace):
    """The render options from the parsed flags, checked once (OptionError names what is allowed)."""
    import dataclasses

    from .outputs import RenderOptions

    names = {f.name for f in dataclasses.fields(RenderOptions) if f.init}
    return RenderOptions.from_dict({k: v for k, v in vars(args).items() if k in names})


def _run_video(args: argparse.Namespace) -> int:
    """`u2net video`: one predictor from the flags, a progress bar, one line of summary."""
    from tqdm import tqdm

    from .errors import U2NetError
    from .predictor import Predictor
    from .video import process_video

    try:
        predictor = Predictor(args.model, args.weights, args.device, args.precision)
        background = args.background_image if args.background_image is not None else args.background
        bar = tqdm(unit="frame", desc=Path(args.input).name, dynamic_ncols=True, disable=args.quiet)

        def progress(done: int, total: int) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            report = process_video(args.input, args.output, background=background, predictor=predictor,
                                   smoothing=args.smoothing, max_seconds=args.max_seconds,
                                   max_side=args.max_side, progress=progress,
                                   batch_size=args.batch_size, decontaminate=args.decontaminate)
        finally:
            bar.close()
    except (U2NetError, ValueError) as exc:
        print(f"u2net video: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {report.summary}")
    return 0


def _engine(args: argparse.Namespace):
    """run_batch, or for `batch --engine ray` the Ray engine behind the same call. Ray is
    imported only here, so the local engine and the app never need it."""
    from .batch import run_batch

    if getattr(args, "engine", "local") != "ray":
        return run_batch
    from .ray_batch import run_batch_ray  # imports Ray when it runs (a clear error without it)

    def run(inputs, output, kinds, *, workers=None, batch_size=1, manifest=True, **kwargs):
        # Worker processes are Ray's to place; the manifest is always kept. --batch-size left
        # at the local default (1) lets the Ray engine pick its own (4 on CPUs, 32 on GPUs).
        return run_batch_ray(inputs, output, kinds, ray_address=args.ray_address,
                             batch_size=None if batch_size == 1 else batch_size,
                             actors=args.actors, gpu_fraction=args.gpu_fraction, **kwargs)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.command == "video":
        return _run_video(args)
    if args.command == "eval":
        return args.func(args)
    from .archives import ArchiveError
    from .errors import U2NetError

    if args.command == "batch":
        kinds = [k.strip() for k in args.outputs.split(",") if k.strip()]
    else:
        kinds = [args.command]
    if args.strokes and (len(args.inputs) != 1 or not Path(args.inputs[0]).is_file()
                         or Path(args.inputs[0]).suffix.lower() == ".zip"):
        print(f"u2net {args.command}: --strokes paints over one photo: give exactly one image file",
              file=sys.stderr)
        return 2
    output = args.output
    if output is None:
        single = Path(args.inputs[0])
        if len(args.inputs) != 1 or not single.is_file() or single.suffix.lower() == ".zip":
            print(f"u2net {args.command}: give -o/--output (a folder or .zip) for several inputs, "
                  "folders or archives", file=sys.stderr)
            return 2
        output = str(single.with_name(f"{single.stem}_{args.command}.png"))
    try:
        report = _engine(args)(
            args.inputs, output, kinds,
            model=PORTRAIT_MODEL if args.command == "portrait" else args.model, weights=args.weights,
            device=args.device, precision=args.precision, options=_options(args), workers=args.workers,
            batch_size=args.batch_size, recursive=args.recursive,
            manifest=args.command == "batch" or Path(output).suffix.lower() == ".zip",
            resume=getattr(args, "resume", True), progress=not args.quiet)
    except (ArchiveError, U2NetError) as exc:
        print(f"u2net {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nu2net {args.command}: interrupted; finished outputs are complete"
              + ("; run the same command again to resume" if args.command == "batch" else ""),
              file=sys.stderr)
        return 130
    except OSError as exc:
        # The output disk failed (full, read-only, gone); outputs already written are whole.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"u2net {args.command}: cannot write the output{where}: {exc.strerror or exc}; "
              "outputs already written are complete: free some space or choose a writable "
              "output, then run the same command again", file=sys.stderr)
        return 1
    if args.command == "boxes":
        for row in report.rows:
            if row["status"] == "ok":
                print(json.dumps({"input": row["input"], "boxes": json.loads(row["boxes"] or "null")}))
    print(report.summary, file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

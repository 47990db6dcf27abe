"""Video and webcam frames: the same predictor and the same background effects, frame by frame.

`process_video` reads a video with PyAV (which ships its own FFmpeg), runs the predictor on
upright frames in batches, applies one background effect to every frame and writes
  .mp4   H.264 (yuv420p, plays in every browser) + the audio track (copied, or re-encoded to AAC),
  .webm  VP9 (with an alpha channel when background="transparent") + audio (Opus),
  .zip   a PNG sequence (RGBA when transparent) + info.json with every frame's time.
Frame timestamps are kept as they are in the source, so the frame rate, the duration and a
variable frame rate survive unchanged; rotation metadata (phone videos) is applied to the pixels
and the output is written upright. The output appears only when it is complete: it is written to
a temporary file next to `dst` and renamed.

`webcam_frame` is the streaming handler: one RGB numpy frame in, the processed frame out.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from . import effects
from .effects import OptionError, parse_colour
from .errors import InvalidImageError
from .images import load_image

OUTPUT_SUFFIXES = (".mp4", ".webm", ".zip")
# Backgrounds that are not a colour or an image file.
KEYWORD_BACKGROUNDS = ("blur", "grayscale", "transparent", "mask")
# Colours are effects.parse_colour's vocabulary ("green screen" is #00ff00, "green" CSS green).
BACKGROUND_ALIASES = {"gray": "grayscale", "greyscale": "grayscale", "grey": "grayscale",
                      "alpha": "transparent"}

# Limits for a shared public deployment (the app reads them; the library default is no limit).
PUBLIC_MAX_SECONDS = float(os.environ.get("U2NET_VIDEO_MAX_SECONDS", 20))
PUBLIC_MAX_SIDE = int(os.environ.get("U2NET_VIDEO_MAX_SIDE", 640))

# Audio codecs each container takes as they are; anything else is re-encoded.
_AUDIO_COPY = {".mp4": {"aac", "mp3"}, ".webm": {"opus", "vorbis"}}
_AUDIO_ENCODER = {".mp4": ("aac", None), ".webm": ("libopus", 48000)}
_STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe",
                        "jpegls_pipe", "gif_pipe", "svg_pipe", "qoi_pipe", "j2k_pipe", "pam_pipe",
                        "pgm_pipe", "ppm_pipe", "pbm_pipe", "dpx_pipe", "exr_pipe", "psd_pipe")


class VideoError(InvalidImageError):
    """The input is not a video we can process (or an option does not fit it); the message says
    what was wrong and what to do."""


@dataclass(frozen=True)
class VideoReport:
    """What `process_video` wrote.

    Attributes:
        frames: frames written (the same as read, unless `max_seconds` trimmed the video).
        fps: the source's average frame rate (frames per second), kept in the output.
        duration: seconds from the first frame to the end of the last one.
        has_audio: the output carries an audio track.
        smoothing: the temporal smoothing factor used (0 = off).
        summary: one line for a person.
        width, height: output frame size (upright).
        rotation: degrees the source was turned to make it upright (0 when it had no rotation).
        trimmed: `max_seconds` cut the video short.
        mask_change: mean frame-to-frame change of the masks used (0..1); lower = less flicker.
        raw_mask_change: the same for the masks before smoothing.
        smoothing_lag: mean difference between the masks used and the frames' own masks (0..1):
            what smoothing costs (a trail behind moving objects); 0 without smoothing.
        seconds: wall time spent.
        output: the file written.
    """

    frames: int
    fps: float
    duration: float
    has_audio: bool
    smoothing: float
    summary: str
    width: int = 0
    height: int = 0
    rotation: int = 0
    trimmed: bool = False
    mask_change: float = 0.0
    raw_mask_change: float = 0.0
    smoothing_lag: float = 0.0
    seconds: float = 0.0
    output: Path | None = None


@dataclass(frozen=True)
class _Background:
    """A parsed `background` argument: what to do with every frame."""

    kind: str  # "effect" (replace_background), "transparent" or "mask"
    value: Any = None  # replace_background's `background`: (r, g, b), "blur", "grayscale", an image
    label: str = ""


def parse_background(background: str | os.PathLike | tuple) -> _Background:
    """Check a `background` argument once, before any frame is decoded.

    Parameters:
        background: a colour ("white", "#00ff00", "green screen", (r, g, b)),
            "blur", "grayscale", "transparent", "mask", or the path of an image file.

    Returns:
        The parsed background (an image file is loaded once here).

    Raises:
        VideoError: none of the above; InvalidImageError: the image file cannot be read.
    """
    if isinstance(background, tuple):
        if len(background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in background):
            raise VideoError(f"background colour {background!r} must be three integers 0..255")
        return _Background("effect", tuple(background), f"rgb{background}")
    if isinstance(background, os.PathLike):
        background = os.fspath(background)
    if not isinstance(background, str) or not background.strip():
        raise VideoError("background must be a colour, an image file, or one of "
                         + ", ".join(KEYWORD_BACKGROUNDS))
    text = background.strip()
    key = BACKGROUND_ALIASES.get(text.lower(), text.lower())
    if key in ("transparent", "mask"):
        return _Background(key, None, key)
    if key in ("blur", "grayscale"):
        return _Background("effect", key, key)
    try:
        return _Background("effect", parse_colour(text), text)
    except OptionError:
        pass
    path = Path(text).expanduser()
    if path.is_file():
        return _Background("effect", load_image(path), path.name)
    raise VideoError(f"background {text!r} is not a colour (a name or #rrggbb), an existing image "
                     f"file, or one of {', '.join(KEYWORD_BACKGROUNDS)}")


def compose(image: Image.Image, mask: Image.Image, background: _Background,
            decontaminate: bool = True) -> Image.Image:
    """One processed frame: RGB, RGBA for "transparent", the mask as RGB for "mask".
    `decontaminate`: clean the old background's colour from soft edges (see effects.cutout);
    it is most of the per-frame cost of the effect."""
    if background.kind == "mask":
        return mask.convert("RGB")
    if background.kind == "transparent":
        return effects.cutout(image, mask, decontaminate=decontaminate)
    return effects.replace_background(image, mask, background=background.value,
                                      decontaminate=decontaminate)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, before decoding it (see `probe_video`)."""

    width: int  # upright, after rotation
    height: int
    fps: float
    duration: float  # seconds; 0 when the container does not say
    frames: int  # from the header, or estimated from duration × fps; 0 when unknown
    rotation: int
    has_audio: bool
    audio_codec: str | None
    format: str


def _open_input(src: Path) -> av.container.InputContainer:
    if not src.is_file():
        raise VideoError(f"{src}: no such file")
    if src.stat().st_size == 0:
        raise VideoError(f"{src.name}: the file is empty (0 bytes)")
    try:
        container = av.open(str(src), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"{src.name}: not a video we can read ({exc.__class__.__name__}); "
                         "try an MP4, WebM, MOV, MKV, AVI or GIF file") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{src.name}: the file has no video track (is it an audio file?)")
    if container.format.name in _STILL_IMAGE_FORMATS:
        container.close()
        raise VideoError(f"{src.name}: this is a still image, not a video; use the image tools")
    return container


def _first_frame_rotation(container: av.container.InputContainer) -> int | None:
    """Rotation (degrees counter-clockwise, the display matrix) of the first decoded frame;
    None when not a single frame decodes."""
    try:
        for frame in container.decode(video=0):
            return _quarter_turns(frame.rotation) * 90
    except av.error.FFmpegError:
        pass
    return None


def _quarter_turns(rotation: int) -> int:
    # Only right angles occur in practice (phones); other angles are left as they are.
    return (round(rotation / 90) % 4) if rotation % 90 == 0 else 0


def _rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return None


def probe_video(src: str | os.PathLike) -> VideoInfo:
    """Read a video's size, frame rate, length and tracks without processing it.

    Parameters:
        src: the video file.

    Returns:
        A `VideoInfo` (width/height upright, after the rotation metadata).

    Raises:
        VideoError: not a readable video, or not one frame decodes.
    """
    src = Path(src)
    with _open_input(src) as container:
        vs = container.streams.video[0]
        rate = _rate(vs)
        duration = 0.0
        if vs.duration is not None and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        frames = vs.frames or (round(duration * rate) if rate else 0)
        width, height = vs.codec_context.width, vs.codec_context.height
        audio = container.streams.audio[0] if container.streams.audio else None
        fmt = container.format.name
        rotation = _first_frame_rotation(container)
    if rotation is None:
        raise VideoError(f"{src.name}: the video has no frames we can decode")
    if rotation % 180:
        width, height = height, width
    return VideoInfo(width, height, float(rate) if rate else 0.0, duration, int(frames), rotation,
                     audio is not None, audio.codec_context.name if audio else None, fmt)


def _output_size(width: int, height: int, turns: int, max_side: int | None, even: bool
                 ) -> tuple[int, int]:
    """Decoded (pre-rotation) size to ask the scaler for: at most `max_side` on the long side,
    even numbers where the encoder's 4:2:0 chroma needs them."""
    scale = 1.0
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


# ---------------------------------------------------------------------------------------------
# Writing


class _Writer:
    """Encodes processed frames (and the source's audio) into a temporary file."""

    def __init__(self, path: Path, suffix: str, size: tuple[int, int], rate: Fraction,
                 time_base: Fraction, alpha: bool, audio_in: av.audio.stream.AudioStream | None,
                 crf: int) -> None:
        self.suffix, self.alpha, self.size = suffix, alpha, size
        self.frames = 0
        self.times: list[float] = []
        self.audio_mode: str | None = None  # "copy", "encode" or None
        self.audio_end: float | None = None
        if suffix == ".zip":
            self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED)  # PNG is compressed already
            self.rate = rate
            return
        options = {"movflags": "+faststart"} if suffix == ".mp4" else {}
        self.out = av.open(str(path), "w", format="mp4" if suffix == ".mp4" else "webm",
                           options=options)
        if suffix == ".mp4":
            vs = self.out.add_stream("libx264", rate=rate)
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            vs = self.out.add_stream("libvpx-vp9", rate=rate)
            vs.pix_fmt = "yuva420p" if alpha else "yuv420p"
            # "good" + cpu-used 5: several times faster than the default, visually the same here.
            vs.options = {"crf": str(crf + 12), "b": "0", "deadline": "good", "cpu-used": "5",
                          "row-mt": "1"}
        vs.width, vs.height = size
        # The source's timestamps go through unchanged: same frame times, same duration, and a
        # variable frame rate stays variable.
        vs.codec_context.time_base = time_base
        vs.time_base = time_base
        self.video = vs
        self.audio_in = audio_in
        if audio_in is not None:
            name = audio_in.codec_context.name
            if name in _AUDIO_COPY[suffix]:
                self.audio = self.out.add_stream_from_template(audio_in)
                self.audio_mode = "copy"
            else:
                codec, rate_hz = _AUDIO_ENCODER[suffix]
                self.audio = self.out.add_stream(codec, rate=rate_hz or audio_in.codec_context.sample_rate)
                # By channel count: a source layout may be "2 channels" (no order), which AAC
                # refuses; more than two channels are mixed down to stereo.
                channels = audio_in.codec_context.layout.nb_channels
                self.audio.layout = "mono" if channels == 1 else "stereo"
                self.audio_mode = "encode"

    def write(self, frame: Image.Image, pts: int, t: float) -> None:
        self.frames += 1
        self.times.append(t)
        if self.suffix == ".zip":
            buf = io.BytesIO()
            frame.save(buf, "PNG", compress_level=1)  # speed over a few percent of size
            self.zip.writestr(f"frame_{self.frames:06d}.png", buf.getvalue())
            return
        arr = np.asarray(frame.convert("RGBA" if self.alpha else "RGB"))
        vf = av.VideoFrame.from_ndarray(arr, format="rgba" if self.alpha else "rgb24")
        vf.pts = pts
        self.out.mux(self.video.encode(vf))

    def audio_packet(self, packet: av.Packet) -> None:
        if self.audio_mode is None or packet.size == 0 and self.audio_mode == "copy":
            return
        if self.audio_end is not None and packet.pts is not None and packet.time_base is not None \
                and float(packet.pts * packet.time_base) >= self.audio_end:
            return
        if self.audio_mode == "copy":
            if packet.dts is None:
                return
            packet.stream = self.audio
            self.out.mux(packet)
            return
        for frame in packet.decode():
            if self.audio_end is not None and frame.pts is not None and frame.time_base is not None:
                # Cut inside the frame: a PCM packet can hold seconds of sound.
                keep = round((self.audio_end - float(frame.pts * frame.time_base)) * frame.sample_rate)
                if keep <= 0:
                    continue
                if keep < frame.samples:
                    frame = _first_samples(frame, keep)
            frame.pts = None  # the encoder counts samples itself; audio starts with the video
            self.out.mux(self.audio.encode(frame))

    def close(self, info: dict) -> None:
        if self.suffix == ".zip":
            self.zip.writestr("info.json", json.dumps(info, indent=1))
            self.zip.close()
            return
        self.out.mux(self.video.encode(None))
        if self.audio_mode == "encode":
            self.out.mux(self.audio.encode(None))
        self.out.close()

    def abort(self) -> None:
        try:
            (self.zip if self.suffix == ".zip" else self.out).close()
        except Exception:  # the file is being thrown away; its own errors do not matter
            pass


def _first_samples(frame: av.AudioFrame, keep: int) -> av.AudioFrame:
    """The first `keep` samples of an audio frame (planar or packed)."""
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels
    arr = arr[:, :keep] if frame.format.is_planar else arr[:, : keep * channels]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=frame.format.name,
                                     layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


# ---------------------------------------------------------------------------------------------
# Processing


def _mean_change(previous: np.ndarray | None, current: np.ndarray) -> float | None:
    if previous is None:
        return None
    return float(np.abs(current - previous).mean() / 255.0)


def process_video(src: str | os.PathLike, dst: str | os.PathLike, background: str = "blur",
                  model: str = "u2netp", smoothing: float = 0.0, max_seconds: float | None = None,
                  max_side: int | None = None, progress: Callable[[int, int], None] | None = None,
                  *, batch_size: int = 8, predictor: Any = None, crf: int = 20,
                  decontaminate: bool = True) -> VideoReport:
    """Remove or replace the background of every frame of a video.

    Parameters:
        src: the input video (anything FFmpeg reads: MP4, MOV, WebM, MKV, AVI, GIF…).
        dst: the output; its suffix chooses the kind: .mp4 (H.264 + AAC), .webm (VP9, with alpha
            when transparent, + Opus) or .zip (PNG sequence + info.json; no audio).
        background: a colour ("white", "#00ff00", "green screen"), "blur", "grayscale",
            "transparent" (.webm or .zip only), "mask" (the mask video) or an image file.
        model: predictor model name ("u2netp" fast, "u2net" best).
        smoothing: temporal smoothing of the masks, 0 (off) to <1: each mask becomes
            smoothing × previous + (1 − smoothing) × new (an exponential moving average);
            reduces flicker, lags behind fast motion.
        max_seconds: process only the first this-many seconds (None: all).
        max_side: scale frames down so the longer side is at most this many pixels (None: keep).
        progress: called as progress(frames_done, frames_expected) after every batch;
            frames_expected is an estimate from the header (0 when unknown).
        batch_size: frames per network call.
        predictor: an object with predict_batch(images) -> masks (default: get_predictor(model)).
        crf: encoder quality (lower = better, bigger); 20 for H.264, +12 for VP9's scale.
        decontaminate: clean the old background's colour from soft edges, as the image tools
            do; False is about twice as fast per frame on the CPU.

    Returns:
        A `VideoReport`.

    Raises:
        VideoError: not a video, no frames, an unknown background or output suffix, or an
            option that does not fit (e.g. transparent MP4). `dst` is untouched on any error.
    """
    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise VideoError(f"{dst.name}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")
    bg = parse_background(background)
    if bg.kind == "transparent" and suffix == ".mp4":
        raise VideoError("MP4 (H.264) has no alpha channel: write .webm or .zip for a transparent video")
    if not 0.0 <= smoothing < 1.0:
        raise VideoError(f"smoothing must be at least 0 and below 1, got {smoothing}")
    if max_seconds is not None and max_seconds <= 0:
        raise VideoError(f"max_seconds must be positive, got {max_seconds}")
    if max_side is not None and max_side < 16:
        raise VideoError(f"max_side must be at least 16 pixels, got {max_side}")
    if src.resolve() == dst.resolve():
        raise VideoError("the output must be a different file from the input")
    if not dst.parent.is_dir():
        raise VideoError(f"{dst.parent}: the output folder does not exist")

    info = probe_video(src)  # raises VideoError for non-videos before any work
    turns = _quarter_turns(info.rotation)
    if predictor is None:
        from .predictor import get_predictor
        predictor = get_predictor(model)

    container = _open_input(src)
    vs = container.streams.video[0]
    vs.thread_type = "AUTO"
    audio_in = container.streams.audio[0] if container.streams.audio and suffix != ".zip" else None
    rate = _rate(vs) or Fraction(25)
    time_base = vs.time_base or Fraction(1, 90000)
    coded_w, coded_h = vs.codec_context.width, vs.codec_context.height
    dec_w, dec_h = _output_size(coded_w, coded_h, turns, max_side, even=suffix != ".zip")
    out_size = (dec_h, dec_w) if turns % 2 else (dec_w, dec_h)
    expected = info.frames
    if max_seconds is not None and info.fps:
        expected = min(expected, int(np.ceil(max_seconds * info.fps))) if expected else 0

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{suffix}", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer: _Writer | None = None
    state = _State(smoothing)
    try:
        writer = _Writer(tmp, suffix, out_size, rate, time_base, bg.kind == "transparent", audio_in, crf)
        if max_seconds is not None:
            writer.audio_end = (float(vs.start_time * time_base) if vs.start_time else 0.0) + max_seconds
        pending: list[tuple[Image.Image, int, float]] = []

        def flush() -> None:
            masks = predictor.predict_batch([image for image, _, _ in pending])
            for (image, pts, t), mask in zip(pending, masks, strict=True):
                writer.write(compose(image, state.smooth(mask), bg, decontaminate), pts, t)
            pending.clear()
            if progress is not None:
                progress(writer.frames, max(expected, writer.frames))

        trimmed = False
        for image, pts, t in _frames(container, vs, audio_in, writer, (dec_w, dec_h), turns):
            if max_seconds is not None and t >= max_seconds - 1e-6:
                trimmed = True
                break
            pending.append((image, pts, t))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        if writer.frames == 0:
            raise VideoError(f"{src.name}: the video has no frames we can decode")
        if trimmed:
            # The rest of the audio up to the cut: demux what is left of the audio track.
            for packet in container.demux(audio_in) if audio_in is not None else ():
                writer.audio_packet(packet)
        times = writer.times
        frame_duration = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1 / float(rate)
        duration = times[-1] - times[0] + frame_duration
        writer.close({"frames": writer.frames, "fps": float(rate), "duration": duration,
                      "width": out_size[0], "height": out_size[1],
                      "times": [round(t - times[0], 6) for t in times]})
        container.close()
        # mkstemp makes the file private (0600); give it the permissions a new file gets.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    except BaseException:
        if writer is not None:
            writer.abort()
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(writer.frames, writer.frames)

    has_audio = writer.audio_mode is not None
    seconds = time.perf_counter() - started
    notes = []
    if trimmed:
        notes.append(f"trimmed to the first {max_seconds:g} s of {info.duration:.1f} s")
    if turns:
        notes.append(f"turned upright ({turns * 90}° rotation metadata)")
    if (dec_w, dec_h) != (coded_w, coded_h):
        notes.append(f"scaled from {coded_w}×{coded_h}" if turns % 2 == 0 else
                     f"scaled from {coded_h}×{coded_w}")
    if suffix == ".zip" and info.has_audio:
        notes.append("audio not included in a PNG sequence")
    if smoothing:
        notes.append(f"smoothing {smoothing:g}: mask change {state.raw_change:.4f} → {state.change:.4f}")
    summary = (f"{writer.frames} frames, {out_size[0]}×{out_size[1]}, {float(rate):.3g} fps, "
               f"{duration:.2f} s, {'with' if has_audio else 'no'} audio, background {bg.label}; "
               f"{writer.frames / seconds:.1f} frames/s"
               + ("; " + "; ".join(notes) if notes else ""))
    return VideoReport(frames=writer.frames, fps=float(rate), duration=duration, has_audio=has_audio,
                       smoothing=smoothing, summary=summary, width=out_size[0], height=out_size[1],
                       rotation=turns * 90, trimmed=trimmed, mask_change=state.change,
                       raw_mask_change=state.raw_change, smoothing_lag=state.lag, seconds=seconds,
                       output=dst)


def _umask() -> int:
    """The process umask, read without setting it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


@dataclass
class _State:
    """Temporal smoothing of the masks (an exponential moving average) and its measurement."""

    smoothing: float
    previous: np.ndarray | None = None
    previous_raw: np.ndarray | None = None
    changes: list[float] = field(default_factory=list)
    raw_changes: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)

    def smooth(self, mask: Image.Image) -> Image.Image:
        raw = np.asarray(mask, dtype=np.float32)
        out = raw if self.previous is None or not self.smoothing else \
            self.smoothing * self.previous + (1.0 - self.smoothing) * raw
        for prev, cur, log in ((self.previous_raw, raw, self.raw_changes), (self.previous, out, self.changes)):
            change = _mean_change(prev, cur)
            if change is not None:
                log.append(change)
        self.lags.append(float(np.abs(out - raw).mean() / 255.0))
        self.previous_raw, self.previous = raw, out
        if out is raw:
            return mask
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "L")

    @property
    def change(self) -> float:
        return float(np.mean(self.changes)) if self.changes else 0.0

    @property
    def lag(self) -> float:
        return float(np.mean(self.lags)) if self.lags else 0.0

    @property
    def raw_change(self) -> float:
        return float(np.mean(self.raw_changes)) if self.raw_changes else 0.0


def _frames(container: av.container.InputContainer, vs: av.video.stream.VideoStream,
            audio_in: av.audio.stream.AudioStream | None, writer: _Writer, size: tuple[int, int],
            turns: int) -> Iterator[tuple[Image.Image, int, float]]:
    """Upright RGB frames with their pts (source time base) and time from the first frame;
    audio packets met on the way go straight to the writer (one pass over the file)."""
    streams = [vs] + ([audio_in] if audio_in is not None else [])
    first: float | None = None
    last_pts: int | None = None
    step = max(1, round(1 / (float(_rate(vs) or 25) * float(vs.time_base or Fraction(1, 90000)))))
    try:
        for packet in container.demux(*streams):
            if packet.stream.type == "audio":
                writer.audio_packet(packet)
                continue
            for frame in packet.decode():
                pts = frame.pts if frame.pts is not None else (last_pts + step if last_pts is not None else 0)
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # broken files repeat timestamps; encoders need them rising
                last_pts = pts
                t = float(pts * vs.time_base)
                if first is None:
                    first = t
                arr = frame.to_ndarray(width=size[0], height=size[1], format="rgb24",
                                       interpolation="AREA" if size[0] < frame.width else None)
                if turns:
                    arr = np.ascontiguousarray(np.rot90(arr, turns))
                yield Image.fromarray(arr), pts, t - first
    except av.error.InvalidDataError as exc:
        # A damaged tail: keep what decoded so far when there is something, refuse otherwise.
        if last_pts is None:
            raise VideoError(f"the video data cannot be decoded ({exc})") from None


# ---------------------------------------------------------------------------------------------
# Webcam


@functools.lru_cache(maxsize=8)
def _cached_background(background: str) -> _Background:
    return parse_background(background)


def webcam_frame(frame: np.ndarray | None, background: str = "blur", model: str = "u2netp",
                 decontaminate: bool = False) -> np.ndarray | None:
    """Process one webcam frame, as Gradio's streaming Image calls it.

    Parameters:
        frame: H×W×3 uint8 RGB (H×W×4 is accepted; alpha is dropped); None before the camera
            starts (returned as None).
        background: as in `process_video`.
        model: predictor model name.
        decontaminate: edge colour cleaning; off by default here, a live picture needs speed.

    Returns:
        H×W×3 uint8 (H×W×4 for "transparent"), the same height and width as `frame`.
    """
    if frame is None:
        return None
    image = load_image(np.asarray(frame))
    from .predictor import get_predictor
    mask = get_predictor(model).predict(image)
    return np.asarray(compose(image, mask, _cached_background(str(background)), decontaminate))


# ---------------------------------------------------------------------------------------------
# Command line


def add_video_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add `video IN OUT [options]` to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "video", help="remove or replace the background of a video",
        description="Remove or replace the background of every frame of a video, keeping the "
                    "audio and the frame rate. The output suffix chooses the kind: .mp4, .webm "
                    "(alpha when --background transparent) or .zip (PNG sequence).")
    p.add_argument("input", type=Path, help="input video")
    p.add_argument("output", type=Path, help="output .mp4, .webm or .zip")
    p.add_argument("--background", "-b", default="blur",
                   help="colour (white, '#00ff00', 'green screen'), blur, grayscale, "
                        "transparent, mask, or an image file (default: blur)")
    p.add_argument("--model", "-m", default="u2netp", help="u2netp (fast, default) or u2net (best)")
    p.add_argument("--max-seconds", type=float, default=None, help="process only the first N seconds")
    p.add_argument("--max-side", type=int, default=None, help="scale down to at most N pixels on the long side")
    p.add_argument("--smoothing", type=float, default=0.0,
                   help="temporal mask smoothing 0..<1 against flicker (default 0 = off; try 0.5)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    p.add_argument("--no-decontaminate", dest="decontaminate", action="store_false",
                   help="skip cleaning old background colour from soft edges (about 2× faster effect)")
    p.set_defaults(func=run_video_command)
    return p


def run_video_command(args: argparse.Namespace) -> int:
    """Run `video` from parsed arguments with a tqdm progress bar (frames/s); returns the exit code."""
    import sys

    from tqdm import tqdm

    from .errors import U2NetError

    bar = tqdm(unit="frame", desc=Path(args.input).name, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        report = process_video(args.input, args.output, background=args.background, model=args.model,
                               smoothing=args.smoothing, max_seconds=args.max_seconds,
                               max_side=args.max_side, progress=progress,
                               batch_size=getattr(args, "batch_size", 8),
                               decontaminate=getattr(args, "decontaminate", True))
    except U2NetError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    print(f"{args.output}: {report.summary}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m u2net.video IN OUT …` (the same as `python -m u2net video …`)."""
    parser = argparse.ArgumentParser(prog="python -m u2net.video")
    sub = parser.add_subparsers(dest="command", required=True)
    add_video_subcommand(sub)
    args = parser.parse_args(["video", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

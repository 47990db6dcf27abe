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

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from .errors import InvalidImageError
from .images import load_image
from .outputs import RenderOptions, encode, render
from .vocabulary import VIDEO_BACKGROUND_KEYWORDS, Background, PictureInput, parse_background

OUTPUT_SUFFIXES = (".mp4", ".webm", ".zip")

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


def video_background(background: str | tuple | PictureInput | Background) -> Background:
    """Check a video or webcam `background` once, before any frame is decoded: a colour
    ("white", "grey", "#00ff00", "green screen", (r, g, b)), "blur", "grayscale",
    "transparent", "mask", or a picture given as an image (a PIL image, an array, or a
    `Path`; a string is never opened as a file). Raises VideoError naming what is allowed."""
    try:
        return parse_background(background, keywords=VIDEO_BACKGROUND_KEYWORDS)
    except InvalidImageError:
        raise
    except ValueError as exc:
        raise VideoError(str(exc)) from None


@dataclass
class FrameStyle:
    """How every frame is made from its mask: the background and the edge cleaning, checked
    once for the whole video."""

    background: Background
    decontaminate: bool = True
    options: RenderOptions | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.background.kind != "mask":
            self.options = RenderOptions(background=self.background, decontaminate=self.decontaminate)

    def apply(self, image: Image.Image, mask: Image.Image) -> Image.Image:
        """One processed frame: RGB, RGBA for "transparent", the mask as RGB for "mask".
        The effect is the image tools' own (`outputs.render`, kind "background")."""
        if self.options is None:
            return mask.convert("RGB")
        return render(image, mask, ["background"], self.options).images["background"]


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
            # Many frames: the quick run-length PNG (a third of the CPU, ~2% larger).
            self.zip.writestr(f"frame_{self.frames:06d}.png", encode(frame, "png", fast=True))
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


def process_video(src: str | os.PathLike, dst: str | os.PathLike,
                  background: str | tuple | PictureInput | Background = "blur",
                  model: str = "u2netp", smoothing: float = 0.0, max_seconds: float | None = None,
                  max_side: int | None = None, progress: Callable[[int, int], None] | None = None,
                  *, batch_size: int = 8, predictor: Any = None, crf: int = 20,
                  decontaminate: bool = True) -> VideoReport:
    """Remove or replace the background of every frame of a video.

    Parameters:
        src: the input video (anything FFmpeg reads: MP4, MOV, WebM, MKV, AVI, GIF…).
        dst: the output; its suffix chooses the kind: .mp4 (H.264 + AAC), .webm (VP9, with alpha
            when transparent, + Opus) or .zip (PNG sequence + info.json; no audio).
        background: a colour ("white", "grey", "#00ff00", "green screen"), "blur", "grayscale",
            "transparent" (.webm or .zip only), "mask" (the mask video), or a picture given as
            an image (PIL image, array or `Path`; a string is never opened as a file).
        model: predictor model name ("u2netp" fast, "u2net" best); ignored with `predictor`.
        smoothing: temporal smoothing of the masks, 0 (off) to <1: each mask becomes
            smoothing × previous + (1 − smoothing) × new (an exponential moving average);
            reduces flicker, lags behind fast motion.
        max_seconds: process only the first this-many seconds (None: all).
        max_side: scale frames down so the longer side is at most this many pixels (None: keep).
        progress: called as progress(frames_done, frames_expected) after every batch;
            frames_expected is an estimate from the header (0 when unknown).
        batch_size: frames per network call.
        predictor: the Predictor to use (the front end's own; default: get_predictor(model)).
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
    style = FrameStyle(video_background(background), decontaminate)
    _check_video_options(src, dst, style, smoothing, max_seconds, max_side)
    info = probe_video(src)  # raises VideoError for non-videos before any work
    if predictor is None:
        from .predictor import get_predictor
        predictor = get_predictor(model)
    written = _write_video(src, dst, info, style, predictor, smoothing, max_seconds, max_side,
                           progress, batch_size, crf)
    return _report(written, info, style, smoothing, max_seconds, time.perf_counter() - started, dst)


def _check_video_options(src: Path, dst: Path, style: FrameStyle, smoothing: float,
                         max_seconds: float | None, max_side: int | None) -> None:
    """Refuse what cannot work before anything is decoded (VideoError says what to change)."""
    suffix = dst.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise VideoError(f"{dst.name}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")
    if style.background.kind == "transparent" and suffix == ".mp4":
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


@dataclass
class _Written:
    """What `_write_video` did, for the report."""

    frames: int
    rate: Fraction
    duration: float
    size: tuple[int, int]
    coded: tuple[int, int]
    decoded: tuple[int, int]
    turns: int
    trimmed: bool
    has_audio: bool
    state: _State


def _write_video(src: Path, dst: Path, info: VideoInfo, style: FrameStyle, predictor: Any,
                 smoothing: float, max_seconds: float | None, max_side: int | None,
                 progress: Callable[[int, int], None] | None, batch_size: int, crf: int) -> _Written:
    """Decode, predict in batches, apply the style and encode into a temporary file beside
    `dst`, renamed to `dst` only when complete."""
    suffix = dst.suffix.lower()
    turns = _quarter_turns(info.rotation)
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
        writer = _Writer(tmp, suffix, out_size, rate, time_base,
                         style.background.kind == "transparent", audio_in, crf)
        if max_seconds is not None:
            writer.audio_end = (float(vs.start_time * time_base) if vs.start_time else 0.0) + max_seconds
        pending: list[tuple[Image.Image, int, float]] = []

        def flush() -> None:
            masks = predictor.predict_batch([image for image, _, _ in pending])
            for (image, pts, t), mask in zip(pending, masks, strict=True):
                writer.write(style.apply(image, state.smooth(mask)), pts, t)
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
    return _Written(writer.frames, rate, duration, out_size, (coded_w, coded_h), (dec_w, dec_h),
                    turns, trimmed, writer.audio_mode is not None, state)


def _report(w: _Written, info: VideoInfo, style: FrameStyle, smoothing: float,
            max_seconds: float | None, seconds: float, dst: Path) -> VideoReport:
    notes = []
    if w.trimmed:
        notes.append(f"trimmed to the first {max_seconds:g} s of {info.duration:.1f} s")
    if w.turns:
        notes.append(f"turned upright ({w.turns * 90}° rotation metadata)")
    if w.decoded != w.coded:
        notes.append(f"scaled from {w.coded[0]}×{w.coded[1]}" if w.turns % 2 == 0 else
                     f"scaled from {w.coded[1]}×{w.coded[0]}")
    if dst.suffix.lower() == ".zip" and info.has_audio:
        notes.append("audio not included in a PNG sequence")
    if smoothing:
        notes.append(f"smoothing {smoothing:g}: mask change {w.state.raw_change:.4f} → {w.state.change:.4f}")
    summary = (f"{w.frames} frames, {w.size[0]}×{w.size[1]}, {float(w.rate):.3g} fps, "
               f"{w.duration:.2f} s, {'with' if w.has_audio else 'no'} audio, "
               f"background {style.background.label}; {w.frames / seconds:.1f} frames/s"
               + ("; " + "; ".join(notes) if notes else ""))
    return VideoReport(frames=w.frames, fps=float(w.rate), duration=w.duration, has_audio=w.has_audio,
                       smoothing=smoothing, summary=summary, width=w.size[0], height=w.size[1],
                       rotation=w.turns * 90, trimmed=w.trimmed, mask_change=w.state.change,
                       raw_mask_change=w.state.raw_change, smoothing_lag=w.state.lag, seconds=seconds,
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


def webcam_frame(frame: np.ndarray | None, background: str | tuple | PictureInput | Background = "blur",
                 model: str = "u2netp", decontaminate: bool = False, *,
                 predictor: Any = None) -> np.ndarray | None:
    """Process one webcam frame, as Gradio's streaming Image calls it.

    Parameters:
        frame: H×W×3 uint8 RGB (H×W×4 is accepted; alpha is dropped); None before the camera
            starts (returned as None).
        background: as in `process_video` (a parsed Background is reused as it is).
        model: predictor model name; ignored with `predictor`.
        decontaminate: edge colour cleaning; off by default here, a live picture needs speed.
        predictor: the Predictor to use (the front end's own; default: get_predictor(model)).

    Returns:
        H×W×3 uint8 (H×W×4 for "transparent"), the same height and width as `frame`.
    """
    if frame is None:
        return None
    style = FrameStyle(video_background(background), decontaminate)
    image = load_image(np.asarray(frame))
    if predictor is None:
        from .predictor import get_predictor
        predictor = get_predictor(model)
    return np.asarray(style.apply(image, predictor.predict(image)))

"""Video and webcam: real u2netp weights, real encoders (PyAV's FFmpeg), outputs decoded and measured.

The clips are made here: a red disc crossing a grey checkerboard, 160×120 at 12 fps for 2 s with
a 440 Hz tone, so every frame's object region is known exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from u2net import video
from u2net.errors import InvalidImageError, U2NetError
from u2net.video import VideoError, process_video, webcam_frame

ROOT = Path(__file__).resolve().parent.parent
W, H, FPS, SECONDS, RADIUS = 160, 120, 12, 2.0, 24
RED = (220, 40, 40)


def disc_centre(i: int, n: int, w: int = W, h: int = H) -> tuple[int, int]:
    """Where the disc is in frame i of n: left to right across the middle."""
    return RADIUS + 6 + i * (w - 2 * RADIUS - 12) // max(n - 1, 1), h // 2


def disc(w: int, h: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < radius ** 2


def clip_frame(i: int, n: int, w: int = W, h: int = H, still: bool = False) -> np.ndarray:
    """Frame i of n: the disc moves; or (still=True) it stays put while sensor noise and a
    flickering light change every frame, which is what makes masks flicker."""
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((xx // 10 + yy // 10) % 2) * 40 + 90).astype(np.uint8)  # a quiet texture
    img = np.repeat(board[..., None], 3, axis=2)
    img[disc(w, h, disc_centre(n // 2 if still else i, n, w, h), RADIUS)] = RED
    if still:
        rng = np.random.default_rng(i)
        light = 1.0 + 0.15 * rng.uniform(-1, 1)
        img = np.clip(img * light + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    return img


def make_clip(path: Path, w: int = W, h: int = H, fps: int = FPS, seconds: float = SECONDS,
              audio: bool = True, rotation: int = 0, times_ms: list[int] | None = None,
              pcm: bool = False, still: bool = False) -> Path:
    """Write a test clip: H.264 + AAC in .mp4, or MPEG-4 + PCM in .mkv (pcm=True).
    times_ms gives each frame's time (a variable frame rate); rotation sets the display matrix."""
    out = av.open(str(path), "w")
    vs = out.add_stream("mpeg4" if pcm else "libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    if times_ms is not None:
        vs.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        vs.set_display_rotation(rotation)
    if audio:
        aus = out.add_stream("pcm_s16le" if pcm else "aac", rate=16000 if pcm else 44100)
        aus.layout = "mono"
    n = len(times_ms) if times_ms is not None else int(round(seconds * fps))
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(clip_frame(i, n, w, h, still), format="rgb24")
        frame.pts = times_ms[i] if times_ms is not None else i
        out.mux(vs.encode(frame))
    out.mux(vs.encode())
    if audio:
        rate = aus.codec_context.sample_rate
        total = int((times_ms[-1] / 1000 + 0.1 if times_ms else seconds) * rate)
        for start in range(0, total, 1024):
            t = np.arange(start, min(start + 1024, total)) / rate
            tone = 0.3 * np.sin(2 * np.pi * 440 * t)
            arr = (tone * 32767).astype(np.int16) if pcm else tone.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(arr[None, :], format="s16" if pcm else "flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            out.mux(aus.encode(frame))
        out.mux(aus.encode())
    out.close()
    return path


def decode(path: Path) -> dict:
    """Everything a test needs about a written video, read back with PyAV (not our reader)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
        audio = c.streams.audio[0] if c.streams.audio else None
        audio_seconds = None
        if audio is not None:
            samples = sum(f.samples for f in av.open(str(path)).decode(audio=0))
            audio_seconds = samples / audio.codec_context.sample_rate
        return {"frames": frames, "times": times, "rate": vs.average_rate,
                "duration": float(vs.duration * vs.time_base) if vs.duration else c.duration / 1e6,
                "codec": vs.codec_context.name, "audio": audio.codec_context.name if audio else None,
                "audio_seconds": audio_seconds}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "disc.mp4")


@pytest.fixture(scope="module")
def green_run(clip, tmp_path_factory, weights_dir) -> tuple[Path, video.VideoReport]:
    os.environ["U2NET_HOME"] = str(weights_dir)  # module scope: the autouse fixture sets it per test
    dst = tmp_path_factory.mktemp("out") / "green.mp4"
    seen: list[tuple[int, int]] = []
    report = process_video(clip, dst, background="green screen", model="u2netp",
                           progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (report.frames, report.frames)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    return dst, report


def test_mp4_keeps_frames_rate_duration_and_audio(clip, green_run):
    dst, report = green_run
    src, out = decode(clip), decode(dst)
    assert len(out["frames"]) == len(src["frames"]) == 24 == report.frames
    assert out["rate"] == src["rate"] == FPS and report.fps == FPS
    assert out["times"] == pytest.approx(src["times"], abs=1e-3)
    assert out["duration"] == pytest.approx(src["duration"], abs=1 / FPS)
    assert report.duration == pytest.approx(SECONDS, abs=1e-6)
    assert out["codec"] == "h264" and out["audio"] == "aac" and report.has_audio
    assert out["audio_seconds"] == pytest.approx(src["audio_seconds"], abs=0.05)
    assert out["frames"][0].shape == (H, W, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600


def test_mp4_keeps_the_object_and_replaces_the_background_in_every_frame(green_run, artifacts_dir):
    dst, _ = green_run
    frames = decode(dst)["frames"]
    n = len(frames)
    for i, frame in enumerate(frames):
        f = frame.astype(int)
        inside = disc(W, H, disc_centre(i, n), RADIUS - 6)
        outside = ~disc(W, H, disc_centre(i, n), RADIUS + 12)
        # The object keeps its red (H.264 moves colours by a few levels) …
        assert np.abs(f[inside] - RED).mean() < 25, f"frame {i}: object not kept"
        # … and the checkerboard has become green screen.
        bg = f[outside]
        assert np.abs(bg - (0, 255, 0)).mean() < 30, f"frame {i}: background not replaced"
    Image.fromarray(np.hstack([frames[0], frames[n // 2], frames[-1]])).save(artifacts_dir / "video_green.png")


def test_transparent_webm_has_alpha_and_opus_audio(clip, tmp_path):
    dst = tmp_path / "cut.webm"
    report = process_video(clip, dst, background="transparent")
    assert report.has_audio and report.frames == 24
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
        vs = c.streams.video[0]
        assert vs.metadata.get("alpha_mode") == "1"
        # FFmpeg's native VP9 decoder drops alpha; libvpx reads it from the block additions.
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        alphas = [f.to_ndarray(format="rgba")[..., 3] for p in c.demux(vs) for f in decoder.decode(p)]
    assert len(alphas) == 24
    for i, a in enumerate(alphas):
        assert a[disc(W, H, disc_centre(i, 24), RADIUS - 6)].mean() > 200, f"frame {i}: object not opaque"
        assert a[~disc(W, H, disc_centre(i, 24), RADIUS + 12)].mean() < 30, f"frame {i}: background kept"


def test_png_sequence_zip_has_rgba_frames_and_their_times(clip, tmp_path):
    dst = tmp_path / "frames.zip"
    report = process_video(clip, dst, background="transparent")
    with zipfile.ZipFile(dst) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        info = json.loads(z.read("info.json"))
        first = Image.open(z.open(names[0]))
        first.load()
    assert len(names) == 24 == report.frames == info["frames"]
    assert info["fps"] == FPS and info["times"] == pytest.approx([i / FPS for i in range(24)], abs=1e-6)
    assert first.mode == "RGBA" and first.size == (W, H)
    alpha = np.asarray(first)[..., 3]
    assert alpha[disc(W, H, disc_centre(0, 24), RADIUS - 6)].mean() > 200
    assert not report.has_audio and "audio not included" in report.summary


def test_rotated_phone_video_is_turned_upright(tmp_path):
    # Stored 160×120 with a display matrix saying "turn 90° counter-clockwise" (as phones do).
    src = make_clip(tmp_path / "rotated.mp4", rotation=90, seconds=1.0)
    report = process_video(src, tmp_path / "upright.mp4", background="mask")
    out = decode(tmp_path / "upright.mp4")["frames"]
    assert report.rotation == 90 and (report.width, report.height) == (H, W)
    assert out[0].shape == (W, H, 3)
    for i, frame in enumerate(out):
        expected = np.rot90(disc(W, H, disc_centre(i, len(out)), RADIUS))  # counter-clockwise
        mask = frame[..., 0] > 128
        overlap = (mask & expected).sum() / (mask | expected).sum()
        assert overlap > 0.7, f"frame {i}: mask IoU {overlap:.2f} with the upright disc"


def test_variable_frame_rate_timestamps_and_pcm_audio_survive(tmp_path):
    times = [0, 100, 150, 400, 450, 500, 900, 1000]
    src = make_clip(tmp_path / "vfr.mkv", w=96, h=64, fps=10, times_ms=times, pcm=True)
    for suffix, audio in ((".mp4", "aac"), (".webm", "opus")):
        dst = tmp_path / f"vfr{suffix}"
        report = process_video(src, dst, background="white")
        out = decode(dst)
        assert report.frames == len(out["frames"]) == len(times)
        assert out["times"] == pytest.approx([t / 1000 for t in times], abs=2e-3)
        assert out["audio"] == audio and report.has_audio  # PCM re-encoded for the container


def test_no_audio_track_is_fine(tmp_path):
    src = make_clip(tmp_path / "silent.mp4", audio=False)  # the clip's frames: masks are cached
    report = process_video(src, tmp_path / "out.mp4", background="grayscale")
    assert not report.has_audio and report.frames == 24
    assert decode(tmp_path / "out.mp4")["audio"] is None


def test_limits_trim_the_length_and_scale_the_frames(clip, tmp_path):
    dst = tmp_path / "short.mp4"
    report = process_video(clip, dst, background="blur", max_seconds=0.5, max_side=80)
    out = decode(dst)
    assert report.trimmed and report.frames == len(out["frames"]) == 6
    assert out["frames"][0].shape == (60, 80, 3) and (report.width, report.height) == (80, 60)
    assert out["audio_seconds"] == pytest.approx(0.5, abs=0.06)  # the sound is cut with the picture
    assert "trimmed to the first 0.5 s" in report.summary


def test_temporal_smoothing_is_off_by_default_and_reduces_flicker(tmp_path, green_run):
    _, plain = green_run
    assert plain.smoothing == 0 and plain.mask_change == pytest.approx(plain.raw_mask_change)
    # A still object under noise and a flickering light: any mask change is flicker.
    src = make_clip(tmp_path / "still.mp4", seconds=1.0, still=True, audio=False)
    raw = process_video(src, tmp_path / "raw.mp4", background="mask")
    smooth = process_video(src, tmp_path / "smooth.mp4", background="mask", smoothing=0.6)
    assert raw.raw_mask_change > 0 and raw.mask_change == pytest.approx(raw.raw_mask_change)
    assert smooth.raw_mask_change == pytest.approx(raw.raw_mask_change, rel=1e-6)  # same masks in
    assert smooth.mask_change < 0.6 * raw.mask_change  # measured: about 0.36×
    assert raw.smoothing_lag == 0 < smooth.smoothing_lag  # the price, reported
    still = disc(W, H, disc_centre(6, 12), RADIUS - 6)
    for frame in decode(tmp_path / "smooth.mp4")["frames"]:
        assert frame[still].mean() > 200  # smoothing keeps the object


def make_empty_avi(path: Path) -> Path:
    out = av.open(str(path), "w")
    vs = out.add_stream("mpeg4", rate=10)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    return path


@pytest.mark.parametrize("kind, message", [
    ("text", "not a video we can read"),
    ("png", "still image"),
    ("empty", r"empty \(0 bytes\)"),
    ("zero_frames", "no frames"),
    ("audio_only", "no video track"),
    ("truncated", "not a video we can read"),
    ("missing", "no such file"),
])
def test_not_a_video_is_refused_clearly_and_nothing_is_written(kind, message, tmp_path, clip):
    src = tmp_path / f"input_{kind}"
    if kind == "text":
        src.write_text("hello, I am a text file\n" * 20)
    elif kind == "png":
        Image.fromarray(clip_frame(0, 1)).save(src, "PNG")
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "zero_frames":
        src = make_empty_avi(tmp_path / "empty.avi")
    elif kind == "audio_only":
        with av.open(str(clip)) as c, av.open(str(src), "w", format="mp4") as out:
            a = out.add_stream_from_template(c.streams.audio[0])
            for p in c.demux(c.streams.audio[0]):
                if p.dts is not None:
                    p.stream = a
                    out.mux(p)
    elif kind == "truncated":
        src.write_bytes(clip.read_bytes()[:4000])
    dst = tmp_path / "out" / "result.mp4"
    dst.parent.mkdir()
    with pytest.raises(VideoError, match=message) as info:
        process_video(src, dst, background="white")
    assert isinstance(info.value, InvalidImageError)  # front ends catch one family
    assert list(dst.parent.iterdir()) == []  # no output, no temporary file left behind


@pytest.mark.parametrize("kwargs, message", [
    ({"dst": "out.mp4", "background": "transparent"}, "no alpha channel"),
    ({"dst": "out.avi"}, "must end in"),
    ({"dst": "out.mp4", "background": "plaid"}, "not a colour"),
    ({"dst": "out.mp4", "smoothing": 1.0}, "smoothing"),
    ({"dst": "out.mp4", "max_seconds": 0}, "max_seconds"),
])
def test_bad_options_are_refused_before_any_work(kwargs, message, clip, tmp_path):
    kwargs = dict(kwargs)
    dst = tmp_path / kwargs.pop("dst")
    with pytest.raises(VideoError, match=message):
        process_video(clip, dst, **kwargs)
    assert not dst.exists()


def test_an_interrupted_run_leaves_no_output(clip, tmp_path):
    dst = tmp_path / "never.mp4"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt  # the user pressed Ctrl-C after the first batch

    with pytest.raises(KeyboardInterrupt):
        process_video(clip, dst, background="white", progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_background_image_and_colour_names(clip, tmp_path, reference_dir):
    bg = np.zeros((30, 40, 3), np.uint8)
    bg[:] = (0, 0, 255)
    Image.fromarray(bg).save(tmp_path / "blue.png")
    # A picture is an explicit image (a Path), never a string that happens to name a file.
    with pytest.raises(VideoError, match="not a colour"):
        process_video(clip, tmp_path / "img.mp4", background=str(tmp_path / "blue.png"), max_seconds=0.25)
    report = process_video(clip, tmp_path / "img.mp4", background=tmp_path / "blue.png",
                           max_seconds=0.25)
    frame = decode(tmp_path / "img.mp4")["frames"][0].astype(int)
    outside = ~disc(W, H, disc_centre(0, 24), RADIUS + 12)
    assert np.abs(frame[outside] - (0, 0, 255)).mean() < 30 and report.frames == 3
    assert video.video_background("green screen").rgb == (0, 255, 0)
    assert video.video_background("green").rgb == (0, 128, 0)  # CSS green, as in the image effects
    assert video.video_background("#123456").rgb == (0x12, 0x34, 0x56)


# ---------------------------------------------------------------------------------------------
# Webcam


@pytest.mark.parametrize("background", ["blur", "white", "green screen", "grayscale", "mask", "transparent"])
def test_webcam_handler_returns_frames_of_the_input_size(background, tmp_path):
    import gradio as gr
    from gradio.data_classes import ImageData

    # What the browser sends: one camera frame as an image file; Gradio's streaming Image
    # (type="numpy") turns it into the RGB array the handler receives, and the output Image
    # turns the handler's array back into a file for the page.
    camera = gr.Image(sources=["webcam"], streaming=True, type="numpy")
    result = gr.Image(type="numpy")
    for w, h in ((160, 120), (161, 97)):
        path = tmp_path / f"frame_{w}.png"
        Image.fromarray(clip_frame(3, 8, w, h)).save(path)
        frame = camera.preprocess(ImageData(path=str(path), orig_name=path.name))
        assert isinstance(frame, np.ndarray) and frame.shape == (h, w, 3)
        out = webcam_frame(frame, background=background, model="u2netp")
        assert out.shape[:2] == (h, w) and out.dtype == np.uint8
        assert out.shape[2] == (4 if background == "transparent" else 3)
        assert result.postprocess(out) is not None
    assert webcam_frame(None, background=background) is None  # before the camera starts


def test_webcam_handler_refuses_a_bad_background_clearly():
    frame = clip_frame(0, 1)
    with pytest.raises(U2NetError, match="not a colour"):
        webcam_frame(frame, background="plaid")


# ---------------------------------------------------------------------------------------------
# Command line


def _video_command() -> list[str]:
    return [sys.executable, "-m", "u2net", "video"]


def test_command_line_writes_the_video_and_reports_frames(clip, tmp_path, weights_dir):
    dst = tmp_path / "cli.mp4"
    env = dict(os.environ, U2NET_HOME=str(weights_dir))
    options = ["--background", "white", "--max-seconds", "0.5", "--smoothing", "0.3"]
    done = subprocess.run([*_video_command(), str(clip), str(dst), *options], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "6 frames" in done.stdout and "frame/s" in done.stderr  # tqdm's rate
    assert len(decode(dst)["frames"]) == 6
    bad = subprocess.run([*_video_command(), str(tmp_path / "nothing.mp4"), str(tmp_path / "x.mp4")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert bad.returncode != 0 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------------------------------------
# The app's Video tab, through gradio_client against the real server


@pytest.fixture(scope="module")
def app_url(weights_dir):
    from tests.app_server import running_app

    # The public Space's length limit, set small here: 1 s of the 2 s clip (12 frames).
    with running_app(env={"U2NET_HOME": str(weights_dir), "U2NET_VIDEO_MAX_SECONDS": "1"}) as url:
        yield url


def _atoms(path: Path) -> list[str]:
    """Top-level MP4 box names in file order."""
    data, names, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        names.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return names


def test_video_tab_returns_a_playable_video(app_url, clip):
    from gradio_client import Client, handle_file

    from tests.app_server import server_log

    client = Client(app_url, verbose=False)
    try:
        result = client.predict(handle_file(str(clip)), "green screen", "u2netp",
                                0.0, "mp4", api_name="/video")
    except Exception as exc:
        pytest.fail(f"{exc}\n--- app log ---\n{server_log(app_url)}")
    playable, download, summary = result
    path = Path(playable["video"] if isinstance(playable, dict) else playable)
    assert path.suffix == ".mp4" and path.is_file(), server_log(app_url)
    out = decode(path)
    # Browsers play H.264 yuv420p in MP4 with the index (moov) before the data: it starts at once.
    assert out["codec"] == "h264" and out["audio"] == "aac"
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    atoms = _atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")
    assert len(out["frames"]) == 12 and out["rate"] == FPS
    assert out["audio_seconds"] == pytest.approx(1.0, abs=0.06)
    frame = out["frames"][6].astype(int)
    outside = ~disc(W, H, disc_centre(6, 24), RADIUS + 12)
    assert np.abs(frame[outside] - (0, 255, 0)).mean() < 30
    assert "12 frames" in summary and "trimmed to the first 1 s" in summary and Path(download).is_file()


def test_video_tab_says_clearly_when_the_upload_is_not_a_video(app_url, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all\n" * 50)
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="not a video we can read"):
        client.predict(handle_file(str(bad)), "blur", "u2netp", 0.0, "mp4",
                       api_name="/video")

"""Every awkward file of the corpus (tests/corpus.py) through every front end.

Each case must give either the right picture (upright size, first frame, full 16-bit range…)
or a short, clear error of the declared type — through `load_image`, the real predictor
(u2netp, real weights), the CLI, one batch over the whole corpus, and the real app driven with
gradio_client. The process never dies, the next request succeeds, and the inputs are untouched.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.app_server import tiny_clip, upload
from tests.corpus import BAD, CASE_NAMES, GOOD, Case, build_corpus, small_jpeg
from u2net.errors import InvalidImageError
from u2net.images import load_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def predictor(weights_dir):
    from u2net.predictor import Predictor

    return Predictor("u2netp", device="cpu")


def assert_clear(exc: BaseException, case: Case, name_in_message: bool = True) -> None:
    """The error is the declared type, says what is wrong in one short line, names the file."""
    message = str(exc)
    assert type(exc) is case.error, f"{case.name}: {type(exc).__name__}: {message}"
    assert re.search(case.words, message, re.I), f"{case.name}: message {message!r} lacks {case.words!r}"
    assert "\n" not in message and len(message) < 300, f"{case.name}: not one short line: {message!r}"
    assert "Traceback" not in message
    if name_in_message:
        assert case.path.name in message, f"{case.name}: the message does not name the file: {message!r}"


def assert_expected_picture(img: Image.Image, case: Case) -> None:
    assert img.mode == "RGB", f"{case.name}: mode {img.mode}"
    assert img.size == case.size, f"{case.name}: {img.size}, expected {case.size}"
    if case.check:
        case.check(img)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- Python API


@pytest.mark.parametrize("name", CASE_NAMES)
def test_load_image_gives_the_picture_or_a_clear_error(corpus, name):
    case = corpus[name]
    before = sha256(case.path)
    for source in (case.path, str(case.path)):
        if case.ok:
            assert_expected_picture(load_image(source), case)
        else:
            with pytest.raises(InvalidImageError) as info:
                load_image(source)
            assert_clear(info.value, case)
    # Bytes (what an upload or a zip member is) give the same outcome; there is no file name.
    data = case.path.read_bytes()
    if case.ok:
        assert_expected_picture(load_image(data), case)
    else:
        with pytest.raises(InvalidImageError) as info:
            load_image(data)
        assert_clear(info.value, case, name_in_message=False)
    assert sha256(case.path) == before, "reading the file changed it"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_predictor_gives_a_mask_of_the_upright_size_or_the_clear_error(corpus, predictor, name):
    case = corpus[name]
    if case.ok:
        mask = predictor.predict(case.path)
        assert mask.mode == "L" and mask.size == case.size, (name, mask.mode, mask.size)
    else:
        with pytest.raises(InvalidImageError) as info:
            predictor.predict(case.path)
        assert_clear(info.value, case)


def test_predictor_still_serves_after_every_bad_input(corpus, predictor):
    for name in BAD:
        with pytest.raises(InvalidImageError):
            predictor.predict(corpus[name].path)
    before = predictor.inference_count
    mask = predictor.predict(Image.new("RGB", (40, 30), "blue"))
    assert mask.size == (40, 30)
    assert predictor.inference_count == before + 1


# ----------------------------------------------------------------------------- CLI and batch


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "u2net", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["exif_orientation_6", "truncated_jpeg", "bomb_png"])
def test_cli_single_image(corpus, tmp_path, name):
    """`u2net cutout FILE -o OUT`: an upright cut-out, or exit 1 with the clear error, no
    traceback and no output file."""
    case = corpus[name]
    out = tmp_path / "cut.png"
    proc = run_cli("cutout", str(case.path), "-o", str(out), "-q", "--workers", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    if case.ok:
        assert proc.returncode == 0, proc.stderr
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == case.size
    else:
        assert proc.returncode == 1, proc.stderr
        assert re.search(case.words, proc.stderr, re.I), proc.stderr
        assert case.path.name in proc.stderr, proc.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_one_batch_over_the_whole_corpus(corpus, tmp_path):
    """Good files give outputs of the upright size, bad ones are listed in the manifest with
    their reason, the exit status says some failed, inputs are untouched, nothing else is
    written; a rerun resumes the good ones and reports the bad ones again."""
    folder = next(iter(corpus.values())).path.parent
    hashes = {p.name: sha256(p) for p in folder.iterdir()}
    out = tmp_path / "out"
    proc = run_cli("batch", str(folder), "-o", str(out), "--outputs", "cutout,mask", "-q", "--workers", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr

    with open(out / "manifest.csv", newline="") as fh:
        rows = {Path(r["input"]).stem: r for r in csv.DictReader(fh)}
    assert set(rows) == set(CASE_NAMES), f"missing from the manifest: {set(CASE_NAMES) - set(rows)}"
    expected_files = {"manifest.csv", "manifest.jsonl", ".u2net-batch.lock"}
    for name in GOOD:
        case, row = corpus[name], rows[name]
        assert row["status"] == "ok", (name, row)
        for kind, mode in (("cutout", "RGBA"), ("mask", "L")):
            with Image.open(out / f"{name}_{kind}.png") as im:
                assert (im.mode, im.size) == (mode, case.size), (name, kind, im.mode, im.size)
            expected_files.add(f"{name}_{kind}.png")
    for name in BAD:
        case, row = corpus[name], rows[name]
        assert row["status"] == "error" and row["outputs"] == "", (name, row)
        assert re.search(case.words, row["error"], re.I), (name, row["error"])
    assert {p.name for p in out.iterdir()} == expected_files, "unexpected files (temp or half-written?)"
    assert {p.name: sha256(p) for p in folder.iterdir()} == hashes, "the batch changed its inputs"

    again = run_cli("batch", str(folder), "-o", str(out), "--outputs", "cutout,mask", "-q", "--workers", "1")
    assert again.returncode == 1, again.stderr
    assert {p.name for p in out.iterdir()} == expected_files
    with open(out / "manifest.csv", newline="") as fh:
        assert {Path(r["input"]).stem: r["status"] for r in csv.DictReader(fh)} == \
            {n: r["status"] for n, r in rows.items()}


# ----------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app(weights_dir, tmp_path_factory):
    """The real app with a 1 MB upload limit (so the limit is cheap to prove) and the default
    pixel limit (so the corpus's over-limit image and bombs meet the real one)."""
    from tests.app_server import running_app

    env = {"U2NET_HOME": str(weights_dir), "U2NET_MAX_FILE_SIZE": "1mb",
           "HF_HOME": str(tmp_path_factory.mktemp("hf_home"))}
    with running_app(env=env) as url:
        yield url


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    from gradio_client import Client

    return Client(app, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


GOOD_UPLOAD_SIZE = (96, 64)


@pytest.fixture(scope="module")
def good_upload(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.jpg"
    path.write_bytes(small_jpeg(*GOOD_UPLOAD_SIZE))
    return path


def all_outputs(client, path: Path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), "u2netp", "white", "dim", "free", api_name="/all_outputs")


def assert_all_outputs_valid(result, size: tuple[int, int]) -> None:
    mask, cut, background, boxes, highlighted, cropped = result[:6]
    for path, mode in ((mask, "L"), (cut, "RGBA"), (background, "RGB"), (boxes, "RGB"), (highlighted, "RGB")):
        with Image.open(path) as im:
            im.load()
            assert (im.mode, im.size) == (mode, size), (path, im.mode, im.size)
    with Image.open(cropped) as im:
        im.load()
    assert isinstance(result[8], dict) and "boxes" in result[8]


def test_app_every_corpus_file(corpus, client, app, good_upload):
    """Through /all_outputs: each good file gives seven valid outputs of its size; each bad one
    a clear error, after which a good request still succeeds."""
    from gradio_client.exceptions import AppError

    from tests.app_server import server_log

    for name in CASE_NAMES:
        case = corpus[name]
        if case.ok:
            try:
                assert_all_outputs_valid(all_outputs(client, case.path), case.size)
            except AppError as exc:
                raise AssertionError(f"{name}: {exc}\n{server_log(app)}") from exc
            continue
        with pytest.raises(AppError) as info:
            all_outputs(client, case.path)
        message = str(info.value)
        assert re.search(case.words, message, re.I), f"{name}: {message!r}"
        assert "Traceback" not in message
        assert_all_outputs_valid(all_outputs(client, good_upload), GOOD_UPLOAD_SIZE)


# ----------------------------------------------------------------------------- app security


def _file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def raw_call(url: str, api: str, data: list) -> tuple[str, str]:
    """Call an endpoint over plain HTTP, as a hostile client would (no gradio_client checks).
    Returns (event, data) of the final server-sent event: ("complete" | "error", payload)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{url}/gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/{api}/{event_id}", timeout=300) as response:
        text = response.read().decode()
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", text, re.M)
    assert events, text
    return events[-1]


def test_app_never_opens_a_path_the_user_names(app, corpus, good_upload):
    """A hostile client names files on the server instead of uploading them: a real image
    outside the upload folder, /etc/passwd, a relative escape. Every one is refused, no
    content comes back, and an uploaded file through the very same raw call works."""
    on_server = str(corpus["cmyk"].path)  # a readable image, but never uploaded
    photo = _file_data(upload(app, good_upload))
    for path in (on_server, "/etc/passwd", "../../../../etc/passwd", str(ROOT / "examples" / "cat.jpg")):
        event, payload = raw_call(app, "all_outputs", [_file_data(path), "u2netp", "white", "dim", "free"])
        assert event == "error" and "root:" not in payload, (path, event, payload[:300])
        event, payload = raw_call(app, "batch", [[_file_data(path)], ["mask"], "u2netp"])
        assert event == "error" and "root:" not in payload, (path, event, payload[:300])
        # The strokes of /refine are an upload too: a path there is refused the same way.
        event, payload = raw_call(app, "refine", [photo, "u2netp", _file_data(path), "none", "", None, None])
        assert event == "error" and "root:" not in payload, (path, event, payload[:300])
    event, payload = raw_call(app, "all_outputs", [photo, "u2netp", "white", "dim", "free"])
    assert event == "complete", payload[:500]
    event, payload = raw_call(app, "refine", [photo, "u2netp", photo, "none", "", None, None])
    assert event == "complete", payload[:500]


def test_app_serves_no_file_outside_its_own(app, weights_dir):
    """The file route hands out outputs and examples, not the server's files or weights."""
    import urllib.error
    import urllib.request

    for path in ("/etc/passwd", str(weights_dir / "u2netp.onnx"), str(ROOT / "app.py")):
        try:
            with urllib.request.urlopen(f"{app}/gradio_api/file={path}", timeout=30) as response:
                status, body = response.status, response.read(200)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, b""
        assert status >= 400 and b"root:" not in body, (path, status)


def test_app_upload_limit(app, client, tmp_path, good_upload):
    """Uploads over the limit (U2NET_MAX_FILE_SIZE, 1 MB here; 50 MB by default) are refused
    with HTTP 413 before any decoding; the next request succeeds."""
    import urllib.error

    big = tmp_path / "big.jpg"
    big.write_bytes(small_jpeg() + b"\0" * (1024 * 1024 + 1))
    with pytest.raises(urllib.error.HTTPError) as info:
        upload(app, big)
    assert info.value.code == 413 and b"maximum allowed size" in info.value.read()
    with pytest.raises(ValueError, match="maximum file size"):  # gradio_client checks it too
        all_outputs(client, big)
    assert_all_outputs_valid(all_outputs(client, good_upload), GOOD_UPLOAD_SIZE)


def test_app_binds_loopback_unless_asked():
    """Without flags or environment the app listens on 127.0.0.1 only, with no public link;
    another address is used only when asked for."""
    code = ("import os, app\n"
            "a = app.parse_args([]); print(a.host, a.share, a.max_file_size)\n"
            "print(app.parse_args(['--host', '0.0.0.0']).host)\n"
            "os.environ['GRADIO_SERVER_NAME'] = '0.0.0.0'; print(app.parse_args([]).host)\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_SERVER_NAME", "GRADIO_SHARE", "U2NET_MAX_FILE_SIZE")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.stdout.split() == ["127.0.0.1", "False", "50mb", "0.0.0.0", "0.0.0.0"], \
        out.stdout + out.stderr


HOSTILE_NAMES = ["../../../etc/cron.d/evil name;rm -rf ~.jpg", "..\\..\\windows\\system.ini.jpg",
                 "ｆｕｌｌ　ｗｉｄｔｈ 写真.jpg", ".hidden.jpg", "CON.jpg", "x" * 200 + ".jpg",
                 "<script>alert(1)</script>.jpg", "$(touch pwned).jpg"]


@pytest.mark.parametrize("filename", HOSTILE_NAMES)
def test_app_output_names_from_hostile_upload_names_are_safe(app, good_upload, filename):
    """Output files are named after the upload; whatever the name, they come out as plain
    [A-Za-z0-9_-] names of bounded length, inside the server's own output folders."""
    import json

    path = upload(app, good_upload, filename)
    event, payload = raw_call(app, "all_outputs", [_file_data(path), "u2netp", "white", "dim", "free"])
    assert event == "complete", payload[:500]
    outputs = [o for o in json.loads(payload)[:6] if o]
    assert len(outputs) == 6
    for output in outputs:
        name = Path(output["path"]).name
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,60}_(mask|cutout|background|boxes|highlight|crop)\.png", name), name
        assert ".." not in Path(output["path"]).parts


# ----------------------------------------------------------------------------- every parameter


def _endpoints(image: dict, video: dict) -> dict[str, list]:
    """Each endpoint with a valid call: the uploads, then every other parameter."""
    return {
        "all_outputs": [image, "u2netp", "white", "dim", "free"],
        "remove_background": [image, "u2netp", 0.0, 0.0, True, "PNG"],
        "change_background": [image, "u2netp", "colour", "#2e86de", None, 12, "cover", 0.0],
        "bounding_boxes": [image, "u2netp", 0.5, 0.001, "#ff3b30", 3, True, False],
        "highlight": [image, "u2netp", "tint", 0.6, "#ff3b30"],
        "crop": [image, "u2netp", 5, "free", "image"],
        "portrait": [image, 2.0, 0.5],
        "batch": [[image], ["mask"], "u2netp"],
        "video": [video, "blur", "u2netp", 0.5, "mp4"],
        "webcam": [image, "blur", "u2netp"],
        "refine": [image, "u2netp", image, "guided", "1", 10.0, 10.0],  # the second image: strokes
    }


def test_app_refuses_a_server_path_in_every_parameter(app, tmp_path):
    """A hostile client puts the path of a real image on the server (never uploaded: an example
    and a file in a temporary folder) into every parameter of every endpoint that is not an
    upload: model, colours, backgrounds, modes, formats, numbers, output lists. Every call is
    refused with a message that says what is allowed, and no answer carries the file's pixels.
    The same calls with their valid values succeed (so the refusals are not an accident)."""
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 30), (255, 0, 255)).save(secret)  # magenta: easy to spot in an answer
    paths = [str(secret), str(ROOT / "examples" / "cat.jpg")]
    picture = tmp_path / "upload.png"
    Image.new("RGB", (48, 40), (20, 120, 40)).save(picture)
    image = _file_data(upload(app, picture))
    video = _file_data(upload(app, tiny_clip(tmp_path / "clip.mp4", 64, 48, 3)))
    calls = _endpoints(image, video)
    for api, valid in calls.items():
        event, payload = raw_call(app, api, valid)
        assert event == "complete", (api, payload[:300])
        for index, value in enumerate(valid):
            if value is image or value is video or value == [image] or isinstance(value, dict) or value is None:
                continue  # uploads: Gradio hands the handler only files it received
            for path in paths:
                hostile = list(valid)
                hostile[index] = [path] if isinstance(value, list) else path
                event, payload = raw_call(app, api, hostile)
                assert event == "error", (api, index, path, payload[:300])
                assert payload not in ("null", "") and "Traceback" not in payload, (api, index, payload[:300])
                assert re.search(r"must be|choose|choices|not a colour|unknown|not allowed|one of", payload, re.I), \
                    (api, index, payload[:300])
    event, payload = raw_call(app, "all_outputs", calls["all_outputs"])
    assert event == "complete", payload[:300]

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
    env.pop("U2NET_MAX_PIXELS", None)
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

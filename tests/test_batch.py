"""The batch engine end to end with the real u2netp weights: 27 good images and 3 bad files,
2 worker processes, a SIGKILL part-way and a resume that ends byte-identical; zips in and out;
the app's batch tab through gradio_client."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.batch import batch_to_zip
from u2net.archives import ArchiveError
from u2net.batch import JOURNAL, MANIFEST, TMP_MARK, BatchError, run_batch
from u2net.outputs import output_names
from u2net.predictor import get_predictor
from u2net.vocabulary import OptionError

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["mask", "cutout", "boxes"]
BAD = {"broken/truncated.png", "notes.jpg", "empty.webp"}

# (relative path, size, Pillow mode, save format) — varied sizes, modes and extensions.
SPECS = [
    ("a01.png", (64, 48), "RGB", "PNG"), ("a02.PNG", (120, 90), "RGBA", "PNG"),
    ("a03.jpg", (90, 120), "RGB", "JPEG"), ("a04.JPG", (200, 150), "L", "JPEG"),
    ("a05.jpeg", (33, 47), "RGB", "JPEG"), ("a06.webp", (160, 100), "RGB", "WEBP"),
    ("a07.WEBP", (80, 80), "RGBA", "WEBP"), ("a08.bmp", (99, 77), "RGB", "BMP"),
    ("a09.tiff", (140, 60), "RGB", "TIFF"), ("a10.TIF", (50, 180), "I;16", "TIFF"),
    ("a11.gif", (100, 100), "P", "GIF"), ("a12.png", (17, 200), "LA", "PNG"),
    ("a13.png", (128, 128), "1", "PNG"), ("a14.jpg", (150, 110), "CMYK", "JPEG"),
    ("a15.png", (75, 75), "P", "PNG"), ("sub/b01.png", (110, 70), "RGB", "PNG"),
    ("sub/b02.jpg", (70, 110), "RGB", "JPEG"), ("sub/b03.tiff", (60, 60), "RGBA", "TIFF"),
    ("sub/deeper/c01.png", (190, 140), "RGB", "PNG"), ("sub/deeper/c02.webp", (45, 65), "L", "WEBP"),
    ("sub/deeper/c03.BMP", (88, 66), "RGB", "BMP"), ("sub/c04.png", (130, 40), "RGB", "PNG"),
    ("same.png", (60, 80), "RGB", "PNG"), ("same.jpg", (60, 80), "RGB", "JPEG"),
    ("x/y/z.png", (100, 64), "RGB", "PNG"), ("x/y/w.jpg", (64, 100), "RGB", "JPEG"),
    ("x/v.png", (150, 150), "RGBA", "PNG"),
]
GOOD = [rel for rel, *_ in SPECS]


def _picture(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    """A bright ellipse on a textured dark background: a clear salient object."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = (rng.integers(0, 60, (h, w, 3))).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(150, 256, 3))
    draw.ellipse([w * 0.25, h * 0.2, w * 0.75, h * 0.8], fill=colour)
    if mode == "I;16":
        return Image.fromarray((np.asarray(img.convert("L"), np.uint16) * 257).astype("<u2"))
    if mode == "RGBA":
        rgba = img.convert("RGBA")
        rgba.putalpha(Image.new("L", size, 230))
        return rgba
    if mode == "P":
        return img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return img.convert(mode)


def make_folder(root: Path) -> Path:
    """30 files: the 27 images of SPECS and 3 bad ones (truncated, not an image, empty)."""
    for i, (rel, size, mode, fmt) in enumerate(SPECS):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _picture(size, mode, i).save(path, fmt)
    (root / "broken").mkdir()
    whole = io.BytesIO()
    _picture((120, 120), "RGB", 99).save(whole, "PNG")
    (root / "broken" / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "notes.jpg").write_text("this is not a picture\n")
    (root / "empty.webp").write_bytes(b"")
    return root


def batch_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "u2net", "batch", str(src), "-r", "-o", str(out),
            "--outputs", ",".join(KINDS), "--workers", "2", "-q", *extra]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def read_manifest(out: Path) -> dict[str, dict]:
    with open(out / MANIFEST, newline="") as fh:
        return {row["input"]: row for row in csv.DictReader(fh)}


def journal_rows(out: Path) -> list[dict]:
    path = out / JOURNAL
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written right now
            pass
    return rows


def expected_files(kinds=KINDS) -> set[str]:
    stems = {}
    for rel in GOOD:
        stem = rel.rsplit(".", 1)[0]
        stems[stem.casefold()] = stems.get(stem.casefold(), 0) + 1
    names = set()
    for rel in GOOD:
        stem, ext = rel.rsplit(".", 1)
        if stems[stem.casefold()] > 1:
            stem = f"{stem}_{ext.lower()}"
        names.update(output_names(stem, kinds))
    return names


def output_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, JOURNAL) and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def reference_run(folder, tmp_path_factory, weights_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted run with 2 workers: the yardstick for the resumed run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    env = child_env() | {"U2NET_HOME": str(weights_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(batch_cmd(folder, out), env=env, capture_output=True, text=True, timeout=900)
    return out, proc


def test_batch_with_bad_files_finishes_the_rest(reference_run, folder):
    out, proc = reference_run
    assert proc.returncode == 1, proc.stderr  # some failed: non-zero, with a summary
    assert "27 of 30 images succeeded, 3 failed" in proc.stderr
    files = output_files(out)
    assert set(files) == expected_files()
    for name, data in files.items():
        if name.endswith(".png"):
            with Image.open(io.BytesIO(data)) as img:
                img.verify()  # complete, valid PNG
        else:
            assert "boxes" in json.loads(data)
    # Outputs keep the input's size and the mask / cut-out modes are right.
    mask = Image.open(out / "sub/deeper/c01_mask.png")
    assert mask.mode == "L" and mask.size == (190, 140)
    assert Image.open(out / "a02_cutout.png").mode == "RGBA"
    # The ellipse is the salient object: inside bright, corners dark.
    m = np.asarray(mask)
    assert m[70, 95] > 200 and m[3, 3] < 60
    manifest = read_manifest(out)
    assert len(manifest) == 30
    errors = {k: v for k, v in manifest.items() if v["status"] == "error"}
    assert set(errors) == BAD
    assert "empty" in errors["empty.webp"]["error"]
    assert "truncated" in errors["broken/truncated.png"]["error"]
    assert "not an image" in errors["notes.jpg"]["error"]
    ok = manifest["a01.png"]
    assert ok["outputs"].split(";") == sorted(output_names("a01", KINDS))
    assert json.loads(ok["boxes"])["count"] >= 1
    # Inputs sharing a stem keep apart; nothing temporary is left behind.
    assert {"same_png_mask.png", "same_jpg_mask.png"} <= set(files)
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name]
    # The inputs are untouched: the folder holds exactly what make_folder wrote.
    assert not [p for p in folder.rglob("*") if "_mask" in p.name]


def test_kill_part_way_then_resume_is_byte_identical(reference_run, folder, tmp_path, weights_dir):
    ref_out, _ = reference_run
    out = tmp_path / "out"
    env = child_env() | {"U2NET_HOME": str(weights_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(batch_cmd(folder, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while True:
            done = [r for r in journal_rows(out) if r.get("event") == "image" and r["status"] == "ok"]
            if len(done) >= 4:
                break
            assert proc.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "no image finished in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = [r for r in journal_rows(out) if r.get("event") == "image"]
    finished_before = {r["input"] for r in before if r["status"] == "ok"}
    assert 4 <= len(finished_before) < 27, "the kill must land part-way"
    # Whatever carries a final name is complete (temp files may be left; they are swept next run).
    for name, data in output_files(out).items():
        if name.endswith(".png"):
            Image.open(io.BytesIO(data)).verify()

    again = subprocess.run(batch_cmd(folder, out), env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 1, again.stderr
    assert "already done by an earlier run" in again.stderr
    assert output_files(out) == output_files(ref_out)  # every byte of every output
    assert read_manifest(out) == read_manifest(ref_out)
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name]

    rows = journal_rows(out)
    runs = [r for r in rows if r.get("event") == "run"]
    assert len(runs) == 2
    resumed = [r for r in rows if r.get("event") == "image" and r["run"] == 2]
    # The second run did exactly what was left: no image finished before the kill was redone.
    assert not finished_before & {r["input"] for r in resumed}
    assert {r["input"] for r in resumed} == (set(GOOD) | BAD) - finished_before
    ok_rows = [r["input"] for r in rows if r.get("event") == "image" and r["status"] == "ok"]
    assert sorted(ok_rows) == sorted(GOOD)  # each good image succeeded exactly once

    # A third run finds everything finished and processes only the bad files again.
    third = subprocess.run(batch_cmd(folder, out), env=env, capture_output=True, text=True, timeout=900)
    assert third.returncode == 1
    assert "27 already done" in third.stderr
    assert output_files(out) == output_files(ref_out)


def test_changed_or_missing_outputs_are_redone(folder, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for rel in ("a01.png", "a03.jpg"):
        (src / Path(rel).name).write_bytes((folder / rel).read_bytes())
    out = tmp_path / "out"
    first = run_batch([src], out, ["mask"], workers=1, progress=False)
    assert (first.succeeded, first.failed, first.processed) == (2, 0, 2)
    reference = (out / "a01_mask.png").read_bytes()
    (out / "a01_mask.png").write_bytes(reference[:100])  # damaged by someone else
    (out / "a03_mask.png").unlink()
    second = run_batch([src], out, ["mask"], workers=1, progress=False)
    assert (second.resumed, second.processed) == (0, 2)
    assert (out / "a01_mask.png").read_bytes() == reference
    # Other settings are another result: nothing is skipped.
    third = run_batch([src], out, ["mask"], options={"threshold": 0.5}, workers=1, progress=False)
    assert third.processed == 2
    assert set(np.unique(np.asarray(Image.open(out / "a01_mask.png")))) <= {0, 255}


def test_outputs_inside_inputs_or_equal_to_them_are_refused(folder, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes((folder / "a01.png").read_bytes())
    before = sorted(p.name for p in src.rglob("*"))
    with pytest.raises(BatchError, match="inside the input folder"):
        run_batch([src], src / "out", ["mask"], workers=1, progress=False)
    with pytest.raises(BatchError, match="inside the input folder"):
        run_batch([src], src, ["mask"], workers=1, progress=False)
    with pytest.raises(BatchError, match="inside the output"):
        run_batch([src], tmp_path, ["mask"], workers=1, progress=False)
    with pytest.raises(BatchError, match="is one of the inputs"):
        run_batch([src / "a.png"], src / "a.png", ["cutout"], workers=1, progress=False)
    # An output name that would land on another input: "a_mask.png" is an input here.
    (src / "a_mask.png").write_bytes((folder / "a01.png").read_bytes())
    with pytest.raises(BatchError, match="overwrite an input"):
        run_batch([src / "a.png", src / "a_mask.png"], src, ["mask"], workers=1, progress=False)
    assert sorted(p.name for p in src.rglob("*")) == before + ["a_mask.png"]


def test_zip_in_zip_out_keeps_the_structure(folder, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in ("a01.png", "sub/b01.png", "sub/deeper/c02.webp"):
            zf.write(folder / rel, rel)
        zf.writestr("readme.txt", "not an image")
    out = tmp_path / "results.zip"
    report = run_batch([archive], out, ["cutout", "mask"], workers=1, progress=False)
    assert report.ok and report.succeeded == 3 and report.ignored == 1
    names = sorted(zipfile.ZipFile(out).namelist())
    assert names == sorted(["manifest.csv", "a01_cutout.png", "a01_mask.png", "sub/b01_cutout.png",
                            "sub/b01_mask.png", "sub/deeper/c02_cutout.png", "sub/deeper/c02_mask.png"])
    assert not (tmp_path / ("results.zip" + ".u2net-work")).exists()
    # Reproducible: the same inputs give the same archive bytes.
    again = run_batch([archive], tmp_path / "again.zip", ["cutout", "mask"], workers=1, progress=False)
    assert again.ok and (tmp_path / "again.zip").read_bytes() == out.read_bytes()


def test_hostile_zip_input_is_refused_before_anything_runs(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.png", b"x")
    with pytest.raises(ArchiveError, match="zip slip"):
        run_batch([evil], tmp_path / "out", ["mask"], workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_batch_to_zip_for_the_app(folder, tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "sub/b01.png", "shots/b01.png")
    files = [folder / "a01.png", folder / "a06.webp", folder / "notes.jpg", archive]
    seen = []
    result, report = batch_to_zip(files, tmp_path / "work", ["mask", "boxes"], get_predictor("u2netp"),
                                  progress=lambda done, total, name: seen.append((done, total)))
    assert (report.succeeded, report.failed) == (3, 1)
    assert "3 of 4 images succeeded, 1 failed" in report.summary and "notes.jpg" in report.summary
    assert seen[-1] == (4, 4)
    names = set(zipfile.ZipFile(result).namelist())
    assert names == {"manifest.csv", "a01_mask.png", "a01_boxes.png", "a01_boxes.json",
                     "a06_mask.png", "a06_boxes.png", "a06_boxes.json", "upload/shots/b01_mask.png",
                     "upload/shots/b01_boxes.png", "upload/shots/b01_boxes.json"}
    with pytest.raises(OptionError, match="unknown output"):
        batch_to_zip(files, tmp_path / "work", ["portrait"], get_predictor("u2netp"))


def test_app_batch_tab_returns_a_zip_matching_the_inputs(folder, tmp_path, weights_dir):
    import gradio_client
    from app_server import running_app

    inputs = [folder / "a01.png", folder / "sub/b02.jpg", folder / "a09.tiff"]
    with running_app(env={"U2NET_HOME": str(weights_dir)}) as url:
        client = gradio_client.Client(url, verbose=False)
        archive, summary = client.predict([gradio_client.handle_file(str(p)) for p in inputs],
                                          ["cutout", "mask"], "u2netp", api_name="/batch")
    assert "3 of 3 images succeeded" in summary
    names = sorted(zipfile.ZipFile(archive).namelist())
    expected = sorted(["manifest.csv"] + [f"{Path(p).stem}_{k}.png" for p in inputs
                                          for k in ("cutout", "mask")])
    assert names == expected
    with zipfile.ZipFile(archive) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert sorted(r["input"] for r in rows) == sorted(p.name for p in inputs)


def test_same_relative_path_twice_is_reported_not_overwritten(folder, tmp_path):
    for parent in ("one", "two"):
        photos = tmp_path / parent / "photos"
        photos.mkdir(parents=True)
        (photos / "a.png").write_bytes((folder / "a01.png").read_bytes())
    report = run_batch([tmp_path / "one" / "photos", tmp_path / "two" / "photos"], tmp_path / "out",
                       ["mask"], workers=1, progress=False)
    assert (report.succeeded, report.failed) == (1, 1)
    assert "same relative path 'photos/a.png'" in report.summary
    assert [p.name for p in (tmp_path / "out" / "photos").iterdir()] == ["a_mask.png"]


def test_damaged_zip_input_is_refused(tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        run_batch([fake], tmp_path / "out", ["mask"], workers=1, progress=False)


def test_manifest_lists_every_images_boxes_whatever_the_outputs(tmp_path):
    """manifest.csv's boxes column is filled for each image even when no output is the boxes
    (as before the render layer: the manifest is where a batch user finds the objects)."""
    photo = tmp_path / "in" / "cat.jpg"
    photo.parent.mkdir()
    Image.open(ROOT / "examples" / "cat.jpg").convert("RGB").resize((150, 100)).save(photo)
    report = run_batch([photo.parent], tmp_path / "out", ["mask"], workers=1, progress=False)
    row = next(r for r in report.rows if r["input"] == "cat.jpg")
    boxes = json.loads(row["boxes"])
    assert boxes["count"] >= 1 and boxes["boxes"][0]["x1"] > boxes["boxes"][0]["x0"]

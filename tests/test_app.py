"""The real app, started as `python app.py` on a free loopback port, driven with gradio_client.

Weights: the real u2netp/u2net from ../shared/weights (U2NET_HOME), the Hub offline. The
portrait weights are not on this machine, so the portrait model gets a randomly initialised
U²-Net in the official .pth layout: the drawing is meaningless, but it is a real pass through a
real network and the app's plumbing is what is tested here.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
from app_server import random_portrait_weights, running_app, server_log, tiny_clip, upload
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CAT = EXAMPLES / "cat.jpg"  # 451 × 300
ASTRONAUT = EXAMPLES / "astronaut.jpg"  # 512 × 512
BRICK = EXAMPLES / "background_brick.jpg"
MAX_PIXELS = 2_000_000  # the app under test refuses bigger images, so "too large" is cheap to test

ENDPOINTS = {"/all_outputs", "/remove_background", "/change_background", "/bounding_boxes",
             "/highlight", "/crop", "/portrait", "/batch", "/video", "/webcam", "/refine"}


@pytest.fixture(scope="module")
def portrait_weights(tmp_path_factory) -> Path:
    return random_portrait_weights(tmp_path_factory.mktemp("portrait") / "u2net_portrait_random.pth")


@pytest.fixture(scope="module")
def app_url(weights_dir, portrait_weights, tmp_path_factory):
    env = {
        "U2NET_HOME": str(weights_dir),
        "U2NET_U2NET_PORTRAIT_WEIGHTS": str(portrait_weights),
        "U2NET_MAX_PIXELS": str(MAX_PIXELS),
        "HF_HOME": str(tmp_path_factory.mktemp("hf_home")),
    }
    with running_app(env=env) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory) -> Client:
    return Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def opened(path: str) -> Image.Image:
    """The file the app returned, decoded (fails the test if it is not an image)."""
    assert path and Path(path).is_file(), f"no file: {path!r}"
    with Image.open(path) as im:
        im.load()
        return im.copy()


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def predict(client: Client, app_url: str, *args, api_name: str):
    """client.predict, with the server's log in the message when the call fails unexpectedly."""
    try:
        return client.predict(*args, api_name=api_name)
    except Exception as exc:
        raise AssertionError(f"{api_name} failed: {exc}\n--- app log ---\n{server_log(app_url)}") from exc


def test_every_tab_is_a_named_endpoint_with_typed_inputs(client):
    api = client.view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    assert ENDPOINTS <= set(named), f"missing: {ENDPOINTS - set(named)}"
    for name in ENDPOINTS - {"/batch"}:
        first = named[name]["parameters"][0]
        assert first["python_type"]["type"] == "filepath", (name, first)
    models = named["/remove_background"]["parameters"][1]
    assert models["parameter_name"] == "model"
    for model in ("u2netp", "u2net", "u2net_human_seg"):
        assert model in models["python_type"]["type"]


def test_all_outputs_from_one_upload(client, app_url):
    (mask, cut, background, boxes, highlighted, cropped, portrait, slider, boxes_json, notes) = predict(
        client, app_url, handle_file(CAT), "u2netp", "#00b140", "desaturate", "1:1", api_name="/all_outputs")
    size = size_of(CAT)
    for path, mode in ((mask, "L"), (cut, "RGBA"), (background, "RGB"), (boxes, "RGB"),
                       (highlighted, "RGB")):
        im = opened(path)
        assert im.size == size and im.mode == mode, (path, im.size, im.mode)
    assert Path(mask).name == "cat_mask.png" and Path(cut).name == "cat_cutout.png"
    crop = opened(cropped)
    assert abs(crop.width - crop.height) <= 1, crop.size  # 1:1 (to within one pixel)
    assert opened(portrait).size == size
    before, after = slider
    assert opened(before).size == opened(after).size == size
    assert opened(after).mode == "RGBA"
    data = json.loads(json.dumps(boxes_json))
    assert data["boxes"] and data["union"] is not None
    box = data["boxes"][0]
    assert 0 <= box["x0"] < box["x1"] <= size[0] and 0 <= box["y0"] < box["y1"] <= size[1]
    union = data["union"]
    assert crop.width >= union["x1"] - union["x0"] and crop.height >= union["y1"] - union["y0"]
    assert notes == ""  # the portrait weights are available in this run
    # The green background really is green where the mask says "background".
    m, bg = opened(mask), opened(background)
    corner = next((x, y) for x, y in ((0, 0), (size[0] - 1, 0), (0, size[1] - 1), (size[0] - 1, size[1] - 1))
                  if m.getpixel((x, y)) < 10)
    assert bg.getpixel(corner) == (0, 0xB1, 0x40)


def test_remove_background_png_and_webp(client, app_url):
    png = predict(client, app_url, handle_file(CAT), "u2netp", 0.0, 0.0, True, "PNG",
                  api_name="/remove_background")
    webp = predict(client, app_url, handle_file(CAT), "u2netp", 0.5, 2.0, True, "WebP",
                   api_name="/remove_background")
    assert Path(png).name == "cat_cutout.png" and Path(webp).name == "cat_cutout.webp"
    soft, hard = opened(png), opened(webp)
    assert soft.size == hard.size == size_of(CAT)
    assert soft.mode == hard.mode == "RGBA"
    # Threshold 0 keeps the soft edge; 0.5 + feather changes the alpha.
    assert soft.getchannel("A").tobytes() != hard.getchannel("A").tobytes()


def test_outputs_are_served_from_where_they_were_written(app_url):
    """Our output folder is inside Gradio's cache, so Gradio hands out the file the handler wrote
    (named after the upload, in a u2net-studio-* folder) instead of hashing and copying it; the
    URL serves the full file."""
    import httpx

    raw = Client(app_url, verbose=False, download_files=False)
    served = raw.predict(handle_file(CAT), "u2netp", 0.0, 0.0, True, "PNG", api_name="/remove_background")
    parts = Path(served["path"]).parts
    assert any(part.startswith("u2net-studio-") for part in parts), served
    assert parts[-1] == "cat_cutout.png", served
    # Gradio serves any file in its cache to whoever names it: the request's folder is 128
    # random bits, never guessable from another user's URLs.
    assert len(parts[-2]) == 32 and int(parts[-2], 16) >= 0, served
    body = httpx.get(served["url"], timeout=30).content
    with Image.open(io.BytesIO(body)) as im:
        assert im.mode == "RGBA" and im.size == size_of(CAT)


def test_change_background_colour_picture_and_transparent(client, app_url):
    size = size_of(ASTRONAUT)
    colour = opened(predict(client, app_url, handle_file(ASTRONAUT), "u2netp", "colour", "#2e86de", None,
                            12, "cover", 0, api_name="/change_background"))
    picture = opened(predict(client, app_url, handle_file(ASTRONAUT), "u2netp", "image", "#ffffff",
                             handle_file(BRICK), 12, "contain", 0, api_name="/change_background"))
    clear = opened(predict(client, app_url, handle_file(ASTRONAUT), "u2netp", "transparent", "#ffffff", None,
                           12, "cover", 0, api_name="/change_background"))
    assert colour.size == picture.size == clear.size == size
    assert colour.mode == picture.mode == "RGB" and clear.mode == "RGBA"
    assert colour.tobytes() != picture.tobytes()


def test_bounding_boxes_image_json_and_file(client, app_url):
    drawn, data, json_file = predict(client, app_url, handle_file(CAT), "u2netp", 0.5, 0.001, "#00ff00", 4,
                                     True, True, api_name="/bounding_boxes")
    assert opened(drawn).size == size_of(CAT)
    assert json.loads(Path(json_file).read_text()) == data
    assert Path(json_file).name == "cat_boxes.json"
    assert len(data["boxes"]) >= 1
    for box in data["boxes"]:
        assert set(box) >= {"x0", "y0", "x1", "y1", "area", "score"}
        assert 0 <= box["score"] <= 1 and box["area"] > 0


@pytest.mark.parametrize("mode", ["dim", "heatmap", "outline"])
def test_highlight(client, app_url, mode):
    out = predict(client, app_url, handle_file(CAT), "u2netp", mode, 0.7, "#ffcc00", api_name="/highlight")
    assert opened(out).size == size_of(CAT)
    assert Path(out).name == f"cat_highlight_{mode}.png"


def test_crop(client, app_url):
    path, message = predict(client, app_url, handle_file(CAT), "u2netp", 10, "free", "cutout",
                            api_name="/crop")
    im = opened(path)
    w, h = size_of(CAT)
    assert im.mode == "RGBA" and im.width <= w and im.height <= h and im.width * im.height < w * h
    assert isinstance(message, str)


def test_portrait(client, app_url):
    drawing, blend, note = predict(client, app_url, handle_file(ASTRONAUT), 2.0, 0.5, api_name="/portrait")
    size = size_of(ASTRONAUT)
    assert opened(drawing).size == opened(blend).size == size
    assert note == ""


def test_batch_of_examples_to_zip(client, app_url):
    archive, summary = predict(client, app_url, [handle_file(CAT), handle_file(ASTRONAUT)], ["mask", "cutout"],
                               "u2netp", api_name="/batch")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert "manifest.csv" in names
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        images = [n for n in names if n.lower().endswith((".png", ".webp"))]
        assert len(images) >= 4, names  # two outputs for each of two pictures
        for name in images:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                assert im.size in (size_of(CAT), size_of(ASTRONAUT)), (name, im.size)
    assert len(rows) >= 2 and isinstance(summary, str) and summary


def test_webcam_frame_endpoint(client, app_url):
    # The live tab streams; the API takes one frame at a time through the same handler.
    frame = opened(predict(client, app_url, handle_file(CAT), "#00ff00", "u2netp", api_name="/webcam"))
    assert frame.size == size_of(CAT) and frame.mode == "RGB"


def _mask_array(path: str):
    import numpy as np

    return np.asarray(opened(path).convert("L"), np.int16)


def test_refine_remove_stroke_is_local_and_every_tab_then_uses_it(client, app_url, tmp_path):
    import numpy as np
    from scipy import ndimage

    picture = _unique_picture(tmp_path, "cat.jpg")  # its own cache entry: no other test sees it
    before, _, note = predict(client, app_url, handle_file(picture), "u2netp", None, "none", "", None, None,
                              api_name="/refine")
    assert "uncorrected" in note
    network = _mask_array(before)
    # A "remove" stroke (0 on 128 = untouched) on a patch the network calls object.
    h, w = network.shape
    strokes = np.full((h, w), 128, np.uint8)
    ys, xs = np.nonzero(network > 200)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    strokes[cy - 12:cy + 12, cx - 12:cx + 12] = 0
    Image.fromarray(strokes, "L").save(tmp_path / "strokes.png")
    mask_path, cut_path, note = predict(client, app_url, handle_file(picture), "u2netp",
                                        handle_file(tmp_path / "strokes.png"), "none", "", None, None,
                                        api_name="/refine")
    corrected = _mask_array(mask_path)
    assert "Corrected" in note and "Every tab" in note
    assert corrected[cy - 12:cy + 12, cx - 12:cx + 12].max() == 0  # removed where painted
    # Nothing changes farther than the stroke's reach (10 % of the long side) from the stroke.
    far = ndimage.distance_transform_edt(strokes != 0) > 0.1 * max(h, w) + 2
    assert (corrected[far] == network[far]).all()
    assert opened(cut_path).getchannel("A").tobytes() == opened(mask_path).tobytes()
    # Another tab, no mask given: its cut-out's alpha is the corrected mask (the cache replaced).
    cut = opened(predict(client, app_url, handle_file(picture), "u2netp", 0.0, 0.0, True, "PNG",
                         api_name="/remove_background"))
    assert np.array_equal(np.asarray(cut.getchannel("A"), np.int16), corrected)


def test_refine_point_keeps_only_the_object_clicked(client, app_url, tmp_path):
    picture = tmp_path / "two_things.png"
    im = Image.new("RGB", (400, 240), (200, 200, 190))
    draw = ImageDraw.Draw(im)
    draw.ellipse((40, 60, 160, 180), fill=(200, 30, 30))
    draw.rectangle((250, 70, 350, 170), fill=(30, 60, 200))
    draw.text((5, 5), uuid.uuid4().hex, fill=(190, 190, 180))  # unseen by the mask cache
    im.save(picture)
    network = _mask_array(predict(client, app_url, handle_file(picture), "u2netp", None, "none", "", None, None,
                                  api_name="/refine")[0])
    assert network[:, :200].max() > 200 and network[:, 200:].max() > 200  # two objects to choose from
    picked = _mask_array(predict(client, app_url, handle_file(picture), "u2netp", None, "none", "", 100, 120,
                                 api_name="/refine")[0])
    assert (picked[:, :200] == network[:, :200]).all()  # the disc clicked, soft edge and all
    assert picked[:, 200:].max() == 0  # the square is gone
    # By rank instead: "2" is the smaller object (the square, 100² < π·60²).
    ranked = _mask_array(predict(client, app_url, handle_file(picture), "u2netp", None, "none", "2", None, None,
                                 api_name="/refine")[0])
    assert ranked[:, :200].max() == 0 and ranked[:, 200:].max() > 200


def test_refine_refuses_what_is_not_in_its_vocabulary(client):
    for args, words in (((None, "sharpen", "", None, None), "choices: ['none', 'guided', 'matting']"),
                        ((None, "none", "two", None, None), "objects must be"),
                        ((None, "none", "", 10, None), "both x and y"),
                        ((None, "none", "", 10_000, 10), "inside")):
        with pytest.raises(AppError) as info:
            client.predict(handle_file(CAT), "u2netp", *args, api_name="/refine")
        assert words in str(info.value), (args, str(info.value))


def _bad_uploads(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the error message must contain)."""
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(CAT.read_bytes()[:2000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    big = tmp_path / "big.png"
    Image.new("RGB", (2000, 1200), "white").save(big)  # 2.4 MP > the 2 MP limit of this run
    return {
        "not an image": (text, "not an image"),
        "truncated": (truncated, "damaged or truncated"),
        "empty": (empty, "empty"),
        "too large": (big, "over the limit"),
    }


def test_bad_uploads_get_readable_errors_and_the_app_keeps_serving(client, app_url, tmp_path):
    for what, (path, words) in _bad_uploads(tmp_path).items():
        with pytest.raises(AppError) as info:
            client.predict(handle_file(path), "u2netp", 0.0, 0.0, True, "PNG", api_name="/remove_background")
        message = str(info.value)
        assert words in message, (what, message)
        assert "Traceback" not in message
    # Same server, next request: fine.
    out = predict(client, app_url, handle_file(CAT), "u2netp", 0.0, 0.0, True, "PNG",
                  api_name="/remove_background")
    assert opened(out).size == size_of(CAT)


def test_missing_model_weights_are_a_readable_error(client, app_url):
    # u2net_human_seg's weights are not in ../shared and the Hub is offline.
    with pytest.raises(AppError) as info:
        client.predict(handle_file(CAT), "u2net_human_seg", "dim", 0.6, "#ff3b30", api_name="/highlight")
    assert "u2net_human_seg" in str(info.value)
    assert opened(predict(client, app_url, handle_file(CAT), "u2netp", "dim", 0.6, "#ff3b30",
                          api_name="/highlight")).size == size_of(CAT)


# ---------------------------------------------------------------------------------------------
# One network pass per image: the handler the /all_outputs endpoint runs, called in this process
# so the shared predictors' own counters can be read (no debug endpoint in the product).


def _unique_picture(tmp_path: Path, name: str = "coffee.jpg") -> Path:
    """An image no predictor in this process has seen (masks are cached by content)."""
    with Image.open(EXAMPLES / name) as im:
        im = im.convert("RGB")
    ImageDraw.Draw(im).text((5, 5), uuid.uuid4().hex, fill=(255, 0, 0))
    path = tmp_path / "unique.png"
    im.save(path)
    return path


def test_all_outputs_runs_each_network_once_per_image(portrait_weights, monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_U2NET_PORTRAIT_WEIGHTS", str(portrait_weights))
    from studio.all_outputs import all_outputs
    from u2net.predictor import get_predictor

    salient = get_predictor("u2netp")
    portrait = get_predictor("u2net_portrait")
    picture = str(_unique_picture(tmp_path))
    before = (salient.inference_count, portrait.inference_count)

    first = all_outputs(picture, "u2netp", "white", "dim", "free")
    assert all(Path(p).is_file() for p in first[:7])
    assert (salient.inference_count, portrait.inference_count) == (before[0] + 1, before[1] + 1)

    # New controls re-render from the cached masks: no network pass at all. The drawing reads
    # the photo only, so the same file is handed back, not drawn and written again.
    again = all_outputs(picture, "u2netp", "blur", "heatmap", "16:9")
    assert (salient.inference_count, portrait.inference_count) == (before[0] + 1, before[1] + 1)
    assert opened(again[2]).tobytes() != opened(first[2]).tobytes()  # the background did change
    assert again[6] == first[6]
    # Another picture gets its own drawing.
    (tmp_path / "other").mkdir()
    other = str(_unique_picture(tmp_path / "other"))
    third = all_outputs(other, "u2netp", "blur", "heatmap", "16:9")
    assert third[6] != first[6] and portrait.inference_count == before[1] + 2
    assert opened(third[6]).tobytes() != opened(first[6]).tobytes()


# ---------------------------------------------------------------------------------------------
# The README's API snippet is run as written (only the address is this test server's).


def _readme_api_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## API\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_api_snippet_runs(app_url, tmp_path, monkeypatch):
    code = _readme_api_snippet()
    assert 'Client("http://127.0.0.1:7860")' in code
    for endpoint in ENDPOINTS:
        assert f'api_name="{endpoint}"' in code, f"README shows no call to {endpoint}"
    (tmp_path / "examples").symlink_to(EXAMPLES)
    tiny_clip(tmp_path / "clip.mp4", 160, 120, 6)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    try:
        exec(compile(code.replace("http://127.0.0.1:7860", app_url), "README.md (API)", "exec"), scope)
    except Exception as exc:
        raise AssertionError(f"README snippet failed: {exc!r}\n--- app log ---\n{server_log(app_url)}") from exc
    assert opened(scope["cutout"]).mode == "RGBA"
    assert Path(scope["results_zip"]).suffix == ".zip"
    assert Path(scope["video_file"]).suffix == ".mp4"
    assert opened(scope["frame"]).size == size_of(CAT)


# ---------------------------------------------------------------------------------------------
# First run on a fresh machine (a new Space): the weights come from the Hub, and the page says so.


def _page_messages(url: str, api_name: str, data: list) -> list[dict]:
    """Every message the page receives for one call (queue protocol: join, then the stream):
    progress, log (gr.Info / gr.Warning), completion."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/config", timeout=60) as response:
        config = json.load(response)
    fn_index = next(d.get("id", i) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    request = urllib.request.Request(f"{url}/gradio_api/queue/join", data=json.dumps(join).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=60).close()
    messages = []
    with urllib.request.urlopen(f"{url}/gradio_api/queue/data?session_hash={session}", timeout=600) as stream:
        for line in stream:
            if line.startswith(b"data: "):
                messages.append(json.loads(line[6:]))
                if messages[-1].get("msg") in ("process_completed", "close_stream"):
                    break
    return messages


def _uploaded(url: str, path: Path) -> dict:
    """Upload a file as the page does; returns the FileData naming the server's copy."""
    server_path = upload(url, path)
    return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def test_first_run_downloads_weights_from_the_hub_and_says_so(weights_dir, tmp_path):
    from hub_server import FakeHub

    from u2net.weights import get_spec

    source = get_spec("u2netp").sources[0]
    with FakeHub() as hub:
        hub.add_file(source.repo_id, source.filename, weights_dir / "u2netp.onnx")
        empty_home = tmp_path / "no_weights_here"
        empty_home.mkdir()
        env = {"U2NET_HOME": str(empty_home), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint,
               "HF_HOME": str(tmp_path / "hf_home")}
        with running_app(env=env) as url:
            messages = _page_messages(url, "remove_background", [_uploaded(url, CAT), "u2netp", 0, 0, True, "PNG"])
            again = _page_messages(url, "remove_background", [_uploaded(url, CAT), "u2netp", 0, 0, True, "PNG"])
    # The weights came from the (stand-in) Hub: the folder had none.
    assert any("resolve" in path and source.filename in path for _, path in hub.requests), hub.requests
    done = messages[-1]
    assert done["msg"] == "process_completed" and done["success"], done
    assert opened(done["output"]["data"][0]["path"]).size == size_of(CAT)
    # The page was told, while it waited, that the weights were being fetched; not the next time.
    # (The download's own byte progress shows too, through track_tqdm, but progress messages are
    # sampled, so a fast local download may not appear: not asserted.)
    logs = [m.get("log", "") for m in messages if m.get("msg") == "log"]
    assert any("First use of u2netp" in log and "download" in log for log in logs), messages
    assert not any(m.get("msg") == "log" for m in again), again


# ---------------------------------------------------------------------------------------------
# Nothing kept that should not be: uploads (people's photos) and results go after a while.


def _files_under(*roots: Path) -> list[Path]:
    """Every file under `roots` except Gradio's copies of our example pictures (the page's
    examples, made at start-up and kept on purpose)."""
    import os

    examples = {p.read_bytes() for p in EXAMPLES.glob("*.jpg")}
    found = []
    for root in roots:  # os.walk: the sweeper may remove folders while we look
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    if not (path.suffix == ".jpg" and path.read_bytes() in examples):
                        found.append(path)
                except OSError:
                    pass
    return found


def test_uploads_and_results_are_deleted_after_the_keep_time(weights_dir, tmp_path):
    """U2NET_KEEP_FILES_S=4: while a stream of requests is served, the app's files on disk stay
    bounded (no more than the last few requests' files), and a few seconds after the last one
    nothing of any upload or result is left, folders included."""
    import os
    import time

    gradio_dir, tmp_dir = tmp_path / "gradio", tmp_path / "tmp"
    tmp_dir.mkdir()
    env = {"U2NET_HOME": str(weights_dir), "U2NET_KEEP_FILES_S": "4", "GRADIO_TEMP_DIR": str(gradio_dir),
           "TMPDIR": str(tmp_dir)}
    counts = []
    with running_app(env=env) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        started = time.monotonic()
        for i in range(12):
            picture = tmp_path / f"photo_{i}.png"
            Image.new("RGB", (64 + i, 48), (40 * (i % 6), 90, 160)).save(picture)
            client.predict(handle_file(picture), "u2netp", "white", "dim", "free", api_name="/all_outputs")
            counts.append(len(_files_under(gradio_dir, tmp_dir)))
            time.sleep(max(0.0, started + 1.5 * (i + 1) - time.monotonic()))
        # The files go after the keep time, the folders they leave empty after as long again:
        # wait for that (at most 30 s; about 9 s on a quiet machine).
        deadline = time.monotonic() + 30
        while True:
            left = _files_under(gradio_dir, tmp_dir)
            folders = [folder for root in (gradio_dir, tmp_dir) for folder, _, names in os.walk(root)
                       if not any(name.endswith(".jpg") for name in names)]
            if (not left and len(folders) <= 3) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    one_request = counts[0]
    assert one_request >= 8, counts  # the upload and the outputs, in our folder and Gradio's
    # The requests of the last keep time plus a sweep (about four; a loaded machine may lag a
    # sweep) are on disk at once, never the twelve of the whole stream.
    assert max(counts) <= 7 * one_request, counts
    assert left == [], left
    assert len(folders) <= 3, folders  # the roots themselves (Gradio's, ours) at most

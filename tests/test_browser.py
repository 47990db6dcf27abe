"""A real browser (Playwright driving Debian's chromium) on the real app.

Opens the page, uploads an example in the all-outputs tab and waits for every output, then runs
two other tabs (one by clicking an example, one by uploading) and checks that a bad upload is a
readable message in the page. Screenshots go to artifacts/browser/ for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_server import running_app, server_log

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update",
                 # Chromium's own test camera (a moving pie on green) for the Webcam tab.
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
WAIT_MS = 180_000  # first use loads the weights; two busy CPU cores


@pytest.fixture(scope="module")
def app_url(weights_dir, tmp_path_factory):
    # As on this machine: no portrait weights (and the Hub offline), so the page must say so
    # in the portrait slots while every other output renders.
    env = {"U2NET_HOME": str(weights_dir), "HF_HOME": str(tmp_path_factory.mktemp("hf_home"))}
    with running_app(env=env, args=["--preload", "u2netp"]) as url:
        # Preloading happens before the server answers, so the log already says so.
        assert f"preloaded u2netp from {weights_dir / 'u2netp.onnx'}" in server_log(url), server_log(url)
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium is missing at {CHROMIUM}: run `apt-get install -y chromium` "
                    "(scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.grant_permissions(["camera"], origin=app_url)
        page = context.new_page()
        # Not "networkidle": the page keeps a connection to the server open.
        page.goto(app_url, wait_until="domcontentloaded")
        page.locator("#all-image").wait_for(timeout=WAIT_MS)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(artifacts_dir) -> Path:
    folder = artifacts_dir / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def image_shown(page, elem_id: str):
    """Wait until the output component `elem_id` shows an image that has loaded."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible", timeout=WAIT_MS)
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(),
                           timeout=WAIT_MS)
    return img


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def test_all_outputs_tab_renders_every_output(page, shots):
    assert "U²-Net Studio" in page.title()
    page.locator("#all-image input[type=file]").set_input_files(str(EXAMPLES / "cat.jpg"))
    for elem_id in ("all-mask", "all-cutout", "all-new-bg", "all-boxes", "all-highlight", "all-crop"):
        image_shown(page, elem_id)
    # No portrait weights here: a readable note instead of the drawing, nothing else lost.
    page.locator("#all-notes").get_by_text("portrait model's weights").wait_for(timeout=WAIT_MS)
    slider_images = page.locator("#all-slider img")
    slider_images.first.wait_for(state="visible", timeout=WAIT_MS)
    assert slider_images.count() >= 2  # before and after
    page.locator("#all-boxes-json").get_by_text("boxes").first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(shots / "all_outputs.png"), full_page=True)


def test_remove_background_tab_from_an_example(page, shots):
    open_tab(page, "Remove background")
    tab = page.locator("#rm-image").locator("xpath=ancestor::div[@role='tabpanel']")
    tab.locator("button.gallery-item").first.click()  # the first example: the cat
    image_shown(page, "rm-out")
    src = page.locator("#rm-out img").first.get_attribute("src") or ""
    assert "cutout" in src, src  # the file shown is the one that downloads, named after the input
    page.screenshot(path=str(shots / "remove_background.png"), full_page=True)


def test_bounding_boxes_tab_from_an_upload(page, shots):
    open_tab(page, "Bounding boxes")
    page.locator("#bx-image input[type=file]").set_input_files(str(EXAMPLES / "coffee.jpg"))
    image_shown(page, "bx-out")
    page.locator("#bx-json").get_by_text("union").first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(shots / "bounding_boxes.png"), full_page=True)


def test_change_background_to_an_example_picture(page, shots):
    open_tab(page, "Change background")
    page.locator("#bg-image input[type=file]").set_input_files(str(EXAMPLES / "astronaut.jpg"))
    image_shown(page, "bg-out")
    assert not page.locator("#bg-picture").is_visible()  # only the colour's controls so far
    page.get_by_label("image", exact=True).check()
    picture = page.locator("#bg-picture")
    picture.wait_for(state="visible", timeout=WAIT_MS)
    picture.locator("xpath=..").locator("button.gallery-item").first.click()  # the brick wall
    page.wait_for_function("() => (document.querySelector('#bg-out img')?.src || '').includes('background_image')",
                           timeout=WAIT_MS)
    image_shown(page, "bg-out")
    page.screenshot(path=str(shots / "change_background.png"), full_page=True)


def test_portrait_tab_says_how_to_get_missing_weights(page, shots):
    open_tab(page, "Portrait")
    page.locator("#pt-image input[type=file]").set_input_files(str(EXAMPLES / "astronaut.jpg"))
    note = page.locator("#pt-note").get_by_text("portrait model's weights").first
    note.wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(shots / "portrait_without_weights.png"), full_page=True)


def test_webcam_tab_streams_processed_frames(page, shots):
    open_tab(page, "Webcam")
    page.locator("#wc-in").click()  # "Click to Access Webcam"
    page.locator("#wc-in button.capture-button").click()  # Record: frames start streaming
    image_shown(page, "wc-out")
    page.screenshot(path=str(shots / "webcam.png"))
    page.locator("#wc-in button.capture-button").click()  # Stop


def test_a_bad_upload_is_a_readable_message(page, shots, tmp_path):
    open_tab(page, "Highlight")
    bad = tmp_path / "holiday.png"
    bad.write_text("not a picture at all")
    page.locator("#hl-image input[type=file]").set_input_files(str(bad))
    message = page.get_by_text("not an image format we can read").first
    message.wait_for(state="visible", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "bad_upload.png"))  # the viewport: toasts are fixed-position
    # The page still works: an example in the same tab renders.
    page.locator("#hl-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
    image_shown(page, "hl-out")


def _alpha_of(page, src: str):
    """The alpha channel of the image the page shows at `src` (fetched as the page would)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(page.request.get(src).body())) as im:
        return np.asarray(im.convert("RGBA").getchannel("A"), np.int16)


def test_refine_tab_a_red_stroke_drawn_with_the_mouse_changes_the_cutout(page, shots):
    open_tab(page, "Refine")
    page.locator("#rf-image input[type=file]").set_input_files(str(EXAMPLES / "cat.jpg"))
    before_src = image_shown(page, "rf-cutout").get_attribute("src") or ""
    page.locator("#rf-note").get_by_text("uncorrected").wait_for(timeout=WAIT_MS)
    # The brush's second colour is red ("remove"); then paint a zigzag over the cat's face.
    editor = page.locator("#rf-editor")
    editor.locator("button[title=Color]").click()
    editor.locator("[style*='220, 38, 38'], [style*='dc2626' i]").first.click()
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 120, cy - 40)
    page.mouse.down()
    for i in range(1, 13):
        page.mouse.move(cx - 120 + 20 * i, cy - 40 + (40 if i % 2 else 0), steps=4)
    page.mouse.up()
    page.screenshot(path=str(shots / "refine_painted.png"), full_page=True)
    page.locator("#rf-apply").click()
    page.locator("#rf-note").get_by_text("Every tab now uses this mask").wait_for(timeout=WAIT_MS)
    page.wait_for_function(f"() => (document.querySelector('#rf-cutout img')?.src || '') !== {before_src!r}",
                           timeout=WAIT_MS)
    after_src = image_shown(page, "rf-cutout").get_attribute("src") or ""
    before, after = _alpha_of(page, before_src), _alpha_of(page, after_src)
    assert before.shape == after.shape
    removed = (before > 200) & (after == 0)  # object before, cut away by the red stroke now
    assert removed.sum() > 200, removed.sum()
    grown = (after > before + 10).sum()
    assert grown < removed.sum(), (grown, removed.sum())  # a remove stroke removes
    assert removed.sum() < 0.5 * (before > 200).sum()  # …there: most of the cat stays
    page.screenshot(path=str(shots / "refine_applied.png"), full_page=True)


def test_refine_tab_a_click_keeps_one_object_and_reset_brings_both_back(page, shots, tmp_path):
    from PIL import Image, ImageDraw

    picture = tmp_path / "two_things.png"
    im = Image.new("RGB", (400, 240), (200, 200, 190))
    draw = ImageDraw.Draw(im)
    draw.ellipse((40, 60, 160, 180), fill=(200, 30, 30))
    draw.rectangle((250, 70, 350, 170), fill=(30, 60, 200))
    im.save(picture)
    open_tab(page, "Refine")
    page.locator("#rf-image input[type=file]").set_input_files(str(picture))
    page.locator("#rf-note").get_by_text("uncorrected").wait_for(timeout=WAIT_MS)
    both = _alpha_of(page, image_shown(page, "rf-cutout").get_attribute("src") or "")
    assert both[:, :200].max() > 200 and both[:, 200:].max() > 200
    photo = image_shown(page, "rf-pick")
    photo.scroll_into_view_if_needed()
    box = photo.bounding_box()
    photo.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.5})  # on the square
    page.locator("#rf-note").get_by_text("Every tab now uses this mask").wait_for(timeout=WAIT_MS)
    one = _alpha_of(page, image_shown(page, "rf-cutout").get_attribute("src") or "")
    assert one[:, :200].max() == 0 and one[:, 200:].max() > 200  # only the square
    page.screenshot(path=str(shots / "refine_picked.png"), full_page=True)
    page.locator("#rf-reset").click()
    page.locator("#rf-note").get_by_text("network's mask for this picture again").wait_for(timeout=WAIT_MS)
    again = _alpha_of(page, image_shown(page, "rf-cutout").get_attribute("src") or "")
    assert (again == both).all()

"""The app in a real browser: Debian's headless Chromium, driven by Playwright, against `streamlit run app.py`, on a
machine with no network: every request for anything but the app's own server fails, and the tests check none was made.

A person's path through the app: upload a face on the Attack explorer, see its attack, run it again with other
settings, and download the result (JSON) and the comparison (PNG) — the bytes the browser saves are read back, since
st.download_button depends on streamlit's web server (starlette); start a tiny training job on the Train page and watch
the list follow it to "done" by itself; compare the generations of a run; look at the run on the Runs page.
Screenshots go to an artifacts folder under the test's tmp dir, and to docs/screenshots/ (linked from the README) only
when PASM_UPDATE_SCREENSHOTS=1, so a CI run leaves the clone as it found it. The time from the click on Run attack to
the new result drawn whole is printed, not asserted. Without playwright or Chromium the test is skipped.
"""
import copy
import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from torch.utils.data import TensorDataset

from bench.app import (ATTACK_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS, VIEWPORT, change_settings, serve, time_attack,
                       wait_for_result, wait_until_idle)
from pasm import jobs
from pasm.checkpoints import make_meta, save_checkpoint
from pasm.data.synth import write_synth
from pasm.runs import Run
from pasm.train import fit_supervised

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("PASM_UPDATE_SCREENSHOTS") == "1"
MAX_SCREENSHOT_HEIGHT = 8000
DOWNLOAD_TIMEOUT_MS = 30_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
APP_HOSTS = ("127.0.0.1", "localhost")
NAVIGATION = ["Home", "Attack explorer", "Generations", "Data set atlas", "Train", "Runs"]  # app.py's titles


def write_runs(root, teacher, synth_set):
    """A finished two-generation run: the session's trained teacher, and a student trained one epoch more."""
    student = copy.deepcopy(teacher)
    images, labels, _ = synth_set["train"]
    fit_supervised(student, TensorDataset(images, labels), epochs=1, batch_size=64, lr=0.01)
    run = root / "browser-run"
    entries = []
    for generation, model in enumerate((teacher, student.eval())):
        save_checkpoint(run / f"gen{generation}.safetensors", model,
                        make_meta(model, synth_set["classes"], generation=generation))
        entries.append({"index": generation, "checkpoint": f"gen{generation}.safetensors",
                        "test_accuracy": 0.6 + 0.05 * generation, "mean_class_accuracy": 0.55 + 0.05 * generation,
                        "occluded_accuracy": 0.4 + 0.05 * generation})
    Run(run).create({"data": "synth:none", "arch": "small_cnn", "generations": 1, "epochs": 8})
    Run(run).write_status(state="done", generation=1, epoch=8, progress=1.0)
    Run(run).write_summary({"classes": synth_set["classes"], "generations": entries})
    write_synth(root / "data" / "synth", train=35, test=14, size=32, seed=0)


@pytest.fixture
def app_url(tmp_path, trained_teacher, synth_set):
    runs = tmp_path / "runs"
    write_runs(runs, trained_teacher, synth_set)
    try:
        with serve(runs, tmp_path / "streamlit.log") as (url, _):
            yield url
    finally:
        for job in jobs.list_jobs(runs):
            jobs.kill(job)


# No host name resolves (the app is reached by its address, 127.0.0.1): Chromium is as offline as a machine without
# a network, and a page that needs one (a font or an icon from a CDN) fails as it would there.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
NAVIGATION_TIMEOUT_MS = 120_000  # a page's first load on a busy 2-core machine


@pytest.fixture
def outside_requests():
    """What the pages asked of any server but the app's own (each fails: the browser is offline)."""
    return []


@pytest.fixture
def page(outside_requests):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, OFFLINE])
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        context.on("request", lambda request: note_outside(request, outside_requests))
        try:
            yield context.new_page()
        finally:
            browser.close()


def note_outside(request, outside_requests):
    url = urllib.parse.urlsplit(request.url)
    if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in APP_HOSTS:
        outside_requests.append(request.url)


def assert_navigation_drawn(page):
    """The sidebar lists app.py's pages, each with its Material icon drawn from the font streamlit serves itself (one
    glyph about 1 em wide, not the icon's name spelt out, which is what a missing font shows), and the tab's icon is
    the app's own, inline."""
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    expect(links).to_have_count(len(NAVIGATION), timeout=60_000)
    assert [text.split("\n")[-1] for text in links.all_inner_texts()] == NAVIGATION
    page.wait_for_function("document.fonts.check('24px \"Material Symbols Rounded\"')", timeout=30_000)
    page.evaluate("document.fonts.ready.then(() => true)")
    icons = page.get_by_test_id("stSidebarNav").get_by_test_id("stIconMaterial")
    expect(icons).to_have_count(len(NAVIGATION))
    sizes = icons.evaluate_all("icons => icons.map(i => [i.getBoundingClientRect().width, "
                               "parseFloat(getComputedStyle(i).fontSize)])")
    assert all(0 < width <= 1.5 * size for width, size in sizes), sizes
    assert page.locator("link[rel='shortcut icon']").get_attribute("href").startswith("data:image/svg+xml")


def content_height(page):
    return int(page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                             "[data-testid=stAppViewContainer]')].map(e => e.scrollHeight), 600)"))


def screenshot(page, name, artifacts):
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as the content
    (twice: plotly redraws its figures at the new size, which can change the height)."""
    for _ in range(2):
        page.wait_for_timeout(400)
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(content_height(page), MAX_SCREENSHOT_HEIGHT)})
    page.wait_for_timeout(400)
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"{name}.png"))
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


def download(page, label):
    """(file name, bytes) of what the browser saves when the download button `label` is clicked."""
    with page.expect_download(timeout=DOWNLOAD_TIMEOUT_MS) as saved:
        page.get_by_test_id("stDownloadButton").get_by_role("button", name=label).click()
    assert saved.value.failure() is None
    data = Path(saved.value.path()).read_bytes()
    wait_until_idle(page)  # the click also reruns the page
    return saved.value.suggested_filename, data


def test_attack_explorer_train_and_generations_in_chromium(app_url, page, tmp_path, outside_requests):
    runs = tmp_path / "runs"
    artifacts = tmp_path / "artifacts"
    photo = tmp_path / "face_mirrored.gif"  # a GIF: the app takes what pasm.images reads, as the CLI does
    with Image.open(REPO / "pasm" / "assets" / "grace_hopper.jpg") as image:
        ImageOps.mirror(image.convert("RGB")).save(photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")

    page.goto(f"{app_url}/Attack_explorer")
    expect(page.get_by_role("heading", name="Attack explorer", exact=True)).to_be_visible(timeout=60_000)
    page.get_by_test_id("stRadio").get_by_text("upload", exact=True).click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Photo with a face")
    uploader.locator("input[type=file]").set_input_files(str(notes))
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("notes.txt: not an image", timeout=60_000)
    uploader.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_text("Aligned crop (what the teacher sees)").wait_for(state="visible", timeout=60_000)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(uploader).not_to_contain_text("notes.txt")
    expect(page.get_by_role("combobox", name="Face")).to_have_value(re.compile(r"^face 1 \(detection score"))
    wait_until_idle(page)

    wait_for_result(page)  # the face is attacked as soon as it is chosen
    change_settings(page, 1)
    seconds, computed = time_attack(page)
    print(f"\nclick 'Run attack' -> the new result drawn whole: {seconds:.2f} s "
          f"(the app says the computation took {computed})")
    expect(page.get_by_test_id("stMetric").first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    wait_until_idle(page)
    screenshot(page, "attack_explorer", artifacts)

    name, data = download(page, "Download the result (JSON)")
    result = json.loads(data)
    assert name == "pasm_attack.json" and result["image"] == photo.name and result["points_crop"]
    name, data = download(page, "Download the comparison (PNG)")
    assert name == "pasm_comparison.png" and len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE)
    expect(page.get_by_test_id("stException")).to_have_count(0)

    page.goto(f"{app_url}/Train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60_000)
    start_training = page.get_by_role("button", name="Start training")
    page.get_by_role("textbox", name="Run name").fill("../etc")
    start_training.click()
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("run name '../etc'", timeout=30_000)
    page.get_by_role("textbox", name="Run name").fill("tiny")
    page.get_by_role("textbox", name="Data set spec").fill(f"synth:{runs / 'data' / 'synth'}")
    page.get_by_role("spinbutton", name="Generations (students after the teacher)").fill("0")
    page.get_by_role("spinbutton", name="Epochs per generation").fill("1")
    page.get_by_role("spinbutton", name="Batch size (per process)").fill("16")
    start_training.click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("Started job", timeout=30_000)
    # The list refreshes itself (st.fragment(run_every=2)): no click needed to see the job finish.
    expect(page.get_by_text("tiny · done")).to_be_visible(timeout=ATTACK_TIMEOUT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.get_by_text("Metrics and log").click()
    expect(page.locator(".js-plotly-plot .gtitle", has_text="Latest metrics")).to_be_visible(timeout=30_000)
    screenshot(page, "train", artifacts)

    page.goto(f"{app_url}/Generations")
    expect(page.get_by_role("heading", name="Generations", exact=True)).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Compare generations").click()
    generations_figure = page.locator(".js-plotly-plot").filter(
        has=page.locator(".gtitle", has_text="Points and region of every generation"))
    generations_figure.locator(".scatterlayer path.point").first.wait_for(state="visible", timeout=ATTACK_TIMEOUT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    wait_until_idle(page)
    screenshot(page, "generations", artifacts)

    page.goto(f"{app_url}/Runs")
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=60_000)
    page.get_by_role("combobox", name="Run or study").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    page.locator(".js-plotly-plot .gtitle", has_text="Training curves").wait_for(state="visible", timeout=60_000)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, "runs", artifacts)

    for name in ("attack_explorer", "train", "generations", "runs"):
        with Image.open(artifacts / f"{name}.png") as shot:
            assert shot.width >= 1000 and shot.height >= 600
    assert outside_requests == [], "the app asked for something outside this machine"


def test_home_offline_its_icons_the_teacher_kept_over_a_reload_and_text_shown_as_typed(app_url, page, tmp_path,
                                                                                      outside_requests):
    page.goto(app_url)
    expect(page.get_by_role("heading", name="PASM Studio", exact=True)).to_be_visible(timeout=60_000)
    assert_navigation_drawn(page)
    teacher = tmp_path / "runs" / "browser-run" / "gen0.safetensors"
    shown = page.get_by_test_id("stMarkdownContainer").filter(has_text=str(teacher)).last
    expect(shown).to_be_visible()
    assert shown.evaluate("e => e.scrollWidth <= e.clientWidth"), "the whole file name, wrapped, not cut"

    page.get_by_test_id("stSidebar").get_by_role("combobox", name="Teacher").click()
    page.get_by_role("option", name="browser-run · gen 1", exact=True).click()
    expect(page).to_have_url(re.compile(r"teacher=browser-run(%2F|/)gen1\.safetensors"), timeout=60_000)
    wait_until_idle(page)
    page.reload()
    expect(page.get_by_role("heading", name="PASM Studio", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Teacher")).to_have_value(
        "browser-run · gen 1", timeout=60_000)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Data set atlas").click()
    spec = page.get_by_role("textbox", name="Data set spec (KIND:PATH)")
    spec.fill("nonsense:x")
    spec.press("Enter")
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("nonsense:x", timeout=60_000)
    expect(error).to_contain_text("unknown data set kind")
    assert_navigation_drawn(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert outside_requests == [], "the app asked for something outside this machine"


def test_a_page_opened_first_after_a_start_gets_the_apps_navigation(app_url, page):
    """The first request after the server starts may be a deep link: it must run app.py's navigation like any other,
    for that session and the next."""
    for path, heading in (("Train", "Train"), ("Runs", "Runs")):
        page.goto(f"{app_url}/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
        assert_navigation_drawn(page)

"""Attack explorer page (AppTest) and the computations behind it (pasm.explorer)."""
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import streamlit as st
from streamlit.testing.v1 import AppTest

from pasm import explorer
from pasm.attack import flip_cap
from pasm.checkpoints import load_checkpoint, make_meta, save_checkpoint
from pasm.errors import PasmError
from pasm.faces import REGIONS, align_face, detect_faces
from pasm.images import IMAGE_SUFFIXES, read_image
from pasm.models import InputSpec, build_model
from pasm.report import face_reports
from ui import state
from app_helpers import chart_titles, no_exception

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "1_Attack_explorer.py"
CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


@pytest.fixture(autouse=True)
def _fresh_caches():
    """The explorer's results are cached once per process (ui.explorer_cache): each test starts with none."""
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def teacher_file(runs):
    model = build_model("small_cnn", len(CLASSES), InputSpec(32, 3))
    path = runs / "run_a" / "gen0.safetensors"
    save_checkpoint(path, model, make_meta(model, CLASSES))
    return path


def page():
    return AppTest.from_file(str(PAGE), default_timeout=60)


def button(at, label):
    return next(b for b in at.button if b.label == label)




def view_titles(at):
    """Titles written over views drawn as plain images (``**title**``)."""
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**")]


def image_captions(at):
    """The captions of each st.image on the page, in page order."""
    return [image.captions for image in at.get("image")]


def upload(at, name, data, mime="image/png"):
    at.radio[0].set_value("upload").run()
    at.file_uploader[0].set_value((name, data, mime))
    return at.run()


def black_one_bit_png(width, height):
    """A valid 1-bit black PNG of any size, built row by row: 24000x24000 (576 Mpx) is ~70 kB and never allocated."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(b"\x00" * (1 + -(-width // 8))) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# The page


def test_explorer_without_checkpoint_asks_for_a_teacher(runs):
    at = page().run()
    no_exception(at)
    assert any("Choose a teacher" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Run attack"]


def test_explorer_shows_the_sample_face_its_crop_and_prediction(runs, teacher_file):
    at = page().run()
    no_exception(at)
    until_flip = at.checkbox(key="explorer_until_flip")
    assert until_flip.value and f"at most {flip_cap(32, 32)} points" in until_flip.label
    face_key = next(k for k in at.session_state.filtered_state if k.startswith("explorer_face_"))
    assert at.selectbox(key=face_key).value == 0
    assert "Prediction" in chart_titles(at)
    assert "Aligned crop (what the teacher sees)" in view_titles(at)
    assert image_captions(at)[0] == ["32×32 px, as the teacher receives it"]


@pytest.fixture
def attack_calls(monkeypatch):
    """(settings, result) of every attack the page runs."""
    calls = []
    real = explorer.analyse_face

    def counted(*args, **kwargs):
        calls.append((args[2], real(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(explorer, "analyse_face", counted)
    return calls


def test_a_chosen_face_is_attacked_at_once_with_the_forms_settings(runs, teacher_file, attack_calls):
    at = page().run()
    no_exception(at)
    assert [settings.max_points for settings, _ in attack_calls] == [None], "attacked once, until the flip, with no click"
    assert "Attack points, in attack order" in chart_titles(at)
    assert any(m.label == "Points to flip it" for m in at.metric)


def test_running_the_attack_draws_every_figure_and_offers_downloads(runs, teacher_file, attack_calls):
    at = page().run()
    button(at, "Run attack").click().run()
    no_exception(at)
    titles = chart_titles(at)
    for expected in ("Attack points, in attack order", "Class probabilities as points are added",
                     "Facial regions the points fall in"):
        assert expected in titles
    # The views one neither hovers nor zooms are plain images, under a title of their own.
    for expected in ("Located region and the erased face", "PASM, random and attention erasing at the same area",
                     "Where the teacher looks (for reference)"):
        assert expected in view_titles(at)
    crop, region, masks, erased, maps = image_captions(at)
    assert crop == ["32×32 px, as the teacher receives it"]
    assert region == ["located region (box over the points)", "erased face"]
    assert [c.split(":")[0] for c in masks] == list(explorer.ERASINGS) and all("teacher says" in c for c in masks)
    assert erased == [f"{name}: erased" for name in explorer.ERASINGS]
    assert maps == ["Grad-CAM", "saliency"]
    downloads = {d.proto.label: d.proto for d in at.get("download_button")}
    assert set(downloads) == {"Download the result (JSON)", "Download the comparison (PNG)"}
    [(_, result)] = attack_calls
    document = json.loads(explorer.result_json(result, "grace_hopper.jpg", teacher_file))
    assert document["teacher"] == str(teacher_file) and document["settings"]["max_points"] is None, "until the flip"
    assert document["max_points"] == flip_cap(32, 32)
    shown = next(m for m in at.metric if m.label == "Points to flip it").value
    assert shown == (str(document["points_to_flip"]) if document["flipped"] else f"none in {flip_cap(32, 32)}")
    assert len(document["points"]) == len(document["points_crop"]) == len(document["point_regions"])
    rows = at.dataframe[0].value
    assert list(rows["erasing"]) == ["pasm", "random", "attention"]
    for caption, name in zip(masks, explorer.ERASINGS):
        entry = document["erasing"][name]
        assert f"confidence drop {entry['confidence_drop']:+.2f}, area {entry['area']:.1%}" in caption
    pasm = document["erasing"]["pasm"]
    assert pasm["prediction"]["probs"][document["prediction"]["label"]] < \
        document["prediction"]["probs"][document["prediction"]["label"]], "PASM erasing costs the teacher confidence here"
    assert pasm["confidence_drop"] > 0 and "confidence drop +" in masks[0], "one sign: positive is a loss"



def test_the_server_freezes_the_objects_its_imports_leave():
    """Full garbage collections stalled each result mid-send for a quarter of a second (docs/benchmarks.md, app): they
    must not walk the server's long-lived objects. Importing the app's session plumbing in a fresh interpreter leaves
    them in CPython's permanent generation."""
    script = "import gc, ui.state; print(gc.get_freeze_count())"
    frozen = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, check=True)
    assert int(frozen.stdout) > 100_000


def test_same_settings_reuse_the_result_and_new_settings_recompute(runs, teacher_file, attack_calls):
    at = page().run()
    button(at, "Run attack").click().run()
    no_exception(at)
    assert len(attack_calls) == 1, "the click asked for the result the page already shows"
    at.checkbox(key="explorer_until_flip").uncheck()
    at.slider[0].set_value(5)
    button(at, "Run attack").click().run()
    no_exception(at)
    assert [settings.max_points for settings, _ in attack_calls] == [None, 5]
    assert "Attack points, in attack order" in chart_titles(at)


def test_max_points_is_greyed_out_while_the_attack_runs_until_the_flip(runs, teacher_file, attack_calls):
    at = page().run()
    budget = at.slider[0]
    assert budget.label == "Max points (fixed budget)" and budget.proto.disabled
    at.checkbox(key="explorer_until_flip").uncheck().run()
    no_exception(at)
    assert not at.slider[0].proto.disabled, "usable as soon as the attack no longer runs until the flip"
    assert len(attack_calls) == 1, "the new choice waits for Run attack, like the rest of the form"
    at.slider[0].set_value(5)
    button(at, "Run attack").click().run()
    assert [settings.max_points for settings, _ in attack_calls] == [None, 5]
    at.checkbox(key="explorer_until_flip").check().run()
    assert at.slider[0].proto.disabled


def test_sessions_opening_the_same_face_share_one_attack(runs, teacher_file, attack_calls):
    first, second = page().run(), page().run()
    no_exception(first)
    no_exception(second)
    assert len(attack_calls) == 1, "computed once per server process, not once per session"
    metric = [next(m.value for m in at.metric if m.label == "Points to flip it") for at in (first, second)]
    assert metric[0] == metric[1]


def test_student_predictions_join_the_teacher(runs, teacher_file):
    model = build_model("small_cnn", 3, InputSpec(48, 3))
    save_checkpoint(runs / "run_a" / "gen1.safetensors", model, make_meta(model, ["a", "b", "c"], generation=1))
    at = page().run()
    assert at.sidebar.selectbox[1].value == str(runs / "run_a" / "gen1.safetensors")
    button(at, "Run attack").click().run()
    no_exception(at)
    rows = at.dataframe[0].value
    assert "student prediction" in rows.columns and rows["student prediction"][0].split(" ")[0] in "abc"


@pytest.mark.parametrize("name, data, reason", [
    ("empty.png", b"", "empty file"),
    ("notes.png", b"just some text, not a picture", "not an image"),
    ("cut.jpg", state.SAMPLE_FACE.read_bytes()[:3000], "truncated or corrupt"),
    ("bomb.png", black_one_bit_png(24000, 24000), "too many pixels"),
])
def test_bad_uploads_are_errors_and_the_page_keeps_working(runs, teacher_file, name, data, reason):
    at = upload(page().run(), name, data)
    no_exception(at)
    assert any(e.value.startswith(name) and reason in e.value for e in at.error), [e.value for e in at.error]
    at.radio[0].set_value("sample photo").run()
    no_exception(at)
    assert not at.error and "Aligned crop (what the teacher sees)" in view_titles(at)


def test_the_uploader_takes_what_pasm_reads_and_a_gif_is_analysed(runs, teacher_file):
    """pasm.images alone decides what is a photo: the browser is told no list, so it refuses nothing itself."""
    at = page().run()
    at.radio[0].set_value("upload").run()
    assert list(at.file_uploader[0].proto.type) == [] and "gif" in at.file_uploader[0].help
    assert all(suffix in at.file_uploader[0].help for suffix in IMAGE_SUFFIXES)
    with Image.open(state.SAMPLE_FACE) as photo:
        buffer = io.BytesIO()
        photo.convert("RGB").save(buffer, format="GIF")
    at.file_uploader[0].set_value(("face.gif", buffer.getvalue(), "image/gif"))
    at.run()
    no_exception(at)
    assert not at.error and "Aligned crop (what the teacher sees)" in view_titles(at)


def test_an_uploads_error_goes_once_a_good_file_replaces_it(runs, teacher_file):
    icon = io.BytesIO()
    Image.new("RGB", (16, 16)).save(icon, format="ICO")
    at = upload(page().run(), "app.ico", icon.getvalue(), mime="image/x-icon")
    assert any(e.value.startswith("app.ico") and "ICO images are not read here" in e.value for e in at.error)
    at.file_uploader[0].set_value(("face.png", png_bytes(Image.open(state.SAMPLE_FACE)), "image/png"))
    at.run()
    no_exception(at)
    assert not at.error and "Aligned crop (what the teacher sees)" in view_titles(at)


def test_an_image_too_small_to_hold_a_face_is_refused_in_one_line(runs, teacher_file):
    """As the CLI: an 8x8 picture is no face, not even a whole-image one; the page keeps working."""
    at = upload(page().run(), "tiny.png", png_bytes(Image.new("RGB", (8, 8), (200, 150, 120))))
    no_exception(at)
    assert any(e.value.startswith("tiny.png") and "too small to hold a face" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Run attack"]


def test_a_photo_without_a_face_warns_and_can_use_the_whole_image(runs, teacher_file):
    grey = np.full((120, 160, 3), 128, np.uint8)
    grey[40:80, 60:100] = 30
    at = upload(page().run(), "wall.png", png_bytes(Image.fromarray(grey)))
    no_exception(at)
    assert any("No face found" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Run attack"]
    at.checkbox(key="explorer_whole").check().run()
    button(at, "Run attack").click().run()
    no_exception(at)
    assert "Attack points, in attack order" in chart_titles(at)


def test_the_camera_is_only_asked_for_once_switched_on(runs, teacher_file):
    at = page().run()
    assert not at.get("camera_input")
    at.toggle(key="explorer_camera").set_value(True).run()
    no_exception(at)
    assert len(at.get("camera_input")) == 1
    assert any("take one with the camera" in i.value for i in at.info)


def test_a_grey_teacher_works_on_colour_photos(tmp_path, hopper):
    model = build_model("mini_xception", 7, InputSpec(48, 1, mean=[0.5], std=[0.5]))
    save_checkpoint(tmp_path / "grey.safetensors", model, make_meta(model, CLASSES))
    teacher = load_checkpoint(tmp_path / "grey.safetensors")
    photo, face = hopper
    result = explorer.analyse_face(teacher, align_face(photo, face, 48), explorer.AttackSettings(max_points=4))
    assert result["crop"].shape == (48, 48, 3)
    assert (result["crop"][..., 0] == result["crop"][..., 2]).all(), "shown as the grey image the model saw"
    assert set(result["erased"]) == set(explorer.ERASINGS)
    view = explorer.model_view(teacher, align_face(photo, face, 48).crop)
    assert view.shape == (48, 48, 3) and (view[..., 0] == view[..., 1]).all()


# The computations


@pytest.fixture(scope="module")
def hopper():
    photo = read_image(state.SAMPLE_FACE)
    return photo, detect_faces(photo)[0]


def test_rebuilt_masks_are_the_windows_that_were_erased(tmp_path, hopper):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    save_checkpoint(tmp_path / "t.safetensors", model, make_meta(model, CLASSES))
    teacher = load_checkpoint(tmp_path / "t.safetensors")
    photo, face = hopper
    aligned = align_face(photo, face, 32)
    settings = explorer.AttackSettings(max_points=8, area=0.15, fill="zeros")
    result = explorer.analyse_face(teacher, aligned, settings, seed=3)
    crop = result["crop"]
    for name in explorer.ERASINGS:
        mask, erased = result["masks"][name], result["erased"][name]
        changed = (erased != crop).any(axis=-1)
        assert mask.sum() == round(0.15 ** 0.5 * 32) ** 2
        assert not (changed & ~mask).any(), f"{name} erased outside its mask"
        assert changed[mask].mean() > 0.9, f"{name}'s mask is not where it erased"
    x0, y0, x1, y1 = result["report"]["region"]["box"]
    assert result["masks"]["pasm"][y0:y1, x0:x1].all()


def test_the_explorer_shows_the_masks_the_library_located(tmp_path, hopper):
    """The app draws pasm.report's located regions, not windows it re-derives."""
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    save_checkpoint(tmp_path / "t.safetensors", model, make_meta(model, CLASSES))
    teacher = load_checkpoint(tmp_path / "t.safetensors")
    photo, face = hopper
    aligned = align_face(photo, face, 32)
    settings = explorer.AttackSettings(max_points=8, area=0.15, fill="zeros")
    result = explorer.analyse_face(teacher, aligned, settings, seed=5)
    _, extras = face_reports(teacher.model, teacher.classes, [aligned], settings.attack_config(),
                             settings.region_config(), seed=5)
    for name in explorer.ERASINGS:
        assert np.array_equal(result["masks"][name], extras["located"][name].masks[0, 0].numpy())
    assert np.array_equal(result["maps"]["Grad-CAM"], extras["located"]["attention"].cam[0, 0].numpy())


def test_point_regions_scale_crop_points_onto_the_region_map():
    region_map = np.zeros((256, 256), np.uint8)
    region_map[:, :128] = REGIONS.index("eyes")
    region_map[:, 128:] = REGIONS.index("mouth")
    assert explorer.point_regions(region_map, [[3, 10], [20, 1], [15, 31]], 32) == ["eyes", "mouth", "eyes"]
    assert explorer.point_regions(region_map, [], 32) == []
    assert explorer.point_regions(None, [[1, 1]], 32) is None


def test_face_region_map_names_the_sample_faces_parts(hopper):
    photo, face = hopper
    region_map = explorer.face_region_map(photo, face)
    assert region_map.shape == (explorer.REGION_CROP_SIZE, explorer.REGION_CROP_SIZE)
    assert {"eyes", "mouth", "nose", "brows"} <= {REGIONS[i] for i in np.unique(region_map)}


def test_the_explorer_attacks_until_the_flip_unless_given_a_budget():
    assert explorer.AttackSettings().attack_config().budget(48, 48) == flip_cap(48, 48) == 46
    assert explorer.AttackSettings(max_points=5).attack_config().budget(48, 48) == 5


@pytest.mark.parametrize("settings, reason", [
    (explorer.AttackSettings(patch=2), "odd number"),
    (explorer.AttackSettings(max_points=0), "at least 1"),
    (explorer.AttackSettings(strategy="disks", adaptive=True), "window strategies only"),
])
def test_bad_settings_are_pasm_errors(settings, reason):
    with pytest.raises(PasmError, match=reason):
        settings.attack_config()
        settings.region_config()

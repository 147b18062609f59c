"""Data set atlas page (AppTest) and its accumulation and region layouts (pasm.atlas)."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from pasm.atlas import (GRID_REGIONS, LAYOUT_GRID, LAYOUT_MESH, LAYOUT_SYNTH, Atlas, grid_layout, label_map,
                        map_dataset, region_names, smooth, synth_layout)
from pasm.attack import AttackResult
from pasm.checkpoints import make_meta, save_checkpoint
from pasm.data.synth import CLASSES, SynthFER, SynthFERMemory, _cue_regions, write_synth
from pasm.faces import REGIONS, align_face, detect_faces
from pasm.images import read_image
from pasm.models import InputSpec, build_model
from pasm.report import sample_indices
from ui import state
from app_helpers import no_exception

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "3_Data_atlas.py"


def save_teacher(root, classes=CLASSES):
    model = build_model("small_cnn", len(classes), InputSpec(32, 3))
    save_checkpoint(root / "demo" / "gen0.safetensors", model, make_meta(model, classes))


@pytest.fixture
def demo(runs):
    save_teacher(runs)
    write_synth(runs / "demo" / "data", train=0, test=14, size=32)
    return runs / "demo" / "data"


def page():
    return AppTest.from_file(str(PAGE), default_timeout=60)


def chart_titles(at):
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def map_button(at):
    return next(b for b in at.button if b.label == "Map attack points")


# The page


def test_atlas_without_checkpoint_asks_for_a_teacher(runs):
    at = page().run()
    no_exception(at)
    assert any("Choose a teacher" in i.value for i in at.info)


def test_atlas_maps_the_demo_data_by_class_and_region(demo):
    at = page().run()
    no_exception(at)
    assert at.text_input(key="atlas_spec").value == f"synth:{demo}"
    assert at.selectbox(key="atlas_split").value == "test"
    at.number_input(key="atlas_n").set_value(10)
    map_button(at).click().run()
    no_exception(at)
    titles = chart_titles(at)
    assert "Point density, all classes" in titles
    assert "Share of attack points per facial region, per class" in titles
    assert "Attack point density per class" in titles
    rows = at.dataframe[0].value
    assert rows["faces"].sum() == 10 and set(rows["class"]) <= set(CLASSES)
    assert any("SynthFER's fixed face layout on 10 faces" in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_atlas_groups_by_prediction_when_the_classes_differ(runs, demo):
    other = ["pain", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    save_teacher(runs, classes=other)
    at = page().run()
    at.number_input(key="atlas_n").set_value(7)
    map_button(at).click().run()
    no_exception(at)
    assert any("grouped by it" in i.value and "'anger'" in i.value for i in at.info), [i.value for i in at.info]
    assert set(at.dataframe[0].value["class"]) <= set(other)


def test_atlas_groups_fer_named_teachers_by_the_true_class_and_shows_the_mapping(runs, demo):
    fer_names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    save_teacher(runs, classes=fer_names)
    at = page().run()
    at.number_input(key="atlas_n").set_value(7)
    map_button(at).click().run()
    no_exception(at)
    assert not at.info, "FER2013's names match SynthFER's by alias, so faces are grouped by their true class"
    shown = [state.markdown_literal(pair) for pair in ("happy->happiness", "angry->anger")]
    assert any(all(pair in c.value for pair in shown) for c in at.caption), \
        [c.value for c in at.caption]
    targets = SynthFER(demo, "test").targets
    fer_name = {"anger": "angry", "happiness": "happy", "sadness": "sad"}
    expected = Counter(fer_name.get(CLASSES[targets[i]], CLASSES[targets[i]])
                       for i in sample_indices(len(targets), 7))
    rows = at.dataframe[0].value
    assert dict(zip(rows["class"], rows["faces"])) == expected


@pytest.mark.parametrize("spec, reason", [
    ("nonsense", "a data set spec is KIND:PATH"),
    ("synth:/no/such/folder", "no such file or directory"),
    ("mnist:/tmp", "unknown data set kind"),
    ("nonsense:x", "unknown data set kind"),
])
def test_bad_specs_are_errors_and_the_page_keeps_working(demo, spec, reason):
    at = page().run()
    at.text_input(key="atlas_spec").set_value(spec).run()
    no_exception(at)
    assert any(state.markdown_literal(reason) in e.value for e in at.error), [e.value for e in at.error]
    assert not any(":x" in e.value for e in at.error), "shown as typed: no emoji shortcode or directive left"
    at.text_input(key="atlas_spec").set_value(f"synth:{demo}").run()
    no_exception(at)
    assert not at.error


def test_a_damaged_data_set_is_an_error_while_mapping(demo):
    next((demo / "test").rglob("*.png")).write_bytes(b"broken")
    at = page().run()
    map_button(at).click().run()
    no_exception(at)
    assert any("cannot read image" in e.value or "truncated" in e.value for e in at.error), [e.value for e in at.error]


# The computations


def test_synth_layout_puts_synthfer_cues_in_their_regions():
    """On held-out SynthFER faces, most pixels of each face's cue mask lie in the regions its cues name."""
    data = SynthFERMemory(60, "test", size=48, seed=5)
    layout = synth_layout(48)
    names = np.array(REGIONS)
    agreement = []
    for i in range(len(data)):
        sample = data.sample(i)
        regions = _cue_regions(sample.cues)
        agreement.append(np.isin(names[layout[sample.cue_mask]], list(regions)).mean())
    assert np.mean(agreement) > 0.85
    assert names[layout[2, 2]] == "background" and names[layout[32, 24]] == "mouth"


def test_grid_layout_is_three_bands():
    grid = grid_layout(9)
    assert [GRID_REGIONS[grid[row, 4]] for row in (0, 3, 8)] == ["brows/eyes", "nose", "mouth"]
    assert (grid == grid[:, :1]).all()


def test_label_map_matches_classes_by_name():
    assert label_map(["b", "a"], ["a", "b", "c"]) == ([1, 0], "b, a; unused: c")
    assert label_map(["a", "b"], ["a", "b"]) == ([0, 1], "identical")
    labels, why = label_map(["a", "z"], ["a", "b"])
    assert labels is None and "'z' of the data set have no match among the teacher's" in why


def test_label_map_matches_emotions_by_alias():
    labels, note = label_map(["anger", "happiness", "neutral"], ["angry", "neutral", "happy"])
    assert labels == [0, 2, 1] and note == "angry->anger, happy->happiness, neutral"


def test_atlas_follows_the_true_class_even_in_another_class_order(runs, demo):
    save_teacher(runs, classes=list(reversed(CLASSES)))
    at = page().run()
    at.number_input(key="atlas_n").set_value(7)
    map_button(at).click().run()
    no_exception(at)
    assert not at.info, "classes match by name, so faces are grouped by their true class"
    targets = SynthFER(demo, "test").targets
    expected = Counter(CLASSES[targets[i]] for i in sample_indices(len(targets), 7))
    rows = at.dataframe[0].value
    assert dict(zip(rows["class"], rows["faces"])) == expected


def test_sample_indices_spread_over_the_whole_set():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 10) == [0, 1, 2]
    assert sample_indices(0, 10) == []


def test_atlas_counts_points_faces_and_flips_per_class():
    points = torch.full((3, 3, 2), -1)
    points[0, :2] = torch.tensor([[1, 2], [3, 0]])
    points[1] = torch.tensor([[0, 0], [0, 0], [2, 2]])
    result = AttackResult(points=points, scores=torch.zeros(3, 3), num_points=torch.tensor([2, 3, 0]),
                          flipped=torch.tensor([True, False, True]), points_to_flip=torch.tensor([2, -1, 0]),
                          trajectory=torch.zeros(3, 4, 2), adversarial=None, labels=torch.tensor([1, 1, 0]))
    atlas = Atlas(["a", "b"], 4)
    images = [np.full((4, 4, 3), v, np.uint8) for v in (10, 30, 99)]
    atlas.add(images, [1, 1, 0], result, [["eyes", "mouth"], ["eyes", "eyes", "nose"], []])
    assert atlas.faces.tolist() == [1, 2]
    assert atlas.points[1, 0, 0] == 2 and atlas.points[1, 2, 1] == 1 and atlas.points.sum() == 5
    assert atlas.shares() == {"a": {}, "b": {"eyes": 0.6, "mouth": 0.2, "nose": 0.2}}
    assert atlas.class_rows() == [
        {"class": "a", "faces": 1, "already wrong": 1, "points": 0, "flip rate": None, "mean points to flip": None},
        {"class": "b", "faces": 2, "already wrong": 0, "points": 5, "flip rate": 0.5, "mean points to flip": 2.0}]
    assert (atlas.mean_face(1) == 20).all() and (atlas.mean_face() == 46).all()
    assert atlas.density(1, sigma=0)[0, 0] == 1.0


def test_smooth_keeps_the_mass_of_an_inner_point():
    values = np.zeros((21, 21))
    values[10, 10] = 3.0
    blurred = smooth(values, 1.5)
    assert blurred.sum() == pytest.approx(3.0)
    assert blurred.argmax() == values.argmax() and blurred.max() < 3.0


def test_region_names_use_the_mesh_on_real_faces_and_the_grid_elsewhere():
    photo = read_image(state.SAMPLE_FACE)
    face = np.asarray(align_face(photo, detect_faces(photo)[0], 64).crop)
    wall = np.full((64, 64, 3), 128, np.uint8)
    points = [[[32, 40]], [[5, 5], [5, 60]]]
    names, used = region_names([face, wall], points, synth=False)
    assert used == [LAYOUT_MESH, LAYOUT_GRID]
    assert names[0][0] in REGIONS
    assert names[1] == ["brows/eyes", "mouth"]
    synth_names, synth_used = region_names([wall], [[[32, 2]]], synth=True)
    assert synth_used == [LAYOUT_SYNTH] and synth_names == [["background"]]


def test_map_dataset_yields_progress_and_fills_the_atlas():
    from pasm.checkpoints import Checkpoint
    from pasm.data.transforms import eval_transform

    model = build_model("small_cnn", 7, InputSpec(32, 3)).eval()
    teacher = Checkpoint(model=model, meta=make_meta(model, CLASSES), path=Path("t"), sha256="0")
    data = SynthFERMemory(9, "test", size=32, transform=eval_transform(model.input_spec))
    labels, _ = label_map(data.classes, teacher.classes)
    steps = list(map_dataset(teacher, data, list(range(9)), max_points=3, batch_size=4, labels=labels,
                                      synth=True))
    assert [done for _, done in steps] == [4, 8, 9]
    atlas = steps[-1][0]
    assert atlas.faces.sum() == 9 and atlas.layouts == {LAYOUT_SYNTH: 9}
    assert atlas.faces.tolist() == np.bincount(data.targets, minlength=7).tolist()
    assert 0 < atlas.points.sum() <= 27
    assert Image.fromarray(atlas.mean_face()).size == (32, 32)

"""Generations page (AppTest) and pasm.report.compare_generations, on tiny runs the tests write."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pasm.attack import AttackConfig
from pasm.checkpoints import load_checkpoint
from pasm.data.synth import CLASSES, write_synth
from pasm.mining import RegionConfig
from pasm.report import compare_generations, dataset_faces
from test_app_runs import write_tiny_run
from app_helpers import chart_titles, no_exception

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "2_Generations.py"
RESULTS = "_pasm_results_generations"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synth"
    write_synth(path, train=7, test=14, size=32, seed=0)
    return path


def page():
    return AppTest.from_file(str(PAGE), default_timeout=120).run()




def compare(at):
    return next(b for b in at.button if b.label == "Compare generations").click().run()


def test_no_runs_is_an_invitation_not_an_error(runs):
    at = page()
    no_exception(at)
    assert not at.error
    assert "No run with finished generations" in at.info[0].value


def test_test_faces_of_the_run_through_every_generation(runs, synth_dir):
    write_tiny_run(runs / "tiny", generations=3, data=f"synth:{synth_dir}")
    at = page()
    no_exception(at)
    assert not at.error
    assert len(at.get("plotly_chart")) == 2  # accuracy and per-class accuracy across generations
    at.radio(key="generations_source").set_value("test faces from the run's data").run()
    at.slider(key="generations_count").set_value(2).run()
    compare(at)
    no_exception(at)
    assert not at.error
    assert "Points and region of every generation on the same faces" in chart_titles(at)
    assert "Region overlap between consecutive generations" in chart_titles(at)
    overlap = at.dataframe[0].value
    assert list(overlap["generations"]) == ["0 → 1", "0 → 1", "1 → 2", "1 → 2"]
    assert overlap["mask IoU"].between(0, 1).all() and overlap["box IoU"].between(0, 1).all()
    result = next(iter(at.session_state[RESULTS].values()))
    assert [entry["index"] for entry in result] == [0, 1, 2]
    assert all(len(entry["reports"]) == 2 for entry in result)


def test_the_sample_face_through_every_generation(runs):
    write_tiny_run(runs / "tiny", generations=2)
    at = page()
    assert at.radio(key="generations_source").value == "sample photo"
    assert any("Press **Compare generations**" in i.value for i in at.info)
    compare(at)
    no_exception(at)
    assert not at.error
    overlap = at.dataframe[0].value
    assert list(overlap["generations"]) == ["0 → 1"] and list(overlap["face"]) == [1]


def test_an_upload_that_is_no_image_is_an_error(runs):
    write_tiny_run(runs / "tiny", generations=2)
    at = page()
    at.radio(key="generations_source").set_value("upload").run()
    at.file_uploader[0].set_value(("face.png", b"not an image at all", "image/png")).run()
    no_exception(at)
    assert any("face.png" in e.value for e in at.error)


def test_damaged_runs_and_checkpoints_are_error_cards(runs):
    good = write_tiny_run(runs / "good", generations=2)
    good.checkpoint_path(1).write_bytes(b"\x00" * 64)
    broken = write_tiny_run(runs / "broken", generations=2)
    broken.summary_path.write_text("{")
    at = page()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("broken/summary.json" in e for e in errors)
    assert any("good/gen1.safetensors" in e for e in errors)
    assert at.selectbox(key="generations_run").options == ["good"]
    compare(at)  # generation 0 alone still runs
    no_exception(at)
    assert "Points and region of every generation on the same faces" in chart_titles(at)


def test_a_run_whose_data_set_is_gone_says_so(runs, tmp_path):
    write_tiny_run(runs / "tiny", generations=2, data=f"synth:{tmp_path / 'gone'}")
    at = page()
    at.radio(key="generations_source").set_value("test faces from the run's data").run()
    no_exception(at)
    assert any("gone" in e.value and "no such file or directory" in e.value for e in at.error)


def test_identical_generations_locate_identical_regions(tmp_path, synth_dir):
    """IoU is 1 between a checkpoint and itself, so the overlap measures the generations, not the faces."""
    run = write_tiny_run(tmp_path / "run", generations=1)
    checkpoint = load_checkpoint(run.checkpoint_path(0))
    faces, labels = dataset_faces(f"synth:{synth_dir}", 3, 32)
    assert len(faces) == 3 and all(label in CLASSES for label in labels)
    results = compare_generations([checkpoint, checkpoint], faces, AttackConfig(max_points=10), RegionConfig(),
                                  indices=[4, 5])
    assert [entry["index"] for entry in results] == [4, 5]
    assert results[0]["mask_iou"] is None
    assert results[1]["mask_iou"] == [1.0, 1.0, 1.0] and results[1]["box_iou"] == [1.0, 1.0, 1.0]
    assert results[0]["masks"].shape == (3, 32, 32)
    assert all(mask.any() for mask in results[0]["masks"])

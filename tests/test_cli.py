import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pasm.checkpoints import make_meta, save_checkpoint
from pasm.cli import main
from pasm.data.synth import CLASSES
from pasm.models import InputSpec, build_model

ROOT = Path(__file__).resolve().parents[1]
GRACE_HOPPER = ROOT / "pasm" / "assets" / "grace_hopper.jpg"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path_factory.mktemp("ckpt") / "teacher.safetensors"
    save_checkpoint(path, model, make_meta(model, CLASSES))
    return path


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synth"
    assert main(["synth", str(out), "--train", "14", "--test", "7", "--size", "32", "--seed", "3"]) == 0
    return out


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_synth_then_data(synth_dir, capsys):
    code, out, _ = run(capsys, "data", f"synth:{synth_dir}")
    assert code == 0
    summary = json.loads(out)
    assert summary["classes"] == CLASSES
    assert {s: v["count"] for s, v in summary["splits"].items()} == {"train": 14, "test": 7, "test_wild": 7}


def test_info_prints_metadata(tiny_checkpoint, capsys):
    code, out, _ = run(capsys, "info", tiny_checkpoint)
    info = json.loads(out)
    assert code == 0 and info["arch"] == "small_cnn" and info["classes"] == CLASSES and len(info["sha256"]) == 64


def test_info_on_foreign_checkpoint_with_arch(tmp_path, capsys):
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": build_model("resnet18", 3).backbone.state_dict()}, path)
    code, out, _ = run(capsys, "info", path, "--arch", "resnet18", "--classes", "a,b,c")
    assert code == 0 and json.loads(out)["classes"] == ["a", "b", "c"]
    code, _, err = run(capsys, "info", path)
    assert_one_line_error(code, err, str(path), "--arch")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("content", [b"", b"junk bytes", pickle.dumps(RunsCode())], ids=["empty", "junk", "pickle"])
def test_info_bad_checkpoints(tmp_path, capsys, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    code, _, err = run(capsys, "info", path, "--arch", "small_cnn")
    assert_one_line_error(code, err, str(path))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [(["data", "nosuchkind:x"], "unknown data set kind"), (["data", "synth:/no/such/dir"], "no such file"),
     (["data", "noseparator"], "KIND:PATH"), (["synth"], "arguments are required")],
)
def test_bad_arguments_are_one_line_errors(capsys, argv, needle):
    try:
        code, _, err = run(capsys, *argv)
    except SystemExit as e:  # argparse exits by itself
        code, err = e.code, capsys.readouterr().err
    assert_one_line_error(code, err, needle)


def test_attack_json_has_every_field(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "result.json"
    code, _, _ = run(capsys, "attack", "--checkpoint", tiny_checkpoint, GRACE_HOPPER, "--max-points", "5",
                     "--student", tiny_checkpoint, "--json", out)
    assert code == 0
    [result] = json.loads(out.read_text())
    for key in ("image", "face_box", "prediction", "points", "flipped", "points_to_flip", "region", "erasing", "student"):
        assert key in result
    assert set(result["prediction"]["probs"]) == set(CLASSES) and result["prediction"]["label"] in CLASSES
    assert set(result["erasing"]) == {"pasm", "random", "attention"}
    for entry in result["erasing"].values():
        assert entry["prediction"]["label"] in CLASSES and -1 <= entry["confidence_drop"] <= 1
    x0, y0, x1, y1 = result["face_box"]
    dx0, dy0, dx1, dy1 = result["detection"]["box"]
    assert x0 <= dx0 and y0 <= dy0 and dx1 <= x1 and dy1 <= y1, "the analysed area contains the detected face"
    assert 1 <= len(result["points"]) <= 5
    for x, y in result["points"]:
        assert x0 <= x <= x1 and y0 <= y <= y1
    assert result["flipped"] == (result["points_to_flip"] is not None)
    assert len(result["region"]["box"]) == 4


def test_attack_bad_image_is_reported_and_others_processed(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "r.json"
    code, _, err = run(capsys, "attack", "--checkpoint", tiny_checkpoint, bad, GRACE_HOPPER, "--max-points", "2", "--json", out)
    assert_one_line_error(code, err, str(bad))
    assert [r["image"] for r in json.loads(out.read_text())] == [str(GRACE_HOPPER)]


def test_attack_no_face_offers_whole_image(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (80, 60), "gray").save(blank)
    code, _, err = run(capsys, "attack", "--checkpoint", tiny_checkpoint, blank, "--max-points", "2")
    assert_one_line_error(code, err, "no face found", "--whole-image")
    code, out, _ = run(capsys, "attack", "--checkpoint", tiny_checkpoint, blank, "--max-points", "2", "--whole-image")
    assert code == 0 and json.loads(out)["face_box"] == [10.0, 0.0, 70.0, 60.0]


def test_attack_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    code, _, err = run(capsys, "attack", "--checkpoint", bad, GRACE_HOPPER)
    assert_one_line_error(code, err, str(bad))


def test_compare_on_synth(tiny_checkpoint, synth_dir, tmp_path, capsys):
    out = tmp_path / "table.json"
    code, text, _ = run(capsys, "compare", "--checkpoint", tiny_checkpoint, "--data", f"synth:{synth_dir}",
                        "--limit", "5", "--max-points", "3", "--json", out)
    assert code == 0 and "attention" in text
    table = json.loads(out.read_text())
    assert table["images"] == 5 and "cue" in table


def test_module_entry_point_runs(tiny_checkpoint):
    done = subprocess.run([sys.executable, "-m", "pasm", "info", str(tiny_checkpoint)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["arch"] == "small_cnn"


def test_building_the_parser_does_not_import_torch():
    """`python -m pasm jobs list` and `--help` must answer at once; importing torch takes seconds."""
    code = "import sys; from pasm.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr

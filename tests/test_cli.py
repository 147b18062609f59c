import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pasm.checkpoints import make_meta, save_checkpoint
from pasm.cli import attack_summary, main
from pasm.data.synth import CLASSES
from pasm.models import InputSpec, build_model
from pasm.regions import window_side

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
    code, stdout, _ = run(capsys, "attack", "--checkpoint", tiny_checkpoint, GRACE_HOPPER, "--max-points", "5",
                          "--student", tiny_checkpoint, "--json", out)
    assert code == 0
    [result] = json.loads(out.read_text())
    assert stdout.splitlines() == [attack_summary(result)], "stdout is one summary line; the JSON goes to the file"
    for key in ("image", "photo_size", "face_box", "prediction", "points", "flipped", "points_to_flip", "max_points",
                "region", "erasing", "student"):
        assert key in result
    assert result["photo_size"] == [512, 600] and result["max_points"] == 5
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
    assert result["erasing"]["pasm"]["area"] == result["region"]["area"]


@pytest.mark.parametrize("region", [("--region", "disks"), ("--adaptive",)], ids=["disks", "adaptive"])
def test_attack_erasings_report_equal_areas_and_follow_area(tiny_checkpoint, tmp_path, capsys, region):
    erased = {}
    for area in (0.1, 0.2):
        out = tmp_path / f"{area}.json"
        code, _, _ = run(capsys, "attack", "--checkpoint", tiny_checkpoint, GRACE_HOPPER, "--max-points", "5", *region,
                         "--area", area, "--json", out)
        [result] = json.loads(out.read_text())
        areas = {name: entry["area"] for name, entry in result["erasing"].items()}
        assert code == 0 and set(areas) == {"pasm", "random", "attention"}
        assert set(areas.values()) == {result["region"]["area"]}, "every erasing erases the PASM region's area"
        erased[area] = result["region"]["area"]
    if region[-1] == "disks":
        assert erased == {a: window_side(32, a) ** 2 / 32**2 for a in (0.1, 0.2)}, "disks erase the window's pixels"
    else:
        assert all(area / 2.5 < erased[area] < area * 2.5 for area in erased)


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
    out = tmp_path / "whole.json"
    code, _, _ = run(capsys, "attack", "--checkpoint", tiny_checkpoint, blank, "--max-points", "2", "--whole-image",
                     "--json", out)
    assert code == 0 and json.loads(out.read_text())[0]["face_box"] == [10.0, 0.0, 70.0, 60.0]


def test_attack_refuses_a_coffee_cup_and_an_image_too_small_for_a_face(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image
    from test_faces import coffee_cup

    cup, tiny = tmp_path / "cup.png", tmp_path / "tiny.png"
    Image.fromarray(coffee_cup()).save(cup)
    Image.open(GRACE_HOPPER).resize((8, 8)).save(tiny)
    code, out, err = run(capsys, "attack", "--checkpoint", tiny_checkpoint, cup)
    assert_one_line_error(code, err, f"{cup}: no face found", "--whole-image")
    code, out, err = run(capsys, "attack", "--checkpoint", tiny_checkpoint, tiny)
    assert_one_line_error(code, err, f"{tiny}: 8x8 pixels is too small to hold a face")
    assert out == ""


def test_attack_prints_one_line_per_image_and_no_json(tiny_checkpoint, tmp_path, capsys):
    second = tmp_path / "hopper_again.jpg"
    second.write_bytes(GRACE_HOPPER.read_bytes())
    code, out, err = run(capsys, "attack", "--checkpoint", tiny_checkpoint, GRACE_HOPPER, second)
    assert code == 0 and not err
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(GRACE_HOPPER), str(second)]
    for line in lines:
        assert " -> " in line and "; confidence drop: PASM " in line and ", attention " in line and ", random " in line
        assert "{" not in line
    assert not list(tmp_path.glob("*.json"))


def test_attack_summary_line():
    result = {"image": "astronaut.jpg", "prediction": {"label": "neutral", "probs": {"happy": 0.04, "neutral": 0.95}},
              "flipped": True, "points_to_flip": 2, "max_points": 46,
              "trajectory": [[0.04, 0.95], [0.3, 0.7], [0.6, 0.4]],
              "erasing": {"pasm": {"confidence_drop": 0.61}, "attention": {"confidence_drop": 0.43},
                          "random": {"confidence_drop": -0.09}}}
    assert attack_summary(result) == ("astronaut.jpg: neutral 0.95 -> happy after 2 points; "
                                      "confidence drop: PASM +0.61, attention +0.43, random -0.09"), \
        "the JSON's confidence_drop, sign and all: positive is confidence lost"
    result.update(flipped=False, points_to_flip=None)
    assert "-> still neutral after 46 points (the budget);" in attack_summary(result)


def test_attack_runs_until_the_flip_by_default_and_compare_keeps_its_budget():
    from pasm.cli import attack_config, build_parser

    single = build_parser().parse_args(["attack", "--checkpoint", "t.safetensors", "face.jpg"])
    assert single.max_points is None and attack_config(single).budget(48, 48) == 46
    explicit = build_parser().parse_args(["attack", "--checkpoint", "t.safetensors", "face.jpg", "--max-points", "9"])
    assert attack_config(explicit).budget(48, 48) == 9
    compare = build_parser().parse_args(["compare", "--checkpoint", "t.safetensors", "--data", "synth:d"])
    assert compare.max_points == 20


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


@pytest.mark.parametrize("argv, needle", [
    (["attack", "--checkpoint", "/no/such/teacher.pt", str(GRACE_HOPPER)], "/no/such/teacher.pt: no such file"),
    (["attack", "--checkpoint", str(GRACE_HOPPER), "/no/such/face.jpg"], "/no/such/face.jpg: no such file"),
    (["eval", "--checkpoint", str(GRACE_HOPPER), "--data", "nonsense:x"], "unknown data set kind 'nonsense'"),
    (["eval", "--checkpoint", str(GRACE_HOPPER), "--data", "synth:/no/such/dir"], "/no/such/dir: no such file"),
    (["train", "--out", "OUT", "--data", "synth"], "KIND:PATH"),
    (["train", "--out", "OUT", "--data", "synth:.", "--teacher", "/no/such/gen0.pt"], "no such file"),
])
def test_missing_files_and_bad_specs_are_answered_before_torch_is_imported(argv, needle, tmp_path):
    """A mistyped path used to take 4-7 s (importing torch) before its one-line error."""
    argv = [str(tmp_path / "never") if arg == "OUT" else arg for arg in argv]
    code = f"import sys; from pasm.cli import main; code = main({argv!r}); print(code, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr
    assert not (tmp_path / "never").exists(), "refused before anything is written"


def test_the_cli_knows_every_data_set_kind():
    from pasm.data import _readers
    from pasm.options import DATA_KINDS

    assert sorted(DATA_KINDS) == sorted(_readers())


def test_synth_progress_off_a_terminal_is_a_few_whole_lines(tmp_path, capsys):
    """Into a log file or a pipe: a line per tenth, not a carriage-return update per image all on one line."""
    assert main(["synth", str(tmp_path / "synth"), "--train", "40", "--test", "5", "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    assert err.splitlines() == [f"{done}/50 images" for done in range(5, 51, 5)]


def test_train_argv_reads_back_to_the_same_config(tmp_path):
    """The app writes its jobs' command lines with train_argv; every TrainConfig field must survive the trip."""
    from dataclasses import fields

    from pasm.cli import build_parser, train_options
    from pasm.commands import train_argv, train_command
    from pasm.train import TrainConfig

    weights = tmp_path / "imagenet.pth"
    weights.write_bytes(b"weights")
    changed = TrainConfig(data="synth:data/synth", arch="resnet18", size=48, generations=3, epochs=2, batch=8,
                          optimizer="sgd", lr=0.002, weight_decay=0.01, warmup=2, label_smoothing=0.1, erasing="attention",
                          distill=False, lam=0.5, tau=2.0, p=0.25, init_from="scratch", region="centroid", area=0.2, adaptive=True,
                          fill="noise", max_points=5, remine_every=2, teacher_view="erased", erased_ce="confidence", mix=0.3,
                          seed=7, limit=100, split="val", teacher=str(tmp_path / "teacher.safetensors"), init=str(weights),
                          threads=3)
    accumulating = dataclasses.replace(changed, remine_every=0, accumulate="draw")  # the two do not combine
    default = TrainConfig(data="synth:elsewhere")
    assert all(getattr(changed, f.name) != getattr(default, f.name) or getattr(accumulating, f.name) != getattr(default, f.name)
               for f in fields(TrainConfig))
    for config in (changed, accumulating, default):
        args = build_parser().parse_args(train_argv(config, tmp_path / "run"))
        assert args.out == str(tmp_path / "run")
        assert TrainConfig(**train_options(args)) == config
    command = train_command(default, tmp_path / "run", processes=2, device="cpu", workers=0)
    assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m"]
    assert command[6:] == ["pasm", *train_argv(default, tmp_path / "run"), "--device", "cpu", "--workers", "0"]
    assert train_command(default, "run")[:4] == [sys.executable, "-m", "pasm", "train"]

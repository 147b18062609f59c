import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pasm.checkpoints import file_sha256, load_checkpoint, make_meta, save_checkpoint
from pasm.cli import main
from pasm.data.augment import BatchAugment
from pasm.data.synth import CLASSES, write_synth
from pasm.models import InputSpec, build_model
from pasm.regions import box_masks
from pasm.train import TrainConfig, distillation_loss, erasing_masks, train

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synth"
    write_synth(path, train=42, test=14, size=32, seed=1)
    return f"synth:{path}"


def tiny(synth, **changes):
    return TrainConfig(**{"data": synth, "size": 32, "epochs": 1, "batch": 16, "max_points": 5, **changes})


@pytest.fixture(scope="module")
def two_generations(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    summary = train(tiny(synth, generations=2), out, device="cpu", workers=0)
    return out, summary


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_distillation_loss_is_zero_when_teacher_and_student_agree():
    logits = torch.randn(8, 7)
    assert distillation_loss(logits, logits.clone(), tau=4.0).abs() < 1e-6
    assert distillation_loss(logits, logits + 5.0, tau=4.0).abs() < 1e-6  # softmax ignores a shift
    other = torch.randn(8, 7)
    assert distillation_loss(logits, other, tau=4.0) > 1e-3
    assert distillation_loss(logits, other, tau=1.0) > 1e-3


def test_distillation_loss_pulls_the_student_toward_the_teacher():
    student = torch.zeros(4, 7, requires_grad=True)
    teacher = torch.zeros(4, 7)
    teacher[:, 2] = 3.0
    distillation_loss(student, teacher, tau=2.0).backward()
    assert (student.grad[:, 2] < 0).all()  # descending the gradient raises the teacher's class


def test_samples_are_erased_at_rate_p():
    """Over many batches a sample comes with its region at rate p, and never without a region."""
    boxes = torch.tensor([[2, 2, 8, 8]]).repeat(30, 1)
    boxes[:6] = 0  # no region found for these: they must stay clean
    index = torch.arange(30)
    torch.manual_seed(0)
    erased = torch.stack([erasing_masks(boxes, index, 0.3, 16).flatten(1).any(1) for _ in range(40)])
    assert not erased[:, :6].any()
    assert abs(erased[:, 6:].float().mean().item() - 0.3) < 0.05
    assert not erasing_masks(boxes, index, 0.0, 16).any()
    masks = erasing_masks(boxes, index[6:], 1.0, 16)
    assert torch.equal(masks, box_masks(boxes[6:], 16))
    disks = box_masks(boxes, 16)
    assert torch.equal(erasing_masks(disks, index[3:9], 1.0, 16), disks[3:9])


def test_the_region_follows_the_augmentation():
    """Paint each region white on black: after flip, affine jitter and colour jitter, drawn per sample on
    the batch, the mask must still cover the bright pixels, and flipped samples must have their region on
    the other side."""
    boxes = torch.tensor([[2, 4, 12, 14]]).repeat(64, 1)  # left side of the image
    masks = box_masks(boxes, 32)
    images = masks.expand(-1, 3, -1, -1).float()
    torch.manual_seed(0)
    augmented, moved = BatchAugment()(images, masks)
    assert moved.dtype == torch.bool and moved.shape == (64, 1, 32, 32)
    agree = ((augmented.mean(1) > 0.5) == moved[:, 0]).float().flatten(1).mean(1)
    assert (agree > 0.97).all(), agree.min()
    flipped = int((moved[:, 0, :, 16:].sum((1, 2)) > moved[:, 0, :, :16].sum((1, 2))).sum())
    assert 0 < flipped < 64
    assert not torch.equal(augmented[0], augmented[1]), "every sample draws its own parameters"


def test_two_generations_write_a_complete_run(two_generations):
    out, summary = two_generations
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "done" and status["progress"] == 1.0
    assert [g["index"] for g in summary["generations"]] == [0, 1, 2]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    previous = None
    for entry in on_disk["generations"]:
        assert entry["checkpoint"] == f"gen{entry['index']}.safetensors"
        path = out / entry["checkpoint"]
        checkpoint = load_checkpoint(path)
        assert checkpoint.meta["generation"] == entry["index"]
        assert checkpoint.sha256 == entry["sha256"] == file_sha256(path)
        assert checkpoint.meta["parent_hash"] == entry["parent_hash"] == previous
        assert 0 <= entry["test_accuracy"] <= 1 and 0 <= entry["occluded_accuracy"] <= 1
        assert "wild_accuracy" in entry
        assert checkpoint.meta["metrics"]["accuracy"] == entry["test_accuracy"]
        previous = entry["sha256"]
    assert [g["erasing"] for g in on_disk["generations"]] == ["none", "pasm", "pasm"]
    assert on_disk["generations"][1]["mining"]["images"] == 42


def test_metrics_have_one_line_per_epoch_and_generation(two_generations):
    out, _ = two_generations
    records = lines(out / "metrics.jsonl")
    assert [(r["kind"], r["generation"]) for r in records] == [
        ("epoch", 0), ("generation", 0), ("epoch", 1), ("generation", 1), ("epoch", 2), ("generation", 2)]
    for record in records[::2]:
        assert {"epoch", "loss", "lr", "seconds", "ce", "kd"} <= set(record)
    assert records[0]["kd"] == 0 and records[2]["kd"] > 0  # the teacher has no teacher
    assert records[0]["erased_fraction"] == 0 and records[2]["erased_fraction"] > 0
    log = (out / "train.log").read_text()
    assert "generation 2: test accuracy" in log and "done" in log


def test_config_mismatch_on_resume_names_the_key(two_generations, capsys):
    out, _ = two_generations
    assert main(["train", "--out", str(out), "--resume", "--tau", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "tau" in err and "config mismatch" in err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "1"]) == 0  # the same value is fine; done already


def assert_cli_error(capsys, argv, *needles):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_damaged_or_foreign_run_directories_are_refused(two_generations, synth, tmp_path, capsys):
    out, _ = two_generations
    assert_cli_error(capsys, ["train", "--out", out, "--data", synth], "not empty", "--resume")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    assert_cli_error(capsys, ["train", "--out", foreign, "--resume"], "not a pasm run directory")
    assert_cli_error(capsys, ["train", "--out", foreign, "--data", synth], "not empty")
    for name in ("config.json", "status.json"):
        damaged = tmp_path / f"damaged-{name}"
        damaged.mkdir()
        for source in ("config.json", "status.json"):
            (damaged / source).write_bytes((out / source).read_bytes())
        (damaged / name).write_bytes((out / name).read_bytes()[:40])
        assert_cli_error(capsys, ["train", "--out", damaged, "--resume"], name, "truncated")
    other = tmp_path / "other.json"
    other.write_text('{"format": "something-else", "config": {}}')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(other.read_text())
    assert_cli_error(capsys, ["train", "--out", tmp_path / "other", "--resume"], "not a pasm run config")


def test_bad_options_are_one_line_errors(synth, tmp_path, capsys):
    assert_cli_error(capsys, ["train", "--out", tmp_path / "a", "--data", synth, "--p", "1.5"], "--p")
    assert_cli_error(capsys, ["train", "--out", tmp_path / "b", "--data", synth, "--epochs", "0"], "--epochs")
    assert_cli_error(capsys, ["train", "--out", tmp_path / "c"], "--data")
    assert_cli_error(capsys, ["train", "--out", tmp_path / "e", "--data", synth, "--limit", "0"], "--limit")
    assert_cli_error(capsys, ["train", "--out", tmp_path / "f", "--data", synth, "--split", "val"], "'val'")
    assert not (tmp_path / "f").exists()
    assert_cli_error(capsys, ["train", "--out", tmp_path / "d", "--data", "synth:/no/such/dir"], "/no/such/dir")
    assert not (tmp_path / "d").exists()  # nothing is created for a run that cannot start


def test_students_start_from_scratch_or_from_the_teacher(synth, tmp_path):
    """A teacher from another seed, adopted as generation 0, and a learning rate too small to move anything:
    the student is then its initialisation, which must be the teacher's weights or gen 0's fresh ones."""
    torch.manual_seed(123)
    teacher = build_model("small_cnn", 7, InputSpec(32, 3))
    save_checkpoint(tmp_path / "teacher.safetensors", teacher, make_meta(teacher, CLASSES))
    torch.manual_seed(0)
    fresh = build_model("small_cnn", 7, InputSpec(32, 3))
    for init_from, expected, other in [("teacher", teacher, fresh), ("scratch", fresh, teacher)]:
        out = tmp_path / init_from
        config = tiny(synth, init_from=init_from, teacher=str(tmp_path / "teacher.safetensors"), lr=1e-9,
                      erasing="none", distill=False)
        train(config, out, device="cpu", workers=0)
        student = load_checkpoint(out / "gen1.safetensors").model
        weights = student.backbone.features[0][0].weight
        assert torch.allclose(weights, expected.backbone.features[0][0].weight, atol=1e-6)
        assert not torch.allclose(weights, other.backbone.features[0][0].weight, atol=1e-3)
        assert file_sha256(out / "gen0.safetensors") == file_sha256(tmp_path / "teacher.safetensors")


def test_a_teacher_with_fer_names_becomes_a_generation_0_in_the_data_sets_order(synth, tmp_path):
    """FER2013's names in FER2013's order (angry, disgust, fear, happy, ...) against SynthFER's (surprise, fear,
    ..., anger, neutral): generation 0 is the teacher with its outputs put in the data set's order."""
    fer_names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    order = [5, 2, 1, 3, 4, 0, 6]  # SynthFER's classes, by hand, as indices into fer_names
    assert [fer_names[i] for i in order] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    torch.manual_seed(7)
    teacher = build_model("small_cnn", 7, InputSpec(32, 3)).eval()
    with torch.no_grad():
        teacher.backbone.fc.bias.copy_(torch.linspace(-1, 1, 7))
    path = tmp_path / "fer.safetensors"
    save_checkpoint(path, teacher, make_meta(teacher, fer_names))
    out = tmp_path / "run"
    summary = train(tiny(synth, teacher=str(path), limit=16, max_points=3), out, device="cpu", workers=0)
    gen0 = load_checkpoint(out / "gen0.safetensors")
    assert gen0.classes == CLASSES and gen0.meta["parent_hash"] == file_sha256(path)
    assert gen0.meta["provenance"]["class_mapping"]["classes"]["anger"] == "angry"
    images = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gen0.model(images), teacher(images)[:, order], atol=1e-5)
        assert torch.equal(gen0.model(images).argmax(1), teacher(images)[:, order].argmax(1))
    entry = summary["generations"][0]
    assert entry["class_mapping"].startswith("surprise, fear, disgust, happy->happiness")
    assert (out / "gen1.safetensors").is_file() and summary["generations"][1]["parent_hash"] == entry["sha256"]


def test_a_teacher_lacking_a_data_class_is_refused_naming_it(synth, tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    save_checkpoint(tmp_path / "t.safetensors", model, make_meta(model, CLASSES[:6] + ["pain"]))
    assert_cli_error(capsys, ["train", "--out", tmp_path / "run", "--data", synth, "--size", "32",
                              "--teacher", tmp_path / "t.safetensors"],
                     "classes 'neutral' of this run's data set have no match among the teacher's")


def start(argv, out_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pasm", *map(str, argv)], cwd=ROOT, env=env,
                            stdout=out_file, stderr=subprocess.STDOUT)


def wait_for(condition, process, what, limit=120):
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"the trainer exited (code {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def epochs_done(out):
    path = out / "metrics.jsonl"
    return [(r["generation"], r["epoch"]) for r in lines(path) if r["kind"] == "epoch"] if path.exists() else []


def test_resume_after_sigterm_and_after_sigkill(synth, tmp_path):
    out, log = tmp_path / "run", (tmp_path / "out.txt").open("w")
    argv = ["train", "--data", synth, "--out", out, "--size", 32, "--epochs", 6, "--batch", 16,
            "--max-points", 5, "--device", "cpu", "--workers", 0]
    first = start(argv, log)
    wait_for(lambda: len(epochs_done(out)) >= 1, first, "an epoch completed")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and status["generation"] == 0
    stopped_at = epochs_done(out)
    assert 1 <= len(stopped_at) < 6

    second = start(argv + ["--resume"], log)
    wait_for(lambda: (1, 1) in epochs_done(out), second, "generation 1 trained an epoch")
    second.kill()
    second.wait(timeout=60)
    assert json.loads((out / "status.json").read_text())["state"] == "running"  # SIGKILL leaves no word

    assert main(["train", "--out", str(out), "--resume", "--workers", "0"]) == 0  # the rest, in this process
    assert json.loads((out / "status.json").read_text())["state"] == "done"
    assert epochs_done(out) == [(g, e) for g in (0, 1) for e in range(1, 7)]  # every epoch once, none redone
    summary = json.loads((out / "summary.json").read_text())
    assert [g["index"] for g in summary["generations"]] == [0, 1]
    assert summary["generations"][1]["parent_hash"] == file_sha256(out / "gen0.safetensors")
    assert load_checkpoint(out / "gen1.safetensors").meta["generation"] == 1
    log_text = (out / "train.log").read_text()
    assert "stopped; continue with" in log_text and "resuming after epoch" in log_text

    # stopped, killed and resumed twice, the run computed exactly what an uninterrupted one computes
    train(tiny(synth, epochs=6), tmp_path / "uninterrupted", device="cpu", workers=0)
    for g in (0, 1):
        resumed = load_checkpoint(out / f"gen{g}.safetensors").model.state_dict()
        straight = load_checkpoint(tmp_path / "uninterrupted" / f"gen{g}.safetensors").model.state_dict()
        assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_the_run_computes_on_its_threads_records_them_and_sets_the_count_back(synth, tmp_path, monkeypatch):
    from pasm.errors import PasmError
    from pasm.threads import default_threads
    from pasm.train import loop

    assert tiny(synth).threads == default_threads()
    seen, run_all = [], loop.Trainer.run_all
    monkeypatch.setattr(loop.Trainer, "run_all", lambda self, resume: seen.append(torch.get_num_threads()) or run_all(self, resume))
    before = torch.get_num_threads()
    out = tmp_path / "run"
    train(tiny(synth, generations=0, threads=2), out, device="cpu", workers=0)
    assert seen == [2]
    assert torch.get_num_threads() == before
    assert json.loads((out / "config.json").read_text())["config"]["threads"] == 2
    with pytest.raises(PasmError, match="threads"):
        train(tiny(synth, generations=0, threads=1), out, resume=True, device="cpu", workers=0)


def test_mining_reports_the_images_done_of_the_total_and_an_eta(synth, tmp_path, monkeypatch):
    from pasm.runs import Run
    from pasm.train import mining

    monkeypatch.setattr(mining, "MINING_BATCH", 8)  # 42 images: several batches, so progress shows between them
    written, write_status = [], Run.write_status

    def spy(self, **fields):
        write_status(self, **fields)
        written.append(json.loads(self.status_path.read_text()))

    monkeypatch.setattr(Run, "write_status", spy)
    out = tmp_path / "run"
    train(tiny(synth, generations=1), out, device="cpu", workers=0)
    mining_states = [s for s in written if s.get("phase") == "mining" and s.get("mining")]
    done = [s["mining"]["done"] for s in mining_states]
    assert done == sorted(done) and done[-1] == 42 and any(0 < d < 42 for d in done)
    assert {s["mining"]["total"] for s in mining_states} == {42}
    assert all(s["eta_seconds"] is not None for s in mining_states if 0 < s["mining"]["done"] < 42)
    assert written[-1]["state"] == "done" and written[-1]["mining"] is None
    assert "generation 1: mining 16/42 images (38%)" in (out / "train.log").read_text()

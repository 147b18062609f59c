import json
import os
from pathlib import Path

import pytest
import torch

from pasm import runs
from pasm.errors import PasmError
from pasm.runs import Run, display_path, generation_order, read_json, read_run, runs_root

CONFIG = {"data": "synth:/data/synth", "epochs": 3, "lam": 1.0, "arch": "small_cnn"}


@pytest.fixture
def run(tmp_path):
    run = Run(tmp_path / "run")
    run.create(CONFIG)
    return run


def test_config_round_trip_and_resume_check(run):
    assert run.read_config() == CONFIG
    run.check_resumable(dict(CONFIG))
    with pytest.raises(PasmError, match="lam is 0.5 now but 1.0"):
        run.check_resumable({**CONFIG, "lam": 0.5})
    with pytest.raises(PasmError, match="config mismatch on resume: seed"):
        run.check_resumable({**CONFIG, "seed": 1})


def test_a_new_run_needs_an_empty_directory(tmp_path):
    Run(tmp_path / "missing").check_new()
    (tmp_path / "empty").mkdir()
    Run(tmp_path / "empty").check_new()
    launched = tmp_path / "launched"
    launched.mkdir()
    (launched / "job.log").write_text("starting\n")  # what pasm.jobs puts there before the trainer runs
    Run(launched).check_new()
    (launched / "data").mkdir()
    with pytest.raises(PasmError, match="not empty"):
        Run(launched).check_new()
    Run(launched).check_new(keep=("data",))
    (tmp_path / "file").write_text("x")
    with pytest.raises(PasmError, match="not a directory"):
        Run(tmp_path / "file").check_new()


def test_an_existing_run_is_never_taken_for_a_new_one(run):
    with pytest.raises(PasmError, match="--resume"):
        run.check_new()


@pytest.mark.parametrize("content, reason", [
    (None, "no config.json"),
    ('{"format": "pasm-run", "version": 1, "con', "truncated"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format": "other", "config": {}}', "not a pasm run config"),
    ('{"format": "pasm-run", "version": 99, "config": {}}', "unsupported run version 99"),
])
def test_damaged_or_foreign_configs_are_refused(tmp_path, content, reason):
    (tmp_path / "run").mkdir()
    if content is not None:
        (tmp_path / "run" / "config.json").write_text(content)
    with pytest.raises(PasmError, match=reason) as error:
        Run(tmp_path / "run").read_config()
    assert "\n" not in str(error.value)


def test_status_merges_fields_and_names_the_process(run):
    run.write_status(state="running", generation=0, progress=0.1)
    run.write_status(progress=0.2)
    status = json.loads(run.status_path.read_text())
    assert status["state"] == "running" and status["generation"] == 0 and status["progress"] == 0.2
    assert status["pid"] == os.getpid() and status["updated"]
    assert Run(run.path).read_status() == status
    later = Run(run.path)  # a resumed process starts from what is on disk
    later.write_status(state="stopped")
    assert later.read_status()["generation"] == 0


def test_a_truncated_status_is_refused_on_resume(run):
    run.write_status(state="running")
    run.status_path.write_text('{"state": "runn')
    with pytest.raises(PasmError, match="status.json: damaged"):
        run.check_resumable(CONFIG)
    run.status_path.write_text('{"state": "sleeping"}')
    with pytest.raises(PasmError, match="not a run status"):
        run.read_status()


def test_log_and_metrics_are_whole_files(run):
    run.log("first")
    Run(run.path).log("second")  # another process appends after the first one's lines
    assert run.log_path.read_text() == "first\nsecond\n"
    run.write_metrics([{"kind": "epoch", "epoch": 1}, {"kind": "epoch", "epoch": 2}])
    assert [json.loads(line)["epoch"] for line in run.metrics_path.read_text().splitlines()] == [1, 2]
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_state_holds_only_data(run):
    assert run.load_state() is None
    state = {"generation": 1, "epoch": 2, "finished": False, "model": {"w": torch.ones(2)}, "regions": None,
             "records": [{"kind": "epoch", "loss": 0.5, "mining": {"flipped": 0.9}}]}
    run.save_state(state)
    loaded = run.load_state()
    assert loaded["records"] == state["records"] and torch.equal(loaded["model"]["w"], torch.ones(2))
    run.state_path.write_bytes(run.state_path.read_bytes()[:50])
    with pytest.raises(PasmError, match="state.pt: unreadable resume state"):
        run.load_state()


# The one JSON reader and the one runs directory


@pytest.mark.parametrize("content, reason", [
    ('{"state": "runn', r"damaged: not valid JSON \(Unterminated string at line 1\)"),
    ('{"state": ', r"damaged: not valid JSON \(Expecting value at line 1\)"),
    ("[1, 2]", "damaged: expected a JSON object"),
    (b"\xff\xfe{}", r"unreadable \(UnicodeDecodeError"),
])
def test_read_json_names_the_damaged_file_in_one_line(tmp_path, content, reason):
    path = tmp_path / "status.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PasmError, match=reason) as error:
        read_json(path)
    assert error.value.what == str(path) and "\n" not in str(error.value)


def test_read_json_reads_an_object_and_a_missing_file_is_none(tmp_path):
    (tmp_path / "summary.json").write_text('{"generations": []}')
    assert read_json(tmp_path / "summary.json") == {"generations": []}
    assert read_json(tmp_path / "missing.json") is None


def test_every_json_file_of_a_run_is_read_by_the_one_reader(tmp_path, monkeypatch):
    run = Run(tmp_path / "run")
    run.create(CONFIG)
    run.write_status(state="running")
    run.write_summary({"generations": []})
    (run.path / "study.json").write_text("{}")
    read = []
    real = runs.read_json

    def counted(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(runs, "read_json", counted)
    files = read_run(run.path)
    assert not files.errors
    assert sorted(read) == ["config.json", "status.json", "study.json", "summary.json"]


def test_runs_root_reads_pasm_runs_at_every_call(tmp_path, monkeypatch):
    monkeypatch.delenv("PASM_RUNS", raising=False)
    assert runs_root() == Path("runs")
    monkeypatch.setenv("PASM_RUNS", str(tmp_path / "elsewhere"))
    assert runs_root() == tmp_path / "elsewhere"


def test_display_path_is_relative_to_the_runs_directory_however_it_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    assert display_path(tmp_path / "runs" / "a", "runs") == "a"
    assert display_path("runs/a", tmp_path / "runs") == "a"
    assert display_path(tmp_path / "other", "runs") == str(tmp_path / "other")
    monkeypatch.setenv("PASM_RUNS", str(tmp_path / "runs"))
    assert display_path(tmp_path / "runs" / "a") == "a"


def test_generations_sort_by_number_within_their_folder():
    paths = [Path("b/gen10.safetensors"), Path("b/gen9.safetensors"), Path("a/x.pt"), Path("b/gen0.safetensors")]
    assert [p.as_posix() for p in sorted(paths, key=generation_order)] == [
        "a/x.pt", "b/gen0.safetensors", "b/gen9.safetensors", "b/gen10.safetensors"]


def test_a_run_holds_every_generation_once_its_summary_and_checkpoints_do(tmp_path):
    run = Run(tmp_path / "run")
    run.create({**CONFIG, "generations": 1})
    assert not runs.holds_every_generation(run.path), "no summary yet"
    entries = [{"index": g, "checkpoint": run.checkpoint_name(g)} for g in (0, 1)]
    run.write_summary({"generations": entries[:1]})
    run.checkpoint_path(0).write_bytes(b"w")
    assert not runs.holds_every_generation(run.path), "the student generation is missing"
    run.write_summary({"generations": entries})
    assert not runs.holds_every_generation(run.path), "its checkpoint is missing"
    run.checkpoint_path(1).write_bytes(b"w")
    assert runs.holds_every_generation(run.path)
    run.summary_path.write_text('{"generations": [')
    assert not runs.holds_every_generation(run.path), "a damaged summary proves nothing"
    assert not runs.holds_every_generation(tmp_path / "missing")


def test_read_run_says_which_files_are_damaged_and_counts_student_generations(tmp_path):
    run = Run(tmp_path / "run")
    run.create(CONFIG)
    run.write_summary({"generations": [{"index": g, "checkpoint": run.checkpoint_name(g)} for g in (0, 1, 2)]})
    files = read_run(run.path)
    assert files.damaged == set() and files.student_generations == 2, "generation 0 is the teacher"
    run.summary_path.write_text('{"generations": [')
    run.status_path.write_text("[]")
    assert read_run(run.path).damaged == {"summary", "status"}
    run.summary_path.write_text('{"generations": 3}')
    assert read_run(run.path).damaged == {"summary", "status"}

"""Runs page (AppTest) and the run-directory readers behind it (pasm.runs), on run directories the tests write.

``write_tiny_run`` is shared with the Generations page's tests: it writes a finished run the way the
trainer does (pasm.runs.Run), with small_cnn 32 px checkpoints saved by pasm.checkpoints.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pasm import jobs
from pasm.checkpoints import make_meta, save_checkpoint
from pasm.data.synth import CLASSES
from pasm.models import InputSpec, build_model
from pasm.runs import Run, find_runs, read_run
from pasm.study import write_study
from ui import jobs_view, run_figures, state
from app_helpers import chart_titles, no_exception, stand_in_job, wait_for

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "5_Runs.py"


def write_tiny_run(path, generations=2, data="synth:/nowhere", erasing="pasm", seed=0):
    """A finished run of ``generations`` generations (0 .. generations - 1), every file as the trainer writes it."""
    run = Run(path)
    run.create({"data": data, "arch": "small_cnn", "size": 32, "generations": generations - 1, "epochs": 2,
                "erasing": erasing, "seed": seed})
    records, entries = [], []
    for g in range(generations):
        torch.manual_seed(seed * 10 + g)
        model = build_model("small_cnn", len(CLASSES), InputSpec(32, 3))
        save_checkpoint(run.checkpoint_path(g), model, make_meta(model, CLASSES, generation=g))
        for epoch in (1, 2):
            records.append({"kind": "epoch", "generation": g, "epoch": epoch, "loss": 2.0 - 0.3 * epoch - 0.1 * g,
                            "ce": 1.5, "kd": 0.5, "train_accuracy": 0.2 * epoch, "erased_fraction": 0.5 if g else 0.0,
                            "lr": 0.01, "seconds": 1.0})
        scores = {"test_accuracy": 0.5 + 0.1 * g, "mean_class_accuracy": 0.45 + 0.1 * g,
                  "occluded_accuracy": 0.3 + 0.1 * g}
        confusion = [[3 if i == j else (g + i + j) % 2 for j in range(len(CLASSES))] for i in range(len(CLASSES))]
        records.append({"kind": "generation", "generation": g, **scores, "confusion": confusion})
        entries.append({"index": g, "checkpoint": run.checkpoint_name(g), "erasing": erasing if g else "none",
                        **scores, "per_class_accuracy": {c: 0.1 * i + 0.05 * g for i, c in enumerate(CLASSES)}})
    run.write_metrics(records)
    run.write_summary({"data": data, "split": "test", "classes": CLASSES, "generations": entries})
    run.write_status(state="done", phase=None, generation=generations - 1, epoch=2, step=0, progress=1.0,
                     eta_seconds=0, error=None)
    return run


def page():
    return AppTest.from_file(str(PAGE), default_timeout=60).run()




def choose(at, label):
    box = at.selectbox(key="runs_chosen")
    return box.set_value(box.options.index(label)).run()


def test_no_runs_is_an_invitation_not_an_error(runs):
    at = page()
    no_exception(at)
    assert not at.error
    assert "No runs" in at.info[0].value


def test_a_finished_run_shows_config_curves_confusions_and_downloads(runs):
    write_tiny_run(runs / "tiny")
    at = page()
    no_exception(at)
    assert not at.error
    overview = at.dataframe[0].value
    assert list(overview["run"]) == ["tiny"]
    assert overview["state"][0] == "done"
    assert overview["student generations"][0] == 1, "generation 0 is the teacher, as on the Train form"
    assert overview["best test accuracy"][0] == pytest.approx(0.6)
    assert at.json[0].value and json.loads(at.json[0].value)["erasing"] == "pasm"
    titles = chart_titles(at)
    assert "Training curves" in titles and "Accuracy across generations" in titles
    assert "Per-class accuracy by generation" in titles
    assert [t for t in titles if t.startswith("Confusion matrix")] == ["Confusion matrix, generation 0",
                                                                       "Confusion matrix, generation 1"]
    downloads = at.get("download_button")
    assert len(downloads) == 2
    generations = at.dataframe[1].value
    assert list(generations["index"]) == [0, 1] and list(generations["erasing"]) == ["none", "pasm"]


def test_a_study_directory_shows_its_table(runs):
    study = runs / "study"
    for arm in ("none", "pasm"):
        for seed in (0, 1):
            write_tiny_run(study / f"{arm}-seed{seed}", erasing=arm, seed=seed)
    write_study(study, ["none", "pasm"], [0, 1])
    at = page()
    choose(at, "study")
    no_exception(at)
    assert not at.error
    assert any("| pasm | 1 |" in m.value for m in at.markdown)
    assert "PASM study: accuracy per generation (mean ± std over seeds)" in chart_titles(at)
    assert set(at.dataframe[0].value["run"]) == {"study", "study/none-seed0", "study/none-seed1",
                                                 "study/pasm-seed0", "study/pasm-seed1"}


def test_a_damaged_run_is_an_error_card_and_the_others_still_show(runs):
    write_tiny_run(runs / "good")
    broken = write_tiny_run(runs / "broken")
    broken.summary_path.write_text('{"generations": [')
    (broken.path / "metrics.jsonl").write_text('{"kind": "epoch"}\nnot json\n')
    at = page()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("broken/summary.json" in e and "not valid JSON" in e for e in errors)
    assert any("broken/metrics.jsonl: line 2 is not JSON" in e for e in errors)
    overview = at.dataframe[0].value
    assert "summary.json" in overview.set_index("run").loc["broken", "problems"]
    choose(at, "good")
    no_exception(at)
    assert not at.error
    assert "Accuracy across generations" in chart_titles(at)


def test_a_checkpoint_that_is_not_one_is_refused_in_its_row(runs):
    run = write_tiny_run(runs / "tiny")
    run.checkpoint_path(1).write_bytes(b"garbage")
    at = page()
    no_exception(at)
    assert any("gen1.safetensors" in e.value for e in at.error)
    assert len(at.get("download_button")) == 2


# A stand-in trainer: "running" until SIGTERM, then "stopped"; with --resume it raises, as a broken run would.
STAND_IN = stand_in_job('raise RuntimeError("CUDA_ERROR out of memory")')


def test_a_runs_job_card_stops_resumes_and_says_why_it_died(runs):
    job = jobs.launch([sys.executable, "-c", STAND_IN, str(runs / "x")], runs / "x", runs)
    wait_for(lambda: job.state == "running")
    at = page()
    no_exception(at)
    assert at.button(key=f"resume_{job.id}").disabled
    at.button(key=f"stop_{job.id}").click().run()
    assert jobs.wait(job, 60) == "stopped"
    at.run()
    at.button(key=f"resume_{job.id}").click().run()
    no_exception(at)
    resumed = jobs.list_jobs(runs)[0]
    assert resumed.id != job.id and resumed.argv == job.argv + ["--resume"]
    assert jobs.wait(resumed, 60) == "died"
    at.run()
    no_exception(at)
    assert at.dataframe[0].value["state"][0] == "died", "not the 'stopped' its status.json still says"
    assert "The job died: RuntimeError: CUDA\\_ERROR out of memory" in [e.value for e in at.error]
    assert not at.button(key=f"resume_{resumed.id}").disabled
    history = at.table[0].value
    assert list(history["job"]) == [resumed.id, job.id], "one card for the run, its attempts inside"
    assert list(history["how it ended"]) == [state.markdown_literal("died: RuntimeError: CUDA_ERROR out of memory"),
                                             "stopped on request"], "a log line shown as written: st.table renders markdown"


def test_read_run_lists_every_damaged_file(tmp_path):
    run = write_tiny_run(tmp_path / "run")
    run.status_path.write_text('{"state": "exploded"}')
    run.config_path.write_text("[]")
    files = read_run(run.path)
    assert files.status is None and files.config is None
    assert any("status.json" in e and "exploded" in e for e in files.errors)
    assert any("config.json" in e for e in files.errors)
    assert [g["index"] for g in files.generations] == [0, 1]
    assert [g for g, _ in files.confusions()] == [0, 1]


def test_find_runs_skips_the_apps_own_folders(tmp_path):
    write_tiny_run(tmp_path / "a")
    write_tiny_run(tmp_path / "study" / "pasm-seed0")
    (tmp_path / ".jobs").mkdir()
    (tmp_path / ".jobs" / "status.json").write_text("{}")
    (tmp_path / "uploads" / "x").mkdir(parents=True)
    (tmp_path / "uploads" / "x" / "config.json").write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in find_runs(tmp_path)] == ["a", "study/pasm-seed0"]


def test_training_curves_split_losses_from_accuracies():
    records = [{"kind": "epoch", "generation": 0, "epoch": 1, "loss": 2.0, "train_accuracy": 0.3, "lr": 0.1},
               {"kind": "epoch", "generation": 1, "epoch": 1, "loss": 1.0, "train_accuracy": 0.6, "lr": 0.1},
               {"kind": "generation", "generation": 1, "test_accuracy": 0.55}]
    fig = run_figures.training_curves(records)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"loss", "train accuracy", "test accuracy (generation end)"}
    assert traces["loss"].yaxis == "y" and traces["train accuracy"].yaxis == "y2"
    assert list(traces["test accuracy (generation end)"].x) == [2]
    assert [s["x0"] for s in fig.layout.shapes] == [1.5, 1.5]  # in both panels


def test_confusion_matrix_colours_row_shares_and_prints_counts():
    fig = run_figures.confusion_heatmap([[3, 1], [0, 0]], ["a", "b"])
    heat = fig.data[0]
    assert heat.z.tolist() == [[0.75, 0.25], [0.0, 0.0]]
    assert heat.text.tolist() == [[3, 1], [0, 0]]


def test_one_progress_line_for_every_job_card():
    """The Home page's demo card and the Train and Runs pages' job cards say a job's progress the same way."""
    running = SimpleNamespace(state="running", study_runs=None)
    stopped = SimpleNamespace(state="stopped", study_runs=None)
    status = {"generation": 1, "epoch": 2, "eta_seconds": 125.4}
    assert jobs_view.progress_text(running, status) == "running · generation 1 · epoch 2 · about 2 min 05 s left"
    assert jobs_view.progress_text(running, {"eta_seconds": 30}) == "running · about 30 s left"
    assert jobs_view.progress_text(stopped, status) == "stopped · generation 1 · epoch 2", "no time left when stopped"


def test_a_mining_run_shows_images_mined_and_a_study_its_runs():
    running = SimpleNamespace(state="running", study_runs=None)
    mining = {"state": "running", "phase": "mining", "generation": 1, "epoch": 0, "progress": 0.2,
              "mining": {"done": 120, "total": 400}, "eta_seconds": 65}
    assert jobs_view.progress_text(running, mining) == ("running · generation 1 · mining 120/400 images · "
                                                        "about 1 min 05 s left")
    assert jobs_view.progress_value(running, mining) == pytest.approx(0.3), "the bar follows the images mined"
    training = {**mining, "phase": "training"}
    assert jobs_view.progress_value(running, training) == pytest.approx(0.2)
    study = SimpleNamespace(state="running", study_runs=["none-seed0", "pasm-seed0", "none-seed1", "pasm-seed1"])
    assert jobs_view.progress_text(study, {"runs_done": 1, "progress": 0.4}) == "running · runs 1/4 finished"


def test_a_kill_from_the_app_says_killed_on_request_not_died(runs):
    job = jobs.launch([sys.executable, "-c", STAND_IN, str(runs / "x")], runs / "x", runs)
    wait_for(lambda: job.state == "running")
    at = page()
    at.button(key=f"kill_{job.id}").click().run()
    wait_for(lambda: not job.alive)
    at.run()
    no_exception(at)
    assert not at.error, "a kill on request is no crash"
    assert any("killed on request" in i.value for i in at.info)
    assert at.dataframe[0].value["state"][0] == "killed"
    assert not at.button(key=f"resume_{job.id}").disabled


def test_a_damaged_status_of_a_finished_run_names_the_file_and_the_run_is_done(runs):
    run = write_tiny_run(runs / "x")
    damage = f"import pathlib; pathlib.Path({str(run.status_path)!r}).write_text('{{\"state\": \"done\", \"err')"
    job = jobs.launch([sys.executable, "-c", damage], run.path, runs)
    wait_for(lambda: not job.alive)
    at = page()
    no_exception(at)
    assert at.dataframe[0].value["state"][0] == "done"
    assert any("x/status.json: damaged: not valid JSON (Unterminated string at line 1)" in w.value for w in at.warning)
    assert at.button(key=f"resume_{job.id}").disabled, "a finished run is not resumed"
    assert [p.value for p in at.get("progress")] == [100]


def test_a_damaged_summary_is_not_taken_for_a_missing_one(runs):
    write_tiny_run(runs / "x").summary_path.write_text('{"generations": [')
    at = page()
    no_exception(at)
    assert any("summary.json is damaged" in w.value for w in at.warning)
    assert not any("No finished generation yet" in i.value for i in at.info)


def test_deleting_a_run_asks_first_then_removes_it_and_its_jobs(runs):
    write_tiny_run(runs / "keep")
    gone = write_tiny_run(runs / "gone")
    job = jobs.launch([sys.executable, "-c", "pass"], gone.path, runs)
    wait_for(lambda: not job.alive)
    at = choose(page(), "gone")
    delete = at.button(key="delete_gone")
    assert delete.disabled, "not before the confirmation is ticked"
    at.checkbox(key="delete_sure_gone").check().run()
    at.button(key="delete_gone").click().run()
    no_exception(at)
    assert not gone.path.exists() and jobs.list_jobs(runs) == []
    assert any("Deleted gone and 1 job record(s)" in s.value for s in at.success)
    assert list(at.dataframe[0].value["run"]) == ["keep"]


def test_a_run_with_a_live_job_is_not_deleted(runs):
    job = jobs.launch([sys.executable, "-c", STAND_IN, str(runs / "x")], runs / "x", runs)
    wait_for(lambda: job.state == "running")
    at = page()
    at.checkbox(key="delete_sure_x").check().run()
    at.button(key="delete_x").click().run()
    no_exception(at)
    assert any("is still running there" in e.value for e in at.error)
    assert (runs / "x").is_dir() and job.alive

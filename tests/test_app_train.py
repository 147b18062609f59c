"""Train page (AppTest): the form starts a real tiny training job in the background and the job list follows
it to "done"; bad names and specs are refused; stop, resume and two jobs at once on stand-in jobs."""
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pasm import jobs
from pasm.data.synth import write_synth
from pasm.runs import Run
from ui import state

from app_helpers import no_exception

PAGE = Path(__file__).resolve().parents[1] / "pages" / "4_Train.py"

# A stand-in trainer for the buttons' tests: "running" until SIGTERM, then "stopped"; with --resume it finishes.
STAND_IN = """
import json, os, signal, sys, time
from pathlib import Path

out = Path(sys.argv[1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))


def status(state):
    (out / "status.tmp").write_text(json.dumps({"state": state, "generation": 0, "epoch": 1, "progress": 0.5}))
    os.replace(out / "status.tmp", out / "status.json")


if "--resume" in sys.argv:
    status("done")
    sys.exit(0)
status("running")
with open(out / "train.log", "a") as log:
    print("stand-in running", file=log)
while not stop:
    time.sleep(0.02)
status("stopped")
"""


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth"
    write_synth(path, train=35, test=14, size=32, seed=0)
    return path


def page():
    return AppTest.from_file(str(PAGE), default_timeout=60).run()


def widget(widgets, label):
    return next(w for w in widgets if w.label == label)


def submit(at, name, data, **numbers):
    widget(at.text_input, "Run name").set_value(name)
    widget(at.text_input, "Data set spec").set_value(data)
    for label, value in numbers.items():
        widget(at.number_input, label).set_value(value)
    return widget(at.button, "Start training").click().run()


def launch_stand_in(root, name):
    run_dir = root / name
    return jobs.launch([sys.executable, "-c", STAND_IN, str(run_dir)], run_dir, root)


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_no_jobs_yet(runs):
    at = page()
    no_exception(at)
    assert not at.error
    assert "No jobs" in at.info[0].value
    assert widget(at.number_input, "Epochs per generation").value == 15  # the trainer's own default


def test_the_form_starts_a_real_tiny_job_that_reaches_done(runs, tiny_synth):
    at = submit(at=page(), name="x", data=f"synth:{tiny_synth}", **{
        "Generations (students after the teacher)": 0, "Epochs per generation": 1, "Batch size (per process)": 16})
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert "Started job" in at.success[0].value
    [job] = jobs.list_jobs(runs)
    assert job.run_dir == (runs / "x").resolve()
    assert job.argv[1:4] == ["-m", "pasm", "train"] and job.argv[job.argv.index("--epochs") + 1] == "1"
    assert jobs.wait(job, timeout=180) == "done", jobs.tail(job, 30)

    restarted = page()  # a new session: the job is found on disk
    no_exception(restarted)
    assert any("**x** · done" in m.value for m in restarted.markdown)
    assert [p.value for p in restarted.get("progress")] == [100]
    assert len(restarted.get("plotly_chart")) == 1  # the run's metrics
    summary = Run(runs / "x").read_summary()
    assert [g["index"] for g in summary["generations"]] == [0]
    assert (runs / "x" / "gen0.safetensors").is_file()


@pytest.mark.parametrize("name", ["../etc", "/tmp/x", "a/b", ".jobs", ""])
def test_a_name_outside_the_runs_directory_is_refused(runs, tiny_synth, name):
    at = submit(page(), name, f"synth:{tiny_synth}")
    no_exception(at)
    assert at.error and "run name" in at.error[0].value
    assert jobs.list_jobs(runs) == []
    assert not (runs.parent / "etc").exists()


def test_a_bad_data_spec_or_a_used_name_is_refused(runs, tiny_synth):
    at = submit(page(), "y", "nosuchkind:/data")
    assert "unknown data set kind 'nosuchkind'" in at.error[0].value
    at = submit(page(), "y", f"synth:{tiny_synth}-missing")
    assert "no such file or directory" in at.error[0].value
    (runs / "used").mkdir()
    (runs / "used" / "config.json").write_text("{}")
    at = submit(page(), "used", f"synth:{tiny_synth}")
    no_exception(at)
    assert "holds a run already" in at.error[0].value
    assert jobs.list_jobs(runs) == []


def test_two_jobs_at_once_then_stop_and_resume(runs):
    first, second = launch_stand_in(runs, "one"), launch_stand_in(runs, "two")
    wait_for(lambda: first.state == "running" and second.state == "running")
    at = page()
    no_exception(at)
    assert sum("· running ·" in m.value for m in at.markdown) == 2
    at.button(key=f"stop_{first.id}").click().run()
    no_exception(at)
    wait_for(lambda: first.state == "stopped")
    assert second.state == "running"
    at.run()
    assert not at.button(key=f"resume_{first.id}").disabled
    assert at.button(key=f"resume_{second.id}").disabled
    at.button(key=f"resume_{first.id}").click().run()
    no_exception(at)
    resumed = next(job for job in jobs.list_jobs(runs) if job.id not in (first.id, second.id))
    assert resumed.run_dir == first.run_dir and "--resume" in resumed.argv
    wait_for(lambda: resumed.state == "done")
    at.run()
    assert at.button(key=f"resume_{first.id}").disabled  # only a run's newest job can be resumed


def test_the_command_line_follows_the_form(tmp_path):
    settings = state.TrainSettings(name="x", data="synth:data/synth", generations=3, processes=2, limit=100,
                                   distill=False)
    argv = settings.argv(tmp_path / "x")
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    assert argv[5:8] == ["-m", "pasm", "train"]
    assert argv[argv.index("--data") + 1] == f"synth:{Path('data/synth').resolve()}"
    assert argv[argv.index("--out") + 1] == str((tmp_path / "x").resolve())
    assert argv[argv.index("--generations") + 1] == "3" and argv[argv.index("--limit") + 1] == "100"
    assert "--no-distill" in argv
    single = state.TrainSettings(name="x", data="synth:d").argv(tmp_path / "x")
    assert single[:4] == [sys.executable, "-m", "pasm", "train"] and "--limit" not in single


def test_an_untouched_form_trains_what_the_command_line_would():
    """The form mirrors TrainConfig's defaults; this catches one changing without the other."""
    from dataclasses import MISSING, fields

    from pasm.train import TrainConfig

    config = {f.name: f.default for f in fields(TrainConfig)}
    shared = [f for f in fields(state.TrainSettings) if f.name in config and f.default is not MISSING]
    assert len(shared) >= 12
    for f in shared:
        assert f.default == config[f.name] or (f.name == "limit" and f.default == 0 and config["limit"] is None), f.name

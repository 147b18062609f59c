"""Train page (AppTest): the form starts a real tiny training job in the background and the job list follows
it to "done"; its job's command line reads back to the form's TrainConfig; an existing checkpoint can be
adopted as the teacher; bad names and specs are refused; stop, resume and two jobs at once on stand-in jobs."""
import html
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from pasm import jobs
from pasm.checkpoints import make_meta, save_checkpoint
from pasm.cli import build_parser, train_options
from pasm.data.synth import CLASSES, write_synth
from pasm.models import InputSpec, build_model
from pasm.runs import Run
from pasm.train import TrainConfig

from app_helpers import no_exception, stand_in_job, wait_for

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "4_Train.py"

# A stand-in trainer for the buttons' tests: "running" until SIGTERM, then "stopped"; with --resume it finishes.
STAND_IN = stand_in_job('status("done"); sys.exit(0)')


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth"
    write_synth(path, train=35, test=14, size=32, seed=0)
    return path


def page():
    return AppTest.from_file(str(PAGE), default_timeout=60).run()


def widget(widgets, label):
    return next(w for w in widgets if w.label == label)


def submit(at, name, data, button="Start training", **values):
    """Fill the form (any other widget by its label) and press Start training (or ``button``)."""
    widget(at.text_input, "Run name").set_value(name)
    widget(at.text_input, "Data set spec").set_value(data)
    for label, value in values.items():
        widget([*at.number_input, *at.text_input, *at.selectbox, *at.slider], label).set_value(value)
    return widget(at.button, button).click().run()


def errors(at):
    return [html.unescape(e.value.replace("\\", "")) for e in at.error]  # show_error escapes markdown's characters


def config_of(argv):
    """The TrainConfig a job's command line makes, read back the way ``python -m pasm train`` reads it."""
    return TrainConfig(**train_options(build_parser().parse_args(argv[argv.index("train"):])))


def fake_launches(monkeypatch):
    """Launches recorded instead of started: (argv, run_dir) each."""
    launched = []

    def launch(argv, run_dir, root, cwd, **kwargs):
        launched.append((argv, run_dir, kwargs))
        return SimpleNamespace(id="fake", run_dir=Path(run_dir))

    monkeypatch.setattr(jobs, "launch", launch)
    return launched


def launch_stand_in(root, name):
    run_dir = root / name
    return jobs.launch([sys.executable, "-c", STAND_IN, str(run_dir)], run_dir, root)


def test_no_jobs_yet(runs):
    at = page()
    no_exception(at)
    assert not at.error
    assert any("No jobs" in info.value for info in at.info)
    assert widget(at.number_input, "Epochs per generation").value == 15  # the trainer's own default
    assert widget(at.text_input, "Data set spec").value == ""  # a fresh machine has no data set to offer


def test_the_form_starts_a_real_tiny_job_that_reaches_done(runs, tiny_synth):
    at = submit(at=page(), name="x", data=f"synth:{tiny_synth}", **{
        "Generations (students after the teacher)": 0, "Epochs per generation": 1, "Batch size (per process)": 16})
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert "Started job" in at.success[0].value
    [job] = jobs.list_jobs(runs)
    assert job.run_dir == (runs / "x").resolve()
    assert job.argv[1:4] == ["-m", "pasm", "train"]
    assert config_of(job.argv) == TrainConfig(data=f"synth:{tiny_synth}", generations=0, epochs=1, batch=16)
    assert jobs.wait(job, timeout=180) == "done", jobs.tail(job, 30)

    restarted = page()  # a new session: the job is found on disk
    no_exception(restarted)
    assert any("**x** · done" in m.value for m in restarted.markdown)
    assert [p.value for p in restarted.get("progress")] == [100]
    assert len(restarted.get("plotly_chart")) == 1  # the run's metrics
    summary = Run(runs / "x").read_summary()
    assert [g["index"] for g in summary["generations"]] == [0]
    assert (runs / "x" / "gen0.safetensors").is_file()


@pytest.mark.parametrize("name", ["../etc", "/tmp/x", "a/b", ".jobs"])
def test_a_name_outside_the_runs_directory_is_refused(runs, tiny_synth, name):
    at = submit(page(), name, f"synth:{tiny_synth}")
    no_exception(at)
    assert at.error and "run name" in errors(at)[0]
    assert jobs.list_jobs(runs) == []
    assert not (runs.parent / "etc").exists()


def test_a_bad_data_spec_or_a_used_name_is_refused(runs, tiny_synth):
    at = submit(page(), "y", "nonsense:x")
    assert errors(at)[0].startswith("data set spec nonsense:x: unknown data set kind 'nonsense'"), "as typed"
    at = submit(page(), "y", f"synth:{tiny_synth}-missing")
    no_exception(at)
    assert errors(at) == [f"data set spec synth:{tiny_synth}-missing: no such file or directory"]
    assert widget(at.text_input, "Run name").value == "y"  # the form stays as it was
    at = submit(page(), "y", "")
    assert "data set spec (empty): a data set spec is KIND:PATH" in errors(at)[0]
    at = submit(page(), "y", f"synth:{tiny_synth}", **{"Evaluation split (blank: test, else val)": "val"})
    assert "has no 'val' split" in errors(at)[0]
    (runs / "used").mkdir()
    (runs / "used" / "config.json").write_text("{}")
    at = submit(page(), "used", f"synth:{tiny_synth}")
    no_exception(at)
    assert "holds a run already" in errors(at)[0]
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
    no_exception(at)
    assert sum("**one** ·" in m.value for m in at.markdown) == 1, "one card per run"
    assert at.button(key=f"resume_{resumed.id}").disabled
    assert not [b for b in at.button if b.key == f"resume_{first.id}"], "the stopped attempt has no card of its own"
    [history] = at.table
    assert list(history.value["how it ended"]) == ["finished", "stopped on request"]


@pytest.fixture
def fer_like_teacher(runs):
    """A checkpoint in runs/checkpoints of another architecture and size than the form's defaults (48 px grey)."""
    model = build_model("mini_xception", len(CLASSES), InputSpec(48, 1))
    path = runs / "checkpoints" / "fer_like.safetensors"
    path.parent.mkdir()
    save_checkpoint(path, model, make_meta(model, CLASSES))
    return path


def test_the_form_offers_teacher_init_optimiser_lr_and_remining(runs):
    at = page()
    no_exception(at)
    assert widget(at.selectbox, "Teacher (generation 0)").options == ["none: the run trains one"]
    assert widget(at.button, "Use the sidebar's teacher").disabled  # no checkpoint yet
    assert widget(at.selectbox, "Students start from").options == ["teacher", "scratch"]
    assert widget(at.selectbox, "Optimiser").options == ["sgd", "adamw"]
    learning_rate = next(w for w in at.number_input if w.label.startswith("Learning rate"))
    assert learning_rate.value is None and "small_cnn: adamw, lr 0.003" in learning_rate.help
    assert widget(at.number_input, "Re-mine the regions with the student every K epochs (0: never)").value == 0
    rare = next(e for e in at.expander if e.label.startswith("Optimiser"))  # the rarely changed options, folded
    assert [w.label for w in rare.selectbox] == ["Optimiser"] and len(rare.number_input) >= 6


def test_the_sidebar_teacher_sets_the_teacher_and_its_architecture(runs, fer_like_teacher):
    at = page()
    no_exception(at)
    teacher = widget(at.selectbox, "Teacher (generation 0)")
    assert teacher.value == "" and widget(at.selectbox, "Architecture").value == "small_cnn"
    widget(at.button, "Use the sidebar's teacher").click().run()
    no_exception(at)
    assert widget(at.selectbox, "Teacher (generation 0)").value == str(fer_like_teacher)
    arch = widget(at.selectbox, "Architecture")
    size = widget(at.number_input, "Input size in pixels (blank: the architecture's)")
    assert (arch.value, arch.disabled, size.value, size.disabled) == ("mini_xception", True, 48, True)
    assert any("Adopted as generation 0" in c.value for c in at.caption)


def test_a_submitted_form_launches_the_command_line_of_its_train_config(runs, tiny_synth, fer_like_teacher,
                                                                          monkeypatch):
    launched = fake_launches(monkeypatch)
    at = page()
    widget(at.button, "Use the sidebar's teacher").click().run()
    for label, value in {"Students start from": "teacher", "Optimiser": "adamw", "Device": "cpu",
                         "Erasing for the students": "attention", "Region strategy": "centroid",
                         "Fill of the erased region": "noise"}.items():
        widget(at.selectbox, label).set_value(value)
    widget(at.checkbox, "Students also learn the teacher's soft labels (distillation)").uncheck()
    next(w for w in at.number_input if w.label.startswith("Learning rate")).set_value(0.002)
    next(w for w in at.number_input if w.label.startswith("Weight decay")).set_value(0.01)
    at = submit(at, "full", f"synth:{tiny_synth}", **{
        "Generations (students after the teacher)": 2, "Epochs per generation": 3, "Batch size (per process)": 8,
        "λ: weight of the teacher's soft labels": 0.5, "τ: distillation temperature": 2.0,
        "p: probability that a face is erased": 0.25, "Region area (fraction of the face)": 0.2,
        "Max attack points": 7, "Label smoothing": 0.1, "Use only the first N training images (blank: all)": 20,
        "Evaluation split (blank: test, else val)": "test", "Seed": 3, "Processes (torchrun when > 1)": 2,
        "Re-mine the regions with the student every K epochs (0: never)": 2,
        "Data-loading processes (blank: automatic)": 1})
    no_exception(at)
    assert not at.error, errors(at)
    [(argv, run_dir, _)] = launched
    assert run_dir == (runs / "full").resolve()
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    assert argv[argv.index("--device") + 1] == "cpu" and argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--out") + 1] == str(run_dir)
    assert config_of(argv) == TrainConfig(
        data=f"synth:{tiny_synth}", arch="mini_xception", size=48, teacher=str(fer_like_teacher), generations=2,
        epochs=3, batch=8, init_from="teacher", optimizer="adamw", lr=0.002, weight_decay=0.01, label_smoothing=0.1,
        erasing="attention", distill=False, lam=0.5, tau=2.0, p=0.25, region="centroid", area=0.2, fill="noise",
        max_points=7, remine_every=2, seed=3, limit=20, split="test")


def test_the_demo_data_is_the_default_spec_and_a_bad_config_launches_nothing(runs, monkeypatch):
    launched = fake_launches(monkeypatch)
    write_synth(runs / jobs.DEMO_RUN / "data", train=14, test=7, size=32, seed=0)
    at = page()
    spec = widget(at.text_input, "Data set spec").value
    assert spec == f"synth:{runs / jobs.DEMO_RUN / 'data'}"
    at = submit(at, "z", spec, **{"Batch size (per process)": 1})
    no_exception(at)
    assert errors(at) == ["--batch 1: must be a whole number of at least 2"]  # TrainConfig's own check
    assert launched == []


def test_an_unnamed_run_gets_a_name_from_its_data_set_erasing_and_time(runs, tiny_synth, monkeypatch):
    launched = fake_launches(monkeypatch)
    at = submit(page(), "", f"synth:{tiny_synth}", **{"Erasing for the students": "random"})
    no_exception(at)
    assert not at.error, errors(at)
    [(argv, run_dir, _)] = launched
    assert run_dir.parent == runs.resolve() and re.fullmatch(r"synth-random-\d{8}-\d{6}", run_dir.name)
    assert argv[argv.index("--out") + 1] == str(run_dir)


def test_a_study_starts_as_a_job_whose_command_reads_back_to_the_form(runs, tiny_synth, monkeypatch):
    launched = fake_launches(monkeypatch)
    at = page()
    widget(at.multiselect, "Arms").set_value(["none", "pasm-small"])
    widget(at.text_input, "Seeds").set_value("3, 4")
    widget(at.number_input, "Runs side by side").set_value(2)
    at = submit(at, "st", f"synth:{tiny_synth}", button="Start a study", **{
        "Generations (students after the teacher)": 2, "Epochs per generation": 3, "Seed": 9})
    no_exception(at)
    assert not at.error, errors(at)
    [(argv, run_dir, kwargs)] = launched
    assert argv[1:4] == ["-m", "pasm", "study"] and run_dir == (runs / "st").resolve()
    assert kwargs["study_runs"] == ["none-seed3", "pasm-small-seed3", "none-seed4", "pasm-small-seed4"]
    assert kwargs["resume_argv"] == argv, "a study resumes by starting again"
    args = build_parser().parse_args(argv[3:])
    assert (args.arms, args.seeds, args.jobs, args.out) == ("none,pasm-small", "3,4", 2, str(run_dir))
    assert TrainConfig(**train_options(args)) == TrainConfig(data=f"synth:{tiny_synth}", generations=2, epochs=3)


def test_a_study_is_checked_as_the_study_checks_itself_before_a_job_starts(runs, tiny_synth, monkeypatch):
    """The form refuses what the study would refuse once started (pasm.study.check_study), so no job dies of it."""
    launched = fake_launches(monkeypatch)
    at = page()
    widget(at.text_input, "Seeds").set_value("one")
    at = submit(at, "st", f"synth:{tiny_synth}", button="Start a study")
    assert errors(at) == ["--seeds one: must be comma-separated whole numbers, e.g. 0,1,2"]
    widget(at.text_input, "Seeds").set_value("0,0")
    at = submit(at, "st", f"synth:{tiny_synth}", button="Start a study")
    assert errors(at) == ["--seeds 0,0: must be distinct whole numbers >= 0"]
    widget(at.text_input, "Seeds").set_value("0,1")
    widget(at.multiselect, "Arms").set_value([])
    at = submit(at, "st", f"synth:{tiny_synth}", button="Start a study")
    assert errors(at) == ["--arms: name at least one arm"]
    assert launched == []

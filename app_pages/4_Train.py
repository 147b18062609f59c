"""Train: start PASM runs, or studies of several arms and seeds, as background jobs and watch them.

A job outlives this page: it is a detached process that writes its run directory, and the job list
is read back from disk (pasm.jobs) every two seconds, so closing the browser or restarting the app
loses nothing, and several jobs can run side by side. Each run has one card, its newest job's, with the
earlier attempts (stopped, killed, resumed) folded inside.
"""
from dataclasses import fields

import streamlit as st

from pasm import jobs
from pasm.checkpoint_store import find_checkpoints, summary_line
from pasm.commands import study_command, train_command
from pasm.errors import PasmError
from pasm.evaluate import default_split
from pasm.options import (ARCH_DEFAULTS, ARCHITECTURES, DEFAULT_ARMS, ERASING, FILLS, INIT_FROM, OPTIMIZERS, STRATEGIES,
                          STUDY_ARMS)
from pasm.runs import display_path, runs_root
from pasm.study import check_study, parse_seeds, planned_runs
from pasm.train import TrainConfig
from ui import jobs_view, state

st.set_page_config(page_title="Train · PASM Studio")

SHOWN_RUNS = 10
DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}  # the form's defaults are the command line's
TEACHER_PICK = "train_teacher"
FROM_TEACHER = "Set by the teacher: the trainer refuses a teacher of another architecture or input size."
DEVICES = ("auto", "cpu", "cuda")


def teacher_metadata(path):
    """The metadata of a checkpoint a run can adopt as generation 0: the trainer loads a teacher by it alone."""
    info = state.checkpoint_info(path)
    if "error" in info:
        raise PasmError("teacher", info["error"])
    if info["meta"] is None:
        raise PasmError(display_path(path), "has no pasm metadata, so a run cannot adopt it as its teacher; "
                                                      "add it with the sidebar's 'Add a checkpoint file' first")
    return info["meta"]


def use_teacher(path):
    """The button's callback: it runs before the picker is drawn, so the picker shows ``path``."""
    st.session_state[TEACHER_PICK] = path


def teacher_picker(root, sidebar_teacher):
    """Generation 0: trained by the run, or an existing checkpoint adopted as it (the demo's, the imported FER2013
    teacher). Outside the form, so that a pick redraws the form with the teacher's architecture and input size.

    Returns (path or "", metadata); the metadata is None without a teacher or for one that cannot be adopted."""
    paths = ["", *(str(p) for p in find_checkpoints(root))]
    if st.session_state.get(TEACHER_PICK) not in paths:
        st.session_state[TEACHER_PICK] = ""
    pick, use = st.columns([3, 1], vertical_alignment="bottom")
    path = pick.selectbox("Teacher (generation 0)", paths, key=TEACHER_PICK,
                          format_func=lambda p: display_path(p, root) if p else "none: the run trains one",
                          help="Adopt an existing checkpoint as generation 0 instead of training one, e.g. the "
                               "imported FER2013 teacher; the students are mined and distilled from it.")
    use.button("Use the sidebar's teacher", disabled=sidebar_teacher is None, on_click=use_teacher,
               args=(str(sidebar_teacher.path) if sidebar_teacher else "",))
    if not path:
        return "", None
    try:
        meta = teacher_metadata(path)
    except PasmError as e:
        state.show_error(e)
        return path, None
    st.caption(f"Adopted as generation 0: {summary_line(meta)}. The run takes its architecture and input size.")
    return path, meta


def choice(column, label, options, field, **kwargs):
    """A selectbox starting at TrainConfig's default for ``field``; a default of None (the architecture's choice)
    starts blank and says so."""
    default = DEFAULTS[field]
    index = None if default is None else list(options).index(default)
    return column.selectbox(label, options, index=index, placeholder="the architecture's", **kwargs)


def model_fields(column, teacher_meta):
    if teacher_meta:
        arch = column.selectbox("Architecture", [teacher_meta["arch"]], disabled=True, help=FROM_TEACHER)
    else:
        arch = choice(column, "Architecture", ARCHITECTURES, "arch")
    return {"arch": arch,
            "generations": column.number_input("Generations (students after the teacher)", 0, 20,
                                               DEFAULTS["generations"]),
            "epochs": column.number_input("Epochs per generation", 1, 1000, DEFAULTS["epochs"]),
            "batch": column.number_input("Batch size (per process)", 1, 4096, DEFAULTS["batch"]),
            "init_from": choice(column, "Students start from", INIT_FROM, "init_from",
                                help="scratch: new weights; teacher: a copy of the generation before's.")}


def method_fields(column):
    return {"erasing": choice(column, "Erasing for the students", ERASING, "erasing",
                              help="pasm: the region the teacher's points locate; random and attention (Grad-CAM) "
                                   "are the same-area baselines; none: distillation only."),
            "lam": column.number_input("λ: weight of the teacher's soft labels", 0.0, 10.0, DEFAULTS["lam"], 0.1),
            "tau": column.number_input("τ: distillation temperature", 0.1, 20.0, DEFAULTS["tau"], 0.5),
            "p": column.number_input("p: probability that a face is erased", 0.0, 1.0, DEFAULTS["p"], 0.05),
            "distill": column.checkbox("Students also learn the teacher's soft labels (distillation)",
                                       DEFAULTS["distill"])}


def region_fields(column):
    return {"region": choice(column, "Region strategy", STRATEGIES, "region"),
            "area": column.slider("Region area (fraction of the face)", 0.02, 0.5, DEFAULTS["area"], 0.01),
            "max_points": column.number_input("Max attack points", 1, 200, DEFAULTS["max_points"]),
            "fill": choice(column, "Fill of the erased region", FILLS, "fill")}


def rare_fields(teacher_meta):
    """Options most runs leave alone; blank ones are TrainConfig's None: the architecture's or optimiser's default."""
    optimiser, data, other = st.columns(3)
    defaults = "; ".join(f"{arch}: {opt}, lr {lr:g}, decay {decay:g}, warm-up {warmup}"
                         for arch, (opt, lr, decay, warmup) in ARCH_DEFAULTS.items())
    others = ", ".join(f"{name} {lr:g} / {decay:g}" for name, (lr, decay) in OPTIMIZERS.items())
    blank = (f"Blank: the architecture's default ({defaults}). Another optimiser than the architecture's starts "
             f"from its own (lr / decay: {others}).")
    size_label = "Input size in pixels (blank: the architecture's)"
    if teacher_meta:
        size = data.number_input(size_label, value=teacher_meta["input"]["size"], disabled=True, help=FROM_TEACHER)
    else:
        size = data.number_input(size_label, 16, 1024, DEFAULTS["size"], 1)
    return {"optimizer": choice(optimiser, "Optimiser", list(OPTIMIZERS), "optimizer"),
            "lr": optimiser.number_input("Learning rate (blank: the architecture's)", 0.0, None, DEFAULTS["lr"], 0.001,
                                         format="%g", help=f"The peak of the cosine schedule. {blank}"),
            "weight_decay": optimiser.number_input("Weight decay (blank: the architecture's)", 0.0, None,
                                                   DEFAULTS["weight_decay"], 0.0001, format="%g", help=blank),
            "label_smoothing": optimiser.number_input("Label smoothing", 0.0, 0.99, DEFAULTS["label_smoothing"], 0.05),
            "size": size,
            "limit": data.number_input("Use only the first N training images (blank: all)", 2, 10**8,
                                       DEFAULTS["limit"], 1),
            "split": data.text_input("Evaluation split (blank: test, else val)", DEFAULTS["split"] or "") or None,
            "remine_every": other.number_input("Re-mine the regions with the student every K epochs (0: never)", 0,
                                               1000, DEFAULTS["remine_every"]),
            "seed": other.number_input("Seed", 0, 2**31 - 1, DEFAULTS["seed"])}


def study_fields():
    """The arms and seeds of a study, and how many of its runs train side by side."""
    arms, seeds, parallel = st.columns(3)
    return {"arms": arms.multiselect("Arms", list(STUDY_ARMS), list(DEFAULT_ARMS),
                                     help="One run per arm and seed; an arm sets the students' erasing (the form's "
                                          "erasing is not used) and the seeds set the seed."),
            "seeds": seeds.text_input("Seeds", "0,1,2", help="Comma-separated whole numbers."),
            "parallel": parallel.number_input("Runs side by side", 1, 16, 1,
                                              help="Each with its share of the CPU threads; the teachers train first.")}


def training_form(default_data, teacher, teacher_meta):
    """The form: (what to start: "run", "study" or None, run name, TrainConfig fields, launcher settings, study
    settings); every default is TrainConfig's own.

    The fields stay a dict until submitted, so TrainConfig judges them (and says what is wrong) only then."""
    with st.form("train_form"):
        name_column, data_column = st.columns(2)
        name = name_column.text_input("Run name", placeholder="blank: data set, erasing and time, e.g. "
                                      "synth-pasm-20261206-101500",
                                      help="A folder under the runs directory: letters, digits, '-', '_' and '.'. "
                                           "Left blank, the run is named by its data set, erasing and start time.")
        data = data_column.text_input("Data set spec", default_data, placeholder="synth:data/synth",
                                      help="KIND:PATH, e.g. synth:data/synth (write one with `python -m pasm "
                                           "synth data/synth`), rafdb:RAF-DB/basic, fer2013:fer2013.csv, "
                                           "folder:my_faces. The demo's data set, once written, is the default.")
        model, method, region = st.columns(3)
        options = {"data": data, "teacher": teacher or None, **model_fields(model, teacher_meta),
                   **method_fields(method), **region_fields(region)}
        device, processes, workers = st.columns(3)
        launcher = {"device": device.selectbox("Device", DEVICES),
                    "processes": processes.number_input("Processes (torchrun when > 1)", 1, 16, 1,
                                                        help="One per GPU; more than one starts the run with "
                                                             "torch.distributed.run."),
                    "workers": workers.number_input("Data-loading processes (blank: automatic)", 0, 64, None, 1)}
        with st.expander("Optimiser, input size, evaluation split, re-mining and seed"):
            options.update(rare_fields(teacher_meta))
        with st.expander("Study: the same training for several arms and seeds"):
            study = study_fields()
        run, study_button = st.columns(2)
        start_run = run.form_submit_button("Start training", type="primary")
        start_study = study_button.form_submit_button("Start a study", help="One run per arm and seed in one folder, "
                                                      "then mean ± std per generation (python -m pasm study).")
    action = "run" if start_run else "study" if start_study else None
    return action, name, options, launcher, study


def check_data(config, typed):
    """The trainer's first look at its data, taken before a job starts so that the form, not a job's log, says
    what is wrong: a known kind, a path that exists, readable splits, a train split and one to evaluate on.
    An error names the spec as ``typed``, not as the config made it absolute."""
    what = f"data set spec {typed.strip() or '(empty)'}"
    try:
        splits = state.data_splits(config.data)
        evaluated = config.split or default_split(config.data)
    except PasmError as e:  # an error about the spec or its path is told once; one inside the data keeps its place
        raise PasmError(what, e.why if e.what in config.data else str(e)) from None
    for split in ("train", evaluated):
        if split not in splits:
            raise PasmError(what, f"has no {split!r} split (it has {', '.join(splits) or 'none'})")


def checked_config(options):
    """The form's TrainConfig, with what the job would refuse once started checked first: its teacher and data."""
    config = TrainConfig(**options)
    if config.teacher:
        teacher_metadata(config.teacher)
    check_data(config, options["data"])
    return config


def launch_study(config, options, run_dir, study, launcher, root):
    """A study as a job, checked as the study checks itself (its arms, seeds and their settings with ``options``);
    its card follows the runs the study plans (pasm.jobs' study_runs); started again, a study resumes (finished runs
    are kept), so its resume command is its own."""
    if launcher["processes"] > 1:
        raise PasmError("processes", "a study trains each run in one process; use 'Runs side by side' instead")
    seeds = parse_seeds(study["seeds"])
    check_study(study["arms"], seeds, options)
    argv = study_command(config, run_dir, study["arms"], seeds, study["parallel"], launcher["device"],
                         launcher["workers"])
    planned = [path.name for path in planned_runs(run_dir, study["arms"], seeds)]
    return jobs.launch(argv, run_dir, root=root, cwd=state.REPO_ROOT, resume_argv=argv, study_runs=planned)


def start_job(action, name, options, launcher, study, root):
    """Whatever the job would refuse once started is checked first, so the form says it and nothing launches. A run
    left unnamed is named by its data set, erasing (or "study") and start time."""
    try:
        config = checked_config(options)
        name = name.strip() or jobs.default_run_name(options["data"], config.erasing if action == "run" else "study")
        run_dir = jobs.new_run_dir(name, root).resolve()
        if action == "study":
            job = launch_study(config, options, run_dir, study, launcher, root)
        else:
            job = jobs.launch(train_command(config, run_dir, **launcher), run_dir, root=root, cwd=state.REPO_ROOT)
    except PasmError as e:
        state.show_error(e)
        return
    st.success(f"Started job {job.id} in `{display_path(job.run_dir, root.resolve())}`; "
               "it runs in the background and shows below.")


@st.fragment(run_every=2)
def job_list(root):
    """Redrawn every two seconds from the job registry and the run directories: one card per run."""
    jobs_view.show_resume_error()
    by_run = jobs.by_run(jobs.list_jobs(root))
    if not by_run:
        st.info(f"No jobs in `{root}` yet: start one above.")
        return
    active = sum(attempts[0].state in jobs.ACTIVE_STATES for attempts in by_run)
    st.caption(f"{len(by_run)} run(s) started here, {active} active; showing the newest "
               f"{min(len(by_run), SHOWN_RUNS)}.")
    for newest, *history in by_run[:SHOWN_RUNS]:
        jobs_view.job_card(newest, root, history)


root = runs_root()
st.title("Train")
st.caption(f"Runs directory: `{root}` · a run writes config.json, status.json, metrics.jsonl, train.log and "
           "gen<g>.safetensors there; results appear on the Generations and Runs pages.")
models = state.sidebar_models(student=False)
teacher, teacher_meta = teacher_picker(root, models.teacher)
action, name, options, launcher, study = training_form(state.default_data_spec(str(root)), teacher, teacher_meta)
if action:
    start_job(action, name, options, launcher, study, root)
st.subheader("Jobs")
job_list(root)

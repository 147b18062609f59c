"""Train: start PASM runs as background jobs and watch them.

A job outlives this page: it is a detached process that writes its run directory, and the job list
is read back from disk (pasm.jobs) every two seconds, so closing the browser or restarting the app
loses nothing, and several jobs can run side by side.
"""
import shlex

import streamlit as st

from pasm import jobs
from pasm.errors import PasmError
from pasm.options import ARCHITECTURES, ERASING, FILLS, STRATEGIES
from ui import figures, state

st.set_page_config(page_title="Train · PASM Studio", page_icon="🎭", layout="wide")

SHOWN_JOBS = 10
LOG_LINES = 15
RESUMABLE = ("stopped", "died", "failed")
RESUME_ERROR = "_train_resume_error"
STATE_ICONS = {"starting": "⏳", "running": "🏃", "stopping": "✋", "stopped": "⏸️", "done": "✅", "failed": "❌",
               "died": "💀"}


def training_form():
    """The run's settings, defaulting to the command line's; (submitted, TrainSettings)."""
    default = state.TrainSettings(name="", data="")
    architectures = sorted(ARCHITECTURES)
    with st.form("train_form"):
        name = st.text_input("Run name", placeholder="e.g. synth-pasm-3gen",
                             help="A folder under the runs directory: letters, digits, '-', '_' and '.'.")
        data = st.text_input("Data set spec", "synth:data/synth",
                             help="KIND:PATH, e.g. synth:data/synth (write one with `python -m pasm synth data/synth`), "
                                  "rafdb:RAF-DB/basic, fer2013:fer2013.csv, folder:my_faces.")
        model, method, region = st.columns(3)
        arch = model.selectbox("Architecture", architectures, index=architectures.index(default.arch))
        generations = model.number_input("Generations (students after the teacher)", 0, 20, default.generations)
        epochs = model.number_input("Epochs per generation", 1, 1000, default.epochs)
        batch = model.number_input("Batch size (per process)", 1, 4096, default.batch)
        erasing = method.selectbox("Erasing for the students", ERASING, index=ERASING.index(default.erasing),
                                   help="pasm: the region the teacher's points locate; random and attention "
                                        "(Grad-CAM) are the same-area baselines; none: distillation only.")
        lam = method.number_input("λ: weight of the teacher's soft labels", 0.0, 10.0, default.lam, 0.1)
        tau = method.number_input("τ: distillation temperature", 0.1, 20.0, default.tau, 0.5)
        p = method.number_input("p: probability that a face is erased", 0.0, 1.0, default.p, 0.05)
        strategy = region.selectbox("Region strategy", STRATEGIES, index=STRATEGIES.index(default.region))
        area = region.slider("Region area (fraction of the face)", 0.02, 0.5, default.area, 0.01)
        max_points = region.number_input("Max attack points", 1, 200, default.max_points)
        fill = region.selectbox("Fill of the erased region", FILLS, index=FILLS.index(default.fill))
        device, processes, seed, limit = st.columns(4)
        device = device.selectbox("Device", ["auto", "cpu", "cuda"])
        processes = processes.number_input("Processes (torchrun when > 1)", 1, 16, default.processes,
                                           help="One per GPU; more than one starts the run with torch.distributed.run.")
        seed = seed.number_input("Seed", 0, 2**31 - 1, default.seed)
        limit = limit.number_input("Use only the first N training images (0: all)", 0, 10**8, default.limit)
        distill = st.checkbox("Students also learn the teacher's soft labels (distillation)", default.distill)
        submitted = st.form_submit_button("Start training", type="primary")
    settings = state.TrainSettings(name=name, data=data, arch=arch, generations=generations, epochs=epochs,
                                   erasing=erasing, lam=lam, tau=tau, p=p, region=strategy, area=area,
                                   max_points=max_points, device=device, processes=processes, seed=seed, limit=limit,
                                   batch=batch, fill=fill, distill=distill)
    return submitted, settings


def start_job(settings, root):
    try:
        run_dir = state.new_run_dir(settings, root)
        job = jobs.launch(settings.argv(run_dir), run_dir, root=root, cwd=state.REPO_ROOT)
    except PasmError as e:
        state.show_error(e)
        return
    st.success(f"Started job {job.id} in `{state.checkpoint_label(job.run_dir, root.resolve())}`; "
               "it runs in the background and shows below.")


def progress_text(job, status):
    parts = [job.state]
    if status.get("generation") is not None:
        parts.append(f"generation {status['generation']}")
    if status.get("epoch") is not None:
        parts.append(f"epoch {status['epoch']}")
    eta = status.get("eta_seconds")
    if isinstance(eta, (int, float)) and job.state in jobs.ACTIVE_STATES:
        minutes, seconds = divmod(int(eta), 60)
        parts.append(f"ETA {minutes} min {seconds:02d} s" if minutes else f"ETA {seconds} s")
    return " · ".join(parts)


def resume_job(job, root):
    """A button callback: it runs before the list is redrawn, so the new job shows at once."""
    try:
        jobs.resume(job, root)
    except PasmError as e:
        st.session_state[RESUME_ERROR] = str(e)


def job_buttons(job, newest_of_run, root):
    stop, kill, resume = st.columns(3)
    active = job.state in jobs.ACTIVE_STATES
    stop.button("Stop", key=f"stop_{job.id}", disabled=not active, on_click=jobs.stop, args=(job,),
                help="Stop at the next step; it can be resumed.")
    kill.button("Kill", key=f"kill_{job.id}", disabled=not active, on_click=jobs.kill, args=(job,),
                help="End it at once, workers included; it can be resumed from its last epoch.")
    resume.button("Resume", key=f"resume_{job.id}", disabled=not (newest_of_run and job.state in RESUMABLE),
                  on_click=resume_job, args=(job, root), help="Start it again from its last epoch, as a new job.")


def job_card(job, newest_of_run, root):
    status = job.status
    run = state.checkpoint_label(job.run_dir, root.resolve())
    with st.container(border=True):
        st.markdown(f"{STATE_ICONS.get(job.state, '')} **{run}** · {job.state} · job `{job.id}` · started "
                    f"{job.started[:19].replace('T', ' ')} UTC")
        progress = status.get("progress")
        value = min(max(float(progress), 0.0), 1.0) if isinstance(progress, (int, float)) else 0.0
        st.progress(value, text=progress_text(job, status))
        if status.get("error"):
            st.error(str(status["error"]), icon="🚫")
        job_buttons(job, newest_of_run, root)
        with st.expander("Metrics and log", expanded=job.state in jobs.ACTIVE_STATES):
            try:
                records = state.read_metrics(job.run_dir / "metrics.jsonl")
            except PasmError as e:
                state.show_error(e)
                records = []
            if records:
                st.plotly_chart(figures.training_curves(records, title="Latest metrics"), key=f"metrics_{job.id}")
            st.code(jobs.tail(job, LOG_LINES) or "(nothing logged yet)", language=None)
            st.code(shlex.join(job.argv), language="bash", wrap_lines=True)


@st.fragment(run_every=2)
def job_list(root):
    """Redrawn every two seconds from the job registry and the run directories."""
    if RESUME_ERROR in st.session_state:
        st.error(st.session_state.pop(RESUME_ERROR), icon="🚫")
    found = jobs.list_jobs(root)
    if not found:
        st.info(f"No jobs in `{root}` yet: start one above.")
        return
    active = sum(job.state in jobs.ACTIVE_STATES for job in found)
    st.caption(f"{len(found)} job(s), {active} active; showing the newest {min(len(found), SHOWN_JOBS)}.")
    seen_runs = set()
    for job in found[:SHOWN_JOBS]:
        job_card(job, job.run_dir not in seen_runs, root)
        seen_runs.add(job.run_dir)


root = state.runs_root()
st.title("Train")
st.caption(f"Runs directory: `{root}` · a run writes config.json, status.json, metrics.jsonl, train.log and "
           "gen<g>.safetensors there; results appear on the Generations and Runs pages.")
submitted, settings = training_form()
if submitted:
    start_job(settings, root)
st.subheader("Jobs")
job_list(root)

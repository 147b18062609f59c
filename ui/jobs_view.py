"""Job cards, one renderer for the Train and Runs pages (the Home page's demo card uses its parts): state
and progress, why a job died or failed (pasm.jobs.failure, in plain text), the end of its log, and Stop,
Kill and Resume buttons."""
import shlex

import streamlit as st

from pasm import jobs
from pasm.errors import PasmError
from pasm.runs import display_path, read_metrics
from ui import run_figures, state

LOG_LINES = 15
RESUMABLE = ("stopped", "died", "failed")
RESUME_ERROR = "_jobs_resume_error"
# Material Symbols in markdown (streamlit ships the font; emoji are empty boxes without an emoji font).
STATE_ICONS = {"starting": ":material/hourglass_top:", "running": ":blue[:material/directions_run:]",
               "stopping": ":material/front_hand:", "stopped": ":material/pause_circle:",
               "done": ":green[:material/check_circle:]", "failed": ":red[:material/cancel:]",
               "died": ":red[:material/heart_broken:]"}


def newest_job(run_dir, root):
    """The newest job that ran in ``run_dir``, None when no job did (a run the command line trained, say)."""
    run_dir = run_dir.resolve()
    return next((job for job in jobs.list_jobs(root) if job.run_dir == run_dir), None)


def progress_text(job, status):
    """State, generation, epoch and, while the job runs, the time left, in one line under its progress bar."""
    parts = [job.state]
    if status.get("generation") is not None:
        parts.append(f"generation {status['generation']}")
    if status.get("epoch") is not None:
        parts.append(f"epoch {status['epoch']}")
    eta = status.get("eta_seconds")
    if isinstance(eta, (int, float)) and job.state in jobs.ACTIVE_STATES:
        minutes, seconds = divmod(round(eta), 60)
        parts.append(f"about {minutes} min {seconds:02d} s left" if minutes else f"about {seconds} s left")
    return " · ".join(parts)


def show_progress(job, status):
    """The job's progress bar (status.json's ``progress``, 0 until the first step) with ``progress_text`` under it."""
    progress = status.get("progress")
    value = min(max(float(progress), 0.0), 1.0) if isinstance(progress, (int, float)) else 0.0
    st.progress(value, text=progress_text(job, status))


def show_failure(job, what="The job"):
    """Why the job died or failed, as plain text: a log line read as markdown loses its underscores and stars."""
    reason = jobs.failure(job)
    if reason:
        state.show_error(f"{what} {job.state}: {reason}")


def resume_job(job, root):
    """A button callback: it runs before the page is redrawn, so the new job shows at once."""
    try:
        jobs.resume(job, root)
    except PasmError as e:
        st.session_state[RESUME_ERROR] = str(e)


def show_resume_error():
    """The error of a Resume click, which its callback could not show itself."""
    if RESUME_ERROR in st.session_state:
        state.show_error(st.session_state.pop(RESUME_ERROR))


def job_buttons(job, newest_of_run, root):
    stop, kill, resume = st.columns(3)
    active = job.state in jobs.ACTIVE_STATES
    stop.button("Stop", key=f"stop_{job.id}", disabled=not active, on_click=jobs.stop, args=(job,),
                help="Stop at the next step; it can be resumed.")
    kill.button("Kill", key=f"kill_{job.id}", disabled=not active, on_click=jobs.kill, args=(job,),
                help="End it at once, workers included; it can be resumed from its last epoch.")
    resume.button("Resume", key=f"resume_{job.id}", disabled=not (newest_of_run and job.state in RESUMABLE),
                  on_click=resume_job, args=(job, root), help="Start it again from its last epoch, as a new job.")


def job_card(job, newest_of_run, root, metrics=True):
    """One job in a bordered box; ``metrics`` adds its curves (the Runs page draws the run's own)."""
    status = job.status
    run = display_path(job.run_dir, root.resolve())
    with st.container(border=True):
        st.markdown(f"{STATE_ICONS.get(job.state, '')} **{run}** · {job.state} · job `{job.id}` · started "
                    f"{job.started[:19].replace('T', ' ')} UTC")
        show_progress(job, status)
        show_failure(job)
        job_buttons(job, newest_of_run, root)
        with st.expander("Metrics and log" if metrics else "Log", expanded=job.state in jobs.ACTIVE_STATES):
            if metrics:
                show_metrics(job)
            st.code(jobs.tail(job, LOG_LINES) or "(nothing logged yet)", language=None)
            st.code(shlex.join(job.argv), language="bash", wrap_lines=True)


def show_metrics(job):
    try:
        records = read_metrics(job.run_dir / "metrics.jsonl")
    except PasmError as e:
        state.show_error(e)
        return
    if records:
        st.plotly_chart(run_figures.training_curves(records, title="Latest metrics"), key=f"metrics_{job.id}")

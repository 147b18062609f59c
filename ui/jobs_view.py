"""Job cards, one renderer for the Train and Runs pages (the Home page's demo card uses its parts): one card per
run, its newest job's state and progress (images mined while a run mines, runs finished for a study), why it died
or failed (pasm.jobs.failure, in plain text) or that it was killed on request, a damaged status.json by name, the
run's earlier attempts folded inside, the end of its log, and Stop, Kill and Resume buttons."""
import shlex

import streamlit as st

from pasm import jobs
from pasm.errors import PasmError
from pasm.runs import display_path, read_metrics
from ui import run_figures, state

LOG_LINES = 15
RESUMABLE = ("stopped", "killed", "died", "failed")
RESUME_ERROR = "_jobs_resume_error"
# Material Symbols in markdown (streamlit ships the font; emoji are empty boxes without an emoji font).
STATE_ICONS = {"starting": ":material/hourglass_top:", "running": ":blue[:material/directions_run:]",
               "stopping": ":material/front_hand:", "stopped": ":material/pause_circle:",
               "done": ":green[:material/check_circle:]", "failed": ":red[:material/cancel:]",
               "killed": ":orange[:material/stop_circle:]", "died": ":red[:material/heart_broken:]"}


def run_jobs(run_dir, root):
    """The jobs that ran in ``run_dir``, newest first; empty when none did (a run the command line trained, say)."""
    run_dir = run_dir.resolve()
    return [job for job in jobs.list_jobs(root) if job.run_dir == run_dir]


def newest_job(run_dir, root):
    """The newest job that ran in ``run_dir``, None when no job did."""
    return next(iter(run_jobs(run_dir, root)), None)


def progress_text(job, status):
    """State, generation, epoch (or images mined, or a study's runs finished) and, while the job runs, the time
    left, in one line under its progress bar."""
    parts = [job.state]
    if status.get("generation") is not None:
        parts.append(f"generation {status['generation']}")
    detail = jobs.progress_line(job, status)
    if detail:
        parts.append(detail)
    elif status.get("epoch") is not None:
        parts.append(f"epoch {status['epoch']}")
    eta = status.get("eta_seconds")
    if isinstance(eta, (int, float)) and job.state in jobs.ACTIVE_STATES:
        minutes, seconds = divmod(round(eta), 60)
        parts.append(f"about {minutes} min {seconds:02d} s left" if minutes else f"about {seconds} s left")
    return " · ".join(parts)


def progress_value(job, status):
    """The bar: the images mined while the run mines, else status.json's ``progress`` (0 until the first step), full
    once done (whose status may be damaged: the run's files said it finished)."""
    mined = jobs.mining_counts(status)
    if job.state in jobs.ACTIVE_STATES and mined:
        progress = mined[0] / mined[1]
    else:
        progress = 1.0 if job.state == "done" else status.get("progress")
    return min(max(float(progress), 0.0), 1.0) if isinstance(progress, (int, float)) else 0.0


def show_progress(job, status):
    """The job's progress bar (``progress_value``) with ``progress_text`` under it."""
    st.progress(progress_value(job, status), text=progress_text(job, status))


def show_failure(job, what="The job"):
    """Why the job died or failed, as plain text (a log line read as markdown loses its underscores and stars); a job
    killed on request is no failure, and says so without alarm."""
    if job.state == "killed":
        st.info(f"{what} was killed on request; Resume carries on from its last complete epoch.",
                icon=":material/stop_circle:")
        return
    reason = jobs.failure(job)
    if reason:
        state.show_error(f"{what} {job.state}: {reason}")


def show_status_problem(job):
    """A status.json that cannot be read, by name; the state shown then comes from the process and the run's files."""
    problem = job.status_error
    if problem:
        st.warning(state.markdown_literal(f"{problem}. The state shown comes from the job's process and the run's "
                                          "summary.json and checkpoints."), icon=":material/warning:")


def keep_error(key, error):
    """Keep an error for the next run, as ``state.notify`` keeps a message: a button callback (Resume, Delete) runs
    before the page is drawn and cannot show it itself."""
    st.session_state[key] = str(error)


def show_kept_error(key):
    """The error ``keep_error`` kept under ``key``, once (``state.show_error``)."""
    if key in st.session_state:
        state.show_error(st.session_state.pop(key))


def resume_job(job, root):
    """A button callback: it runs before the page is redrawn, so the new job shows at once."""
    try:
        jobs.resume(job, root)
    except PasmError as e:
        keep_error(RESUME_ERROR, e)


def show_resume_error():
    """The error of a Resume click, which its callback could not show itself."""
    show_kept_error(RESUME_ERROR)


def job_buttons(job, root):
    stop, kill, resume = st.columns(3)
    active = job.state in jobs.ACTIVE_STATES
    stop.button("Stop", key=f"stop_{job.id}", disabled=not active, on_click=jobs.stop, args=(job,),
                help="Stop at the next step; it can be resumed.")
    kill.button("Kill", key=f"kill_{job.id}", disabled=not active, on_click=jobs.kill, args=(job, root),
                help="End it at once, workers included; it can be resumed from its last epoch.")
    resume.button("Resume", key=f"resume_{job.id}", disabled=job.state not in RESUMABLE,
                  on_click=resume_job, args=(job, root), help="Start it again from its last epoch, as a new job.")


def started(job):
    return f"{job.started[:19].replace('T', ' ')} UTC"


def show_history(attempts):
    """The run's jobs, newest first, and how each ended: a run stopped, killed and resumed is one card, not three."""
    with st.expander(f"History: {len(attempts)} attempts"):
        st.table([{"attempt": len(attempts) - i, "job": job.id, "started": started(job),
                   "how it ended": state.markdown_literal(jobs.ending(job))} for i, job in enumerate(attempts)])


def job_card(job, root, history=(), metrics=True):
    """A run's card: its newest job ``job`` in a bordered box, the run's earlier jobs (``history``, newest first)
    folded inside; ``metrics`` adds its curves (the Runs page draws the run's own)."""
    status = job.status
    run = display_path(job.run_dir, root.resolve())
    kind = " · study" if job.study_runs is not None else ""
    with st.container(border=True):
        st.markdown(f"{STATE_ICONS.get(job.state, '')} **{run}**{kind} · {job.state} · job `{job.id}` · started "
                    f"{started(job)}")
        show_progress(job, status)
        show_status_problem(job)
        show_failure(job)
        job_buttons(job, root)
        if history:
            show_history([job, *history])
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

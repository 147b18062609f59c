"""Runs: every run and study under the runs directory, with its settings, curves, per-generation results,
confusion matrices, study tables and checkpoint downloads, and a confirmed Delete. A damaged run shows its errors,
not a traceback."""
import functools

import streamlit as st

from pasm import jobs
from pasm.checkpoint_store import summary_line
from pasm.errors import PasmError
from pasm.runs import display_path, find_runs, generation_table, per_class_accuracies, read_run, runs_root
from ui import jobs_view, run_figures, state

st.set_page_config(page_title="Runs · PASM Studio")

CHOSEN = "runs_chosen"
DELETED = "_runs_deleted"
DELETE_ERROR = "_runs_delete_error"


def state_from_files(run):
    """A run with no readable status and no job: "done" when its files hold every generation (pasm.runs)."""
    return "done" if run.finished else "-"


def overview_row(run, root, job_states):
    accuracies = [g.get("test_accuracy") for g in run.generations if isinstance(g.get("test_accuracy"), (int, float))]
    config = run.config or {}
    return {
        "run": display_path(run.path, root),
        "kind": "study" if run.is_study else "run",
        "state": job_states.get(run.path.resolve(), (run.status or {}).get("state") or state_from_files(run)),
        "data": config.get("data", (run.study or {}).get("data", "-")),
        "erasing": config.get("erasing", "-"),
        "student generations": None if run.is_study else run.student_generations,
        "best test accuracy": round(max(accuracies), 4) if accuracies else None,
        "problems": "; ".join(run.errors),
    }


def show_overview(runs, root):
    """A run's state is its newest job's where it has one: a job that died leaves its status saying "running"."""
    job_states = {job.run_dir: job.state for job in reversed(jobs.list_jobs(root))}
    st.dataframe([overview_row(run, root, job_states) for run in runs], hide_index=True, width="stretch")


def show_generations(run):
    if "summary" in run.damaged:
        st.warning("summary.json is damaged (its error is above), so the finished generations cannot be shown.",
                   icon=":material/warning:")
        return
    if not run.generations:
        st.info("No finished generation yet: summary.json appears when the first one is evaluated.")
        return
    st.plotly_chart(run_figures.generation_curves(run.generations))
    per_class = per_class_accuracies(run)
    if per_class:
        st.plotly_chart(run_figures.per_class_accuracy(per_class))
    st.dataframe(generation_table(run), hide_index=True, width="stretch")


def show_confusions(run):
    matrices = run.confusions()
    if not matrices:
        st.info("No confusion matrices yet: metrics.jsonl gets one when a generation is evaluated.")
        return
    names = [f"generation {g}" for g, _ in matrices]
    chosen = st.multiselect("Generations", names, default=names[-2:], key=f"confusions_{run.path}")
    columns = st.columns(2)
    shown = [(name, matrix) for name, (_, matrix) in zip(names, matrices) if name in chosen]
    for i, (name, matrix) in enumerate(shown):
        with columns[i % 2]:
            st.plotly_chart(run_figures.confusion_heatmap(matrix, run.classes, title=f"Confusion matrix, {name}"))


def show_study(run):
    if run.study_md:
        st.markdown(run.study_md)
    results = (run.study or {}).get("results")
    if isinstance(results, dict):
        from pasm.study import figure

        try:
            st.plotly_chart(figure(results))
        except (KeyError, TypeError, ValueError) as e:
            state.show_error(f"{run.path / 'study.json'}: damaged results ({e.__class__.__name__}: {e})")
    if run.study is not None:
        with st.expander("study.json"):
            st.json(run.study, expanded=False)
    if (run.path / "study.html").is_file():
        st.download_button("Download study.html", functools.partial((run.path / "study.html").read_bytes),
                           file_name=f"{run.path.name}-study.html", mime="text/html", on_click="ignore",
                           key=f"study_html_{run.path}")


def show_downloads(run):
    checkpoints = run.checkpoints()
    if not checkpoints:
        st.info("No checkpoints in this run yet.")
        return
    for path in checkpoints:
        info = state.checkpoint_info(path)
        left, right = st.columns([3, 1])
        if "error" in info:
            with left:
                state.show_error(info["error"])
        else:
            left.markdown(f"`{path.name}` · {path.stat().st_size / 2**20:.1f} MB"
                          + (f" · {summary_line(info['meta'])}" if info["meta"] else " · no pasm metadata"))
        right.download_button("Download", functools.partial(path.read_bytes), file_name=path.name,
                              mime="application/octet-stream", on_click="ignore", key=f"download_{path}")


@st.fragment(run_every=2)
def run_job(run_dir, root):
    """The run's card, redrawn every two seconds: its newest job's state, why it died or failed, Stop, Kill and
    Resume, and the earlier attempts."""
    jobs_view.show_resume_error()
    attempts = jobs_view.run_jobs(run_dir, root)
    if attempts:
        jobs_view.job_card(attempts[0], root, attempts[1:], metrics=False)


def delete_clicked(path, root):
    """The Delete button's callback, run before the page is redrawn: the page then lists the runs without it."""
    try:
        removed = jobs.delete_run(path, root, confirmed=True)
    except PasmError as e:
        jobs_view.keep_error(DELETE_ERROR, e)
        return
    st.session_state.pop(CHOSEN, None)
    state.notify(DELETED, f"Deleted {display_path(path, root)} and {len(removed)} job record(s).")


def show_delete(run, root):
    """Delete, behind a confirmation: the run's folder goes for good, with its jobs' records; refused while a job
    runs there (pasm.jobs.delete_run)."""
    with st.expander("Delete this run"):
        label = display_path(run.path, root)
        sure = st.checkbox(f"Yes, delete `{label}` and every file in it for good", key=f"delete_sure_{label}")
        st.button("Delete run", disabled=not sure, key=f"delete_{label}", on_click=delete_clicked, args=(run.path, root))


def show_run(run, root):
    for error in run.errors:
        state.show_error(error)
    status = run.status or {}
    if jobs_view.newest_job(run.path, root) is not None:
        run_job(run.path, root)
    elif status:
        progress = status.get("progress")
        detail = f" · {progress:.0%}" if isinstance(progress, (int, float)) else ""
        st.markdown(f"**State:** {status.get('state', '?')}{detail}")
        if status.get("error"):
            state.show_error(status["error"])
    if run.config is not None:
        with st.expander("Configuration (config.json)"):
            st.json(run.config)
    show_delete(run, root)
    names = (["Study"] if run.is_study else []) + ["Training curves", "Generations", "Confusion matrices", "Checkpoints"]
    tabs = dict(zip(names, st.tabs(names)))
    if run.is_study:
        with tabs["Study"]:
            show_study(run)
    with tabs["Training curves"]:
        if run.metrics:
            st.plotly_chart(run_figures.training_curves(run.metrics))
        else:
            st.info("No metrics.jsonl lines yet.")
    with tabs["Generations"]:
        show_generations(run)
    with tabs["Confusion matrices"]:
        show_confusions(run)
    with tabs["Checkpoints"]:
        show_downloads(run)


root = runs_root()
st.title("Runs")
state.show_notice(DELETED)
jobs_view.show_kept_error(DELETE_ERROR)
paths = find_runs(root)
if not paths:
    st.info(f"No runs in `{root}` yet: start one on the Train page, or train the demo on the Home page.")
    st.stop()
runs = [read_run(path) for path in paths]
show_overview(runs, root)
labels = [display_path(path, root) for path in paths]
chosen = st.selectbox("Run or study", range(len(runs)), format_func=labels.__getitem__, key=CHOSEN)
st.subheader(labels[chosen])
with state.stop_on_error():
    show_run(runs[chosen], root)

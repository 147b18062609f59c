"""Generations: how a run's teachers change from one generation to the next, on the same faces.

Every generation's checkpoint attacks the same faces (pasm.report.face_reports): where its points
land, which region it would erase and what it predicts, side by side, with the overlap of the
regions between consecutive generations and the run's accuracy across generations.
"""
import streamlit as st

from pasm.errors import PasmError
from pasm.explorer import AttackSettings
from pasm.faces import align_face
from pasm.options import STRATEGIES
from pasm.report import compare_generations, dataset_faces
from pasm.runs import display_path, find_runs, per_class_accuracies, read_run, runs_root
from ui import attack_figures, run_figures, state

st.set_page_config(page_title="Generations · PASM Studio")

SOURCES = ("sample photo", "upload", "test faces from the run's data")
MAX_DATA_FACES = 6


def choose_run(root):
    """A run directory whose summary names at least one generation; None when there is none."""
    runs = [read_run(path) for path in find_runs(root)]
    for run in runs:
        for error in run.errors:
            state.show_error(error)
    runs = [run for run in runs if run.generations]
    if not runs:
        st.info(f"No run with finished generations in `{root}` yet: train one on the Train page "
                "(or the demo on the Home page); generations appear once the run writes summary.json.")
        return None
    labels = [display_path(run.path, root) for run in runs]
    chosen = st.selectbox("Run", range(len(runs)), format_func=labels.__getitem__, key="generations_run")
    return runs[chosen]


def load_generations(run, device):
    """(generation entries, checkpoints) for the generations whose checkpoint loads; errors are shown."""
    entries, checkpoints = [], []
    for entry in run.generations:
        try:
            checkpoints.append(state.load_model(run.checkpoint(entry), device=device))
            entries.append(entry)
        except PasmError as e:
            state.show_error(e)
    return entries, checkpoints


def photo_faces(size, source):
    """The chosen photo's best face aligned at the model's input size, or its centre square when none is found."""
    if source == "upload":
        upload = state.photo_uploader("Photo with a face", "generations_upload")
        if upload is None:
            return None
        data, name = upload.getvalue(), upload.name
    else:
        data, name = state.SAMPLE_FACE.read_bytes(), state.SAMPLE_FACE.name
    digest = state.image_digest(data)
    photo = state.load_photo(data, name)
    found = state.detect_faces(digest, photo)
    if not found:
        st.warning(state.markdown_literal(f"No face found in {name}: its centre square is used."))
    return digest, [align_face(photo, found[0] if found else None, size)], None


def choose_faces(run, size):
    """(key, aligned faces, true labels or None) for the chosen source, or None while there is nothing to show."""
    source = st.radio("Faces", SOURCES, horizontal=True, key="generations_source")
    if source != SOURCES[2]:
        return photo_faces(size, source)
    spec = (run.config or {}).get("data") or (run.summary or {}).get("data")
    if not spec:
        state.show_error(f"{run.path / 'config.json'}: names no data set, so there are no test faces to use")
        return None
    count = st.slider("How many test faces", 1, MAX_DATA_FACES, 3, key="generations_count")
    faces, labels = dataset_faces(spec, count, size)
    return f"{spec}:{count}", faces, labels


def settings_form():
    with st.form("generations_settings"):
        left, middle, right = st.columns(3)
        max_points = left.slider("Max points", 1, 100, 20)
        strategy = middle.selectbox("Region strategy", STRATEGIES)
        area = right.slider("Region area (fraction of the face)", 0.02, 0.5, 0.10, 0.01)
        run = st.form_submit_button("Compare generations", type="primary")
    return AttackSettings(max_points=max_points, strategy=strategy, area=area), run


def show_comparison(results, labels):
    st.plotly_chart(attack_figures.generation_faces(results, labels))
    st.caption("Point colours give the attack order (dark first, yellow last); the cyan box is the region PASM "
               "would erase. Hover a point for its number.")
    if len(results) > 1:
        st.plotly_chart(attack_figures.region_overlap(results))
        rows = []
        for previous, entry in zip(results, results[1:]):
            for face, (m, b) in enumerate(zip(entry["mask_iou"] or [], entry["box_iou"] or [])):
                rows.append({"generations": f"{previous['index']} → {entry['index']}", "face": face + 1,
                             "mask IoU": m, "box IoU": b})
        st.dataframe(rows, hide_index=True, width="stretch")


def show_class_mapping(run):
    """An adopted teacher whose classes were named or ordered unlike the data set's (pasm.emotions) says how they matched."""
    for entry in run.generations:
        mapping = entry.get("class_mapping")
        if mapping and mapping != "identical":
            st.caption(f"Generation {entry['index']} is the teacher {entry.get('source', '')} with its classes matched "
                       f"to the data set's by name (teacher->data set): {mapping}.")


def show_metrics(run):
    show_class_mapping(run)
    curves, classes = st.columns(2)
    curves.plotly_chart(run_figures.generation_curves(run.generations))
    per_class = per_class_accuracies(run)
    if per_class:
        classes.plotly_chart(run_figures.per_class_accuracy(per_class))


def compare(run, entries, checkpoints, device):
    size = checkpoints[0].model.input_spec.size
    chosen = choose_faces(run, size)
    settings, clicked = settings_form()
    if chosen is None:
        return
    faces_key, faces, labels = chosen
    files = tuple((str(c.path), c.sha256) for c in checkpoints)
    key = (str(run.path), files, faces_key, tuple(sorted(settings.to_dict().items())))
    store = state.session_results("generations")
    if clicked and key not in store:
        with st.spinner(f"Attacking {len(faces)} face(s) with {len(checkpoints)} generation(s)…"):
            store[key] = compare_generations(
                checkpoints, faces, settings.attack_config(), settings.region_config(), device=device,
                indices=[entry["index"] for entry in entries])
    if key in store:
        show_comparison(store[key], labels)
    else:
        st.info("Press **Compare generations** to attack these faces with every generation.")


root = runs_root()
st.title("Generations")
device = state.app_device()
run = choose_run(root)
if run is not None:
    with state.stop_on_error():
        entries, checkpoints = load_generations(run, device)
        st.subheader("Test results per generation")
        show_metrics(run)
        st.subheader("The same faces through every generation")
        if checkpoints:
            compare(run, entries, checkpoints, device)

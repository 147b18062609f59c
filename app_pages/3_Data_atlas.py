"""Data set atlas: where the teacher's attack points land over many faces of a data set, per class."""
import streamlit as st

from pasm.atlas import GRID_REGIONS, LAYOUT_GRID, LAYOUT_MESH, LAYOUT_SYNTH, label_map, map_dataset
from pasm.data import open_dataset
from pasm.data.transforms import eval_transform
from pasm.errors import PasmError
from pasm.faces import REGIONS
from pasm.report import sample_indices
from pasm.runs import runs_root
from ui import atlas_figures, state

st.set_page_config(page_title="Data set atlas · PASM Studio")

LAYOUT_NOTES = {
    LAYOUT_SYNTH: ("SynthFER's fixed face layout", "the generator draws every face with the same geometry, "
                   "up to a small pose jitter, so no face mesh is needed"),
    LAYOUT_MESH: ("the mediapipe face mesh", "on each image, upscaled"),
    LAYOUT_GRID: ("a coarse thirds grid", "where the face mesh found no face: upper third brows/eyes, "
                  "middle nose, lower mouth"),
}


def choose_data(root):
    spec = st.text_input("Data set spec (KIND:PATH)", value=state.default_data_spec(str(root)), key="atlas_spec",
                         placeholder="synth:runs/demo/data, rafdb:~/RAF-DB/basic, folder:~/faces, ...")
    if not spec.strip():
        st.info("Type a data set spec. The demo run writes a SynthFER set under the runs directory; "
                "see the README for RAF-DB, FER2013, FERPlus, AffectNet and image folders.")
        return None
    try:
        splits = state.data_splits(spec.strip())
    except PasmError as e:
        state.show_error(e)
        return None
    if not splits:
        state.show_error(f"{spec}: the data set has no split with images")
        return None
    left, middle, right = st.columns(3)
    split = left.selectbox("Split", splits, index=splits.index("test") if "test" in splits else 0, key="atlas_split")
    count = middle.number_input("Faces to attack (N)", min_value=1, max_value=5000, value=128, step=16, key="atlas_n")
    max_points = right.slider("Max points per face", 1, 50, 20, key="atlas_points")
    return spec.strip(), split, int(count), int(max_points)


def map_points(teacher, device, spec, split, count, max_points):
    """Attack the faces batch by batch under a progress bar; None (after an error message) on bad data."""
    try:
        dataset = open_dataset(spec, split, transform=eval_transform(teacher.model.input_spec))
    except PasmError as e:
        state.show_error(e)
        return None
    indices = sample_indices(len(dataset), count)
    if not indices:
        state.show_error(f"{spec}: split {split!r} has no images")
        return None
    labels, mapping = label_map(dataset.classes, teacher.classes)
    bar = st.progress(0.0, text="Attacking…")
    atlas = None
    try:
        for atlas, done in map_dataset(teacher, dataset, indices, max_points, labels=labels,
                                       synth=spec.startswith("synth:"), device=device):
            bar.progress(done / len(indices), text=f"{done} / {len(indices)} faces attacked")
    except PasmError as e:
        state.show_error(e)
        return None
    bar.empty()
    return {"atlas": atlas, "use_labels": labels is not None, "mapping": mapping, "spec": spec, "split": split}


def layout_note(atlas):
    used = "; ".join(f"{LAYOUT_NOTES[name][0]} on {count} faces ({LAYOUT_NOTES[name][1]})"
                     for name, count in atlas.layouts.most_common())
    return f"Facial regions named with {used}."


def show_atlas(result):
    atlas = result["atlas"]
    grouping = "true class" if result["use_labels"] else "the teacher's predicted class"
    identical = result.get("mapping", "identical") == "identical"
    mapping = state.markdown_literal(result.get("mapping", "identical"))
    if not result["use_labels"]:
        st.info(f"The teacher does not know every class of this data set ({mapping}), so each face is attacked away "
                "from the teacher's own prediction and grouped by it.")
    st.caption(f"{int(atlas.faces.sum())} faces of {state.markdown_literal(result['spec'])} ({result['split']}), "
               f"grouped by {grouping}. " + layout_note(atlas))
    if result["use_labels"] and not identical:
        st.caption(f"The teacher's classes were matched to the data set's by name (teacher->data set): {mapping}. "
                   "Rows use the teacher's names.")
    left, right = st.columns([2, 3])
    with left:
        st.plotly_chart(atlas_figures.density_map(atlas.density(), atlas.mean_face(),
                                            title="Point density, all classes"))
    with right:
        shares = atlas.shares()
        order = [r for r in dict.fromkeys((*REGIONS, *GRID_REGIONS)) if any(r in s for s in shares.values())]
        st.plotly_chart(atlas_figures.region_shares(shares, order))
    present = [i for i, n in enumerate(atlas.faces) if n]
    st.plotly_chart(atlas_figures.class_density_maps({atlas.classes[i]: atlas.density(i) for i in present},
                                               {atlas.classes[i]: atlas.mean_face(i) for i in present}))
    st.dataframe(atlas.class_rows(), hide_index=True, width="stretch")


st.title("Data set atlas")
st.caption("Where the teacher's attack points land over many faces of a data set: their average density over the "
           "face and their share per facial region, per class.")
models = state.sidebar_models(student=False)
if models.teacher is None:
    st.info("Choose a teacher in the sidebar, or get one on the Home page, to map its attack points.")
    st.stop()

choice = choose_data(runs_root())
if choice is None:
    st.stop()
run = st.button("Map attack points", type="primary")
key = (*choice, models.teacher.sha256, models.device)
results = state.session_results("atlas")
if run and key not in results:
    mapped = map_points(models.teacher, models.device, *choice)
    if mapped is None:
        st.stop()
    results[key] = mapped
result = results.get(key)
if result is None:
    st.info("Press **Map attack points** to attack the faces.")
    st.stop()
show_atlas(result)

"""Attack explorer: one face, the teacher's point attack on it, and PASM's erasing beside random and
attention erasing at the same area."""
import streamlit as st

from pasm import explorer
from pasm.attack import FLIP_CAP_FRACTION, flip_cap
from pasm.faces import REGIONS, align_face
from pasm.images import IMAGE_SUFFIXES
from pasm.options import FILLS, STRATEGIES
from ui import explorer_cache, state

st.set_page_config(page_title="Attack explorer · PASM Studio")
APPLIED_KEY = "explorer_applied_settings"


def choose_image():
    """(bytes, name) of the face to analyse: the camera when switched on, else an upload or the sample photo."""
    if st.toggle("Use the camera", key="explorer_camera",
                 help="The browser asks for the camera only once this is on."):
        shot = st.camera_input("Take a photo of a face")
        return (shot.getvalue(), "camera.jpg") if shot is not None else (None, None)
    source = st.radio("Face from", ["sample photo", "upload"], horizontal=True, key="explorer_source")
    if source == "upload":
        upload = state.photo_uploader("Photo with a face", "explorer_upload")
        return (upload.getvalue(), upload.name) if upload is not None else (None, None)
    return state.SAMPLE_FACE.read_bytes(), state.SAMPLE_FACE.name


def choose_face(photo, found, digest):
    """Index of the chosen face, or -1 for the whole image; None when there is nothing to analyse."""
    if found:
        labels = [f"face {i + 1} (detection score {face.score:.2f})" for i, face in enumerate(found)]
        index = st.selectbox("Face", range(len(found)), format_func=labels.__getitem__,
                             key=f"explorer_face_{digest[:16]}")
    else:
        st.warning("No face found in this image.")
        index = -1 if st.checkbox("Use the whole image (its centre square) instead", key="explorer_whole") else None
    st.plotly_chart(explorer_cache.photo_faces(digest, [f.box for f in found], [f.score for f in found],
                                      index if index is not None else -1, photo))
    return index


def settings_form(input_size):
    """The settings of the attack shown: those applied by the last **Run attack** (the defaults at first).

    The attack runs until the prediction flips (the paper's rule) unless a fixed budget is chosen; the cap that bounds
    it is shown, since it depends on the teacher's input size. That choice sits above the form, so that ticking it
    greys the budget slider out at once (a widget inside a form tells the page nothing until the form is sent); it
    takes effect, like the rest, on **Run attack**. The widgets start from the applied settings, so a page opened
    again shows what its result was computed with."""
    cap = flip_cap(input_size, input_size)
    applied = st.session_state.get(APPLIED_KEY, explorer.AttackSettings())
    until_flip = st.checkbox(
        f"Attack until it flips (at most {cap} points)", value=applied.max_points is None, key="explorer_until_flip",
        help=f"The cap is {FLIP_CAP_FRACTION:.0%} of the teacher's {input_size}×{input_size} input. "
             "Untick it to set a fixed budget below.")
    with st.form("explorer_settings"):
        left, middle, right = st.columns(3)
        max_points = left.slider("Max points (fixed budget)", 1, 100, applied.max_points or 20, disabled=until_flip,
                                 help="The attack's budget of changed pixels, when it does not run until the flip.")
        patch = left.select_slider("Patch size (px)", [1, 3, 5, 7], applied.patch,
                                   help="Side of the square pushed per point.")
        strategy = middle.selectbox("Region strategy", STRATEGIES, STRATEGIES.index(applied.strategy),
                                    help="How the region is located from the points.")
        area = middle.slider("Region area (fraction of the face)", 0.02, 0.5, applied.area, 0.01)
        adaptive = right.checkbox("Adaptive region size", applied.adaptive,
                                  help="Window side from the spread of the points.")
        fill = right.selectbox("Fill", FILLS, FILLS.index(applied.fill), help="What the erased region is filled with.")
        if st.form_submit_button("Run attack", type="primary") or APPLIED_KEY not in st.session_state:
            applied = explorer.AttackSettings(None if until_flip else max_points, patch, strategy, area, adaptive, fill)
            st.session_state[APPLIED_KEY] = applied
    return applied


def show_summary(result):
    report = result["report"]
    prediction = report["prediction"]
    budget = report.get("max_points", len(report["points_crop"]))
    columns = st.columns(4)
    columns[0].metric("Teacher predicts", f"{prediction['label']} ({prediction['probs'][prediction['label']]:.2f})")
    columns[1].metric("Points to flip it", report["points_to_flip"] if report["flipped"] else f"none in {budget}",
                      help=f"The attack stops at the flip, or after {budget} points.")
    columns[2].metric("Erased area", f"{report['region']['area']:.1%}")
    columns[3].metric("Computed in", f"{result['seconds']:.2f} s")


def comparison_captions(result):
    captions = {}
    for name in explorer.ERASINGS:
        entry = result["report"]["erasing"][name]
        captions[name] = (f"{name}: teacher says {entry['prediction']['label']}, "
                          f"confidence drop {entry['confidence_drop']:+.2f}, area {entry['area']:.1%}")
    return captions


def view_title(text):
    """The title over a view shown as plain images, as a plotly figure's title reads."""
    st.markdown(f"**{text}**")


def result_views(result, image_name, models):
    """Everything the result shows, drawn (or taken from the cache, ui.state) before any of it is sent: the browser
    then gets the whole result at once and lays the page out once, not once per view as each is drawn."""
    report, crop, classes = result["report"], result["crop"], result["classes"]
    points = report["points_crop"]
    return {
        "png": explorer_cache.comparison_png(crop, result["masks"], result["erased"], comparison_captions(result)),
        "points": explorer_cache.attack_points(crop, points, report["point_scores"], report["trajectory"], classes),
        "trajectory": explorer_cache.trajectory(report["trajectory"], classes,
                                       attacked=classes.index(report["prediction"]["label"])),
        "region": explorer_cache.region_images(crop, report["region"]["box"], result["erased"]["pasm"], points),
        "comparison": explorer_cache.comparison_images(crop, result["masks"], result["erased"]),
        "maps": explorer_cache.attribution_images(crop, result["maps"]),
        "regions": explorer_cache.region_counts(result["point_regions"], REGIONS)
        if result["point_regions"] is not None else None,
        "json": explorer.result_json(result, image_name, models.teacher.path,
                                     models.student.path if models.student else None),
    }


def show_attack(views):
    left, right = st.columns(2)
    left.plotly_chart(views["points"])
    right.plotly_chart(views["trajectory"])
    view_title("Located region and the erased face")
    st.image(views["region"], caption=["located region (box over the points)", "erased face"], output_format="PNG")


def show_comparison(views, result):
    view_title("PASM, random and attention erasing at the same area")
    captions = comparison_captions(result)
    st.image(views["comparison"]["masks"], caption=[captions[n] for n in result["masks"]], output_format="PNG")
    st.image(views["comparison"]["erased"], caption=[f"{n}: erased" for n in result["masks"]], output_format="PNG")
    st.dataframe(explorer.erasing_rows(result), hide_index=True, width="stretch")
    st.caption("Confidence drop: how much probability the originally predicted class lost after erasing; "
               "a more informative region costs more.")


def show_references(views, result):
    maps, regions = st.columns(2)
    with maps:
        view_title("Where the teacher looks (for reference)")
        st.image(views["maps"], caption=list(result["maps"]), output_format="PNG")
        st.caption("Captum Grad-CAM at the last convolutional block and vanilla gradient saliency, for reference; "
                   "colour from 0 (black) through purple and orange to each map's maximum (pale yellow).")
    with regions:
        if views["regions"] is None:
            st.info("The face mesh found no face in the crop, so the points cannot be given region names.")
        else:
            st.plotly_chart(views["regions"])
            st.caption("Regions from the mediapipe face mesh on the aligned crop (pasm.faces.region_map).")


def show_downloads(views):
    """Downloads leave the page as it is (``on_click="ignore"``): saving a file needs no rerun."""
    left, right = st.columns(2)
    left.download_button("Download the result (JSON)", views["json"], file_name="pasm_attack.json",
                         mime="application/json", on_click="ignore")
    right.download_button("Download the comparison (PNG)", views["png"], file_name="pasm_comparison.png",
                          mime="image/png", on_click="ignore")


@st.fragment
def attack_and_results(models, aligned, region_map, digest, index, image_name):
    """The settings form and what the attack shows. A fragment: pressing **Run attack** reruns only this part,
    so the photo, the crop and the predictions above stay as they are, neither recomputed nor redrawn.

    A face is attacked with the form's settings as soon as it is chosen, so its first result needs no click. Every
    later result then replaces views already on the page, in the same places: the browser updates each figure in
    place instead of building it anew, which halves what a click costs it (docs/benchmarks.md, app)."""
    settings = settings_form(models.teacher.model.input_spec.size)
    models_key = (models.teacher.sha256, models.student.sha256 if models.student else None)
    with state.stop_on_error():
        result = explorer_cache.attack_result(digest, index, models_key, models.device, settings, models, aligned,
                                              region_map)
    views = result_views(result, image_name, models)
    show_summary(result)
    show_attack(views)
    show_comparison(views, result)
    show_references(views, result)
    show_downloads(views)


st.title("Attack explorer")
st.caption("The teacher's point attack on one face, the region it locates, and PASM's erasing beside random and "
           "attention erasing at the same area.")
models = state.sidebar_models()
if models.teacher is None:
    st.info("Choose a teacher in the sidebar, or get one on the Home page, to attack a face.")
    st.stop()

data, image_name = choose_image()
if data is None:
    st.info(f"Upload a photo ({', '.join(IMAGE_SUFFIXES)}), take one with the camera, or use the sample photo.")
    st.stop()
with state.stop_on_error():
    photo = state.load_photo(data, image_name)

digest = state.image_digest(data)
found = state.detect_faces(digest, photo)
photo_column, crop_column = st.columns([3, 2])
with photo_column:
    index = choose_face(photo, found, digest)
if index is None:
    st.stop()
face = found[index] if index >= 0 else None
aligned = align_face(photo, face, models.teacher.model.input_spec.size)
region_map = explorer_cache.face_region_map(digest, index, photo, face)  # ready before the attack is asked for
with crop_column:
    view_title("Aligned crop (what the teacher sees)")
    size = models.teacher.model.input_spec.size
    st.image(explorer_cache.sharp_png(explorer.model_view(models.teacher, aligned.crop)),
             caption=f"{size}×{size} px, as the teacher receives it", output_format="PNG")
    predictions = {"teacher": explorer.predict(models.teacher, aligned.crop, models.device)}
    if models.student is not None:
        predictions["student"] = explorer.predict(models.student, aligned.crop, models.device)
    st.plotly_chart(explorer_cache.prediction_bars(predictions))

attack_and_results(models, aligned, region_map, digest, index, image_name)

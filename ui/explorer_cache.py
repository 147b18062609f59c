"""What the Attack explorer computes and draws, cached once per server process: a face's region map, the attack's
result and its figures. Every session that shows the same face with the same models and settings (the sample photo,
when the page opens) gets them from here instead of computing them again; sessions asking at the same moment wait for
the first one's computation (streamlit's caches compute a missing value once, under a lock per key).
"""
import streamlit as st

from ui import attack_figures, figures


@st.cache_data(max_entries=32, show_spinner="Mapping face regions…")
def face_region_map(digest, face_index, _photo, _face):
    """The facial-region map of face ``face_index`` (-1: the whole image), or None where no mesh fits."""
    from pasm import explorer

    return explorer.face_region_map(_photo, _face)


@st.cache_data(max_entries=32, show_spinner=False)
def attack_result(digest, face_index, models_key, device, settings, _models, _aligned, _region_map):
    """pasm.explorer.analyse_face for a photo (``digest``), face, pair of models (their hashes), device and settings
    (a dataclass, which streamlit hashes by its fields)."""
    from pasm import explorer

    return explorer.analyse_face(_models.teacher, _aligned, settings, student=_models.student,
                                 region_map=_region_map, device=device)


# Figures, drawn once for what they show


def _figure_cache(builder):
    """``builder`` (a pure function of arrays and plain values, ui.attack_figures / ui.figures) cached by the
    content of its arguments: a rerun, or another session with the same face and result, gets the figure or the
    PNGs back instead of drawing them again. Plotly figures come back as copies (about 15 ms to unpickle one)."""
    return st.cache_data(max_entries=32, show_spinner=False)(builder)


sharp_png = _figure_cache(figures.sharp_png)
prediction_bars = _figure_cache(attack_figures.prediction_bars)
attack_points = _figure_cache(attack_figures.attack_points)
trajectory = _figure_cache(attack_figures.trajectory)
region_counts = _figure_cache(attack_figures.region_counts)
region_images = _figure_cache(attack_figures.region_images)
comparison_images = _figure_cache(attack_figures.comparison_images)
attribution_images = _figure_cache(attack_figures.attribution_images)
comparison_png = _figure_cache(attack_figures.comparison_png)


@st.cache_data(max_entries=16, show_spinner=False)
def photo_faces(digest, boxes, scores, chosen, _photo):
    """ui.attack_figures.photo_faces for the photo whose bytes hash to ``digest``: its JPEG is encoded once."""
    return attack_figures.photo_faces(_photo, boxes, scores, chosen=chosen)

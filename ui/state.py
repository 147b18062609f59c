"""Plumbing every page shares: loading each model once, the sidebar teacher/student picker, cached photos,
faces and data sets, and showing errors and echoed user text (``show_error``, ``markdown_literal``) so that bad input
is an ``st.error`` instead of a traceback and a typed string is shown as typed.

Streamlit reruns a page top to bottom on every click, so anything slow is cached here by what it
depends on: models by (file, mtime), decoded photos and face detections by the hash of the image bytes.
What a user chose lives in ``st.session_state`` under keys that survive page changes, and the models picked
also in the page's address (``?teacher=...``), which a reload keeps.
The work itself is the library's (pasm.checkpoint_store, pasm.runs, pasm.faces); this module only
caches it and draws it.
"""
import gc
import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas  # noqa: F401  (st.dataframe's; imported here, before the freeze below, not on a page's first table)
import streamlit as st

from pasm import runs
from pasm.checkpoint_store import find_checkpoints, import_checkpoint, parse_classes, short_labels, summary_line
from pasm.checkpoints import load_checkpoint, read_metadata
from pasm.devices import resolve_device
from pasm.errors import CheckpointError, PasmError
from pasm.images import IMAGE_SUFFIXES, read_image
from pasm.options import ARCHITECTURES
from pasm.runs import display_path, generation_number, runs_root

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FACE = REPO_ROOT / "pasm" / "assets" / "grace_hopper.jpg"
MAX_CHECKPOINT_MB = 200
MAX_IMAGE_MB = 10
# Persisted choices (plain session-state keys; widget keys are dropped when a page stops drawing them), each also
# kept in the page's address under a query parameter, so that a reload or a shared link keeps it.
TEACHER_KEY = "pasm_teacher"
STUDENT_KEY = "pasm_student"
QUERY_PARAMS = {TEACHER_KEY: "teacher", STUDENT_KEY: "student"}
NO_MODEL = "none"  # the address's word for "(none)", the optional student left out
_FROM_FILE = "from the file's metadata"
# Streamlit renders markdown in st.error, st.caption, st.markdown and table cells, and more: `:x:` becomes an emoji,
# `:red[...]` colours, `:material/...:` an icon, `:name` a directive. These characters are escaped with a backslash; a
# colon that could open a shortcode or directive (one followed by a non-space) becomes the entity `&#58;`, since
# Streamlit replaces `:material/` before parsing, where a backslash cannot stop it.
MARKDOWN_SPECIALS = "\\`*_[]<>#|~$&"
_SHORTCODE_COLON = re.compile(r":(?=\S)")
_LIST_MARKER = re.compile(r"^(\s*\d*)([-+>.)])", re.MULTILINE)  # "- x", "> x", "1. x" at a line's start
# One server process serves every session, and its heap holds half a million objects that live as long as it does
# (torch, plotly, pandas, streamlit, pasm, and mediapipe when a page imported it first). A full garbage collection walked
# them all, 0.25 s on 2 cores, one or two times per attack result on the Attack explorer, stalling the result mid-send.
# Frozen (moved to CPython's permanent generation), they are no longer walked; what sessions create later is collected
# as before.
gc.freeze()


def app_device():
    """The device the app computes on: the GPU where there is one (pasm.devices), as a plain name for captions
    and cache keys."""
    return str(resolve_device("auto"))


def show_error(error):
    """Every error the app shows goes through here: a PasmError (bad input described for a person, one line) or a
    message that may echo what the user typed. It is shown as written (``markdown_literal``); the app keeps running."""
    st.error(markdown_literal(str(error)), icon=":material/error:")


def markdown_literal(text):
    """``text`` as markdown that renders as exactly ``text``: file names, specs and class names a person typed or a file
    holds, echoed in st.error, st.caption, st.markdown or a table cell, never turn into emoji, icons or formatting."""
    escaped = "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in str(text))
    escaped = _LIST_MARKER.sub(r"\1\\\2", escaped)
    return _SHORTCODE_COLON.sub("&#58;", escaped)


@contextmanager
def stop_on_error():
    """Bad input inside the block is shown (``show_error``) and ends the page's run there: what the page draws
    after the block needs what failed."""
    try:
        yield
    except PasmError as e:
        show_error(e)
        st.stop()


def notify(key, text):
    """Keep a success message for the next run: what a run draws before ``st.rerun`` is never seen. ``text`` is
    shown literally (``markdown_literal``), so the names it echoes need no escaping by the caller."""
    st.session_state[key] = text


def show_notice(key):
    """The message ``notify`` kept under ``key``, once: a success box here (put it outside any expander,
    which may come back collapsed) and a toast, which shows wherever the page is scrolled."""
    text = st.session_state.pop(key, None)
    if text:
        shown = markdown_literal(text)
        st.success(shown, icon=":material/check_circle:")
        st.toast(shown, icon=":material/check_circle:")


# Checkpoints, read once per file version


def checkpoint_info(path):
    """``{"meta": dict or None (a checkpoint made elsewhere)}`` or ``{"error": reason}``, cached by mtime."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        return {"error": f"{path}: {e.strerror or e}"}
    return _checkpoint_info(str(path), stat.st_mtime_ns, stat.st_size)


@st.cache_data(max_entries=256, show_spinner=False)
def _checkpoint_info(path, mtime_ns, size):
    try:
        return {"meta": read_metadata(path)}
    except PasmError as e:
        return {"error": str(e)}


def load_model(path, arch=None, classes=None, device=None):
    """A ``pasm.checkpoints.Checkpoint`` in eval mode, loaded once per (file, mtime, choices, device).

    Raises CheckpointError for anything that is not a fitting checkpoint; errors are not cached,
    so a file fixed on disk loads on the next rerun.
    """
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as e:
        raise CheckpointError(path, e.strerror or str(e)) from None
    return _load_model(str(path), mtime, arch, tuple(classes) if classes else None, device or app_device())


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_model(path, mtime_ns, arch, classes, device):
    return load_checkpoint(path, arch=arch, classes=list(classes) if classes else None, device=device)


# The sidebar picker


@dataclass
class Models:
    """What the sidebar picked: ``pasm.checkpoints.Checkpoint`` objects (or None) and the device they run on."""

    teacher: object
    student: object
    device: str


def sidebar_models(student=True):
    """The teacher (and student) picker in the sidebar, shared by every page; a choice follows the user across pages."""
    root = runs_root()
    device = app_device()
    with st.sidebar:
        st.subheader("Models")
        paths = [str(p) for p in find_checkpoints(root)]
        if not paths:
            st.info(f"No checkpoints under {markdown_literal(root)}/ yet: train the demo or get a FER teacher on the "
                    "Home page, or add a checkpoint below.")
        teacher = _model_picker("Teacher", TEACHER_KEY, paths, root, device, _default_teacher(paths))
        chosen_student = None
        if student:
            chosen_student = _model_picker("Student", STUDENT_KEY, paths, root, device,
                                           _next_generation(teacher, paths), optional=True)
        _upload_form(root)
        st.caption(f"Device: **{device}**" + ("" if device == "cuda" else " (no CUDA GPU found)"))
    return Models(teacher, chosen_student, device)


def _default_teacher(paths):
    """A run's first generation when there is one (the demo's teacher), else the first file."""
    for path in paths:
        if generation_number(path) == 0:
            return path
    return paths[0] if paths else None


def _next_generation(teacher, paths):
    """The teacher's own student, ``gen<g+1>`` beside it, when the run has trained one."""
    if teacher is None:
        return ""
    number = generation_number(teacher.path)
    if number is None:
        return ""
    following = str(teacher.path.with_name(f"gen{number + 1}{teacher.path.suffix}"))
    return following if following in paths else ""


def _remember(key, widget_key):
    st.session_state[key] = st.session_state[widget_key]


def _choice_from_address(key, options, root):
    """A new session (a reload, a shared link) takes the choice the page's address names, when it is still there."""
    named = st.query_params.get(QUERY_PARAMS[key])
    if key not in st.session_state and named is not None:
        found = [p for p in options if _address_name(p, root) == named]
        if found:
            st.session_state[key] = found[0]


def _keep_choice_in_address(key, root):
    """The user's choice goes into the page's address (``?teacher=run/gen0.safetensors``), kept across page changes."""
    if key in st.session_state:
        named = _address_name(st.session_state[key], root)
        if st.query_params.get(QUERY_PARAMS[key]) != named:
            st.query_params[QUERY_PARAMS[key]] = named


def _address_name(path, root):
    return display_path(path, root) if path else NO_MODEL


def _model_picker(label, key, paths, root, device, default, optional=False):
    if not paths:
        return None
    options = ([""] if optional else []) + paths
    widget_key = f"_{key}_widget"
    _choice_from_address(key, options, root)
    # Only a choice the user made is kept; until then the default follows new checkpoints as they appear.
    chosen = st.session_state.get(key, default)
    st.session_state[widget_key] = chosen if chosen in options else (default if default in options else options[0])
    _keep_choice_in_address(key, root)
    labels = short_labels(paths, root)
    path = st.selectbox(label, options, key=widget_key, on_change=_remember, args=(key, widget_key),
                        format_func=lambda p: labels.get(p, p) if p else "(none)")
    if path:
        st.caption(f"File: {markdown_literal(display_path(path, root))}")  # the whole name, wrapped; the box cuts it
    return _load_picked(Path(path), key, device) if path else None


def _load_picked(path, key, device):
    info = checkpoint_info(path)
    if "error" in info:
        show_error(info["error"])
        return None
    arch = classes = None
    if info["meta"] is None:
        st.caption("No pasm metadata in this file: say what it is.")
        arch = st.selectbox("Architecture", sorted(ARCHITECTURES), key=f"{key}_arch:{path}")
        classes = parse_classes(st.text_input("Class names in output order (optional)", key=f"{key}_classes:{path}"))
    try:
        checkpoint = load_model(path, arch, classes, device)
    except PasmError as e:
        show_error(e)
        return None
    st.caption(markdown_literal(summary_line(checkpoint.meta)))
    return checkpoint


def _upload_form(root):
    show_notice("_pasm_added")
    with st.expander("Add a checkpoint file"):
        with st.form("pasm_checkpoint_upload", clear_on_submit=True):
            upload = st.file_uploader("Checkpoint (.safetensors, .pt, .pth)", type=["safetensors", "pt", "pth"],
                                      max_upload_size=MAX_CHECKPOINT_MB)
            arch = st.selectbox("Architecture (files made outside pasm)", [_FROM_FILE, *sorted(ARCHITECTURES)])
            classes = st.text_input("Class names in output order (files made outside pasm)",
                                    placeholder="angry, disgust, fear, happy, sad, surprise, neutral")
            role = st.radio("Use it as", ["teacher", "student"], horizontal=True)
            submitted = st.form_submit_button("Add checkpoint")
        if not submitted:
            return
        if upload is None:
            show_error("Choose a checkpoint file first.")
            return
        try:
            path = import_checkpoint(upload.getvalue(), upload.name, root,
                                     arch=None if arch == _FROM_FILE else arch, classes=parse_classes(classes))
        except PasmError as e:
            show_error(e)
            return
        st.session_state[TEACHER_KEY if role == "teacher" else STUDENT_KEY] = str(path)
        notify("_pasm_added", f"Added {display_path(path, root)} as the {role}.")
        st.rerun()


# Photos and faces, cached by the hash of the image bytes


def photo_uploader(label, key):
    """A photo upload (UploadedFile or None). Any file is taken, and pasm.images judges it: what it cannot read is an
    ImageError the page shows (``stop_on_error``), which the next file replaces. A ``type`` list would have the browser
    refuse other files itself, and its refusal stays in the uploader, error and all, after a good file follows."""
    return st.file_uploader(label, key=key, max_upload_size=MAX_IMAGE_MB,
                            help=f"Images pasm reads: {', '.join(IMAGE_SUFFIXES)}; at most {MAX_IMAGE_MB} MB.")


def image_digest(data):
    return hashlib.sha256(data).hexdigest()


def load_photo(data, name):
    """HxWx3 uint8 RGB from uploaded bytes (ImageError for anything that is no usable image, or too small to hold a
    face, as the CLI says), decoded once."""
    return _decode_photo(image_digest(data), name, data)


@st.cache_data(max_entries=16, show_spinner=False)
def _decode_photo(digest, _name, _data):
    from pasm.faces import check_face_size

    photo = read_image(_data, name=_name)
    check_face_size(photo, _name)
    return photo


@st.cache_data(max_entries=16, show_spinner="Looking for faces…")
def detect_faces(digest, _photo):
    """All faces in the photo whose bytes hash to ``digest``, best first (pasm.faces.detect_faces)."""
    from pasm import faces

    return faces.detect_faces(_photo)


def session_results(name, limit=4):
    """A small per-session store of computed results (key -> result), oldest dropped first.

    A rerun with the same inputs finds its result here instead of computing it again.
    """
    store = st.session_state.setdefault(f"_pasm_results_{name}", {})
    while len(store) > limit:
        store.pop(next(iter(store)))
    return store


# Data sets


@st.cache_data(ttl=30, show_spinner=False)
def default_data_spec(root):
    """pasm.runs.default_data_spec, looked for again at most every 30 s: the runs directory is searched 3 deep."""
    return runs.default_data_spec(root)


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the data set…")
def data_splits(spec):
    """The splits of a data set spec (DataError for a bad spec); cached because some readers parse a whole CSV."""
    from pasm.data import available_splits

    return available_splits(spec)



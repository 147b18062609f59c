"""Plumbing every page shares: where runs live, which checkpoints exist, loading each model once,
the sidebar teacher/student picker, and turning bad input into an ``st.error`` instead of a traceback.

Streamlit reruns a page top to bottom on every click, so anything slow is cached here by what it
depends on: models by (file, mtime), decoded photos, face detections and face regions by the hash of
the image bytes. What a user chose lives in ``st.session_state`` under keys that survive page changes.
"""
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

from pasm.checkpoints import file_sha256, load_checkpoint, read_metadata, save_checkpoint
from pasm.errors import CheckpointError, PasmError
from pasm.images import read_image
from pasm.models import ARCHITECTURES

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FACE = REPO_ROOT / "pasm" / "assets" / "grace_hopper.jpg"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
IMAGE_TYPES = ("jpg", "jpeg", "png", "webp", "bmp")
UPLOADS = "uploads"
CHECKPOINTS = "checkpoints"
MAX_CHECKPOINT_MB = 200
MAX_IMAGE_MB = 10
# Persisted choices (plain session-state keys; widget keys are dropped when a page stops drawing them).
TEACHER_KEY = "pasm_teacher"
STUDENT_KEY = "pasm_student"
_FROM_FILE = "from the file's metadata"


def runs_root():
    """The runs directory; ``PASM_RUNS`` is read on every call so tests and users can point elsewhere."""
    return Path(os.environ.get("PASM_RUNS", "runs"))


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


MARKDOWN_SPECIALS = "\\`*_[]<>#|~$"


def show_error(error):
    """A PasmError is bad input described for a person: show its one line, keep the app running.

    st.error renders markdown, so the message's own characters (underscores in file names) are escaped."""
    st.error(_escaped(str(error)), icon=":material/error:")


def _escaped(text):
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in text)


def notify(key, text):
    """Keep a success message for the next run: what a run draws before ``st.rerun`` is never seen."""
    st.session_state[key] = text


def show_notice(key):
    """The message ``notify`` kept under ``key``, once: a success box here (put it outside any expander,
    which may come back collapsed) and a toast, which shows wherever the page is scrolled."""
    text = st.session_state.pop(key, None)
    if text:
        st.success(text, icon=":material/check_circle:")
        st.toast(text, icon=":material/check_circle:")


# Checkpoints on disk


def find_checkpoints(root=None):
    """Checkpoints the app offers: every run's ``gen*.safetensors`` (runs up to three folders deep, so
    study sub-runs count) and any checkpoint file in ``checkpoints/`` and ``uploads/``.

    The search names its depths instead of using ``**``, so a run folder full of data set images is not walked.
    """
    root = Path(root or runs_root())
    found = set()
    for depth in range(1, 4):
        found.update(root.glob("*/" * depth + "gen*.safetensors"))
    for folder in (CHECKPOINTS, UPLOADS):
        if (root / folder).is_dir():
            found.update(p for p in (root / folder).iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
    return sorted((p for p in found if p.is_file() and not p.name.startswith(".")), key=_checkpoint_order)


def _checkpoint_order(path):
    number = re.fullmatch(r"gen(\d+)", path.stem)
    return str(path.parent), int(number.group(1)) if number else -1, path.name


def checkpoint_label(path, root=None):
    """The path relative to the runs directory: short, and unique among the offered checkpoints."""
    path, root = Path(path), Path(root or runs_root())
    for inside, base in ((path, root), (path.resolve(), root.resolve())):
        if inside.is_relative_to(base):
            return str(inside.relative_to(base))
    return str(path)


def picker_labels(paths, root=None):
    """Short names for the sidebar picker, which cuts long ones: ``run · gen 1`` for a run's generation, the
    file name without ``.safetensors`` for a file in checkpoints/ or uploads/. Where two would read the
    same, both keep their full label (``checkpoint_label``)."""
    short = {}
    for path in paths:
        path = Path(path)
        number = re.fullmatch(r"gen(\d+)", path.stem)
        if number and path.suffix == ".safetensors":
            short[str(path)] = f"{checkpoint_label(path.parent, root)} · gen {int(number.group(1))}"
        else:
            short[str(path)] = path.stem if path.suffix == ".safetensors" else path.name
    counts = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {p: label if counts[label] == 1 else checkpoint_label(p, root) for p, label in short.items()}


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
    return _load_model(str(path), mtime, arch, tuple(classes) if classes else None, device or default_device())


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_model(path, mtime_ns, arch, classes, device):
    return load_checkpoint(path, arch=arch, classes=list(classes) if classes else None, device=device)


def parse_classes(text):
    """Class names typed as ``a, b, c`` (or one per line); None when nothing was typed."""
    names = [name.strip() for name in re.split(r"[,\n]", text or "") if name.strip()]
    return names or None


def summary(meta):
    """One line a person can compare checkpoints by: architecture, classes, input, generation, accuracy."""
    spec = meta.get("input", {})
    colour = {1: "grey", 3: "RGB"}.get(spec.get("channels"), f"{spec.get('channels')} ch")
    parts = [meta.get("arch", "?"), f"{len(meta.get('classes', []))} classes", f"{spec.get('size', '?')} px {colour}",
             f"generation {meta.get('generation', '?')}"]
    metrics = meta.get("metrics") or {}
    for key in ("test_accuracy", "accuracy", "mean_class_accuracy"):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{key.replace('_', ' ')} {metrics[key]:.3f}")
            break
    return " · ".join(parts)


def metadata_rows(checkpoint):
    """The metadata worth showing on a page, as field -> text: scalar metrics only (per-class tables and
    confusion matrices belong to the Runs page)."""
    meta = checkpoint.meta
    metrics = meta.get("metrics") or {}
    numbers = [f"{k.replace('_', ' ')} {v:.3f}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
               for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows = {
        "file": str(checkpoint.path),
        "architecture": meta.get("arch"),
        "classes": ", ".join(meta.get("classes", [])),
        "input": f"{meta['input']['size']} px, {meta['input']['channels']} channel(s)",
        "generation": str(meta.get("generation")),
        "metrics": ", ".join(numbers) or "none recorded",
    }
    provenance = [f"{k.replace('_', ' ')} {v}" for k, v in (meta.get("provenance") or {}).items()
                  if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 40]
    if provenance:
        rows["provenance"] = ", ".join(provenance)
    if isinstance(metrics.get("data"), str):
        rows["evaluated on"] = f"{metrics['data']} ({metrics.get('split', '?')})"
    if isinstance((meta.get("train_config") or {}).get("data"), str):
        rows["trained on"] = meta["train_config"]["data"]
    rows.update({"created": meta.get("created") or "-", "sha256": checkpoint.sha256[:16] + "…"})
    return rows


# Uploaded checkpoints


def safe_name(name):
    """A file name that cannot leave the uploads folder or hide itself: path parts and odd characters dropped."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")[:100]
    stem, suffix = os.path.splitext(base)
    return (stem or "checkpoint") + suffix.lower()


def import_checkpoint(data, name, root=None, arch=None, classes=None):
    """Check an uploaded checkpoint and keep it under ``runs/uploads/``, where the picker finds it next time.

    A file made elsewhere is kept converted to a pasm checkpoint carrying the architecture and classes
    chosen for it, so it loads without asking again. Nothing is kept unless it loads: a pickle that
    would run code, a file that is no checkpoint, or weights that do not fit are refused with a
    CheckpointError naming the uploaded file.
    """
    name = safe_name(name)
    if not data:
        raise CheckpointError(name, "empty file")
    if Path(name).suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(name, f"not a checkpoint file name (expected {', '.join(CHECKPOINT_SUFFIXES)})")
    uploads = Path(root or runs_root()) / UPLOADS
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=uploads, prefix=".incoming-") as folder:
        candidate = Path(folder) / name
        candidate.write_bytes(data)
        try:
            return _keep_upload(candidate, uploads, arch, classes)
        except PasmError as e:
            raise CheckpointError(name, e.why) from None


def _keep_upload(candidate, uploads, arch, classes):
    sha256 = file_sha256(candidate)
    if read_metadata(candidate) is not None:
        load_checkpoint(candidate)
        destination = _free_name(uploads / candidate.name, sha256)
        if not destination.exists():
            os.replace(candidate, destination)
        return destination
    if arch is None:
        raise CheckpointError(candidate.name,
                              "has no pasm metadata: choose its architecture (and class names) and add it again")
    checkpoint = load_checkpoint(candidate, arch=arch, classes=classes)
    meta = dict(checkpoint.meta, provenance={"source": candidate.name, "foreign": True, "sha256": sha256})
    destination = _free_name(uploads / f"{candidate.stem}.safetensors", sha256)
    save_checkpoint(destination, checkpoint.model, meta)
    return destination


def _free_name(path, sha256):
    """``path`` unless another file already has that name; then the name with the upload's hash in it."""
    if not path.exists() or file_sha256(path) == sha256:
        return path
    return path.with_name(f"{path.stem}-{sha256[:8]}{path.suffix}")


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
    device = default_device()
    with st.sidebar:
        st.subheader("Models")
        paths = [str(p) for p in find_checkpoints(root)]
        if not paths:
            st.info(f"No checkpoints under {root}/ yet: train the demo or get a FER teacher on the Home page, "
                    "or add a checkpoint below.")
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
        if Path(path).stem == "gen0":
            return path
    return paths[0] if paths else None


def _next_generation(teacher, paths):
    """The teacher's own student, ``gen<g+1>`` beside it, when the run has trained one."""
    if teacher is None:
        return ""
    number = re.fullmatch(r"gen(\d+)", teacher.path.stem)
    if number is None:
        return ""
    following = str(teacher.path.with_name(f"gen{int(number.group(1)) + 1}{teacher.path.suffix}"))
    return following if following in paths else ""


def _remember(key, widget_key):
    st.session_state[key] = st.session_state[widget_key]


def _model_picker(label, key, paths, root, device, default, optional=False):
    if not paths:
        return None
    options = ([""] if optional else []) + paths
    widget_key = f"_{key}_widget"
    # Only a choice the user made is kept; until then the default follows new checkpoints as they appear.
    chosen = st.session_state.get(key, default)
    st.session_state[widget_key] = chosen if chosen in options else (default if default in options else options[0])
    labels = picker_labels(paths, root)
    path = st.selectbox(label, options, key=widget_key, on_change=_remember, args=(key, widget_key),
                        format_func=lambda p: labels.get(p, p) if p else "(none)")
    if path:
        st.caption(f"File: {_escaped(checkpoint_label(path, root))}")  # the whole name, wrapped; the box cuts it
    return _load_picked(Path(path), key, device) if path else None


def _load_picked(path, key, device):
    info = checkpoint_info(path)
    if "error" in info:
        st.error(info["error"], icon=":material/error:")
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
    st.caption(summary(checkpoint.meta))
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
            st.error("Choose a checkpoint file first.", icon=":material/error:")
            return
        try:
            path = import_checkpoint(upload.getvalue(), upload.name, root,
                                     arch=None if arch == _FROM_FILE else arch, classes=parse_classes(classes))
        except PasmError as e:
            show_error(e)
            return
        st.session_state[TEACHER_KEY if role == "teacher" else STUDENT_KEY] = str(path)
        notify("_pasm_added", f"Added {checkpoint_label(path, root)} as the {role}.")
        st.rerun()


# Photos, faces and face regions, cached by the hash of the image bytes


def image_digest(data):
    return hashlib.sha256(data).hexdigest()


def load_photo(data, name):
    """HxWx3 uint8 RGB from uploaded bytes (ImageError for anything that is no usable image), decoded once."""
    return _decode_photo(image_digest(data), name, data)


@st.cache_data(max_entries=16, show_spinner=False)
def _decode_photo(digest, _name, _data):
    return read_image(_data, name=_name)


@st.cache_data(max_entries=16, show_spinner="Looking for faces…")
def detect_faces(digest, _photo):
    """All faces in the photo whose bytes hash to ``digest``, best first (pasm.faces.detect_faces)."""
    from pasm import faces

    return faces.detect_faces(_photo)


@st.cache_data(max_entries=32, show_spinner="Mapping face regions…")
def face_region_map(digest, face_index, _photo, _face):
    """The facial-region map of face ``face_index`` (-1: the whole image), or None where no mesh fits."""
    from ui.analysis import face_region_map as region_map

    return region_map(_photo, _face)


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
    """The first-run demo's SynthFER set (``root/demo/data``) once written, else other SynthFER data under the runs
    directory ``root``; "" if there is none, since a fresh machine has no data set a form could default to."""
    from pasm.data.synth import read_manifest
    from pasm.jobs import DEMO_RUN

    root = Path(root)
    manifests = [root / DEMO_RUN / "data" / "manifest.json"]
    for depth in range(1, 4):
        manifests += sorted(root.glob("*/" * depth + "manifest.json"))
    for manifest in manifests:
        try:
            read_manifest(manifest.parent)
        except PasmError:
            continue
        return f"synth:{manifest.parent}"
    return ""


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the data set…")
def data_splits(spec):
    """The splits of a data set spec (DataError for a bad spec); cached because some readers parse a whole CSV."""
    from pasm.data import available_splits

    return available_splits(spec)


# Runs and jobs on disk: the Generations, Train and Runs pages read everything from the run
# directories at every rerun, so a restarted app or a closed browser loses nothing.

RUN_MARKERS = ("config.json", "status.json", "summary.json", "study.json")
NOT_RUNS = (".jobs", UPLOADS, CHECKPOINTS)


def find_runs(root=None):
    """Run and study directories under the runs root, up to three folders deep, by path.

    Like find_checkpoints, the search names its depths, so a data set folder is never walked.
    """
    root = Path(root or runs_root())
    found = set()
    for depth in range(1, 4):
        for marker in RUN_MARKERS:
            found.update(p.parent for p in root.glob("*/" * depth + marker))
    return sorted((p for p in found if p.relative_to(root).parts[0] not in NOT_RUNS),
                  key=lambda p: p.relative_to(root).parts)


def read_json_file(path):
    """A JSON file's content, None when it does not exist; PasmError naming the file when it cannot be read."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PasmError(path, f"unreadable JSON ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None


def read_metrics(path):
    """The metrics.jsonl records (dicts), in order; a damaged line is a PasmError naming the file and line."""
    import json

    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PasmError(path, f"unreadable ({e.__class__.__name__})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise PasmError(path, f"line {number} is not JSON") from None
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class RunFiles:
    """What one run or study directory holds (pasm.runs reads the run's files); ``errors`` has one line for
    each file that is there but damaged, so a page can show them and everything else."""

    path: Path
    config: dict | None = None
    status: dict | None = None
    summary: dict | None = None
    metrics: list | None = None
    study: dict | None = None
    study_md: str | None = None
    errors: list | None = None

    @property
    def is_study(self):
        return self.study is not None or self.study_md is not None

    @property
    def classes(self):
        classes = (self.summary or {}).get("classes")
        return classes if isinstance(classes, list) else None

    @property
    def generations(self):
        """summary.json's generation entries that name a checkpoint, by index."""
        entries = (self.summary or {}).get("generations") or []
        return sorted((e for e in entries if isinstance(e, dict) and isinstance(e.get("index"), int)
                       and isinstance(e.get("checkpoint"), str)), key=lambda e: e["index"])

    def checkpoint(self, entry):
        """A generation's checkpoint: summary.json names it relative to the run directory."""
        return self.path / Path(entry["checkpoint"]).name

    def checkpoints(self):
        """The run's generation checkpoints, in order (state.pt, the resume state, is no model)."""
        return sorted((p for p in self.path.glob("gen*.safetensors") if p.is_file()), key=_checkpoint_order)

    def confusions(self):
        """(generation, confusion matrix) from metrics.jsonl's generation lines, where the matrix fits the classes."""
        size = len(self.classes or [])
        found = []
        for record in self.metrics or []:
            matrix = record.get("confusion")
            if record.get("kind") == "generation" and _square(matrix, size):
                found.append((record.get("generation"), matrix))
        return found


def _square(value, size):
    return (size > 0 and isinstance(value, list) and len(value) == size
            and all(isinstance(row, list) and len(row) == size for row in value))


def read_run(path):
    """A run or study directory read fresh from disk; a damaged file becomes a line in ``errors``, never an exception."""
    from pasm.runs import Run

    run, files = RunFiles(Path(path), metrics=[], errors=[]), Run(path)
    readers = {
        "config": lambda: files.read_config() if files.config_path.exists() else None,
        "status": files.read_status,
        "summary": files.read_summary,
        "metrics": lambda: read_metrics(files.metrics_path),
        "study": lambda: read_json_file(run.path / "study.json"),
        "study_md": lambda: _read_text(run.path / "study.md"),
    }
    for field, read in readers.items():
        try:
            setattr(run, field, read())
        except PasmError as e:
            run.errors.append(str(e))
    if run.summary is not None and not isinstance(run.summary.get("generations"), list):
        run.errors.append(f"{files.summary_path}: damaged: 'generations' is not a list")
        run.summary = None
    if run.study is not None and not isinstance(run.study, dict):
        run.errors.append(f"{run.path / 'study.json'}: damaged: expected a JSON object")
        run.study = None
    return run


def _read_text(path):
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PasmError(path, f"unreadable ({e.__class__.__name__})") from None


def generation_table(run):
    """One row per generation with the summary's numbers and labels (nested values left out)."""
    return [{k: v for k, v in entry.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
             and k not in ("sha256", "parent_hash")} for entry in run.generations]


def per_class_accuracies(run):
    """``{generation: {class: accuracy}}`` from the summary."""
    return {e["index"]: e["per_class_accuracy"] for e in run.generations
            if isinstance(e.get("per_class_accuracy"), dict)
            and all(isinstance(v, (int, float)) for v in e["per_class_accuracy"].values())}


# The Generations page


def dataset_faces(spec, count, size, split="test"):
    """``count`` faces spread over a split of a data set, as whole-image crops of side ``size``.

    Data set images already are face crops, so they are used whole (pasm.faces.align_face with no face).
    """
    import numpy as np

    from pasm.data import open_dataset
    from pasm.faces import align_face
    from ui.analysis import sample_indices

    dataset = open_dataset(spec, split)
    indices = sample_indices(len(dataset), count)
    if not indices:
        raise PasmError(spec, f"the {split} split has no images")
    faces = [align_face(np.asarray(dataset.load_image(i).convert("RGB")), None, size) for i in indices]
    labels = [dataset.classes[dataset.samples[i][1]] for i in indices]
    return faces, labels


def compare_generations(checkpoints, aligned_faces, attack_config=None, region_config=None, device="cpu", indices=None):
    """Every generation as the teacher on the same faces (pasm.report.face_reports), plus how much the
    region each one locates overlaps the previous generation's (mask and box IoU, per face).

    Plain lists and arrays come back, so the result can sit in session state between reruns.
    """
    from pasm.regions import box_iou, mask_iou
    from pasm.report import face_reports
    from ui.analysis import to_uint8

    results, previous = [], None
    indices = list(range(len(checkpoints))) if indices is None else list(indices)
    for index, checkpoint in zip(indices, checkpoints):
        reports, extras = face_reports(checkpoint.model, checkpoint.classes, aligned_faces, attack_config,
                                       region_config, device=device)
        mined = extras["located"]["pasm"]
        entry = {"index": index, "classes": list(checkpoint.classes), "reports": reports,
                 "crops": [to_uint8(image) for image in extras["images"]],
                 "masks": mined.masks.cpu(), "boxes": mined.boxes.cpu(), "mask_iou": None, "box_iou": None}
        if previous is not None and previous["masks"].shape == entry["masks"].shape:
            entry["mask_iou"] = [round(float(v), 4) for v in mask_iou(previous["masks"], entry["masks"])]
            entry["box_iou"] = [round(float(v), 4) for v in box_iou(previous["boxes"], entry["boxes"])]
        results.append(entry)
        previous = entry
    for entry in results:
        entry["masks"] = entry["masks"][:, 0].numpy()
        entry["boxes"] = entry["boxes"].tolist()
    return results

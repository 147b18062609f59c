"""The checkpoints a person can pick: every run's generations under the runs directory, and the files they
added, kept in its ``checkpoints/`` (imported, e.g. the FER teacher) and ``uploads/`` (added through the app).

A file is added only once it loads, converted to a pasm checkpoint when it was made elsewhere, so that
whatever is offered later loads without asking again. Each one is named short and described in a line.
"""
import os
import re
import tempfile
from pathlib import Path

from .checkpoints import file_sha256, load_checkpoint, read_metadata, save_checkpoint
from .errors import CheckpointError, PasmError
from .runs import CHECKPOINTS, SEARCH_DEPTHS, UPLOADS, display_path, generation_number, generation_order, runs_root

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


def find_checkpoints(root=None):
    """Every run's ``gen*.safetensors`` (a study's runs too) and any checkpoint file in ``checkpoints/`` and
    ``uploads/``, runs' generations in order; hidden files (an upload being checked) left out."""
    root = Path(root or runs_root())
    found = set()
    for depth in SEARCH_DEPTHS:
        found.update(root.glob("*/" * depth + "gen*.safetensors"))
    for folder in (CHECKPOINTS, UPLOADS):
        if (root / folder).is_dir():
            found.update(p for p in (root / folder).iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
    return sorted((p for p in found if p.is_file() and not p.name.startswith(".")), key=generation_order)


def short_labels(paths, root=None):
    """``{path: label}`` short enough for a picker that cuts long ones: ``run · gen 1`` for a run's generation,
    the file name without ``.safetensors`` for an added file. Where two would read the same, both keep their
    path under the runs directory (``pasm.runs.display_path``)."""
    short = {}
    for path in map(Path, paths):
        number = generation_number(path)
        if number is not None and path.suffix == ".safetensors":
            short[str(path)] = f"{display_path(path.parent, root)} · gen {number}"
        else:
            short[str(path)] = path.stem if path.suffix == ".safetensors" else path.name
    counts = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {p: label if counts[label] == 1 else display_path(p, root) for p, label in short.items()}


def summary_line(meta):
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
    """A checkpoint's metadata worth showing a person, as field -> text: scalar metrics only (per-class tables
    and confusion matrices are a run's)."""
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


def parse_classes(text):
    """Class names a person typed for a checkpoint made elsewhere, as ``a, b, c`` or one per line; None for none."""
    names = [name.strip() for name in re.split(r"[,\n]", text or "") if name.strip()]
    return names or None


# Adding a checkpoint file


def safe_name(name):
    """A file name that cannot leave the uploads folder or hide itself: path parts and odd characters dropped."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")[:100]
    stem, suffix = os.path.splitext(base)
    return (stem or "checkpoint") + suffix.lower()


def import_checkpoint(data, name, root=None, arch=None, classes=None):
    """Check an uploaded checkpoint and keep it under ``uploads/``, where ``find_checkpoints`` finds it next time.

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

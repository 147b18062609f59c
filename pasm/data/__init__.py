"""Data sets by spec string: ``kind:path``, e.g. ``synth:data/synth``, ``rafdb:~/RAF-DB/basic``.

The spec is what the CLI, the trainer and the app pass around, so a run's config names its data
in one string a person can read and retype.
"""
from pathlib import Path

from ..errors import DataError
from .base import FERDataset


def _readers():
    """Imported on first use: the readers pull in nothing heavy, but the spec parser should not need them."""
    from .readers import READERS
    from .synth import SynthFER

    return {"synth": SynthFER, **READERS}


def parse_spec(spec):
    kind, sep, path = str(spec).partition(":")
    readers = _readers()
    if not sep or not path:
        raise DataError(spec, f"a data set spec is KIND:PATH with KIND one of {', '.join(readers)}")
    if kind not in readers:
        raise DataError(spec, f"unknown data set kind {kind!r}; choose one of {', '.join(readers)}")
    return readers[kind], Path(path).expanduser()


def absolute_spec(spec):
    """``kind:relative/path`` -> ``kind:/absolute/path``: a run resumes, and a job started by the app
    runs, from another working directory than the one the spec was typed in."""
    kind, sep, path = str(spec).strip().partition(":")
    return f"{kind}:{Path(path).expanduser().resolve()}" if sep and path else str(spec).strip()


def available_splits(spec):
    reader, path = parse_spec(spec)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    return reader.splits(path)


def open_dataset(spec, split, transform=None):
    reader, path = parse_spec(spec)
    splits = available_splits(spec)
    if split not in splits:
        raise DataError(spec, f"no split {split!r} (this copy has {', '.join(splits) or 'none'})")
    return reader(path, split, transform=transform)


def describe(spec):
    """Classes and per-split, per-class counts: what ``pasm data`` prints."""
    datasets = {split: open_dataset(spec, split) for split in available_splits(spec)}
    first = next(iter(datasets.values()), None)
    return {
        "spec": str(spec),
        "classes": first.classes if first else [],
        "splits": {s: {"count": len(d), "per_class": d.class_counts()} for s, d in datasets.items()},
    }


__all__ = ["FERDataset", "absolute_spec", "available_splits", "describe", "open_dataset", "parse_spec"]

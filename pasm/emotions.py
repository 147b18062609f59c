"""The basic emotions under the names data sets give them, and how one class list maps onto another.

FER2013 says ``angry``/``happy``/``sad``, RAF-DB and SynthFER say ``anger``/``happiness``/``sadness``,
each in its own order. Wherever a checkpoint meets a data set (``pasm eval``, ``pasm compare``,
``train --teacher``, the app's Data atlas), the checkpoint's outputs are matched to the data set's
classes by name: exact names first, then through ``ALIASES``, case-insensitively.

A checkpoint may know more classes than the data set (an 8-class model with contempt on 7-class
data): the extra outputs are dropped and the model is scored over the data set's classes, its
softmax taken over the kept logits. A data set class the checkpoint lacks is an error, since no
output could ever predict it.
"""
from typing import NamedTuple

import torch

from .errors import PasmError

# Canonical name -> the names data sets and models use for it (the canonical one included). Not here on
# purpose: "calm" (RAVDESS has it beside neutral) and "none" (AffectNet's code for no emotion).
ALIASES = {
    "neutral": ("neutral", "neutrality"),
    "happiness": ("happiness", "happy", "joy", "joyful", "smile", "smiling"),
    "sadness": ("sadness", "sad", "sorrow", "unhappy"),
    "surprise": ("surprise", "surprised"),
    "fear": ("fear", "afraid", "fearful", "scared", "frightened"),
    "disgust": ("disgust", "disgusted"),
    "anger": ("anger", "angry", "mad", "rage"),
    "contempt": ("contempt", "contemptuous"),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}


def canonical(name):
    """The emotion a class name stands for (``'Happy'`` -> ``'happiness'``), or the name itself lower-cased."""
    key = str(name).strip().lower()
    return _CANONICAL.get(key, key)


class ClassMapping(NamedTuple):
    """How a model's outputs (source) line up with a data set's classes (target)."""

    indices: list  # for each target class, the index of the source output that stands for it
    source: list
    target: list

    @property
    def identical(self):
        return list(self.source) == list(self.target)

    @property
    def unused(self):
        """Source classes no target class takes (their outputs are dropped)."""
        taken = set(self.indices)
        return [name for i, name in enumerate(self.source) if i not in taken]

    @property
    def description(self):
        """``identical``, or the target's classes in order, ``source->target`` where the names differ (ASCII, so
        it prints on any console)."""
        if self.identical:
            return "identical"
        parts = [t if self.source[i] == t else f"{self.source[i]}->{t}" for i, t in zip(self.indices, self.target)]
        unused = f"; unused: {', '.join(self.unused)}" if self.unused else ""
        return ", ".join(parts) + unused

    def to_dict(self):
        """JSON-ready, for metrics files and checkpoint provenance."""
        return {"description": self.description,
                "classes": {t: self.source[i] for i, t in zip(self.indices, self.target)},
                "unused": self.unused}


def class_mapping(source_classes, target_classes, what="classes", source="the checkpoint", target="the data set"):
    """Match every target class to one source class: exact names first, then through ``ALIASES``.

    Raises ``PasmError(what, ...)`` naming the target classes with no match, or two that match the same
    source class (e.g. a data set with both ``happy`` and ``joy``).
    """
    source_classes, target_classes = list(source_classes), list(target_classes)
    by_name = {name: i for i, name in reversed(list(enumerate(source_classes)))}
    by_emotion = {}
    for i, name in enumerate(source_classes):
        by_emotion.setdefault(canonical(name), i)
    indices = [by_name.get(t, by_emotion.get(canonical(t))) for t in target_classes]
    missing = [t for t, i in zip(target_classes, indices) if i is None]
    if missing:
        raise PasmError(what, f"classes {_quoted(missing)} of {target} have no match among {source}'s {source_classes}")
    for i in set(indices):
        twins = [t for t, j in zip(target_classes, indices) if j == i]
        if len(twins) > 1:
            raise PasmError(what, f"classes {_quoted(twins)} of {target} all match {source}'s "
                                  f"'{source_classes[i]}'")
    return ClassMapping(indices, source_classes, target_classes)


def _quoted(names):
    return ", ".join(f"'{n}'" for n in names)


def remap_outputs(model, indices):
    """A copy of a ``FERNet`` whose outputs are ``model``'s outputs ``indices``, in that order.

    The final layer's rows (a Linear's or a 1x1/3x3 class convolution's output channels) are selected,
    so the copy is an ordinary model of the same architecture: it can be attacked, explained with
    Grad-CAM and saved as a checkpoint, and its logits equal ``model(x)[:, indices]``.
    """
    from .models import architecture, build_model

    backbone = model.backbone
    layer = architecture(model.arch).classifier(backbone)
    prefix = next(name for name, module in backbone.named_modules() if module is layer)
    index = torch.as_tensor(list(indices), dtype=torch.long)
    state = {k: (v.index_select(0, index.to(v.device)) if k.startswith(prefix + ".") else v)
             for k, v in backbone.state_dict().items()}
    mapped = build_model(model.arch, len(index), model.input_spec)
    mapped.backbone.load_state_dict(state)
    reference = next(model.parameters())
    return mapped.to(device=reference.device).train(model.training)


def mapped_model(model, source_classes, target_classes, what="classes"):
    """``model`` with its outputs in the target's class order (itself when the classes are identical), and the mapping."""
    mapping = class_mapping(source_classes, target_classes, what=what)
    return (model if mapping.identical else remap_outputs(model, mapping.indices)), mapping

"""Evaluation as FER papers report it: accuracy, mean per-class accuracy (RAF-DB), confusion —
on the clean test set and on an occluded copy of it.

PASM's claim is robustness to missing facial regions, so every evaluation also scores the test
set with one synthetic occluder per face (pasm.data.occlusion), and on SynthFER the real occluded
split ``test_wild`` as well. Test sets are decoded once to uint8 tensors at the model's size; a
trainer evaluates every generation on the same tensors.
"""
import torch
from torch.utils.data import DataLoader

from .data import available_splits, open_dataset, parse_spec
from .data.occlusion import OccludedDataset, occluder_kind
from .data.synth import SynthFER
from .data.transforms import decode_all, uint8_transform
from .errors import PasmError

EVAL_SPLITS = ("test", "val")
WILD_SPLIT = "test_wild"


@torch.no_grad()
def predict(model, dataset, batch_size=256, device="cpu", workers=0):
    """Class probabilities and labels for a whole data set, in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    probs, labels = [], []
    for images, targets in loader:
        probs.append(model(images.to(device)).float().softmax(1).cpu())
        labels.append(torch.as_tensor(targets))
    return torch.cat(probs), torch.cat(labels)


def confusion_matrix(predictions, labels, num_classes):
    """Rows are true classes, columns predicted ones."""
    index = labels * num_classes + predictions
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def classification_metrics(probs, labels, classes):
    predictions = probs.argmax(1)
    confusion = confusion_matrix(predictions, labels, len(classes))
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    present = confusion.sum(1) > 0
    return {
        "accuracy": float((predictions == labels).float().mean()) if len(labels) else 0.0,
        "mean_class_accuracy": float(per_class[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": {c: float(a) for c, a, p in zip(classes, per_class, present) if p},
        "confusion": confusion.tolist(),
        "count": len(labels),
    }


def evaluate(model, dataset, batch_size=256, device="cpu"):
    probs, labels = predict(model, dataset, batch_size, device)
    return classification_metrics(probs, labels, dataset.classes)


# ----------------------------------------------------------------------------------------------- test sets


def default_split(spec):
    """The split papers report: test where a data set has one, else val (AffectNet)."""
    splits = available_splits(spec)
    for split in EVAL_SPLITS:
        if split in splits:
            return split
    raise PasmError(spec, f"no test or val split (this copy has {', '.join(splits) or 'none'}); pass --split")


class EvalSets:
    """A test split decoded once: clean, with synthetic occluders, and (SynthFER) its real occluded split."""

    def __init__(self, spec, input_spec, split=None, occlusion_seed=0, workers=0):
        self.spec, self.split = spec, split or default_split(spec)
        transform = uint8_transform(input_spec)
        clean = open_dataset(spec, self.split, transform)
        if len(clean) == 0:
            raise PasmError(spec, f"split {self.split!r} holds no images")
        self.classes = clean.classes
        self.sets = {"clean": decode_all(clean, workers=workers),
                     "occluded": decode_all(OccludedDataset(clean, occlusion_seed, transform), workers=workers)}
        self.occluders = [occluder_kind(i, occlusion_seed) for i in range(len(clean))]
        self.wild_regions = None
        if self.split == "test" and parse_spec(spec)[0] is SynthFER and WILD_SPLIT in available_splits(spec):
            wild = open_dataset(spec, WILD_SPLIT, transform)
            self.sets["wild"] = decode_all(wild, workers=workers)
            regions = [wild.occluded_region(i) for i in range(len(wild))]
            self.wild_regions = None if None in regions else regions  # None: written before regions were recorded

    def evaluate(self, model, batch_size=256, device="cpu"):
        """Clean metrics plus ``occluded_*`` (and ``wild_*``) accuracies, one flat JSON-ready dict.

        ``wild_accuracy_by_region`` is test_wild's accuracy per occluded facial region (brows, eyes, nose, mouth):
        which region's loss costs the model most.
        """
        scores = {name: _probabilities(model, images, batch_size, device) for name, (images, _) in self.sets.items()}
        clean_labels = self.sets["clean"][1]
        metrics = {"split": self.split, **classification_metrics(scores["clean"], clean_labels, self.classes)}
        occluded = classification_metrics(scores["occluded"], clean_labels, self.classes)
        metrics.update(occluded_accuracy=occluded["accuracy"], occluded_mean_class_accuracy=occluded["mean_class_accuracy"],
                       occluded_per_class_accuracy=occluded["per_class_accuracy"],
                       occluded_accuracy_by_kind=_accuracy_by_group(scores["occluded"], clean_labels, self.occluders))
        if "wild" in scores:
            wild = classification_metrics(scores["wild"], self.sets["wild"][1], self.classes)
            metrics.update(wild_accuracy=wild["accuracy"], wild_mean_class_accuracy=wild["mean_class_accuracy"])
            if self.wild_regions is not None:
                metrics["wild_accuracy_by_region"] = _accuracy_by_group(scores["wild"], self.sets["wild"][1],
                                                                        self.wild_regions)
        return metrics


def _accuracy_by_group(probs, labels, groups):
    """Accuracy over the images of each group (``groups[i]`` names image i's), keyed by group in sorted order."""
    correct = probs.argmax(1) == labels
    members = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    return {group: float(correct[index].float().mean()) for group, index in sorted(members.items())}


@torch.no_grad()
def _probabilities(model, images, batch_size, device):
    model.eval()
    probs = [model(batch.to(device).float().div_(255)).float().softmax(1).cpu() for batch in images.split(batch_size)]
    return torch.cat(probs)


def evaluate_checkpoint(path, spec, split=None, batch_size=256, device="cpu", workers=0, occlusion_seed=0):
    """What ``pasm eval`` prints: a checkpoint scored on a data set's clean and occluded test images.

    The checkpoint's outputs are matched to the data set's classes by name (pasm.emotions: FER2013's
    ``angry`` scores RAF-DB's ``anger``), so every metric is over the data set's classes, in its order;
    ``class_mapping`` says which output stood for which class.
    """
    from .checkpoints import load_checkpoint
    from .emotions import mapped_model

    checkpoint = load_checkpoint(path, device=device)
    sets = EvalSets(spec, checkpoint.model.input_spec, split, occlusion_seed, workers)
    model, mapping = mapped_model(checkpoint.model, checkpoint.classes, sets.classes, what=spec)
    metrics = sets.evaluate(model, batch_size, device)
    return {"checkpoint": str(path), "sha256": checkpoint.sha256, "data": str(spec), "classes": list(sets.classes),
            **metrics, "class_mapping": mapping.to_dict()}


# ----------------------------------------------------------------------------------------------- the table

# Past this many classes the per-class rows and the confusion matrix stay in the JSON, so the table stays a screenful.
TABLE_CLASSES = 25
# Class names head the confusion matrix's columns cut to this many characters.
COLUMN_NAME = 5


def format_metrics(metrics):
    """What ``pasm eval`` prints: ``evaluate_checkpoint``'s metrics as a table read at a glance (at most about 40
    lines): the accuracies, then one row per class with its accuracy, occluded accuracy and confusion-matrix
    row, then accuracy by occluder and by occluded region. ``--json`` keeps every number."""
    lines = [f"{metrics['checkpoint']} on {metrics['data']} ({metrics['split']}, {metrics['count']} images)",
             f"{'':<10}{'accuracy':>10}{'mean class':>12}"]
    for name, prefix in (("clean", ""), ("occluded", "occluded_"), ("test_wild", "wild_")):
        if f"{prefix}accuracy" in metrics:
            lines.append(f"{name:<10}{metrics[prefix + 'accuracy']:>10.4f}{metrics[prefix + 'mean_class_accuracy']:>12.4f}")
    lines += [""] + _class_rows(metrics) + [""]
    lines.append("occluded, by occluder: " + _by_group(metrics["occluded_accuracy_by_kind"]))
    if "wild_accuracy_by_region" in metrics:
        lines.append("test_wild, by occluded region: " + _by_group(metrics["wild_accuracy_by_region"]))
    mapping = metrics["class_mapping"]["description"]
    if mapping != "identical":
        lines.append(f"classes mapped (checkpoint->data): {mapping}")
    return "\n".join(lines)


def _class_rows(metrics):
    """Per class: accuracy, occluded accuracy and its confusion row (true class; columns are the predictions)."""
    classes = metrics["classes"]
    if len(classes) > TABLE_CLASSES:
        return [f"{len(classes)} classes: per-class accuracy and the confusion matrix are in --json"]
    width = max(COLUMN_NAME, len(str(metrics["count"])))
    name_width = max(len("class"), *map(len, classes))
    header = f"{'class':<{name_width}}{'accuracy':>10}{'occluded':>10}   " + " ".join(
        f"{name[:COLUMN_NAME]:>{width}}" for name in classes)
    rows = [f"{'':<{name_width + 23}}confusion: rows true, columns predicted", header]
    for name, counts in zip(classes, metrics["confusion"]):
        clean, occluded = (metrics[key].get(name) for key in ("per_class_accuracy", "occluded_per_class_accuracy"))
        rows.append(f"{name:<{name_width}}{_score(clean):>10}{_score(occluded):>10}   "
                    + " ".join(f"{count:>{width}}" for count in counts))
    return rows


def _score(value):
    """An accuracy, or "-" for a class without test images."""
    return "-" if value is None else f"{value:.4f}"


def _by_group(accuracies):
    return ", ".join(f"{group} {accuracy:.4f}" for group, accuracy in accuracies.items())

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
    return {"checkpoint": str(path), "sha256": checkpoint.sha256, "data": str(spec), **metrics,
            "class_mapping": mapping.to_dict()}

"""Evaluation as FER papers report it: accuracy, mean per-class accuracy (RAF-DB), confusion."""
import torch
from torch.utils.data import DataLoader


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

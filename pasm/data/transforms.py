"""Image transforms from torchvision v2, shaped by the model's input spec.

Outputs are float tensors in [0, 1] (normalisation is inside the model, pasm.models.FERNet), or uint8
tensors for images decoded once and kept in memory (test sets, a cached training set).
"""
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2


def _decode(input_spec):
    """Every transform starts alike: to a tensor, the model's channel count, the model's size."""
    channels = v2.Grayscale(num_output_channels=1) if input_spec.channels == 1 else v2.RGB()
    return [v2.ToImage(), channels, v2.Resize((input_spec.size, input_spec.size), antialias=True)]


def eval_transform(input_spec):
    return v2.Compose([*_decode(input_spec), v2.ToDtype(torch.float32, scale=True)])


def uint8_transform(input_spec):
    """Decode, fix the channel count and resize; kept as uint8 (4x smaller than float) until a batch is used."""
    return v2.Compose(_decode(input_spec))


def decode_all(dataset, batch_size=256, workers=0):
    """A non-empty data set (whose transform gives uint8 tensors) as (images (N, C, S, S) uint8, labels (N,))."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    images, labels = [], []
    for batch, targets in loader:
        images.append(torch.as_tensor(batch))
        labels.append(torch.as_tensor(targets))
    return torch.cat(images), torch.cat(labels).long()

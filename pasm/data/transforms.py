"""Image transforms from torchvision v2, shaped by the model's input spec.

Outputs are float tensors in [0, 1]: normalisation is inside the model (pasm.models.FERNet).
"""
import torch
from torchvision.transforms import v2


def _to_channels(channels):
    return v2.Grayscale(num_output_channels=1) if channels == 1 else v2.RGB()


def eval_transform(input_spec):
    return v2.Compose(
        [
            v2.ToImage(),
            _to_channels(input_spec.channels),
            v2.Resize((input_spec.size, input_spec.size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def train_transform(input_spec):
    """The usual FER augmentation: flips, a small affine jitter, and colour jitter."""
    return v2.Compose(
        [
            v2.ToImage(),
            _to_channels(input_spec.channels),
            v2.Resize((input_spec.size, input_spec.size), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )

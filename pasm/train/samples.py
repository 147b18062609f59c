"""The training images as the trainer reads them: decoded once at the model's size, unaugmented, with their index
(augmentation and erasing happen on whole batches, on the device), and the seeds of each random stream."""
import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..data.transforms import decode_all

# Training sets up to this size (decoded at the model's size) are kept in memory as uint8.
CACHE_BYTES = 2 << 30


class TrainingImages(Dataset):
    """The training split at the model's size as (uint8 image (C, S, S), label, index), unaugmented:
    the step augments and erases whole batches on the device (pasm.data.augment).

    A set that fits in ``CACHE_BYTES`` is decoded once and kept in memory as uint8, since decoding a
    PNG costs about as much as a small CNN's share of a training step.
    """

    def __init__(self, dataset, input_spec, limit=None, workers=0):
        count = len(dataset) if limit is None else min(limit, len(dataset))
        self.labels = torch.tensor([label for _, label in dataset.samples[:count]], dtype=torch.long)
        self.source = Subset(dataset, range(count))
        decoded_bytes = count * input_spec.channels * input_spec.size**2
        self.cached = decode_all(self.source, workers=workers)[0] if decoded_bytes <= CACHE_BYTES else None

    def __len__(self):
        return len(self.labels)

    def clean(self, index):
        return self.cached[index] if self.cached is not None else self.source[index][0]

    def __getitem__(self, index):
        return self.clean(index), self.labels[index], index


class CleanImages(Dataset):
    """(uint8 image, label) at given indices, unaugmented: what mining and the fill mean look at."""

    def __init__(self, images, indices):
        self.images, self.indices = images, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        return self.images.clean(index), self.images.labels[index]


def stream_seed(*parts):
    """A 63-bit seed from any tuple of non-negative ints: one independent stream per (run seed, generation, epoch, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1

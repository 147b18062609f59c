"""What every FER data set looks like to the rest of pasm, whatever its layout on disk."""
from collections import Counter

import torch.utils.data


class FERDataset(torch.utils.data.Dataset):
    """Samples ``(source, label)`` plus the class names in label order.

    Class names travel with the data (and from there into checkpoints) so nothing downstream
    assumes one data set's class order. Subclasses only say how to open a source.
    """

    def __init__(self, name, classes, samples, transform=None):
        self.name = name
        self.classes = list(classes)
        self.samples = list(samples)
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def load_image(self, index):
        """The sample as a PIL image (mode ``L`` or ``RGB``), before any transform."""
        raise NotImplementedError

    def __getitem__(self, index):
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.samples[index][1]

    @property
    def targets(self):
        return [label for _, label in self.samples]

    def class_counts(self):
        counts = Counter(self.targets)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

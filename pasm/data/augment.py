"""The usual FER training augmentation — horizontal flip, a small affine jitter and colour jitter —
applied to a whole batch on the training device, with parameters drawn per sample.

torchvision's v2 transforms draw one set of parameters per call: on a batch every face would get the
same flip and jitter, and a call per face leaves a GPU idle and costs a CPU a large share of each step
(0.46 of the model's forward + backward for 64-px faces on 2 cores). Here the parameters are tensors,
one row per face. The geometry is one affine matrix per face applied by torch's own sampler
(``affine_grid``/``grid_sample``, what torchvision's affine runs on), and the erasing mask goes through
the same matrices with nearest sampling, so a flipped or rotated face keeps its region on the same
features. The colour jitter is torchvision's ColorJitter formulas (brightness, contrast, saturation,
in that order) with per-face factors. Ranges are torchvision's ``RandomAffine(10, (0.05, 0.05),
(0.9, 1.1))`` and ``ColorJitter(0.3, 0.3, 0.2)``; images are float in [0, 1], (B, C, S, S).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BatchAugment:
    flip: float = 0.5
    degrees: float = 10.0
    translate: float = 0.05
    scale: tuple = (0.9, 1.1)
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2

    def __call__(self, images, masks=None):
        """(augmented images, masks moved with them); ``masks`` (B, 1, S, S) bool or None."""
        grid = F.affine_grid(self.matrices(len(images), images.device), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if masks is not None:
            moved = F.grid_sample(masks.to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
            masks = moved > 0.5
        return self.jitter(images), masks

    def matrices(self, batch, device):
        """(B, 2, 3) maps from output to input coordinates (``affine_grid``'s convention, [-1, 1] units):
        the inverse of flipping, then rotating and scaling about the centre, then translating."""
        angle = _uniform(batch, -self.degrees, self.degrees, device) * (math.pi / 180)
        scale = _uniform(batch, *self.scale, device)
        shift = _uniform(batch * 2, -2 * self.translate, 2 * self.translate, device).view(batch, 2)
        mirror = torch.where(torch.rand(batch, device=device) < self.flip, -1.0, 1.0)
        cos, sin = angle.cos() / scale, angle.sin() / scale
        linear = torch.stack([torch.stack([mirror * cos, mirror * sin], 1), torch.stack([-sin, cos], 1)], 1)
        offset = -(linear @ shift[:, :, None])
        return torch.cat([linear, offset], 2)

    def jitter(self, images):
        """Brightness, contrast and saturation factors drawn per face, blended as torchvision blends them
        (each a linear blend with black, the mean grey, the grey image, clamped to [0, 1])."""
        batch = len(images)
        images = (images * self._factors(batch, self.brightness, images)).clamp_(0, 1)
        mean = _grey(images).mean((1, 2, 3), keepdim=True)
        images = torch.lerp(mean, images, self._factors(batch, self.contrast, images)).clamp_(0, 1)
        if images.shape[1] == 3:
            images = torch.lerp(_grey(images), images, self._factors(batch, self.saturation, images)).clamp_(0, 1)
        return images

    @staticmethod
    def _factors(batch, amount, images):
        return _uniform(batch, max(0.0, 1 - amount), 1 + amount, images.device).view(batch, 1, 1, 1).to(images.dtype)


def _uniform(count, low, high, device):
    return torch.rand(count, device=device) * (high - low) + low


def _grey(images):
    """ITU-R 601 luma, the weights torchvision's rgb_to_grayscale uses."""
    if images.shape[1] == 1:
        return images
    red, green, blue = images.unbind(1)
    return (0.2989 * red + 0.587 * green + 0.114 * blue).unsqueeze(1)

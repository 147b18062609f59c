"""PASM's mining step as one call: attack a batch with the teacher, locate the informative
regions, and erase them — plus the same-area baselines it is compared with.

The trainer mines whole data sets with it, the CLI and the app mine single faces; all of them
go through ``mine`` so the three always agree.
"""
from dataclasses import asdict, dataclass

import torch

from .attack import AttackConfig, PointAttack
from .erasing import attention_erasing, erase, random_erasing
from .regions import locate_regions


@dataclass
class RegionConfig:
    """``area`` is a fraction of the face crop's area (0.1: a window of about a third of its side)."""

    strategy: str = "densest"
    area: float = 0.1
    adaptive: bool = False
    fill: str = "mean"

    def to_dict(self):
        return asdict(self)


@dataclass
class Mined:
    attack: object
    masks: torch.Tensor
    boxes: torch.Tensor
    erased: torch.Tensor


def mine(teacher, images, labels=None, attack_config=None, region_config=None, mean=None):
    """Attack ``images`` with ``teacher``, then erase the region its points locate."""
    region_config = region_config or RegionConfig()
    result = PointAttack(teacher, attack_config or AttackConfig())(images, labels)
    regions = locate_regions(
        result.points,
        result.num_points,
        images.shape[-1],
        strategy=region_config.strategy,
        area=region_config.area,
        adaptive=region_config.adaptive,
    )
    erased = erase(images, regions.masks, fill=region_config.fill, mean=mean)
    return Mined(result, regions.masks, regions.boxes, erased)


def baselines(teacher, images, labels, area, fill="mean", mean=None, generator=None):
    """Random and attention (Grad-CAM peak) erasing with the same window area as PASM's."""
    random_images, random_masks = random_erasing(images, area, fill=fill, mean=mean, generator=generator)
    attention_images, attention_masks = attention_erasing(teacher, images, labels, area, fill=fill, mean=mean)
    return {
        "random": (random_images, random_masks),
        "attention": (attention_images, attention_masks),
    }


@torch.no_grad()
def probabilities(model, images):
    model.eval()
    return model(images).float().softmax(1)

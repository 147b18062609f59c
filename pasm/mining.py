"""Where to erase, as one class per method with one call, in the pattern of captum's ``attr``.

Each method is built once with what it needs and then called on batches of images in [0, 1]::

    regions = PasmRegions(teacher, attack_config, region_config).locate(images, labels)
    erased = erase(images, regions.masks, region_config.fill, mean)

``locate`` returns ``Located``: the masks and boxes to erase, plus what explains them (the attack
for PASM, the Grad-CAM map for attention), so the trainer, ``compare``, ``report``, the benchmark
and the app all erase exactly what the library located. The methods are registered under the
``--erasing`` names; ``region_method`` builds one by name.

A comparison erases the same area per sample: PASM's region is not always the nominal window (an
adaptive window varies per face, a face with no point has none), so the baselines take ``like=`` the
PASM ``Located`` and place, per image, a window of as many pixels as its PASM region::

    pasm = PasmRegions(teacher).locate(images, labels)
    random = RandomRegions(generator=generator).locate(images, like=pasm)
"""
from dataclasses import asdict, dataclass

import torch

from .attack import AttackConfig, PointAttack
from .erasing import GradCAM, eval_mode, random_boxes, random_windows
from .errors import PasmError
from .options import FILLS, STRATEGIES
from .regions import box_masks, densest_window, locate_regions, square_sides, window_side


@dataclass
class RegionConfig:
    """``area`` is a fraction of the face crop's area (0.1: a window of about a third of its side)."""

    strategy: str = "densest"
    area: float = 0.1
    adaptive: bool = False
    fill: str = "mean"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise PasmError(f"region strategy {self.strategy!r}", f"unknown; choose one of {', '.join(STRATEGIES)}")
        if self.fill not in FILLS:
            raise PasmError(f"erasing fill {self.fill!r}", f"unknown; choose one of {', '.join(FILLS)}")
        if not 0 < float(self.area) <= 1:
            raise PasmError(f"region area {self.area}", "must be a fraction of the image in (0, 1]")
        if self.adaptive and self.strategy == "disks":
            raise PasmError("region settings", "adaptive sizing applies to the window strategies only, not disks")

    def to_dict(self):
        return asdict(self)


@dataclass
class Located:
    """``masks`` (B, 1, S, S) bool and ``boxes`` (B, 4) long (an empty box where nothing was located);
    ``attack`` is PASM's AttackResult and ``cam`` attention's Grad-CAM map (B, 1, S, S), else None."""

    masks: torch.Tensor
    boxes: torch.Tensor
    attack: object = None
    cam: torch.Tensor = None


class RegionMethod:
    """A way to choose, per image, the region to erase."""

    name = None

    def __init__(self, region_config=None):
        self.region_config = region_config or RegionConfig()

    def locate(self, images, labels=None, like=None):
        """The regions of ``images`` (B, C, S, S); ``labels`` default to the model's predictions. A baseline
        (random, attention) given ``like``, another method's ``Located``, sizes each image's window to that
        region's pixel count."""
        raise NotImplementedError

    def compact(self, located):
        """What a data set's worth of regions is kept as: boxes, or masks where regions are not boxes."""
        return located.masks if self.region_config.strategy == "disks" else located.boxes


class PasmRegions(RegionMethod):
    """PASM: the teacher's point attack, then the region its points locate (pasm.regions)."""

    name = "pasm"

    def __init__(self, model, attack_config=None, region_config=None):
        super().__init__(region_config)
        self.model = model
        self.attack = PointAttack(model, attack_config or AttackConfig())

    def locate(self, images, labels=None):
        result = self.attack(images, labels)
        return self.from_attack(result, images.shape[-1])

    def from_attack(self, result, size):
        """The regions of an attack already run (continuous-batching miners run the attack themselves)."""
        cfg = self.region_config
        found = locate_regions(result.points, result.num_points, size, cfg.strategy, cfg.area, cfg.adaptive)
        return Located(found.masks, found.boxes, attack=result)


class RandomRegions(RegionMethod):
    """Random erasing: a window of PASM's area (or of ``like``'s per image) at a uniformly random place,
    drawn from ``generator``."""

    name = "random"

    def __init__(self, region_config=None, generator=None):
        super().__init__(region_config)
        self.generator = generator

    def locate(self, images, labels=None, like=None):
        size = _square_side(images)
        if like is None:
            boxes = random_boxes(images.shape[0], size, self.region_config.area, self.generator, images.device)
        else:
            boxes = random_windows(square_sides(like.masks).to(images.device), size, self.generator)
        return Located(box_masks(boxes, size), boxes)


class AttentionRegions(RegionMethod):
    """Attention (adversarial) erasing: the window of PASM's area (or of ``like``'s per image) at the peak
    of the teacher's Grad-CAM."""

    name = "attention"

    def __init__(self, model, region_config=None):
        super().__init__(region_config)
        self.model = model

    def locate(self, images, labels=None, like=None):
        size = _square_side(images)
        cam = GradCAM(self.model).attribute(images, labels)
        if like is None:
            boxes = densest_window(cam, window_side(size, self.region_config.area))
        else:
            boxes = _densest_windows(cam, square_sides(like.masks).to(cam.device))
        return Located(box_masks(boxes, size), boxes, cam=cam)


def _densest_windows(weight_map, sides):
    """``densest_window`` with a side per image, one call per distinct side; a side of 0 gives the empty box."""
    boxes = torch.zeros(len(sides), 4, dtype=torch.long, device=weight_map.device)
    for side in sides.unique().tolist():
        if side > 0:
            chosen = sides == side
            boxes[chosen] = densest_window(weight_map[chosen], side)
    return boxes


REGION_METHODS = {method.name: method for method in (PasmRegions, RandomRegions, AttentionRegions)}


def region_method(name, model=None, attack_config=None, region_config=None, generator=None):
    """The method registered as ``name`` (an ``--erasing`` name other than "none"), built with what it needs."""
    if name == "pasm":
        return PasmRegions(model, attack_config, region_config)
    if name == "attention":
        return AttentionRegions(model, region_config)
    if name == "random":
        return RandomRegions(region_config, generator)
    raise PasmError(f"erasing {name!r}", f"no regions to locate; choose one of {', '.join(REGION_METHODS)}")


def locate_all(method, batches, capacity):
    """Regions for every image of ``batches`` ((images, labels) pairs on the device, labels may be None),
    in order, kept compact (``RegionMethod.compact``), plus PASM's attack result without its images.

    PASM mines with continuous batching (``PointAttack.stream``) and locates the regions of
    ``capacity`` images at a time, so memory grows with the regions kept, not with the data set.
    """
    if not isinstance(method, PasmRegions):
        return torch.cat([method.compact(method.locate(images, labels)) for images, labels in batches]), None
    size = None

    def sized(batches):
        nonlocal size
        for images, labels in batches:
            size = images.shape[-1]
            yield images, labels

    result = method.attack.stream(sized(batches), capacity)
    regions = [method.compact(method.from_attack(result.rows(start, start + capacity), size))
               for start in range(0, len(result), capacity)]
    return torch.cat(regions), result


def _square_side(images):
    height, width = images.shape[-2:]
    if height != width:
        raise PasmError(f"images of size {height}x{width}", "erasing windows need square images")
    return height


@torch.no_grad()
def probabilities(model, images):
    """Class probabilities in eval mode; the model's modes are left as they were (it may be shared or training)."""
    with eval_mode(model):
        return model(images).float().softmax(1)


"""Which pixels a training step erases: each sample's region (mined, or drawn from several generations'), taken with
probability ``p``, some of them moved to a random window of the same area."""
import torch

from ..erasing import random_windows
from ..regions import box_masks, square_sides


def erasing_masks(regions, index, p, size, mix=0.0):
    """The masks to erase for the samples ``index`` of a batch: each sample's region with probability ``p``;
    a sample without a region stays clean.

    ``regions`` (on the device) are boxes (N, 4) or masks (N, 1, S, S), one per sample, or, for regions drawn
    from several generations, boxes (N, K, 4) or masks (N, K, S, S), of which each step draws one per sample.
    With ``mix``, that share of the samples get a random window of their region's area instead."""
    masks = _as_masks(_drawn(regions[index]), size)
    if mix:
        masks = _mixed(masks, mix)
    picked = torch.rand(len(index), device=masks.device) < p
    return masks & picked[:, None, None, None]


def combine_regions(found, mode, size):
    """Several generations' regions of the same images, as one: "union", masks (N, 1, S, S) of every pixel any of them
    covers; "draw", all of them (N, K, 4) boxes or (N, K, S, S) masks, from which ``erasing_masks`` draws one per step."""
    if mode == "union":
        return torch.stack([_as_masks(r, size) for r in found]).any(0)
    return torch.stack(found, dim=1) if found[0].dim() == 2 else torch.cat(found, dim=1)


def regions_area(regions, size):
    """The mean share of the image that the regions cover (over the candidates too, for drawn ones)."""
    masks = _as_masks(regions.flatten(0, 1) if regions.dim() == 3 else regions, size)
    return float(masks.float().mean()) if len(masks) else 0.0


def _as_masks(regions, size):
    return box_masks(regions, size) if regions.dim() == 2 else regions.bool()


def _drawn(regions):
    """One region per sample from (B, K, ...) candidates, uniformly; (B, 4) boxes and (B, 1, S, S) masks pass."""
    if regions.dim() == 2 or (regions.dim() == 4 and regions.shape[1] == 1):
        return regions
    pick = torch.randint(regions.shape[1], (len(regions),), device=regions.device)
    drawn = regions[torch.arange(len(regions), device=regions.device), pick]
    return drawn if drawn.dim() == 2 else drawn[:, None]


def _mixed(masks, mix):
    """``masks`` with a ``mix`` share of them moved to a random window of the same area (a square of that many pixels)."""
    size = masks.shape[-1]
    windows = box_masks(random_windows(square_sides(masks), size), size)
    moved = torch.rand(len(masks), device=masks.device) < mix
    return torch.where(moved[:, None, None, None], windows, masks)

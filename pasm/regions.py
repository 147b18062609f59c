"""From the attack's points to the informative region that PASM erases.

The point attack (pasm.attack) returns, per image, a few pixel locations in the order it changed
them. The paper erases a fixed-size region around where those points gather; this module offers
that rule ("densest") and three alternatives for ablations, all batched on the points' device:

* ``densest``: the square window holding the most point weight (earlier points weigh more);
* ``first``: the window centred on the first point, the one that moved the logit most;
* ``centroid``: the window centred on the order-weighted mean of the points;
* ``disks``: the union of equal disks around every point, their radius chosen per image so that
  they cover exactly as many pixels as the window of the same area.

Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, so a box's pixels are
``image[..., y0:y1, x0:x1]`` and its area is ``(x1 - x0) * (y1 - y0)``. An image on which the
attack found no point gets an empty mask and the box ``(0, 0, 0, 0)``.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import PasmError
from .options import STRATEGIES

WEIGHTINGS = ("order", "uniform")

# Window scores this close to the best (relative) count as ties, which are then broken toward
# centring. Point-map scores differ by at least 1/num_points, far above this.
_TIE_TOLERANCE = 1e-5


@dataclass
class Regions:
    """``masks`` (B, 1, H, W) bool and ``boxes`` (B, 4) long; for disks, the mask's bounding box."""

    masks: torch.Tensor
    boxes: torch.Tensor


def window_side(image_size, area):
    """The side of the square window covering ``area`` of a square image.

    Every window strategy, random erasing and attention erasing go through this one rounding,
    so baselines compared "at the same area" erase exactly the same number of pixels.
    """
    if not 0 < area <= 1:
        raise PasmError(f"erasing area {area}", "must be a fraction of the image in (0, 1]")
    if image_size < 1:
        raise PasmError(f"image size {image_size}", "must be at least 1 pixel")
    return min(max(round(math.sqrt(area) * image_size), 1), image_size)


def square_sides(masks):
    """Per mask (B, 1, H, W), the side of the square window with as many pixels (0 for an empty mask): what "a
    window of the same area" is for a region that is not the nominal window; exact for windows and disks, whose
    pixel counts are squares."""
    return masks.flatten(1).sum(1).float().sqrt().round().long()


def point_map(points, num_points, size, weighting="order"):
    """A (B, 1, size, size) map holding each point's weight at its pixel (weights add up on repeats).

    ``order`` gives the i-th of n points the weight (n - i) / n: linear, so the number of points
    in a window stays the main signal (the paper erases where points gather) and the attack order
    only decides between similar windows. A steeper rule such as 1 / (i + 1) would let the first
    point outweigh most clusters and turn "densest" into "first". Weights use the image's own n,
    not the batch's padding, so an image gets the same region alone or in any batch.
    """
    if weighting not in WEIGHTINGS:
        raise PasmError(f"point weighting {weighting!r}", f"unknown; choose one of {', '.join(WEIGHTINGS)}")
    points, num_points = _checked_points(points, num_points, size)
    return _point_map(points, num_points, size, weighting)


def _point_map(points, num_points, size, weighting):
    weights = _point_weights(num_points, points.shape[1], weighting)
    flat = points[..., 1] * size + points[..., 0]
    flat = torch.where(weights > 0, flat, torch.zeros_like(flat))
    weight_map = torch.zeros(points.shape[0], size * size, device=points.device)
    weight_map.scatter_add_(1, flat, weights)
    return weight_map.view(-1, 1, size, size)


def densest_window(weight_map, side):
    """The side×side window with the largest sum of ``weight_map``, one per image, fully inside.

    Window sums come from a stride-1 box filter (``avg_pool2d`` along each axis). A sparse map has
    many equal windows (every window holding the same points); among the windows within a relative
    1e-5 of the best, the one whose weight sits nearest its centre wins, scored with a tent filter
    (two box filters in a row), and any tie left goes to the first window in row-major order. So a
    lone point gets a window centred on it, and an all-zero map the top-left window.
    """
    if weight_map.dim() != 4 or weight_map.shape[1] != 1:
        raise PasmError(f"weight map of shape {list(weight_map.shape)}", "must be (B, 1, H, W)")
    height, width = weight_map.shape[-2:]
    if not 1 <= side <= min(height, width):
        raise PasmError(f"window side {side}", f"must be between 1 and the map size {min(height, width)}")
    if not weight_map.is_floating_point():
        weight_map = weight_map.float()
    mass = _box_filter(weight_map, side).flatten(1)
    best = mass.amax(dim=1, keepdim=True)
    tied = mass >= best - _TIE_TOLERANCE * best.abs()
    centred = _tent_filter(weight_map, side).flatten(1)
    index = torch.where(tied, centred, torch.full_like(centred, -math.inf)).argmax(dim=1)
    columns = width - side + 1
    x0, y0 = index % columns, torch.div(index, columns, rounding_mode="floor")
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def _box_filter(weight_map, side):
    """Window means, one axis at a time: O(side) per pixel instead of O(side²)."""
    return F.avg_pool2d(F.avg_pool2d(weight_map, (side, 1), stride=1), (1, side), stride=1)


def _tent_filter(weight_map, side):
    """Window sums weighted 1, 2, ..., peak, ..., 2, 1 across each axis (a box of a box)."""
    first = (side + 1) // 2
    second = side + 1 - first
    return _box_filter(_box_filter(weight_map, first), second)


def box_masks(boxes, size):
    """Boolean (B, 1, size, size) masks of the boxes; a zero-area box gives an empty mask."""
    coords = torch.arange(size, device=boxes.device)
    x0, y0, x1, y1 = (boxes[:, i, None] for i in range(4))
    inside_x = (coords >= x0) & (coords < x1)
    inside_y = (coords >= y0) & (coords < y1)
    return (inside_y[:, :, None] & inside_x[:, None, :])[:, None]


def mask_boxes(masks):
    """The bounding boxes (B, 4) of boolean masks; (0, 0, 0, 0) for an empty mask."""
    planes = masks.flatten(1, 2)
    rows, cols = planes.any(dim=2), planes.any(dim=1)
    y0, y1 = _first_and_end(rows)
    x0, x1 = _first_and_end(cols)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return boxes * rows.any(dim=1)[:, None]


def _first_and_end(flags):
    """Index of the first True and one past the last True along dim 1."""
    length = flags.shape[1]
    as_int = flags.to(torch.uint8)
    first = as_int.argmax(dim=1)
    end = length - as_int.flip(1).argmax(dim=1)
    return first, end


def locate_regions(points, num_points, size, strategy="densest", area=0.1, adaptive=False):
    """The informative region of each image, as masks and boxes on the points' device.

    ``area`` is the region's fraction of the image: the window's for the window strategies (densest,
    first, centroid); for ``disks``, the union of the disks covers exactly ``window_side(size, area)**2``
    pixels too, so every strategy, and the baselines beside it, erase the same number of pixels.
    With ``adaptive=True`` each window keeps the centre its strategy chose but takes its side from the
    spread of the image's points: side = 4·σ (±2σ around the centre, about 95 % of a Gaussian cluster
    along each axis), where σ is the order-weighted RMS distance of the points from their weighted
    mean, per axis; the side is clamped to the windows of area/2 and 2·area, so one point or a tight
    cluster gets the small window and a scattered attack the large one.
    """
    if strategy not in STRATEGIES:
        raise PasmError(f"region strategy {strategy!r}", f"unknown; choose one of {', '.join(STRATEGIES)}")
    points, num_points = _checked_points(points, num_points, size)
    side = window_side(size, area)
    if strategy == "disks":
        if adaptive:
            raise PasmError("region strategy 'disks'", "adaptive sizing applies to the window strategies only")
        masks = _disk_masks(points, num_points, size, side * side)
        return Regions(masks, mask_boxes(masks))
    if strategy == "densest":
        boxes = densest_window(_point_map(points, num_points, size, "order"), side)
    elif strategy == "first":
        boxes = _centred_windows(points[:, 0, 0], points[:, 0, 1], side, size)
    else:
        cx, cy = _weighted_mean(points, num_points)
        boxes = _centred_windows(cx.round().long(), cy.round().long(), side, size)
    if adaptive:
        sides = _adaptive_sides(points, num_points, size, area)
        boxes = _centred_windows_twice(boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3], sides, size)
    boxes = boxes * (num_points > 0)[:, None]
    return Regions(box_masks(boxes, size), boxes)


def _checked_points(points, num_points, size):
    """Points as long (B, K>=1, 2) and counts as long (B,), refusing anything the attack cannot give."""
    if points.dim() != 3 or points.shape[2] != 2:
        raise PasmError(f"attack points of shape {list(points.shape)}", "must be (B, K, 2) pixel coordinates (x, y)")
    if points.is_floating_point() or num_points.is_floating_point():
        raise PasmError("attack points", "must be integer pixel coordinates and counts")
    if num_points.shape != points.shape[:1]:
        raise PasmError(f"num_points of shape {list(num_points.shape)}", f"must be ({points.shape[0]},), one per image")
    points, num_points = points.long(), num_points.to(points.device).long()
    if points.shape[1] == 0:
        points = torch.full((points.shape[0], 1, 2), -1, dtype=torch.long, device=points.device)
    if bool(((num_points < 0) | (num_points > points.shape[1])).any()):
        raise PasmError("num_points", f"must be between 0 and the {points.shape[1]} points given per image")
    valid = torch.arange(points.shape[1], device=points.device) < num_points[:, None]
    outside = ((points < 0) | (points >= size)).any(dim=2)
    if bool((valid & outside).any()):
        raise PasmError("attack points", f"lie outside the {size}x{size} image")
    return points, num_points


def _point_weights(num_points, k, weighting):
    """(B, K) weights, zero on padding."""
    index = torch.arange(k, device=num_points.device)
    valid = index < num_points[:, None]
    if weighting == "uniform":
        return valid.float()
    weights = (num_points[:, None] - index).float() / num_points.clamp(min=1)[:, None].float()
    return weights * valid


def _weighted_mean(points, num_points):
    weights = _point_weights(num_points, points.shape[1], "order")
    total = weights.sum(dim=1).clamp(min=1e-12)
    xy = points.float()
    return (weights * xy[..., 0]).sum(1) / total, (weights * xy[..., 1]).sum(1) / total


def _adaptive_sides(points, num_points, size, area):
    weights = _point_weights(num_points, points.shape[1], "order")
    total = weights.sum(dim=1).clamp(min=1e-12)
    cx, cy = _weighted_mean(points, num_points)
    xy = points.float()
    squared = (xy[..., 0] - cx[:, None]) ** 2 + (xy[..., 1] - cy[:, None]) ** 2
    sigma = ((weights * squared).sum(1) / total / 2).sqrt()
    smallest, largest = window_side(size, area / 2), window_side(size, min(2 * area, 1.0))
    return (4 * sigma).round().long().clamp(smallest, largest)


def _centred_windows(cx, cy, side, size):
    """Side×side windows centred on (cx, cy), shifted inside the image where they would overflow."""
    return _centred_windows_twice(2 * cx + 1, 2 * cy + 1, side, size)


def _centred_windows_twice(cx2, cy2, side, size):
    """Like ``_centred_windows`` with the centres given doubled (so half pixels stay exact)."""
    side = torch.as_tensor(side, device=cx2.device).expand_as(cx2)
    x0 = torch.div(cx2 - side, 2, rounding_mode="floor")
    y0 = torch.div(cy2 - side, 2, rounding_mode="floor")
    x0 = torch.minimum(x0.clamp(min=0), size - side)
    y0 = torch.minimum(y0.clamp(min=0), size - side)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def _disk_masks(points, num_points, size, pixels):
    """The ``pixels`` pixels nearest to any of the image's points: the union of equal disks around the
    points, with the radius that covers exactly that many pixels (on the rim, where more pixels lie at
    that distance than are needed, the first in row-major order are kept, so the choice is deterministic).
    """
    coords = torch.arange(size, device=points.device)
    far = 2 * size * size  # beyond any squared distance inside the image: what padding points lie at
    valid = torch.arange(points.shape[1], device=points.device) < num_points[:, None]
    nearest = torch.full((points.shape[0], size, size), far, dtype=torch.long, device=points.device)
    for k in range(points.shape[1]):  # a running minimum: memory stays one map whatever the number of points
        across = (coords - points[:, k, 0, None]) ** 2
        down = ((coords - points[:, k, 1, None]) ** 2).masked_fill(~valid[:, k, None], far)
        torch.minimum(nearest, down[:, :, None] + across[:, None, :], out=nearest)
    order = nearest.flatten(1) * (size * size) + torch.arange(size * size, device=points.device)  # no ties left
    chosen = order.topk(pixels, dim=1, largest=False, sorted=False).indices
    masks = torch.zeros_like(order, dtype=torch.bool).scatter_(1, chosen, True) & (num_points > 0)[:, None]
    return masks.view(-1, 1, size, size)


def box_iou(a, b):
    """Intersection over union of matching boxes (B,); 0 where both are empty."""
    a, b = a.float(), b.float()
    width = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    height = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    intersection = width * height
    union = _box_area(a) + _box_area(b) - intersection
    return intersection / union.clamp(min=1)


def _box_area(boxes):
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def mask_iou(a, b):
    """Intersection over union of matching masks (B,); 0 where both are empty."""
    a, b = a.flatten(1), b.flatten(1)
    intersection = (a & b).sum(dim=1).float()
    union = (a | b).sum(dim=1).float()
    return intersection / union.clamp(min=1)

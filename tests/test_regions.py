import math

import pytest
import torch

from pasm.errors import PasmError
from pasm.regions import (
    STRATEGIES,
    box_iou,
    box_masks,
    densest_window,
    locate_regions,
    mask_boxes,
    mask_iou,
    point_map,
    window_side,
)

SIZE = 48
WINDOWS = ("densest", "first", "centroid")


def padded(point_lists, k=None):
    """Attack-style tensors: (B, K, 2) points padded with -1 and the (B,) counts."""
    k = k or max(1, max(len(p) for p in point_lists))
    points = torch.full((len(point_lists), k, 2), -1, dtype=torch.long)
    for b, pts in enumerate(point_lists):
        if pts:
            points[b, : len(pts)] = torch.tensor(pts)
    return points, torch.tensor([len(p) for p in point_lists])


def random_points(batch, k, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = torch.randint(0, size, (batch, k, 2), generator=g)
    counts = torch.randint(1, k + 1, (batch,), generator=g)
    points[torch.arange(k) >= counts[:, None]] = -1
    return points, counts


def covers(box, x, y):
    x0, y0, x1, y1 = box.tolist()
    return x0 <= x < x1 and y0 <= y < y1


def test_window_side_matches_area_and_stays_in_range():
    assert window_side(100, 0.25) == 50
    assert window_side(SIZE, 1.0) == SIZE
    assert window_side(10, 1e-6) == 1
    sides = [window_side(SIZE, a) for a in (0.05, 0.1, 0.2, 0.4)]
    assert sides == sorted(sides) and len(set(sides)) == 4
    for area in (0.05, 0.1, 0.3):
        assert abs(window_side(SIZE, area) ** 2 - area * SIZE**2) <= 2 * math.sqrt(area) * SIZE
    for bad in (0, -0.1, 1.5):
        with pytest.raises(PasmError, match="erasing area"):
            window_side(SIZE, bad)


@pytest.mark.parametrize("strategy", WINDOWS)
@pytest.mark.parametrize("area", [0.05, 0.1, 0.3])
def test_windows_have_exactly_the_requested_area_inside_the_image(strategy, area):
    points, counts = random_points(16, 8, SIZE)
    points[0, 0] = torch.tensor([0, 0])  # corners force clamping
    points[1, 0] = torch.tensor([SIZE - 1, SIZE - 1])
    regions = locate_regions(points, counts, SIZE, strategy, area)
    side = window_side(SIZE, area)
    assert regions.masks.shape == (16, 1, SIZE, SIZE) and regions.masks.dtype == torch.bool
    assert (regions.masks.sum(dim=(1, 2, 3)) == side * side).all()
    assert (regions.boxes[:, 2] - regions.boxes[:, 0] == side).all()
    assert (regions.boxes[:, 3] - regions.boxes[:, 1] == side).all()
    assert (regions.boxes >= 0).all() and (regions.boxes <= SIZE).all()
    assert torch.equal(regions.masks, box_masks(regions.boxes, SIZE))


def test_disks_are_the_nearest_pixels_to_the_points_with_the_windows_pixel_count():
    points, counts = random_points(8, 6, SIZE, seed=3)
    regions = locate_regions(points, counts, SIZE, "disks", area=0.1)
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    for b in range(8):
        pts = points[b, : counts[b]]
        mask = regions.masks[b, 0]
        assert mask.sum() == window_side(SIZE, 0.1) ** 2
        for x, y in pts.tolist():
            assert mask[y, x]
        distance = ((xs[None] - pts[:, 0, None, None]) ** 2 + (ys[None] - pts[:, 1, None, None]) ** 2).amin(0)
        radius = distance[mask].max()  # a union of disks: all that is nearer than its rim is in, nothing beyond it
        assert mask[distance < radius].all() and not mask[distance > radius].any()
        assert torch.equal(regions.boxes[b], mask_boxes(regions.masks[b : b + 1])[0])
        x0, y0, x1, y1 = regions.boxes[b].tolist()
        assert mask[y0:y1, x0:x1].sum() == mask.sum()


def test_disks_follow_the_area():
    points, counts = padded([[(24, 24), (10, 30)], [(3, 44)]])
    small = locate_regions(points, counts, SIZE, "disks", area=0.1).masks
    large = locate_regions(points, counts, SIZE, "disks", area=0.2).masks
    assert (small.flatten(1).sum(1) == window_side(SIZE, 0.1) ** 2).all()
    assert (large.flatten(1).sum(1) == window_side(SIZE, 0.2) ** 2).all()
    assert (small & ~large).sum() == 0, "a larger area grows the same disks"
    for area in (0.1, 0.2):
        erased = locate_regions(points, counts, SIZE, "disks", area=area).masks.float().mean((1, 2, 3))
        assert ((erased > 0.75 * area) & (erased < 1.25 * area)).all()


def test_adaptive_window_grows_with_the_spread_of_the_points():
    tight = [(20, 20), (21, 22), (22, 21), (20, 22)]
    wide = [(8, 8), (40, 40), (8, 40), (40, 8)]
    points, counts = padded([tight, wide])
    boxes = locate_regions(points, counts, SIZE, "densest", area=0.1, adaptive=True).boxes
    sides = boxes[:, 2] - boxes[:, 0]
    assert torch.equal(sides, boxes[:, 3] - boxes[:, 1])
    assert sides[0] < window_side(SIZE, 0.1) < sides[1]
    assert window_side(SIZE, 0.05) <= sides.min() and sides.max() <= window_side(SIZE, 0.2)
    assert (boxes >= 0).all() and (boxes <= SIZE).all()
    assert all(covers(boxes[0], x, y) for x, y in tight)


@pytest.mark.parametrize("strategy", WINDOWS)
def test_adaptive_keeps_the_centre_of_its_strategy(strategy):
    points, counts = padded([[(24, 24), (26, 22), (30, 28)]])
    fixed = locate_regions(points, counts, SIZE, strategy, area=0.1).boxes.float()
    adapted = locate_regions(points, counts, SIZE, strategy, area=0.1, adaptive=True).boxes.float()
    centre = lambda b: ((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)  # noqa: E731
    for fixed_c, adapted_c in zip(centre(fixed), centre(adapted)):
        assert torch.allclose(fixed_c, adapted_c, atol=0.5)


def test_densest_covers_the_cluster_not_the_lone_first_point():
    cluster = [(40, 40), (42, 41), (41, 43), (44, 44), (43, 42)]
    points, counts = padded([[(3, 3)] + cluster])
    box = locate_regions(points, counts, SIZE, "densest", area=0.1).boxes[0]
    assert all(covers(box, x, y) for x, y in cluster)
    assert not covers(box, 3, 3)


def test_order_weighting_prefers_the_cluster_the_attack_found_first():
    a = [(6, 6), (8, 7), (7, 9)]
    b = [(40, 40), (41, 38), (39, 41)]
    interleaved_a_first = [a[0], b[0], a[1], b[1], a[2], b[2]]
    interleaved_b_first = [b[0], a[0], b[1], a[1], b[2], a[2]]
    points, counts = padded([interleaved_a_first, interleaved_b_first])
    boxes = locate_regions(points, counts, SIZE, "densest", area=0.1).boxes
    assert all(covers(boxes[0], x, y) for x, y in a)
    assert all(covers(boxes[1], x, y) for x, y in b)
    uniform = densest_window(point_map(points, counts, SIZE, "uniform"), window_side(SIZE, 0.1))
    assert torch.equal(uniform[0], uniform[1])  # without order the two images are the same point set


def test_point_map_weights():
    points, counts = padded([[(1, 2), (3, 4), (1, 2)], [(5, 5)], []], k=4)
    order = point_map(points, counts, 8, "order")
    uniform = point_map(points, counts, 8, "uniform")
    assert order.shape == (3, 1, 8, 8)
    assert order[0, 0, 2, 1] == pytest.approx(1 + 1 / 3)  # weights 3/3 and 1/3 add up on a repeat
    assert order[0, 0, 4, 3] == pytest.approx(2 / 3)
    assert order[1, 0, 5, 5] == 1 and order[1].sum() == 1
    assert uniform[0].sum() == 3 and uniform[0, 0, 2, 1] == 2
    assert order[2].sum() == 0 and uniform[2].sum() == 0
    with pytest.raises(PasmError, match="point weighting"):
        point_map(points, counts, 8, "loudest")


def test_densest_window_centres_a_lone_point_and_breaks_ties_the_same_way_every_time():
    weight_map = torch.zeros(1, 1, SIZE, SIZE)
    weight_map[0, 0, 30, 20] = 1.0
    box = densest_window(weight_map, 11)[0].tolist()
    assert box == [20 - 5, 30 - 5, 20 + 6, 30 + 6]
    empty = densest_window(torch.zeros(2, 1, SIZE, SIZE), 11)
    assert empty.tolist() == [[0, 0, 11, 11]] * 2


def test_densest_window_on_a_smooth_map_finds_the_peak():
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    peaks = [(12, 30), (35, 10)]
    maps = torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 20.0) for x, y in peaks])[:, None]
    boxes = densest_window(maps.double(), 9)
    assert boxes.dtype == torch.long
    for box, (x, y) in zip(boxes, peaks):
        assert box.tolist() == [x - 4, y - 4, x + 5, y + 5]
    assert torch.equal(boxes, densest_window(maps.float(), 9))


def test_first_window_is_centred_on_the_first_point_and_clamped_at_borders():
    side = window_side(SIZE, 0.1)
    half = side // 2
    firsts = [(20, 25), (1, 46), (SIZE - 1, 0)]
    points, counts = padded([[p, (10, 10)] for p in firsts])
    boxes = locate_regions(points, counts, SIZE, "first", area=0.1).boxes
    for box, (x, y) in zip(boxes, firsts):
        expected_x0 = min(max(x - half, 0), SIZE - side)
        expected_y0 = min(max(y - half, 0), SIZE - side)
        assert box.tolist() == [expected_x0, expected_y0, expected_x0 + side, expected_y0 + side]
        assert covers(box, x, y)


def test_centroid_window_is_centred_on_the_order_weighted_mean():
    pts = [(10, 12), (30, 12), (20, 40)]
    weights = [3, 2, 1]
    cx = round(sum(w * x for w, (x, _) in zip(weights, pts)) / sum(weights))
    cy = round(sum(w * y for w, (_, y) in zip(weights, pts)) / sum(weights))
    side = window_side(SIZE, 0.1)
    points, counts = padded([pts])
    box = locate_regions(points, counts, SIZE, "centroid", area=0.1).boxes[0]
    assert box.tolist() == [cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side]


@pytest.mark.parametrize("strategy,adaptive", [(s, False) for s in STRATEGIES] + [(s, True) for s in WINDOWS])
def test_batched_equals_one_by_one(strategy, adaptive):
    points, counts = random_points(10, 7, SIZE, seed=5)
    counts[3] = 0
    points[3] = -1
    batched = locate_regions(points, counts, SIZE, strategy, adaptive=adaptive)
    for b in range(10):
        n = max(int(counts[b]), 1)  # alone, an image is padded only to its own length
        alone = locate_regions(points[b : b + 1, :n], counts[b : b + 1], SIZE, strategy, adaptive=adaptive)
        assert torch.equal(alone.boxes[0], batched.boxes[b])
        assert torch.equal(alone.masks[0], batched.masks[b])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_points_means_no_region(strategy):
    points, counts = padded([[], [(5, 5)], []], k=3)
    regions = locate_regions(points, counts, SIZE, strategy)
    assert regions.boxes[0].tolist() == [0, 0, 0, 0] and regions.boxes[2].tolist() == [0, 0, 0, 0]
    assert not regions.masks[0].any() and not regions.masks[2].any()
    assert regions.masks[1].any()
    nothing = locate_regions(torch.empty(2, 0, 2, dtype=torch.long), torch.zeros(2, dtype=torch.long), SIZE, strategy)
    assert not nothing.masks.any() and not nothing.boxes.any()


def test_box_and_mask_iou():
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]])
    b = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    iou = box_iou(a, b)
    assert iou.tolist() == pytest.approx([1.0, 50 / 150, 0.0, 0.0])
    assert torch.allclose(mask_iou(box_masks(a, 32), box_masks(b, 32)), iou)
    assert torch.allclose(box_iou(b, a), iou)


def test_bad_points_are_clear_errors():
    points, counts = padded([[(5, 5), (60, 5)]])
    with pytest.raises(PasmError, match="outside the 48x48 image"):
        locate_regions(points, counts, SIZE)
    points, _ = padded([[(5, 5)]])
    with pytest.raises(PasmError, match="num_points"):
        locate_regions(points, torch.tensor([2]), SIZE)
    with pytest.raises(PasmError, match="must be integer"):
        locate_regions(points.float(), torch.tensor([1]), SIZE)
    with pytest.raises(PasmError, match="unknown; choose one of"):
        locate_regions(points, torch.tensor([1]), SIZE, "biggest")
    with pytest.raises(PasmError, match="window strategies only"):
        locate_regions(points, torch.tensor([1]), SIZE, "disks", adaptive=True)
    with pytest.raises(PasmError, match="window side"):
        densest_window(torch.zeros(1, 1, 8, 8), 9)

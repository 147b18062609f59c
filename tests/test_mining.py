import pytest
import torch

from pasm.attack import AttackConfig, PointAttack
from pasm.compare import format_table, informativeness
from pasm.errors import PasmError
from pasm.erasing import random_boxes
from pasm.mining import (REGION_METHODS, AttentionRegions, Located, PasmRegions, RandomRegions, RegionConfig,
                         locate_all, region_method)
from pasm.regions import box_masks, locate_regions, window_side

EVERY_STRATEGY = [("densest", False), ("first", False), ("centroid", False), ("disks", False), ("densest", True),
                  ("centroid", True)]


class TensorFER(torch.utils.data.TensorDataset):
    """The session's SynthFER tensors with their cue masks, shaped like a pasm data set."""

    def __init__(self, images, labels, cues, classes):
        super().__init__(images, labels)
        self.cues, self.classes = cues, classes

    def cue_mask(self, i):
        return self.cues[i].numpy()


def test_pasm_regions_are_the_attack_points_window(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    config = AttackConfig(max_points=10)
    located = PasmRegions(trained_teacher, config, RegionConfig(area=0.1)).locate(images[:16], labels[:16])
    attack = PointAttack(trained_teacher, config)(images[:16], labels[:16])
    side = window_side(images.shape[-1], 0.1)
    has_points = located.attack.num_points > 0
    assert torch.equal(located.attack.points, attack.points)
    assert torch.equal(located.boxes, locate_regions(attack.points, attack.num_points, images.shape[-1]).boxes)
    assert (located.masks[has_points].flatten(1).sum(1) == side * side).all()
    assert located.masks[~has_points].sum() == 0


def test_every_method_locates_the_same_area(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    side = window_side(images.shape[-1], 0.1)
    for name in REGION_METHODS:
        method = region_method(name, trained_teacher, AttackConfig(max_points=10), RegionConfig(area=0.1),
                               torch.Generator().manual_seed(0))
        located = method.locate(images[:8], labels[:8])
        assert located.masks.shape == (8, 1, *images.shape[-2:]) and located.masks.dtype == torch.bool
        chosen = located.masks.flatten(1).any(1)
        assert (located.masks[chosen].flatten(1).sum(1) == side * side).all()
    assert AttentionRegions(trained_teacher).locate(images[:2]).cam.shape == (2, 1, *images.shape[-2:])
    with pytest.raises(PasmError, match="none"):
        region_method("none")


@pytest.mark.parametrize("strategy,adaptive", EVERY_STRATEGY)
def test_baselines_erase_as_many_pixels_as_pasm_per_sample(trained_teacher, synth_set, strategy, adaptive):
    images, labels, _ = synth_set["test"]
    config = RegionConfig(strategy=strategy, area=0.1, adaptive=adaptive)
    pasm = PasmRegions(trained_teacher, AttackConfig(max_points=10), config).locate(images[:24], labels[:24])
    pixels = pasm.masks.flatten(1).sum(1)
    if adaptive:
        assert len(set(pixels[pixels > 0].tolist())) > 1, "the faces' windows differ, so per-sample sizing is tested"
    for method in (RandomRegions(config, torch.Generator().manual_seed(0)), AttentionRegions(trained_teacher, config)):
        baseline = method.locate(images[:24], labels[:24], like=pasm)
        assert torch.equal(baseline.masks.flatten(1).sum(1), pixels), method.name
        assert torch.equal(baseline.masks, box_masks(baseline.boxes, images.shape[-1]))


def test_baselines_sized_like_a_region_take_its_side_and_keep_empty_ones_empty(trained_teacher, synth_set):
    images = synth_set["test"][0][:4]
    size = images.shape[-1]
    like = Located(box_masks(torch.tensor([[0, 0, 5, 5], [0, 0, 0, 0], [3, 4, 12, 13], [20, 20, 32, 32]]), size),
                   torch.zeros(4, 4, dtype=torch.long))
    for method in (RandomRegions(generator=torch.Generator().manual_seed(1)), AttentionRegions(trained_teacher)):
        boxes = method.locate(images, like=like).boxes
        assert (boxes[:, 2] - boxes[:, 0]).tolist() == [5, 0, 9, 12] == (boxes[:, 3] - boxes[:, 1]).tolist()
        assert boxes[1].tolist() == [0, 0, 0, 0] and (boxes >= 0).all() and (boxes <= size).all()


def test_nominal_random_windows_keep_their_random_stream(synth_set):
    """Without ``like`` the trainer's random arm draws exactly the boxes it always drew."""
    images = synth_set["test"][0][:16]
    located = RandomRegions(RegionConfig(area=0.2), torch.Generator().manual_seed(5)).locate(images)
    assert torch.equal(located.boxes, random_boxes(16, images.shape[-1], 0.2, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("bad", [{"strategy": "blob"}, {"fill": "paint"}, {"area": 0}, {"area": 1.5},
                                 {"strategy": "disks", "adaptive": True}])
def test_region_config_checks_itself(bad):
    with pytest.raises(PasmError):
        RegionConfig(**bad)


def test_locate_all_with_continuous_batching_gives_the_batched_regions(trained_teacher, synth_set):
    """Refilling the batch as images flip changes what runs together, never an image's own points."""
    images, labels, _ = synth_set["test"]
    config = AttackConfig(max_points=12)
    whole = PointAttack(trained_teacher, config)(images, labels)
    for strategy in ("densest", "disks"):
        method = PasmRegions(trained_teacher, config, RegionConfig(strategy=strategy, area=0.1))
        batches = [(images[i:i + 10], labels[i:i + 10]) for i in range(0, len(images), 10)]
        regions, result = locate_all(method, batches, capacity=8)
        assert torch.equal(result.points, whole.points)
        assert torch.equal(result.points_to_flip, whole.points_to_flip)
        assert result.adversarial is None and result.trajectory is None  # a data set's worth is not kept
        expected = method.compact(method.from_attack(whole, images.shape[-1]))
        assert torch.equal(regions, expected)
    random = RandomRegions(RegionConfig(area=0.1), torch.Generator().manual_seed(3))
    boxes, none = locate_all(random, [(images[:5], None), (images[5:9], None)], capacity=8)
    assert none is None and boxes.shape == (9, 4)


def test_informativeness_table(trained_teacher, synth_set):
    images, labels, cues = synth_set["test"]
    data = TensorFER(images, labels, cues, synth_set["classes"])
    table = informativeness(trained_teacher, data, limit=40, batch_size=16, attack_config=AttackConfig(max_points=10))
    assert table["images"] == 40
    assert set(table["methods"]) == {"clean", "pasm", "random", "attention"}
    with torch.no_grad():
        clean_accuracy = float((trained_teacher(images[:40]).argmax(1) == labels[:40]).float().mean())
    assert abs(table["clean_accuracy_all"] - clean_accuracy) < 1e-6
    assert table["compared_images"] <= 40 and table["methods"]["clean"]["accuracy"] == 1.0, "rows compare located images"
    areas = [table["methods"][m]["erased_area"] for m in ("pasm", "random", "attention")]
    assert all(abs(a - areas[0]) < 1e-9 for a in areas)
    assert 0 < table["cue"]["chance_share"] < 1 and 0 <= table["cue"]["points_on_cue"] <= 1
    for method in ("pasm", "random", "attention"):
        assert 0 <= table["methods"][method]["region_on_cue"] <= 1
    text = format_table(table)
    assert "pasm" in text and "chance" in text


@pytest.mark.parametrize("strategy,adaptive", [("disks", False), ("densest", True)])
def test_informativeness_compares_equal_areas_for_regions_that_are_not_the_nominal_window(
        trained_teacher, synth_set, strategy, adaptive):
    images, labels, cues = synth_set["test"]
    data = TensorFER(images, labels, cues, synth_set["classes"])
    table = informativeness(trained_teacher, data, limit=24, batch_size=12, attack_config=AttackConfig(max_points=10),
                            region_config=RegionConfig(strategy=strategy, area=0.2, adaptive=adaptive))
    areas = [table["methods"][m]["erased_area"] for m in ("pasm", "random", "attention")]
    assert areas[0] > 0 and all(abs(a - areas[0]) < 1e-9 for a in areas)

import torch

from pasm.attack import AttackConfig
from pasm.compare import format_table, informativeness
from pasm.mining import RegionConfig, baselines, mine
from pasm.regions import window_side


class TensorFER(torch.utils.data.TensorDataset):
    """The session's SynthFER tensors with their cue masks, shaped like a pasm data set."""

    def __init__(self, images, labels, cues, classes):
        super().__init__(images, labels)
        self.cues, self.classes = cues, classes

    def cue_mask(self, i):
        return self.cues[i].numpy()


def test_mine_erases_a_window_of_the_requested_area(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    mined = mine(trained_teacher, images[:16], labels[:16], AttackConfig(max_points=10), RegionConfig(area=0.1, fill="zeros"))
    side = window_side(images.shape[-1], 0.1)
    has_points = mined.attack.num_points > 0
    assert (mined.masks[has_points].flatten(1).sum(1) == side * side).all()
    assert (mined.masks[~has_points].sum() == 0)
    erased_pixels = mined.masks.expand_as(images[:16])
    assert (mined.erased[erased_pixels] == 0).all()
    assert torch.equal(mined.erased[~erased_pixels], images[:16][~erased_pixels])


def test_baselines_erase_the_same_area(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    others = baselines(trained_teacher, images[:8], labels[:8], area=0.1, generator=torch.Generator().manual_seed(0))
    side = window_side(images.shape[-1], 0.1)
    for _, masks in others.values():
        assert (masks.flatten(1).sum(1) == side * side).all()


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
    areas = [table["methods"][m]["erased_area"] for m in ("random", "attention")]
    assert all(abs(a - areas[0]) < 1e-9 for a in areas)
    assert 0 < table["cue"]["chance_share"] < 1 and 0 <= table["cue"]["points_on_cue"] <= 1
    for method in ("pasm", "random", "attention"):
        assert 0 <= table["methods"][method]["region_on_cue"] <= 1
    text = format_table(table)
    assert "pasm" in text and "chance" in text

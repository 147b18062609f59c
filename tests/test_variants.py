"""The self-mining variants of docs/method.md: consistent teaching, confidence-weighted cross-entropy, regions that
accumulate over generations, and half random windows; and a study's runs side by side."""
import json
import re
import sys

import pytest
import torch

from pasm.regions import box_masks
from pasm.study import run_study
from pasm.train import Trainer, combine_regions, erased_ce_weights, erasing_masks, regions_area, train
from test_train import synth, tiny  # noqa: F401  (the training tests' small data set and run settings)

pytestmark = pytest.mark.usefixtures("one_thread")


def teacher_inputs(monkeypatch):
    """Every batch the training loop's teacher is shown (the trainer's module loads it with load_checkpoint)."""
    module = sys.modules[Trainer.__module__]
    seen, load = [], module.load_checkpoint

    def spied(*args, **kwargs):
        checkpoint = load(*args, **kwargs)
        checkpoint.model.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach().clone()))
        return checkpoint

    monkeypatch.setattr(module, "load_checkpoint", spied)
    return seen


def mostly_black(batch):
    return float((batch == 0).float().mean()) > 0.8


@pytest.mark.parametrize("view", ["clean", "erased"])
def test_consistent_teaching_shows_the_teacher_the_erased_view(synth, tmp_path, monkeypatch, view):
    """Every face is erased whole (p 1, area 1, zeros; the mask moves with the augmentation, so a rim may show): the
    consistent teacher sees black images, the paper's the clean faces."""
    seen = teacher_inputs(monkeypatch)
    config = tiny(synth, erasing="random", p=1.0, area=1.0, fill="zeros", teacher_view=view)
    train(config, tmp_path / "run", device="cpu", workers=0)
    assert seen, "the teacher was never asked for a target"
    black = [mostly_black(batch) for batch in seen]
    assert all(black) if view == "erased" else not any(black)


def test_confidence_weighting_asks_the_teacher_about_the_erased_view_too(synth, tmp_path, monkeypatch):
    """With the paper's clean target, the weights still come from the erased view: the teacher sees both."""
    seen = teacher_inputs(monkeypatch)
    config = tiny(synth, erasing="random", p=1.0, area=1.0, fill="zeros", erased_ce="confidence")
    train(config, tmp_path / "run", device="cpu", workers=0)
    black = [mostly_black(batch) for batch in seen]
    assert any(black) and not all(black)


def test_erased_samples_weigh_as_much_as_the_teacher_still_believes_their_label():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    masks = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, 1, 1] = masks[1, 0, 2, 2] = True  # the third sample is not erased
    weights = erased_ce_weights(logits, labels, masks)
    belief = logits.softmax(1)
    assert torch.allclose(weights, torch.stack([belief[0, 0], belief[1, 0], torch.tensor(1.0)]))


def test_mix_moves_regions_to_random_windows_of_the_same_area():
    torch.manual_seed(0)
    size, count = 32, 200
    boxes = torch.tensor([[4, 4, 12, 12], [0, 0, 5, 5], [10, 20, 16, 26], [0, 0, 0, 0]]).repeat(count // 4, 1)
    index = torch.arange(count)
    kept = erasing_masks(boxes, index, 1.0, size)
    mixed = erasing_masks(boxes, index, 1.0, size, mix=1.0)
    assert torch.equal(mixed.flatten(1).sum(1), kept.flatten(1).sum(1))
    moved = (mixed != kept).flatten(1).any(1)
    assert moved[kept.flatten(1).any(1)].float().mean() > 0.9
    half = erasing_masks(boxes, index, 1.0, size, mix=0.5)
    share = (half != kept).flatten(1).any(1)[kept.flatten(1).any(1)].float().mean()
    assert 0.35 < share < 0.65
    disks = torch.zeros(2, 1, size, size, dtype=torch.bool)
    disks[0, 0, :6, :6] = disks[1, 0, 3:7, 10:19] = True  # 36 pixels each, not square windows
    assert erasing_masks(disks, torch.arange(2), 1.0, size, mix=1.0).flatten(1).sum(1).tolist() == [36, 36]


def test_cumulative_regions_grow_with_the_generation():
    size = 32
    found = [torch.tensor([[0, 0, 8, 8], [4, 4, 12, 12]]), torch.tensor([[8, 8, 16, 16], [4, 4, 12, 12]]),
             torch.tensor([[16, 0, 24, 8], [20, 20, 28, 28]])]
    areas = [regions_area(combine_regions(found[:g], "union", size), size) for g in (1, 2, 3)]
    assert areas[0] < areas[1] < areas[2]
    union = combine_regions(found, "union", size)
    assert torch.equal(union, box_masks(found[0], size) | box_masks(found[1], size) | box_masks(found[2], size))
    drawn = combine_regions(found, "draw", size)
    assert drawn.shape == (2, 3, 4)
    assert regions_area(drawn, size) == pytest.approx(regions_area(torch.cat(found), size))
    torch.manual_seed(0)
    picks = erasing_masks(drawn, torch.zeros(300, dtype=torch.long), 1.0, size)
    assert {tuple(box_masks(f[:1], size)[0].nonzero()[0].tolist()) for f in found} == \
        {tuple(m.nonzero()[0].tolist()) for m in picks}


def test_cumulative_training_mines_with_every_earlier_generation(synth, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny(synth, erasing="attention", accumulate="union", generations=3), out, device="cpu", workers=0)
    log = (out / "train.log").read_text()
    assert "generation 3: mined 42 regions with generation 0" in log
    assert "generation 3: mined 42 regions with generation 1" in log
    assert "generation 2: mined 42 regions with generation 1" not in log
    areas = [entry["mining"]["area"] for entry in summary["generations"][1:]]
    assert areas[0] == pytest.approx(0.1, abs=0.02) and areas[0] <= areas[1] <= areas[2]


def test_variants_refuse_erasings_they_do_not_apply_to(synth):
    from pasm.errors import PasmError

    for bad, reason in [({"erasing": "random", "mix": 0.5}, "--mix 0.5: mixes in random windows"),
                        ({"erasing": "none", "accumulate": "union"}, "--accumulate union: accumulates mined regions"),
                        ({"erasing": "pasm", "accumulate": "draw", "remine_every": 2}, "does not combine with --remine-every"),
                        ({"erasing": "pasm", "mix": 1.5}, "--mix 1.5: is a share of the erased faces")]:
        with pytest.raises(PasmError, match=re.escape(reason)):
            tiny(synth, **bad)


def test_a_run_resumed_with_more_generations_extends_it(synth, tmp_path):
    out = tmp_path / "run"
    first = train(tiny(synth, generations=0), out, device="cpu", workers=0)
    grown = train(tiny(synth, generations=1), out, resume=True, device="cpu", workers=0)
    assert [e["index"] for e in grown["generations"]] == [0, 1]
    assert grown["generations"][0] == first["generations"][0]
    assert json.loads((out / "config.json").read_text())["config"]["generations"] == 1


def test_a_study_side_by_side_gives_the_serial_results(synth, tmp_path):
    options = {"data": synth, "size": 32, "epochs": 1, "batch": 16, "max_points": 5, "generations": 1}
    arms = ["none", "pasm-mix", "pasm-consistent"]
    serial = run_study(tmp_path / "serial", options, arms, [0], jobs=1, threads=1)
    parallel = run_study(tmp_path / "parallel", options, arms, [0], jobs=2, threads=1)
    assert parallel["results"] == serial["results"]
    teacher = json.loads((tmp_path / "parallel" / "pasm-mix-seed0" / "config.json").read_text())["config"]["teacher"]
    assert teacher == str(tmp_path / "parallel" / "none-seed0" / "gen0.safetensors")

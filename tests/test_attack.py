import numpy as np
import pytest
import torch

from pasm.attack import AttackConfig, PointAttack, flip_cap
from pasm.errors import PasmError
from pasm.models import InputSpec


def attack(model, images, labels=None, **config):
    return PointAttack(model, AttackConfig(**config))(images, labels)


def test_flips_a_trained_teacher_within_the_budget(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    result = attack(trained_teacher, images, labels, max_points=20)
    correct = result.trajectory[:, 0].argmax(1) == labels
    assert correct.float().mean() > 0.4, "the fixture teacher should beat chance (1/7) clearly"
    assert result.flipped[correct].float().mean() >= 0.8
    assert (result.points_to_flip[correct & result.flipped] >= 1).all()
    assert (result.points_to_flip[~correct] == 0).all(), "a misclassified image needs no point"


def test_result_is_consistent(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    result = attack(trained_teacher, images[:16], labels[:16], max_points=12)
    size = images.shape[-1]
    for i in range(16):
        n = int(result.num_points[i])
        points = result.points[i, :n]
        assert ((points >= 0) & (points < size)).all()
        assert (result.points[i, n:] == -1).all()
        assert len({tuple(p) for p in points.tolist()}) == n, "a location is never taken twice"
        assert torch.isfinite(result.trajectory[i, : n + 1]).all() and torch.isnan(result.trajectory[i, n + 1:]).all()
        assert torch.allclose(result.trajectory[i, : n + 1].sum(1), torch.ones(n + 1), atol=1e-5)
        if result.flipped[i]:
            assert n == result.points_to_flip[i]
            assert result.trajectory[i, n].argmax() != labels[i]
        else:
            assert n == 12
        changed = (result.adversarial[i] != images[i]).any(0)
        assert changed.sum() <= n
        assert set(result.adversarial[i][:, changed].unique().tolist()) <= {0.0, 1.0}
        assert changed[points[:, 1], points[:, 0]].sum() >= changed.sum()  # only attacked pixels changed
    with torch.no_grad():
        clean = trained_teacher(images[:16]).softmax(1)
    assert torch.allclose(result.trajectory[:, 0], clean, atol=1e-5)


def test_first_point_is_where_the_clean_gradient_is_largest(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    x = images[:8].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(trained_teacher(x), labels[:8], reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    magnitude = grad.abs().sum(1).flatten(1)
    result = attack(trained_teacher, images[:8], labels[:8], max_points=3)
    started = result.num_points > 0
    first = result.points[:, 0, 1] * images.shape[-1] + result.points[:, 0, 0]
    assert started.any()
    assert torch.equal(first[started], magnitude.argmax(1)[started])
    assert torch.allclose(result.scores[started, 0], magnitude.max(1).values[started], rtol=1e-4)


def test_batched_equals_one_by_one(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    batched = attack(trained_teacher, images[:10], labels[:10], max_points=15)
    for i in range(10):
        alone = attack(trained_teacher, images[i: i + 1], labels[i: i + 1], max_points=15)
        assert torch.equal(alone.points[0], batched.points[i])
        assert alone.points_to_flip[0] == batched.points_to_flip[i]
        assert torch.allclose(alone.adversarial[0], batched.adversarial[i])


def test_without_labels_attacks_the_models_own_prediction(trained_teacher, synth_set):
    images, _, _ = synth_set["test"]
    result = attack(trained_teacher, images[:16], max_points=20)
    with torch.no_grad():
        predicted = trained_teacher(images[:16]).argmax(1)
    assert torch.equal(result.labels, predicted)
    assert (result.points_to_flip[result.flipped] >= 1).all()
    assert result.flipped.float().mean() >= 0.8


def test_patch_pushes_a_square(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    result = attack(trained_teacher, images[:8], labels[:8], max_points=3, patch=3)
    changed = (result.adversarial != images[:8]).any(1).flatten(1).sum(1)
    assert (changed <= 9 * result.num_points).all()
    assert (changed[result.num_points > 0] > result.num_points[result.num_points > 0]).any()


def test_margin_stops_no_later_than_a_flip(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    flip = attack(trained_teacher, images[:16], labels[:16], max_points=20)
    early = attack(trained_teacher, images[:16], labels[:16], max_points=20, margin=2.0)
    assert (early.num_points <= flip.num_points).all()
    assert (early.num_points < flip.num_points).any()


@pytest.mark.parametrize("score", ["l1", "l2", "linf"])
def test_every_score_finds_points(trained_teacher, synth_set, score):
    images, labels, _ = synth_set["test"]
    result = attack(trained_teacher, images[:8], labels[:8], max_points=20, score=score)
    assert result.flipped.float().mean() >= 0.75


def test_leaves_the_model_untouched(trained_teacher, synth_set):
    images, labels, _ = synth_set["test"]
    trained_teacher.train()
    trained_teacher.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in trained_teacher.state_dict().items()}
    try:
        attack(trained_teacher, images[:4], labels[:4], max_points=5)
        assert trained_teacher.training, "the caller's mode is restored"
        assert all(p.grad is None for p in trained_teacher.parameters())
        assert all(p.requires_grad for p in trained_teacher.parameters()), "parameters are unfrozen again"
        assert all(torch.equal(before[k], v) for k, v in trained_teacher.state_dict().items()), "BN statistics unchanged"
    finally:
        trained_teacher.eval()


@pytest.mark.parametrize("bad", [{"max_points": 0}, {"patch": 2}, {"score": "l7"}])
def test_bad_config_is_refused(bad):
    with pytest.raises(PasmError):
        AttackConfig(**bad)


class SlowToFlip(torch.nn.Module):
    """A grey two-class teacher on which every pushed pixel moves the logit gap by the same small step: on a black
    image the flip takes exactly ``points`` points (the first pixels in reading order, where the gradient ties)."""

    def __init__(self, side, points, step=0.01):
        super().__init__()
        self.input_spec = InputSpec(side, 1, [0.0], [1.0])
        self.cam_layer = torch.nn.Conv2d(1, 1, 1)  # an identity, so Grad-CAM (attention erasing) has a layer
        self.head = torch.nn.Linear(side * side, 2)
        with torch.no_grad():
            self.cam_layer.weight.fill_(1.0)
            self.cam_layer.bias.zero_()
            self.head.weight[0].fill_(-step)
            self.head.weight[1].fill_(step)
            self.head.bias.copy_(torch.tensor([step * (2 * points - 1), 0.0]))  # gap: step*(2*points-1) - 2*step*n

    def forward(self, x):
        return self.head(self.cam_layer(x).flatten(1))


def black(side):
    return torch.zeros(1, 1, side, side)


def test_the_flip_cap_scales_with_the_input():
    assert [flip_cap(s, s) for s in (16, 32, 48, 64, 112)] == [20, 20, 46, 82, 251]
    assert flip_cap(48, 96) == 2 * flip_cap(48, 48)
    assert AttackConfig().budget(48, 48) == 20, "mining keeps its fixed budget"
    assert AttackConfig(max_points=None).budget(64, 64) == 82
    assert AttackConfig(max_points=7).budget(64, 64) == 7


def test_until_the_flip_goes_past_minings_budget():
    model = SlowToFlip(48, points=25)
    mining = attack(model, black(48))
    assert not mining.flipped[0] and mining.num_points[0] == 20
    single = attack(model, black(48), max_points=None)
    assert single.flipped[0] and single.points_to_flip[0] == 25 == single.num_points[0]
    assert single.points.shape[1] == 46
    assert single.trajectory[0, 25].argmax() == 1 and single.trajectory[0, 24].argmax() == 0


def test_until_the_flip_stops_at_the_cap_and_an_explicit_budget_still_caps():
    model = SlowToFlip(48, points=60)
    capped = attack(model, black(48), max_points=None)
    assert not capped.flipped[0] and capped.num_points[0] == 46
    assert attack(SlowToFlip(64, points=60), black(64), max_points=None).points_to_flip[0] == 60
    explicit = attack(SlowToFlip(48, points=25), black(48), max_points=10)
    assert not explicit.flipped[0] and explicit.num_points[0] == 10


def test_a_single_face_report_attacks_until_the_flip_by_default():
    from pasm.faces import AlignedFace
    from pasm.report import face_reports

    model = SlowToFlip(48, points=25).eval()
    face = AlignedFace(np.zeros((48, 48, 3), np.uint8), np.array([[1.0, 0, 0], [0, 1.0, 0]]), 48)
    [report], _ = face_reports(model, ["calm", "moved"], [face])
    assert report["flipped"] and report["points_to_flip"] == 25 and len(report["points"]) == 25
    assert report["max_points"] == 46
    [fixed], _ = face_reports(model, ["calm", "moved"], [face], AttackConfig(max_points=20))
    assert not fixed["flipped"] and fixed["max_points"] == 20

"""The point adversarial attack of PASM (Liu et al., arXiv 2008.11401, Sec. III-A).

A frozen teacher is attacked one pixel location at a time: the input gradient of the loss
says which location would raise the loss most, that location is pushed to the extreme of the
valid range in the ascent direction, and the process repeats until the prediction flips. The
points it needs are few and land where the teacher looks, so they locate the informative
region (pasm.regions) that PASM erases.

The whole batch advances together on the device. Each step costs one forward and one backward
pass over the images still in play; an image leaves the batch as soon as it flips, so the cost
stays close to ``points used x (forward + backward)``. See docs/method.md for the choices made
where the paper is silent.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .options import SCORES


@dataclass
class AttackConfig:
    """``margin``: stop once the true class leads the best other logit by less than this (0: on a flip)."""

    max_points: int = 20
    patch: int = 1
    score: str = "l1"
    margin: float = 0.0
    bounds: tuple = (0.0, 1.0)
    autocast: bool = False

    def __post_init__(self):
        if self.max_points < 1:
            raise ValueError("max_points must be at least 1")
        if self.patch < 1 or self.patch % 2 == 0:
            raise ValueError("patch must be an odd number of pixels (1, 3, 5, ...)")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}")

    def to_dict(self):
        return asdict(self)


@dataclass
class AttackResult:
    """Per image: the ordered points (x, y) and their gradient scores, padded with -1 / NaN
    after ``num_points``; ``points_to_flip`` is -1 when the budget ran out first;
    ``trajectory[:, t]`` holds the class probabilities after t points (NaN past the end)."""

    points: torch.Tensor
    scores: torch.Tensor
    num_points: torch.Tensor
    flipped: torch.Tensor
    points_to_flip: torch.Tensor
    trajectory: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor

    def __len__(self):
        return self.points.shape[0]

    def to(self, device):
        return AttackResult(**{k: v.to(device) for k, v in self.__dict__.items()})

    def sample(self, i):
        """One image's result as plain Python values (for JSON and the app)."""
        n = int(self.num_points[i])
        return {
            "label": int(self.labels[i]),
            "points": self.points[i, :n].tolist(),
            "scores": self.scores[i, :n].tolist(),
            "flipped": bool(self.flipped[i]),
            "points_to_flip": int(self.points_to_flip[i]) if self.flipped[i] else None,
            "trajectory": self.trajectory[i, : n + 1].tolist(),
        }


class PointAttack:
    """Greedy, untargeted L0 attack on a frozen model, batched on the model's device."""

    def __init__(self, model, config=None):
        self.model = model
        self.config = config or AttackConfig()

    def __call__(self, images, labels=None):
        """Attack ``images`` (B, C, H, W) in the valid range; ``labels`` default to the model's own predictions."""
        was_training = self.model.training
        wanted_grad = [p for p in self.model.parameters() if p.requires_grad]
        self.model.eval()
        for p in wanted_grad:  # the teacher is frozen: autograd then keeps no activations for weight gradients
            p.requires_grad_(False)
        try:
            return self._attack(images, labels)
        finally:
            for p in wanted_grad:
                p.requires_grad_(True)
            self.model.train(was_training)

    def _attack(self, images, labels):
        cfg = self.config
        batch, _, height, width = images.shape
        device, k = images.device, cfg.max_points
        adversarial = images.detach().clone()
        labels = None if labels is None else labels.to(device)
        points = torch.full((batch, k, 2), -1, dtype=torch.long, device=device)
        scores = torch.full((batch, k), float("nan"), device=device)
        taken = torch.zeros(batch, height * width, dtype=torch.bool, device=device)
        num_points = torch.zeros(batch, dtype=torch.long, device=device)
        points_to_flip = torch.full((batch, ), -1, dtype=torch.long, device=device)
        trajectory = None
        active = torch.arange(batch, device=device)

        for step in range(k + 1):
            x = adversarial[active].requires_grad_(step < k)
            logits = self._forward(x)
            if labels is None:
                labels = logits.detach().argmax(1)
            if trajectory is None:
                trajectory = torch.full((batch, k + 1, logits.shape[1]), float("nan"), device=device)
            trajectory[active, step] = logits.detach().float().softmax(1)
            done = self._finished(logits.detach(), labels[active])
            points_to_flip[active[done]] = step
            if step == k or done.all():
                break
            grad = self._input_gradient(logits, labels[active], x)
            keep = ~done
            active, x, grad = active[keep], x.detach()[keep], grad[keep]
            where, value = self._best_location(grad, taken[active])
            taken[active, where] = True
            points[active, step, 0] = where % width
            points[active, step, 1] = where // width
            scores[active, step] = value
            num_points[active] = step + 1
            adversarial[active] = self._push(x, grad, where)

        flipped = points_to_flip >= 0
        return AttackResult(points, scores, num_points, flipped, points_to_flip, trajectory, adversarial, labels)

    def _forward(self, x):
        """Channels-last: oneDNN and cuDNN convolve a batch faster in that layout (17 % on the CPU
        benchmark's small CNN); the points do not change."""
        cfg = self.config
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=cfg.autocast):
            return self.model(x.contiguous(memory_format=torch.channels_last))

    def _finished(self, logits, labels):
        true = logits.gather(1, labels[:, None]).squeeze(1)
        other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        return (true - other) < self.config.margin if self.config.margin > 0 else other >= true

    @staticmethod
    def _input_gradient(logits, labels, x):
        """Only the input's gradient: parameters are never differentiated or touched."""
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    def _best_location(self, grad, taken):
        """Index (y * W + x) of the untaken location whose patch has the largest gradient magnitude."""
        cfg = self.config
        if cfg.score == "l1":
            score = grad.abs().sum(1, keepdim=True)
        elif cfg.score == "l2":
            score = grad.pow(2).sum(1, keepdim=True).sqrt()
        else:
            score = grad.abs().amax(1, keepdim=True)
        if cfg.patch > 1:
            score = F.avg_pool2d(score, cfg.patch, stride=1, padding=cfg.patch // 2, count_include_pad=True)
        score = score.flatten(1).float().masked_fill(taken, float("-inf"))
        value, where = score.max(1)
        return where, value

    def _push(self, x, grad, where):
        """Set the chosen pixel (or patch) to the bound that raises the loss, channel by channel."""
        low, high = self.config.bounds
        mask = torch.zeros_like(x[:, :1]).flatten(1)
        mask.scatter_(1, where[:, None], 1.0)
        mask = mask.view_as(x[:, :1])
        if self.config.patch > 1:
            p = self.config.patch
            mask = F.max_pool2d(mask, p, stride=1, padding=p // 2)
        target = torch.where(grad > 0, torch.full_like(x, high), torch.where(grad < 0, torch.full_like(x, low), x))
        return torch.where(mask.bool(), target, x)

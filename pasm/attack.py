"""The point adversarial attack of PASM (Liu et al., arXiv 2008.11401, Sec. III-A).

A frozen teacher is attacked one pixel location at a time: the input gradient of the loss
says which location would raise the loss most, that location is pushed to the extreme of the
valid range in the ascent direction, and the process repeats until the prediction flips. The
points it needs are few and land where the teacher looks, so they locate the informative
region (pasm.regions) that PASM erases.

The batch advances together on the device. Each step costs one forward and one backward pass
over the images in play; an image leaves as soon as it flips, and when a data set is mined
(``PointAttack.stream``) the next image takes its place, so the device always works on a full
batch and the cost stays close to ``points used x (one image's share of forward + backward)``. See docs/method.md for the choices made
where the paper is silent.
"""
import itertools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .erasing import eval_mode
from .errors import PasmError
from .options import SCORES

# Mining's fixed budget (training, ``compare``): enough to flip a trained small CNN on most faces.
MINING_POINTS = 20
# A single face is attacked until it flips, as in the paper, but at most on this share of the input's
# pixels (46 points on a 48x48 crop, 82 on the imported FER teacher's 64x64, which flips the sample
# faces after 23 and 24): past a few percent the points no longer pick out a few informative pixels,
# and each point costs a forward and a backward pass.
FLIP_CAP_FRACTION = 0.02


def flip_cap(height, width):
    """Most points an attack "until it flips" may take on an HxW input; never fewer than mining's budget."""
    return max(MINING_POINTS, round(FLIP_CAP_FRACTION * height * width))


@dataclass
class AttackConfig:
    """``max_points``: the budget, or None to attack until the flip under ``flip_cap`` of the input.
    ``margin``: stop once the true class leads the best other logit by less than this (0: on a flip)."""

    max_points: int | None = MINING_POINTS
    patch: int = 1
    score: str = "l1"
    margin: float = 0.0
    bounds: tuple = (0.0, 1.0)
    autocast: bool = False

    def __post_init__(self):
        if self.max_points is not None and (int(self.max_points) != self.max_points or self.max_points < 1):
            raise PasmError(f"attack budget {self.max_points}", "must be a whole number of points, at least 1")
        if self.patch < 1 or self.patch % 2 == 0:
            raise PasmError(f"attack patch {self.patch}", "must be an odd number of pixels (1, 3, 5, ...)")
        if self.score not in SCORES:
            raise PasmError(f"attack score {self.score!r}", f"unknown; choose one of {', '.join(SCORES)}")

    def budget(self, height, width):
        """The points this config allows on an HxW input."""
        return flip_cap(height, width) if self.max_points is None else self.max_points

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

    def rows(self, start, stop):
        """Images ``start`` to ``stop`` of the result."""
        return AttackResult(**{k: None if v is None else v[start:stop] for k, v in self.__dict__.items()})

    def to(self, device):
        return AttackResult(**{k: None if v is None else v.to(device) for k, v in self.__dict__.items()})

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
        """Attack ``images`` (B, C, H, W) in the valid range; ``labels`` default to the model's own predictions.

        The model's state is left alone (an eval-mode model is not written to at all), so threads may attack
        one shared model at once: only the input's gradient is asked for (``_input_gradient``), which
        autograd computes without the weights' gradients whether or not they require grad."""
        with eval_mode(self.model):
            return self._attack(images, labels)

    def _attack(self, images, labels):
        """One batch is a stream of its own images with room for all of them at once."""
        return self.stream([(images, labels)], capacity=max(1, len(images)), keep_images=True)

    def stream(self, batches, capacity, keep_images=False):
        """Attack every image of ``batches`` (an iterable of (images, labels or None) pairs) with
        ``capacity`` images in play: one that flips, or runs out of points, leaves at once and the
        next one takes its place. Every forward and backward then runs on a full batch until the
        source runs dry, and each image costs its own points rather than the slowest image's
        (continuous batching). Each image still takes exactly the steps it would take alone.

        Results come back in source order. ``keep_images`` also keeps the adversarial images and the
        probability trajectories, which a whole data set's worth of images need not hold in memory.
        """
        source = iter(batches)
        first = next(source, None)
        if first is None:
            raise PasmError("attack", "no images to attack")
        budget = self.config.budget(*first[0].shape[-2:])
        source = itertools.chain([first], source)
        slots, results = _Slots(budget), _Results(budget, keep_images)
        slots.refill(source, results, capacity)
        while slots.count:
            x = slots.x.detach().requires_grad_(True)
            logits = self._forward(x)
            slots.adopt_predictions(logits.detach())
            results.record(slots, logits.detach().float().softmax(1))
            done = self._finished(logits.detach(), slots.labels)
            leaving = done | (slots.step >= budget)
            if not leaving.all():
                grad = self._input_gradient(logits, slots.labels, x)
                stay = ~leaving
                where, value = self._best_location(grad[stay], slots.taken[stay])
                slots.advance(stay, where, value, self._push(x.detach()[stay], grad[stay], where))
            results.finish(slots, leaving, done)
            slots.drop(leaving)
            slots.refill(source, results, capacity)
        return results.collect()

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


class _Slots:
    """The images in play, row by row: image, label, points so far, and ``home``, its index in the source.

    A row that leaves becomes a hole that the next image fills in place, so a step copies only the
    newcomers instead of re-concatenating the whole batch; the batch is compacted only once the source
    runs dry. A mask's rows are found once per step, since ``nonzero`` makes the host wait for the device.
    """

    FIELDS = ("x", "labels", "home", "step", "taken", "points", "scores")

    def __init__(self, max_points):
        self.k = max_points
        self.x = self.labels = self.home = self.step = self.taken = self.points = self.scores = None
        self.pending = None  # images, labels and homes pulled from the source but not yet in play
        self.pending_unlabelled = False  # whether some of them have no label
        self.holes = None  # rows that left at the last step, for refill to fill or compact away
        self.unlabelled = False  # whether some row may still wait for the model's prediction as its label
        self._rows = (None, None)  # the last mask given to ``rows`` and its row indices

    @property
    def count(self):
        rows = 0 if self.x is None else len(self.x)
        return rows - (0 if self.holes is None else len(self.holes))

    def rows(self, mask):
        """Indices of ``mask``'s rows; finish and drop ask for the same mask, so it is computed once."""
        if self._rows[0] is not mask:
            self._rows = (mask, mask.nonzero().squeeze(1))
        return self._rows[1]

    def refill(self, source, results, capacity):
        """Fill the holes, then top the batch up to ``capacity`` from ``source``; the newcomers start at step 0."""
        holes, self.holes, filled = self.holes, None, 0
        holes = holes if holes is not None else torch.zeros(0, dtype=torch.long)
        while True:
            room = len(holes) - filled + capacity - (0 if self.x is None else len(self.x))
            newcomers = self._pull(source, results, room) if room > 0 else None
            if newcomers is None:
                break
            into = holes[filled: filled + len(newcomers[0])]
            self._place(into, *(t[: len(into)] for t in newcomers))
            filled += len(into)
            if len(into) < len(newcomers[0]):
                self._append(*(t[len(into):] for t in newcomers))
        if filled < len(holes):
            self._compact(holes[filled:])

    def _pull(self, source, results, wanted):
        """Up to ``wanted`` images (with labels and homes) from the current source batch, or the next; None when dry."""
        if self.pending is None or not len(self.pending[0]):
            batch = next(source, None)
            if batch is None:
                return None
            images, labels = batch
            start = results.open(images)
            home = torch.arange(start, start + len(images), device=images.device)
            if labels is None:
                labels = torch.full((len(images),), -1, dtype=torch.long, device=images.device)
            labels = labels.to(images.device)
            self.pending, self.pending_unlabelled = (images.detach(), labels, home), bool((labels < 0).any())
        self.unlabelled = self.unlabelled or self.pending_unlabelled
        taken = tuple(t[:wanted] for t in self.pending)
        self.pending = tuple(t[wanted:] for t in self.pending)
        return taken

    def _place(self, rows, images, labels, home):
        """Newcomers into the rows that left, in place."""
        if not len(rows):
            return
        self.x[rows] = images
        self.labels[rows], self.home[rows], self.step[rows] = labels, home, 0
        self.taken[rows], self.points[rows], self.scores[rows] = False, -1, float("nan")

    def _append(self, images, labels, home):
        n, (_, height, width) = len(images), images.shape[1:]
        fresh = {"x": images.clone(), "labels": labels.clone(), "home": home.clone(),  # rows are rewritten in place
                 "step": torch.zeros(n, dtype=torch.long, device=images.device),
                 "taken": torch.zeros(n, height * width, dtype=torch.bool, device=images.device),
                 "points": torch.full((n, self.k, 2), -1, dtype=torch.long, device=images.device),
                 "scores": torch.full((n, self.k), float("nan"), device=images.device)}
        for name, value in fresh.items():
            current = getattr(self, name)
            setattr(self, name, value if current is None else torch.cat([current, value]))

    def _compact(self, holes):
        """The source ran dry: close the holes left over."""
        keep = torch.ones(len(self.x), dtype=torch.bool, device=self.x.device)
        keep[holes.to(self.x.device)] = False
        index = keep.nonzero().squeeze(1)
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[index])

    def adopt_predictions(self, logits):
        """Images without a label are attacked away from the model's prediction on the clean image."""
        if self.unlabelled:
            self.labels = torch.where(self.labels < 0, logits.argmax(1), self.labels)
            self.unlabelled = False

    def advance(self, rows, where, value, pushed):
        width = self.x.shape[-1]
        index = rows.nonzero().squeeze(1)
        step = self.step[index]
        self.taken[index, where] = True
        self.points[index, step] = torch.stack([where % width, where // width], 1)
        self.scores[index, step] = value
        self.step[index] = step + 1
        self.x[index] = pushed

    def drop(self, rows):
        """The rows that left become holes; refill fills them."""
        self.holes = self.rows(rows)


class _Results:
    """Finished images' results, written straight to their place in source order as they leave (no host sync).

    The buffers grow by doubling (a single batch gets its exact size at once): a few large blocks, which
    the allocator hands back whole, rather than many small ones per step that would pin its heap while
    the batch's large temporaries come and go (resident memory then grew with the data set mined).
    """

    def __init__(self, max_points, keep_images):
        self.k, self.keep_images = max_points, keep_images
        self.total, self.buffers = 0, None

    def open(self, images):
        """Source index of the first of ``images``: every result is written in place by it."""
        start, self.total = self.total, self.total + len(images)
        if self.buffers is None:
            self.buffers = self._allocate(self.total, images.device, images.shape[1:], images.dtype)
        elif self.total > len(self.buffers["labels"]):
            self._grow(max(self.total, 2 * len(self.buffers["labels"])))
        return start

    def _allocate(self, n, device, image_shape, image_dtype, classes=None):
        buffers = {"points": torch.full((n, self.k, 2), -1, dtype=torch.long, device=device),
                   "scores": torch.full((n, self.k), float("nan"), device=device),
                   "num_points": torch.zeros(n, dtype=torch.long, device=device),
                   "points_to_flip": torch.full((n,), -1, dtype=torch.long, device=device),
                   "labels": torch.zeros(n, dtype=torch.long, device=device)}
        if self.keep_images:
            buffers["adversarial"] = torch.zeros((n, *image_shape), dtype=image_dtype, device=device)
            buffers["trajectory"] = None if classes is None else \
                torch.full((n, self.k + 1, classes), float("nan"), device=device)  # the classes come with the first step
        return buffers

    def _grow(self, n):
        old = self.buffers
        classes = None if old.get("trajectory") is None else old["trajectory"].shape[-1]
        adversarial = old.get("adversarial", old["labels"])
        self.buffers = self._allocate(n, old["labels"].device, adversarial.shape[1:], adversarial.dtype, classes)
        for name, values in old.items():
            if values is not None:
                self.buffers[name][: len(values)] = values

    def record(self, slots, probs):
        """The class probabilities each image in play has at its current step."""
        if not self.keep_images:
            return
        if self.buffers["trajectory"] is None:
            self.buffers["trajectory"] = torch.full((len(self.buffers["labels"]), self.k + 1, probs.shape[1]),
                                                    float("nan"), device=probs.device)
        self.buffers["trajectory"][slots.home, slots.step] = probs

    def finish(self, slots, leaving, done):
        rows = slots.rows(leaving)
        if not len(rows):
            return
        home, step, out = slots.home[rows], slots.step[rows], self.buffers
        out["points"][home] = slots.points[rows]
        out["scores"][home] = slots.scores[rows]
        out["num_points"][home] = step
        out["points_to_flip"][home] = torch.where(done[rows], step, -1)
        out["labels"][home] = slots.labels[rows]
        if self.keep_images:
            out["adversarial"][home] = slots.x[rows].detach()

    def collect(self):
        """Every image's result in source order (a buffer grown past the total is cut down to it)."""
        n = self.total
        joined = {name: None if values is None else values[:n] if len(values) == n else values[:n].clone()
                  for name, values in self.buffers.items()}
        if self.keep_images and joined["trajectory"] is None:  # no step ran: no image at all
            joined["trajectory"] = torch.full((n, self.k + 1, 0), float("nan"), device=joined["labels"].device)
        flipped = joined["points_to_flip"] >= 0
        return AttackResult(joined["points"], joined["scores"], joined["num_points"], flipped, joined["points_to_flip"],
                            joined.get("trajectory"), joined.get("adversarial"), joined["labels"])

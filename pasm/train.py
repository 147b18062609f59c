"""PASM self-mining training, written plainly in the style of torchvision's references/ scripts.

Generation 0 is a supervised teacher. Every later generation trains a student of the same
architecture: before it starts, the frozen teacher mines a region per training image (the point
attack, pasm.attack, and pasm.regions); during training each sample is replaced by its erased
version with probability ``p``, its region moving with its augmentation, and the student learns
from the label (cross-entropy on what it sees) and from the teacher's soft prediction on the clean
sample (λ·τ²·KL). The student then becomes the next teacher. ``erasing`` swaps PASM's regions for
the same-area baselines (random, attention) or none, so every arm is the same loop.

A run lives in a directory (pasm.runs): it can be stopped with SIGTERM/SIGINT at the next step
and resumed from the last complete epoch after any kill. Under ``torchrun`` it runs data-parallel.
"""
import contextlib
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from . import __version__, fileio
from .attack import AttackConfig
from .checkpoints import file_sha256, load_checkpoint, load_pretrained, make_meta, save_checkpoint
from .data import absolute_spec, available_splits, open_dataset
from .data.synth import write_synth
from .data.augment import BatchAugment
from .data.transforms import decode_all, uint8_transform
from .devices import resolve_device
from .emotions import class_mapping, remap_outputs
from .erasing import erase, random_windows
from .errors import PasmError, first_line
from .evaluate import EvalSets, default_split
from .models import build_model, default_input_spec
from .options import (ACCUMULATE, ARCH_DEFAULTS, ARCHITECTURES, ERASED_CE, ERASING, FILLS, INIT_FROM, OPTIMIZERS,
                      STRATEGIES, TEACHER_VIEWS)
from .mining import RegionConfig, locate_all, region_method
from .regions import box_masks
from .progress import Progress
from .runs import Run

# Training sets up to this size (decoded at the model's size) are kept in memory as uint8.
CACHE_BYTES = 2 << 30
MINING_BATCH = 256
# The app's one-click first run (about 1-2 minutes on 2 CPU cores), and a seconds-long version. The demo's
# teacher needs ~500 steps to pass 0.75 test accuracy on SynthFER: 24 epochs at 40 px with Nesterov SGD at 0.1
# after a one-epoch warm-up (at 0.05 without warm-up it learns more slowly: 0.75 at 48 px and 0.73 at 32 px
# after 24 and 30 epochs, against 0.78 and 0.76 with these). The recipe is the demo's own, measured; the small
# CNN's general default (AdamW, options.ARCH_DEFAULTS) was chosen on smaller sets.
DEMO = {"train": 1400, "test": 350, "size": 40, "epochs": 24, "optimizer": "sgd", "lr": 0.1, "warmup": 1}
DEMO_QUICK = {"train": 140, "test": 70, "size": 32, "epochs": 2}


# ----------------------------------------------------------------------------------------------- plain loop


def train_one_epoch(model, loader, optimizer, scheduler=None, device="cpu", label_smoothing=0.0):
    """One pass of supervised cross-entropy training; returns the mean loss."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    total, count = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / max(count, 1)


def fit_supervised(model, dataset, epochs=10, batch_size=64, lr=0.05, weight_decay=5e-4, device="cpu", workers=0, log=None):
    """A teacher trained with SGD and a per-step cosine schedule, without a run directory; the loss per epoch is returned."""
    model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=len(dataset) > batch_size)
    optimizer = make_optimizer(model.parameters(), "sgd", lr, weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * len(loader)))
    losses = []
    for epoch in range(epochs):
        losses.append(train_one_epoch(model, loader, optimizer, scheduler, device))
        if log:
            log(f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}")
    return losses


def make_optimizer(parameters, name, lr, weight_decay):
    """Every optimizer pasm trains with: ``name`` "sgd" (Nesterov, momentum 0.9) or "adamw"."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def warmup_cosine(optimizer, total_steps, warmup_steps):
    """A per-step cosine decay from the peak learning rate, after a linear warm-up of ``warmup_steps``
    (kept shorter than the run), which lets AdamW's first, noisy moment estimates settle before full steps."""
    warmup_steps = min(warmup_steps, total_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps))
    if warmup_steps <= 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


# ----------------------------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that decides what a run computes (device and workers do not, so they are not here).

    ``generations`` counts the students after the teacher: 2 gives generations 0, 1 and 2.
    ``teacher`` adopts an existing checkpoint as generation 0 instead of training one.
    ``split`` is the evaluation split (default: test, else val). ``None`` for ``size``, ``optimizer``,
    ``lr``, ``weight_decay`` and ``warmup`` means the architecture's defaults (``options.ARCH_DEFAULTS``;
    the optimizer's own for an optimizer the architecture does not default to), resolved when the
    config is made. Students fine-tune from their teacher by default, as in the paper.
    """

    data: str
    arch: str = "small_cnn"
    size: int = None
    generations: int = 1
    epochs: int = 15
    batch: int = 64
    optimizer: str = None
    lr: float = None
    weight_decay: float = None
    warmup: int = None
    label_smoothing: float = 0.0
    erasing: str = "pasm"
    distill: bool = True
    lam: float = 1.0
    tau: float = 4.0
    p: float = 0.5
    init_from: str = "teacher"
    region: str = "densest"
    area: float = 0.1
    adaptive: bool = False
    fill: str = "mean"
    max_points: int = 20
    remine_every: int = 0
    teacher_view: str = "clean"
    erased_ce: str = "full"
    mix: float = 0.0
    accumulate: str = "none"
    seed: int = 0
    limit: int = None
    split: str = None
    teacher: str = None
    init: str = None

    def __post_init__(self):
        _choice("--arch", self.arch, ARCHITECTURES)
        arch_optimizer, arch_lr, arch_decay, arch_warmup = ARCH_DEFAULTS[self.arch]
        self.optimizer = self.optimizer or arch_optimizer
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--erasing", self.erasing, ERASING)
        _choice("--init-from", self.init_from, INIT_FROM)
        _choice("--region", self.region, STRATEGIES)
        _choice("--fill", self.fill, FILLS)
        self.data = absolute_spec(self.data)
        self.size = int(self.size or default_input_spec(self.arch).size)
        default_lr, default_decay = (arch_lr, arch_decay) if self.optimizer == arch_optimizer else OPTIMIZERS[self.optimizer]
        self.lr = float(default_lr if self.lr is None else self.lr)
        self.weight_decay = float(default_decay if self.weight_decay is None else self.weight_decay)
        self.warmup = arch_warmup if self.warmup is None else self.warmup
        _choice("--teacher-view", self.teacher_view, TEACHER_VIEWS)
        _choice("--erased-ce", self.erased_ce, ERASED_CE)
        _choice("--accumulate", self.accumulate, ACCUMULATE)
        if self.adaptive and self.region == "disks":
            raise PasmError("--adaptive", "adaptive sizing applies to the window strategies only, not disks")
        mined = self.erasing in ("pasm", "attention")
        for option, value, ok, why in [
            ("--mix", self.mix, self.mix == 0 or mined, "mixes in random windows with mined regions: needs --erasing pasm or attention"),
            ("--accumulate", self.accumulate, self.accumulate == "none" or mined, "accumulates mined regions: needs --erasing pasm or attention"),
            ("--accumulate", self.accumulate, self.accumulate == "none" or not self.remine_every,
             "accumulates each generation's teacher regions; it does not combine with --remine-every"),
        ]:
            if not ok:
                raise PasmError(f"{option} {value}", why)
        self.teacher = str(Path(self.teacher).expanduser().resolve()) if self.teacher else None
        self.init = str(Path(self.init).expanduser().resolve()) if self.init else None
        if self.init and not Path(self.init).is_file():
            raise PasmError(f"--init {self.init}", "no such file")
        for option, value, low in [("--size", self.size, 16), ("--generations", self.generations, 0),
                                   ("--epochs", self.epochs, 1), ("--warmup", self.warmup, 0), ("--batch", self.batch, 2),
                                   ("--max-points", self.max_points, 1), ("--remine-every", self.remine_every, 0),
                                   ("--seed", self.seed, 0), ("--limit", self.limit, 2)]:
            if value is not None and (int(value) != value or value < low):
                raise PasmError(f"{option} {value}", f"must be a whole number of at least {low}")
        for option, value, ok, why in [
            ("--lr", self.lr, self.lr > 0, "must be positive"),
            ("--weight-decay", self.weight_decay, self.weight_decay >= 0, "must be 0 or more"),
            ("--label-smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("--lam", self.lam, self.lam >= 0, "must be 0 or more"),
            ("--tau", self.tau, self.tau > 0, "must be positive"),
            ("--p", self.p, 0 <= self.p <= 1, "is a probability, in [0, 1]"),
            ("--mix", self.mix, 0 <= self.mix <= 1, "is a share of the erased faces, in [0, 1]"),
            ("--area", self.area, 0 < self.area <= 1, "must be a fraction of the image in (0, 1]"),
        ]:
            if not ok:
                raise PasmError(f"{option} {value}", why)

    def to_dict(self):
        return asdict(self)

    @property
    def trained_generations(self):
        return range(1 if self.teacher else 0, self.generations + 1)


def _choice(option, value, choices):
    if value not in choices:
        raise PasmError(f"{option} {value}", f"unknown; choose one of {', '.join(choices)}")


def run_config(out, options, resume):
    """The config of run ``out``: from ``options`` for a new run; for ``--resume``, the stored one
    with ``options`` laid over it (``train`` then refuses any that differ, naming the first)."""
    if not resume:
        if not options.get("data"):
            raise PasmError("--data", "a new run needs a data set spec (e.g. synth:data/synth)")
        return TrainConfig(**options)
    stored = Run(out).read_config()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(stored) - known)
    if unknown or "data" not in stored:
        raise PasmError(Run(out).config_path, f"not a config this version of pasm wrote (key {(unknown or ['data'])[0]!r})")
    return TrainConfig(**{**NEWER_FIELDS, **stored, **options})


# Fields added after runs were first written, with the value those runs trained with.
NEWER_FIELDS = {"warmup": 0, "adaptive": False, "init": None, "teacher_view": "clean", "erased_ce": "full", "mix": 0.0,
                "accumulate": "none"}


# ----------------------------------------------------------------------------------------------- losses and erasing


def distillation_loss(student_logits, teacher_logits, tau):
    """τ²·KL(teacher ‖ student) at temperature τ, batch mean (Hinton et al.).

    The τ² keeps the term's gradients on the scale of the cross-entropy's whatever τ is, so λ
    alone sets the balance between label and teacher.
    """
    student = F.log_softmax(student_logits.float() / tau, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau**2


# ----------------------------------------------------------------------------------------------- data


class TrainingImages(Dataset):
    """The training split at the model's size as (uint8 image (C, S, S), label, index), unaugmented:
    the step augments and erases whole batches on the device (pasm.data.augment).

    A set that fits in ``CACHE_BYTES`` is decoded once and kept in memory as uint8, since decoding a
    PNG costs about as much as a small CNN's share of a training step.
    """

    def __init__(self, dataset, input_spec, limit=None, workers=0):
        count = len(dataset) if limit is None else min(limit, len(dataset))
        self.labels = torch.tensor([label for _, label in dataset.samples[:count]], dtype=torch.long)
        self.source = Subset(dataset, range(count))
        decoded_bytes = count * input_spec.channels * input_spec.size**2
        self.cached = decode_all(self.source, workers=workers)[0] if decoded_bytes <= CACHE_BYTES else None

    def __len__(self):
        return len(self.labels)

    def clean(self, index):
        return self.cached[index] if self.cached is not None else self.source[index][0]

    def __getitem__(self, index):
        return self.clean(index), self.labels[index], index


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
    sides = masks.flatten(1).sum(1).float().sqrt().round().long()
    windows = box_masks(random_windows(sides, size), size)
    moved = torch.rand(len(masks), device=masks.device) < mix
    return torch.where(moved[:, None, None, None], windows, masks)


def erased_ce_weights(teacher_logits, labels, masks):
    """Per-sample cross-entropy weights: an erased sample counts as much as the teacher still believes its label on
    the erased view (its probability), so a face whose evidence is gone asks less of the student; others count 1."""
    belief = teacher_logits.float().softmax(1).gather(1, labels[:, None])[:, 0]
    erased = masks.flatten(1).any(1)
    return torch.where(erased, belief, torch.ones_like(belief))


class CleanImages(Dataset):
    """(uint8 image, label) at given indices, unaugmented: what mining and the fill mean look at."""

    def __init__(self, images, indices):
        self.images, self.indices = images, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        return self.images.clean(index), self.images.labels[index]


def _seed(*parts):
    """A 63-bit seed from any tuple of non-negative ints: one independent stream per (run seed, generation, epoch, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


# ----------------------------------------------------------------------------------------------- processes


class Distributed:
    """The process group under torchrun (detected from the environment it sets), or a single process."""

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            torch_dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch_dist.barrier()

    def any(self, flag):
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values):
        if self.world > 1:
            torch_dist.all_reduce(values)
        return values

    def gather_rows(self, rows):
        """Every rank's equally long ``rows``, concatenated in rank order (bool travels as uint8)."""
        if self.world == 1:
            return rows
        sent = rows.to(torch.uint8) if rows.dtype == torch.bool else rows
        parts = [torch.empty_like(sent) for _ in range(self.world)]
        torch_dist.all_gather(parts, sent)
        return torch.cat(parts).to(rows.dtype)

    def close(self):
        if self.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def default_workers():
    """Data-loading processes per training process: none on a 2-core machine, where they would
    compete with the model for the cores; up to 4 where cores are plentiful."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return 0 if per_process <= 2 else min(4, per_process // 2)


class RunStopped(Exception):
    """SIGTERM or SIGINT arrived; the run stopped at a step boundary and can be resumed."""

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class Stopper:
    """Turns SIGTERM/SIGINT into a flag checked at step boundaries; a second signal acts at once."""

    def __init__(self, dist):
        self.dist, self.signum = dist, None

    @contextlib.contextmanager
    def installed(self):
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signum = signum
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)

    def check(self):
        """Raise RunStopped on every rank once any rank was signalled (one collective per call under torchrun)."""
        if self.dist.any(self.signum is not None):
            raise RunStopped(self.signum or signal.SIGTERM)


# ----------------------------------------------------------------------------------------------- the trainer


def train(config, out, resume=False, device="auto", workers=None, keep=()):
    """Train (or with ``resume`` continue) run ``out``; returns the summary (at once for a finished run). Resuming
    with more ``generations`` than the run has extends it: its finished generations stay and the next ones follow.

    ``keep`` names entries a new run directory may already hold (the demo keeps its data there).
    Raises RunStopped after a SIGTERM/SIGINT, once the status says "stopped".
    """
    run = Run(out)
    grown = False
    if resume:
        stored_generations = run.read_config().get("generations", config.generations)
        grown = config.generations > stored_generations
        run.check_resumable({**config.to_dict(), "generations": stored_generations if grown else config.generations},
                            absent=NEWER_FIELDS)
        state = run.load_state()
        if state is not None and state["finished"] and state["generation"] == config.generations:
            return run.read_summary()
    else:
        run.check_new(keep)
    dist = Distributed(device)
    try:
        trainer = Trainer(config, run, dist, default_workers() if workers is None else workers)
        dist.barrier()
        if dist.is_main and (grown or not resume):
            run.create(config.to_dict())
        dist.barrier()
        return trainer.run_all(resume)
    finally:
        dist.close()


def demo(out, quick=False, device="auto", workers=None):
    """A small SynthFER set in ``out/data`` (written once), then a small_cnn teacher and one PASM generation in ``out``.

    The same call starts the demo or continues it from wherever a stopped, killed or crashed one got to
    (a set whose writing was cut short is written again), so ``demo --resume`` needs nothing more.
    """
    sizes = DEMO_QUICK if quick else DEMO
    data = Path(out) / "data"
    if not (data / "manifest.json").is_file():
        write_synth(data, train=sizes["train"], test=sizes["test"], size=sizes["size"], seed=0)
    config = TrainConfig(data=f"synth:{data}", arch="small_cnn", size=sizes["size"], generations=1, epochs=sizes["epochs"],
                         optimizer=sizes.get("optimizer"), lr=sizes.get("lr"), warmup=sizes.get("warmup"))
    resume = (Path(out) / "config.json").exists()
    return train(config, out, resume=resume, device=device, workers=workers, keep=("data",))


class Trainer:
    def __init__(self, config, run, dist, workers):
        self.config, self.run, self.dist, self.workers = config, run, dist, workers
        self.device = dist.device
        self.input_spec = default_input_spec(config.arch, config.size)
        self.train_split = open_dataset(config.data, "train", uint8_transform(self.input_spec))
        if len(self.train_split) < 2 * dist.world:
            raise PasmError(config.data, f"the train split has {len(self.train_split)} images; training needs at least {2 * dist.world}")
        self.classes = self.train_split.classes
        self.eval_split = config.split or default_split(config.data)
        if self.eval_split not in available_splits(config.data):
            raise PasmError(config.data, f"no split {self.eval_split!r} to evaluate on (--split)")
        self.teacher_mapping = self._check_teacher(config.teacher) if config.teacher else None
        self.stopper = Stopper(dist)
        self.records, self.generations = [], []
        count = len(self.train_split) if config.limit is None else min(config.limit, len(self.train_split))
        sampler_length = math.ceil(count / dist.world)
        self.drop_last = sampler_length >= config.batch
        self.steps_per_epoch = sampler_length // config.batch if self.drop_last else math.ceil(sampler_length / config.batch)
        self.progress = Progress(run, dist.is_main, config.trained_generations, config.epochs, self.steps_per_epoch)
        self.augment = BatchAugment()
        # Decoded inside run_all, where a stop request is honoured: the training images and their mean
        # colour (the "mean" fill), and on the main process the evaluation sets.
        self.images = self.fill_mean = self.eval_sets = None

    def _check_teacher(self, path):
        """Architecture and input must be the run's; classes are matched by name (pasm.emotions), so a FER2013
        teacher (angry, happy, ...) can start a RAF-DB run (anger, happiness, ... in another order)."""
        teacher = load_checkpoint(path)
        meta = teacher.meta
        for what, have, want in [("architecture", meta["arch"], self.config.arch),
                                 ("input size", meta["input"]["size"], self.input_spec.size),
                                 ("channels", meta["input"]["channels"], self.input_spec.channels)]:
            if have != want:
                raise PasmError(path, f"the teacher's {what} is {have}, but this run's is {want}")
        return class_mapping(meta["classes"], self.classes, what=path, source="the teacher", target="this run's data set")

    # -------------------------------------------------------------------- the whole run

    def run_all(self, resume):
        with self.stopper.installed():
            try:
                self.progress.status(state="running", phase="loading", error=None)
                state = self.run.load_state() if resume else None
                self._load_data()
                return self._generations(state)
            except (RunStopped, KeyboardInterrupt):
                self.progress.status(state="stopped", phase=None)
                self.progress.say(f"stopped; continue with: python -m pasm train --out {self.run.path} --resume")
                raise
            except BaseException as e:
                self.progress.status(state="failed", phase=None, error=first_line(e, with_type=True))
                raise

    def _load_data(self):
        started = time.monotonic()
        self.images = TrainingImages(self.train_split, self.input_spec, self.config.limit, self.workers)
        self.fill_mean = self._channel_mean()
        if self.dist.is_main:
            self.eval_sets = EvalSets(self.config.data, self.input_spec, self.eval_split, workers=self.workers)
        self.progress.say(f"data: {len(self.images)} training images ({'in memory' if self.images.cached is not None else 'read per epoch'}), "
                  f"{self.steps_per_epoch} steps per epoch on {self.dist.world} process(es), {self.device}; "
                  f"loaded in {time.monotonic() - started:.1f}s")

    def _channel_mean(self):
        """The training images' mean colour, the ``mean`` fill (from up to 2048 images)."""
        count = min(len(self.images), 2048)
        loader = DataLoader(CleanImages(self.images, range(count)), batch_size=MINING_BATCH, num_workers=self._loader_workers())
        total = sum(batch.double().sum(dim=(0, 2, 3)) for batch, _ in loader)
        return (total / (count * self.input_spec.size**2 * 255)).float().tolist()

    def _loader_workers(self):
        return 0 if self.images.cached is not None else self.workers

    def _generations(self, state):
        first = 0
        if state is not None:
            self.records, self.generations = list(state["records"]), list(state["generations"])
            first = state["generation"] + (1 if state["finished"] else 0)
            if self.dist.is_main:
                self.run.write_metrics(self.records)
        for generation in range(first, self.config.generations + 1):
            resumed = state if state is not None and state["generation"] == generation and not state["finished"] else None
            self._generation(generation, resumed)
        self.progress.status(state="done", phase=None, progress=1.0, eta_seconds=0)
        self.progress.say(f"done: {self.run.path / 'summary.json'}")
        return self.summary()

    def summary(self):
        return {"data": self.config.data, "split": self.eval_split, "classes": self.classes,
                "generations": self.generations}

    # -------------------------------------------------------------------- one generation

    def _generation(self, g, resumed):
        cfg = self.config
        if g == 0 and cfg.teacher:
            self._adopt_teacher()
            return
        teacher, teacher_sha = self._teacher(g)
        model = self._fresh_model(teacher)
        optimizer, scheduler = self._optimizer(model)
        regions, mining, mining_seconds, first_epoch = None, None, 0.0, 0
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            regions, mining, mining_seconds = resumed["regions"], resumed["mining"], resumed["mining_seconds"]
            first_epoch = resumed["epoch"]
            self.progress.say(f"generation {g}: resuming after epoch {first_epoch}/{cfg.epochs}")
        elif self._mines(g):
            started = time.monotonic()
            regions, mining = self._mine(teacher, g, 0)
            regions = self._accumulated(regions, g)
            mining["area"] = regions_area(regions, self.input_spec.size)
            mining_seconds = time.monotonic() - started
            self._save_state(g, 0, model, optimizer, scheduler, regions, mining, mining_seconds)
        parallel = self._parallel(model)
        for epoch in range(first_epoch, cfg.epochs):
            remined = None
            if self._mines(g) and cfg.remine_every and epoch > 0 and epoch % cfg.remine_every == 0:
                started = time.monotonic()
                regions, remined = self._mine(model, g, epoch)
                mining_seconds += time.monotonic() - started
            if g > 0 and cfg.erasing == "random":
                regions, _ = self._mine(None, g, epoch)
            record = self._train_epoch(parallel, teacher, regions, g, epoch, optimizer, scheduler)
            if remined is not None:
                record["mining"] = remined
            self.records.append(record)
            kept = regions if self._mines(g) else None
            self._save_state(g, epoch + 1, model, optimizer, scheduler, kept, mining, mining_seconds)
            if self.dist.is_main:
                self.run.write_metrics(self.records)
        self._finish(g, model, teacher_sha, mining, mining_seconds)

    def _mines(self, g):
        return g > 0 and self.config.erasing in ("pasm", "attention")

    def _teacher(self, g):
        """The previous generation, frozen in eval mode, and its file's hash (the student's parent)."""
        if g == 0:
            return None, None
        checkpoint = load_checkpoint(self.run.checkpoint_path(g - 1), device=self.device)
        checkpoint.model.requires_grad_(False)
        return checkpoint.model, checkpoint.sha256

    def _fresh_model(self, teacher):
        """A student fine-tunes from its teacher (``init_from`` "teacher"); generation 0, and a student "from
        scratch", start from the run seed's weights with ``init``'s pretrained layers laid over them."""
        torch.manual_seed(self.config.seed)
        model = build_model(self.config.arch, len(self.classes), self.input_spec)
        if teacher is not None and self.config.init_from == "teacher":
            model.load_state_dict(teacher.state_dict())
        elif self.config.init:
            fresh = load_pretrained(model, self.config.init)
            self.progress.say(f"started from {self.config.init}" + (f"; fresh: {', '.join(fresh)}" if fresh else ""))
        return model.to(self.device)

    def _optimizer(self, model):
        cfg = self.config
        optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
        return optimizer, warmup_cosine(optimizer, cfg.epochs * self.steps_per_epoch, cfg.warmup * self.steps_per_epoch)

    def _parallel(self, model):
        if self.dist.world == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -------------------------------------------------------------------- mining

    def _mine(self, model, g, epoch, who=None):
        """A region per training image from ``model`` (the teacher, or the student when re-mining; none
        for random erasing, whose windows are drawn afresh every epoch), each rank locating its share."""
        cfg = self.config
        if cfg.erasing != "random":
            self.progress.status(phase="mining", generation=g, epoch=epoch)
        count = len(self.images)
        share = math.ceil(count / self.dist.world)
        # Every rank mines the same number of rows (the last one wraps around), so collectives line up.
        indices = [i % count for i in range(self.dist.rank * share, (self.dist.rank + 1) * share)]
        loader = DataLoader(CleanImages(self.images, indices), batch_size=MINING_BATCH, num_workers=self._loader_workers())
        generator = torch.Generator().manual_seed(_seed(cfg.seed, g, epoch, 1))
        method = region_method(cfg.erasing, model, AttackConfig(max_points=cfg.max_points),
                               RegionConfig(cfg.region, cfg.area, cfg.adaptive, cfg.fill), generator)
        regions, result = locate_all(method, self._mining_batches(loader), MINING_BATCH)
        regions = self.dist.gather_rows(regions)[:count].cpu()
        attempts = None if result is None else torch.stack([result.num_points, result.points_to_flip], dim=1)
        stats = self._mining_stats(None if attempts is None else self.dist.gather_rows(attempts)[:count].cpu())
        if cfg.erasing != "random":
            self.progress.say(f"generation {g}: mined {count} regions with {who or ('the student' if epoch else 'the teacher')} ({cfg.erasing}"
                      + (f"; {stats['flipped']:.0%} flipped, {stats['mean_points_to_flip']:.1f} points on average"
                         if attempts is not None else "") + ")")
        return regions, stats

    def _accumulated(self, regions, g):
        """With ``accumulate``, generation g >= 2 erases from the regions every earlier generation locates (each
        frozen checkpoint mines again): their union as masks (N, 1, S, S), or all of them (N, K, ...), one drawn per
        step. Reliance that moved to the next region then meets it erased too, instead of the teacher's one region."""
        cfg = self.config
        if cfg.accumulate == "none" or g < 2:
            return regions
        earlier = []
        for k in range(g - 1):
            model = load_checkpoint(self.run.checkpoint_path(k), device=self.device).model.requires_grad_(False)
            earlier.append(self._mine(model, g, 0, who=f"generation {k}")[0])
        return combine_regions(earlier + [regions], cfg.accumulate, self.input_spec.size)

    def _mining_batches(self, loader):
        """The loader's images on the device in [0, 1], checking for a stop request between batches."""
        for images, labels in loader:
            self.stopper.check()
            yield images.to(self.device).float().div_(255), labels.to(self.device)

    @staticmethod
    def _mining_stats(attempts):
        """How the attack went: share of images it flipped, points it needed, share with no region."""
        if attempts is None:
            return {"images": 0}
        num_points, points_to_flip = attempts[:, 0], attempts[:, 1]
        flipped = points_to_flip > 0
        return {
            "images": len(attempts),
            "flipped": float(flipped.float().mean()),
            "mean_points_to_flip": float(points_to_flip[flipped].float().mean()) if flipped.any() else 0.0,
            "misclassified": float((points_to_flip == 0).float().mean()),
            "no_region": float((num_points == 0).float().mean()),
        }

    # -------------------------------------------------------------------- training

    def _train_epoch(self, model, teacher, regions, g, epoch, optimizer, scheduler):
        cfg = self.config
        torch.manual_seed(_seed(cfg.seed, g, epoch, self.dist.rank + 2))
        sampler = DistributedSampler(self.images, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True,
                                     seed=_seed(cfg.seed, g) >> 32)
        sampler.set_epoch(epoch)
        loader = DataLoader(self.images, batch_size=cfg.batch, sampler=sampler, num_workers=self._loader_workers(),
                            drop_last=self.drop_last, pin_memory=self.device.type == "cuda")
        erasing = regions is not None and g > 0 and cfg.erasing != "none"
        regions = regions.to(self.device) if erasing else None
        distilling = teacher is not None and cfg.distill
        weighting = teacher is not None and erasing and cfg.erased_ce == "confidence"
        sums = torch.zeros(5, device=self.device)  # loss, ce, kd, erased, correct; summed over samples
        seen = 0
        model.train()
        started = time.monotonic()
        for images, labels, index in self.progress.log_every(loader, g, epoch):
            self.stopper.check()
            images = images.to(self.device, non_blocking=True).float().div_(255)
            labels = labels.to(self.device, non_blocking=True)
            masks = erasing_masks(regions, index.to(self.device), cfg.p, self.input_spec.size, cfg.mix) if erasing else None
            images, masks = self.augment(images, masks)
            inputs = erase(images, masks, cfg.fill, self.fill_mean) if erasing else images
            logits = model(inputs)
            targets = self._teacher_logits(teacher, images, inputs, distilling, weighting)
            ce = F.cross_entropy(logits, labels, reduction="none" if weighting else "mean", label_smoothing=cfg.label_smoothing)
            if weighting:
                ce = (ce * erased_ce_weights(targets["erased"], labels, masks)).mean()
            kd = torch.zeros((), device=self.device)
            if distilling:
                kd = distillation_loss(logits, targets[cfg.teacher_view], cfg.tau)
            loss = ce + cfg.lam * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(labels)
            erased = masks.flatten(1).any(1).sum() if erasing else torch.zeros((), device=self.device)
            sums += torch.stack([loss.detach() * n, ce.detach() * n, kd.detach() * n, erased,
                                 (logits.detach().argmax(1) == labels).sum()]).float()
            seen += n
        sums = self.dist.sum(torch.cat([sums, torch.tensor([float(seen)], device=self.device)]))
        loss, ce, kd, erased, correct = (sums[:5] / sums[5].clamp(min=1)).tolist()
        record = {"kind": "epoch", "generation": g, "epoch": epoch + 1, "loss": loss, "ce": ce, "kd": kd,
                  "train_accuracy": correct, "erased_fraction": erased, "lr": scheduler.get_last_lr()[0],
                  "seconds": time.monotonic() - started}
        self.progress.say(f"generation {g} epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} (ce {ce:.4f}, kd {kd:.4f}), "
                          f"train accuracy {correct:.3f}, erased {erased:.2f}, lr {record['lr']:.4g}, "
                          f"{record['seconds']:.1f}s")
        return record

    def _teacher_logits(self, teacher, clean, erased, distilling, weighting):
        """The teacher's logits on the views the losses need: the clean face and/or the erased view the student sees."""
        views = set()
        if distilling:
            views.add(self.config.teacher_view)
        if weighting:
            views.add("erased")
        with torch.no_grad():
            return {view: teacher(clean if view == "clean" else erased) for view in views}

    # -------------------------------------------------------------------- the end of a generation

    def _finish(self, g, model, teacher_sha, mining, mining_seconds):
        """Evaluate, write the checkpoint and the summary; only then is the generation finished."""
        cfg = self.config
        if self.dist.is_main:
            self.progress.status(phase="evaluating", generation=g, epoch=cfg.epochs, step=0)
            started = time.monotonic()
            metrics = self._evaluate(model)
            eval_seconds = time.monotonic() - started
            arm = {"erasing": cfg.erasing if g > 0 else "none", "distill": cfg.distill and g > 0}
            meta = make_meta(model, self.classes, generation=g, parent_hash=teacher_sha,
                             train_config={**cfg.to_dict(), "generation": g, **arm},
                             metrics={"data": cfg.data, **metrics},
                             provenance={"run": str(self.run.path.resolve()), "pasm": __version__})
            sha = save_checkpoint(self.run.checkpoint_path(g), model, meta)
            train_seconds = sum(r["seconds"] for r in self.records if r["kind"] == "epoch" and r["generation"] == g)
            seconds = {"mining": mining_seconds, "train": train_seconds, "eval": eval_seconds}
            self._record_generation(g, sha, teacher_sha, metrics, arm, seconds, mining)
        self.dist.barrier()

    def _adopt_teacher(self):
        """Generation 0 from ``--teacher``. With the run's classes the file is copied unchanged, so its hash is the
        students' parent hash. With other names or order, generation 0 is the teacher with its final layer's rows
        put in the data set's order (so students and distillation see one class order); its parent hash is the
        teacher's file and its provenance records the mapping."""
        self.progress.status(phase="evaluating", generation=0, epoch=0, step=0)
        if self.dist.is_main:
            mapping, path = self.teacher_mapping, self.run.checkpoint_path(0)
            teacher = load_checkpoint(self.config.teacher, device=self.device)
            model = teacher.model if mapping.identical else remap_outputs(teacher.model, mapping.indices).eval()
            started = time.monotonic()
            metrics = self._evaluate(model)
            seconds = {"mining": 0.0, "train": 0.0, "eval": time.monotonic() - started}
            if mapping.identical:
                fileio.write_bytes(path, Path(self.config.teacher).read_bytes())
                sha, parent_hash = file_sha256(path), teacher.meta.get("parent_hash")
            else:
                provenance = {"source": self.config.teacher, "source_sha256": teacher.sha256, "pasm": __version__,
                              "class_mapping": mapping.to_dict(), "source_provenance": teacher.meta.get("provenance")}
                meta = make_meta(model, self.classes, generation=0, parent_hash=teacher.sha256,
                                 train_config=teacher.meta.get("train_config"),
                                 metrics={"data": self.config.data, **metrics}, provenance=provenance)
                sha, parent_hash = save_checkpoint(path, model, meta), teacher.sha256
            arm = {"erasing": "none", "distill": False, "source": self.config.teacher,
                   "class_mapping": mapping.description}
            self._record_generation(0, sha, parent_hash, metrics, arm, seconds, None)
        self.dist.barrier()

    def _evaluate(self, model):
        """The evaluation sets' metrics plus accuracy on the clean, unaugmented training images, which says
        whether the network fits its training set (the regime a regulariser like erasing is meant for)."""
        metrics = self.eval_sets.evaluate(model, device=self.device)
        loader = DataLoader(CleanImages(self.images, range(len(self.images))), batch_size=MINING_BATCH,
                            num_workers=self._loader_workers())
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in loader:
                logits = model(images.to(self.device).float().div_(255))
                correct += int((logits.argmax(1).cpu() == labels).sum())
        return {**metrics, "train_accuracy": correct / len(self.images)}

    def _record_generation(self, g, sha, parent_hash, metrics, arm, seconds, mining):
        scores = {"train_accuracy": metrics["train_accuracy"], "test_accuracy": metrics["accuracy"],
                  "mean_class_accuracy": metrics["mean_class_accuracy"],
                  "occluded_accuracy": metrics["occluded_accuracy"],
                  "occluded_mean_class_accuracy": metrics["occluded_mean_class_accuracy"]}
        if "wild_accuracy" in metrics:
            scores.update(wild_accuracy=metrics["wild_accuracy"], wild_mean_class_accuracy=metrics["wild_mean_class_accuracy"])
        entry = {"index": g, "checkpoint": self.run.checkpoint_name(g), "sha256": sha, "parent_hash": parent_hash,
                 **arm, **scores, "per_class_accuracy": metrics["per_class_accuracy"],
                 "occluded_accuracy_by_kind": metrics["occluded_accuracy_by_kind"],
                 "wild_accuracy_by_region": metrics.get("wild_accuracy_by_region"), "mining": mining, "seconds": seconds}
        self.generations = [e for e in self.generations if e["index"] != g] + [entry]
        self.records = [r for r in self.records if not (r["kind"] == "generation" and r["generation"] == g)]
        self.records.append({"kind": "generation", "generation": g, **scores, "confusion": metrics["confusion"],
                             "mining": mining, "seconds": seconds})
        self.run.write_summary(self.summary())
        self.run.write_metrics(self.records)
        self.run.save_state({"generation": g, "epoch": self.config.epochs, "finished": True,
                             "records": self.records, "generations": self.generations})
        extra = f", wild {scores['wild_accuracy']:.3f}" if "wild_accuracy" in scores else ""
        self.progress.say(f"generation {g}: test accuracy {scores['test_accuracy']:.3f}, mean class accuracy "
                  f"{scores['mean_class_accuracy']:.3f}, occluded {scores['occluded_accuracy']:.3f}{extra} "
                  f"-> {self.run.checkpoint_name(g)}")

    # -------------------------------------------------------------------- bookkeeping

    def _save_state(self, g, epoch, model, optimizer, scheduler, regions, mining, mining_seconds):
        """Everything --resume needs to continue after epoch ``epoch`` (0: just after mining), as tensors and plain values."""
        if self.dist.is_main:
            self.run.save_state({"generation": g, "epoch": epoch, "finished": False, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "regions": regions, "mining": mining, "mining_seconds": mining_seconds,
                                 "records": self.records, "generations": self.generations})

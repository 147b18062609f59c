"""The training loop: ``train`` (a run directory, new or resumed) and the ``Trainer`` that goes through a run's
generations. ``_train_epoch`` is one epoch of the student's steps: augment, erase, forward, the label's and the
teacher's losses, backward."""
import math
import time

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..checkpoints import load_checkpoint, load_pretrained
from ..data import available_splits, open_dataset
from ..data.augment import BatchAugment
from ..data.transforms import uint8_transform
from ..emotions import class_mapping
from ..erasing import erase
from ..errors import PasmError, first_line
from ..evaluate import EvalSets, default_split
from ..models import build_model, default_input_spec
from ..progress import Progress
from ..runs import Run
from ..threads import computing_on
from .config import NEWER_FIELDS
from .distributed import Distributed, RunStopped, Stopper, default_workers
from .losses import distillation_loss, erased_ce_weights
from .masks import erasing_masks, regions_area
from .mining import MINING_BATCH, Mining
from .outcome import GenerationEnd
from .samples import CleanImages, TrainingImages, stream_seed
from .supervised import make_optimizer, warmup_cosine


def train(config, out, resume=False, device="auto", workers=None, keep=()):
    """Train (or with ``resume`` continue) run ``out``; returns the summary (at once for a finished run). Resuming
    with more ``generations`` than the run has extends it: its finished generations stay and the next ones follow.

    ``keep`` names entries a new run directory may already hold (the demo keeps its data there). torch computes
    on ``config.threads`` CPU threads meanwhile. Raises RunStopped after a SIGTERM/SIGINT, once the status says "stopped".
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
        with computing_on(config.threads):
            trainer = Trainer(config, run, dist, default_workers() if workers is None else workers)
            dist.barrier()
            if dist.is_main and (grown or not resume):
                run.create(config.to_dict())
            dist.barrier()
            return trainer.run_all(resume)
    finally:
        dist.close()


class Trainer(Mining, GenerationEnd):
    """A run's generations in order, each mined (pasm.train.mining), trained epoch by epoch here, then evaluated and
    written (pasm.train.outcome); ``run_all`` is the whole run."""

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

    # -------------------------------------------------------------------- training

    def _train_epoch(self, model, teacher, regions, g, epoch, optimizer, scheduler):
        cfg = self.config
        torch.manual_seed(stream_seed(cfg.seed, g, epoch, self.dist.rank + 2))
        sampler = DistributedSampler(self.images, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True,
                                     seed=stream_seed(cfg.seed, g) >> 32)
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

    # -------------------------------------------------------------------- bookkeeping

    def _save_state(self, g, epoch, model, optimizer, scheduler, regions, mining, mining_seconds):
        """Everything --resume needs to continue after epoch ``epoch`` (0: just after mining), as tensors and plain values."""
        if self.dist.is_main:
            self.run.save_state({"generation": g, "epoch": epoch, "finished": False, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "regions": regions, "mining": mining, "mining_seconds": mining_seconds,
                                 "records": self.records, "generations": self.generations})

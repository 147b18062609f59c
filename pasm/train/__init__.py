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

The package, by concept: ``config`` (TrainConfig), ``loop`` (``train`` and the Trainer's loop), ``mining`` and
``outcome`` (the Trainer's mining and generation ends), ``samples`` and ``masks`` (what a step reads and erases),
``losses``, ``supervised`` (the plain loop, optimizer and schedule), ``distributed`` (processes and stop requests),
``demo``.
"""
from .config import NEWER_FIELDS, TrainConfig, run_config
from .demo import DEMO, DEMO_QUICK, demo, demo_config, write_demo_data
from .distributed import Distributed, RunStopped, Stopper, default_workers
from .losses import distillation_loss, erased_ce_weights
from .loop import Trainer, train
from .masks import combine_regions, erasing_masks, regions_area
from .mining import MINING_BATCH
from .samples import CACHE_BYTES, CleanImages, TrainingImages
from .supervised import fit_supervised, make_optimizer, train_one_epoch, warmup_cosine

__all__ = ["CACHE_BYTES", "DEMO", "DEMO_QUICK", "MINING_BATCH", "NEWER_FIELDS", "CleanImages", "Distributed",
           "RunStopped", "Stopper", "TrainConfig", "Trainer", "TrainingImages", "combine_regions", "default_workers",
           "demo", "demo_config", "distillation_loss", "erased_ce_weights", "erasing_masks", "fit_supervised",
           "make_optimizer", "regions_area", "run_config", "train", "train_one_epoch", "warmup_cosine",
           "write_demo_data"]

"""The names users choose from, kept free of torch so that building the CLI stays instant."""

SCORES = ("l1", "l2", "linf")
STRATEGIES = ("densest", "first", "centroid", "disks")
FILLS = ("zeros", "mean", "noise", "blur")
ARCHITECTURES = ("small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "mini_xception")
ERASING = ("pasm", "random", "attention", "none")
INIT_FROM = ("teacher", "scratch")
# The data set kinds pasm.data reads (its readers import torch), named here so that the CLI answers a mistyped spec
# before torch is imported; tests/test_cli.py keeps this list equal to the readers'.
DATA_KINDS = ("synth", "rafdb", "fer2013", "ferplus", "affectnet", "affectnet8", "folder")
# What the teacher's soft target is computed on: the clean face (the paper) or the erased view the student sees
# ("function matching", Beyer et al., CVPR 2022), so that a target says so where the evidence is gone.
TEACHER_VIEWS = ("clean", "erased")
# The cross-entropy of an erased sample: full weight, or weighted by the teacher's probability of the label on it.
ERASED_CE = ("full", "confidence")
# Regions that add up across generations: generation g erases the union of, or one drawn from, the regions that
# generations 0..g-1 locate (at generation 1 both are PASM itself).
ACCUMULATE = ("none", "union", "draw")
# Where a study's runs train: here (one after another, or side by side), or as tasks on a Ray cluster.
LAUNCHERS = ("local", "ray")
# Learning rate and weight decay per optimizer, when not given.
OPTIMIZERS = {"sgd": (0.05, 5e-4), "adamw": (1e-3, 0.05)}
# How each architecture trains from scratch when not told otherwise: optimizer, peak learning rate,
# weight decay and linear warm-up epochs before the cosine decay. The small CNN is happy with plain
# SGD; the deep nets with batch norm and residual stacks stay at chance with SGD at 0.05 from scratch on
# small images, and learn with AdamW and a short warm-up (docs/method.md, "Training defaults").
# Ready-made settings for published set-ups; options given on the command line win. The RAF-DB recipe
# follows the common fine-tuning set-up of ResNet-18 FER work on RAF-DB (a face- or ImageNet-pretrained
# ResNet-18 at 224 px, Adam-family optimiser at a small learning rate, batch 64, tens of epochs: e.g.
# SCN, Wang et al., CVPR 2020; RUL, Zhang et al., NeurIPS 2021); it needs --init with local pretrained
# weights and is meant for a GPU machine.
RECIPES = {
    "rafdb-resnet18": {"arch": "resnet18", "size": 224, "batch": 64, "epochs": 40, "generations": 2,
                       "optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-4, "warmup": 1, "label_smoothing": 0.0},
}
ARCH_DEFAULTS = {
    "small_cnn": ("adamw", 3e-3, 5e-4, 1),
    "resnet18": ("adamw", 1e-3, 0.05, 1),
    "resnet50": ("adamw", 1e-3, 0.05, 1),
    "mobilenet_v3_small": ("adamw", 2e-3, 0.01, 1),
    "mini_xception": ("adamw", 2e-3, 0.01, 1),
}
# The arms of ``python -m pasm study``: each is the TrainConfig fields its runs set, over the study's options (the
# arm's win), and its name is the prefix of its run directories (ARM-seedK). The four erasing names, then variants of
# PASM erasing: windows sized by the spread of their attack points, disks around the points instead of one window,
# students re-mining their regions every third of the epochs, rounded down, at least 1 (a callable of the epochs: at
# 15 they re-mine at epochs 5 and 10, at 40 every 13, so students re-mine two or three times however long), windows
# of half the default area (docs/results.md, "A smaller window"); then the variants that follow from the mechanism of
# docs/results.md (docs/method.md, "Variants"): consistent teaching (the teacher's target on the erased view, and also
# the erased samples' cross-entropy weighted by the teacher's confidence there), regions that accumulate across
# generations (their union, or one of them drawn per step), half PASM's region and half a random window of the same
# area, and the combinations of these, which act on different things (the target, where erasing falls, what adds up).
_CONSISTENT = {"teacher_view": "erased"}
# A study's arms when none are named: the paper's comparison.
DEFAULT_ARMS = ("none", "random", "attention", "pasm")
_MIX = {"mix": 0.5}
STUDY_ARMS = {
    "none": {"erasing": "none"},
    "random": {"erasing": "random"},
    "attention": {"erasing": "attention"},
    "pasm": {"erasing": "pasm"},
    "pasm-adaptive": {"erasing": "pasm", "adaptive": True},
    "pasm-disks": {"erasing": "pasm", "region": "disks"},
    "pasm-remine": {"erasing": "pasm", "remine_every": lambda epochs: max(1, epochs // 3)},
    "pasm-small": {"erasing": "pasm", "area": 0.05},
    "pasm-consistent": {"erasing": "pasm", **_CONSISTENT},
    "pasm-consistent-weighted": {"erasing": "pasm", **_CONSISTENT, "erased_ce": "confidence"},
    "pasm-cumulative": {"erasing": "pasm", "accumulate": "union"},
    "pasm-cumulative-draw": {"erasing": "pasm", "accumulate": "draw"},
    "pasm-mix": {"erasing": "pasm", **_MIX},
    "pasm-consistent-mix": {"erasing": "pasm", **_CONSISTENT, **_MIX},
    "pasm-consistent-cumulative": {"erasing": "pasm", **_CONSISTENT, "accumulate": "draw"},
}

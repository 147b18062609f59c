"""The names users choose from, kept free of torch so that building the CLI stays instant."""

SCORES = ("l1", "l2", "linf")
STRATEGIES = ("densest", "first", "centroid", "disks")
FILLS = ("zeros", "mean", "noise", "blur")
ARCHITECTURES = ("small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "mini_xception")
ERASING = ("pasm", "random", "attention", "none")
INIT_FROM = ("teacher", "scratch")
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
# 15 they re-mine at epochs 5 and 10, at 40 every 13, so students re-mine two or three times however long), and windows
# of half the default area, which took less of the label's evidence and beat the default PASM on SynthFER's occluded
# test (docs/results.md, "A smaller window").
STUDY_ARMS = {
    "none": {"erasing": "none"},
    "random": {"erasing": "random"},
    "attention": {"erasing": "attention"},
    "pasm": {"erasing": "pasm"},
    "pasm-adaptive": {"erasing": "pasm", "adaptive": True},
    "pasm-disks": {"erasing": "pasm", "region": "disks"},
    "pasm-remine": {"erasing": "pasm", "remine_every": lambda epochs: max(1, epochs // 3)},
    "pasm-small": {"erasing": "pasm", "area": 0.05},
}

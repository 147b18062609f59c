"""The names users choose from, kept free of torch so that building the CLI stays instant."""

SCORES = ("l1", "l2", "linf")
STRATEGIES = ("densest", "first", "centroid", "disks")
FILLS = ("zeros", "mean", "noise", "blur")
ARCHITECTURES = ("small_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "mini_xception")
ERASING = ("pasm", "random", "attention", "none")
INIT_FROM = ("scratch", "teacher")
# Learning rate and weight decay per optimizer, when not given.
OPTIMIZERS = {"sgd": (0.05, 5e-4), "adamw": (1e-3, 0.05)}

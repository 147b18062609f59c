"""The names users choose from, kept free of torch so that building the CLI stays instant."""

SCORES = ("l1", "l2", "linf")
STRATEGIES = ("densest", "first", "centroid", "disks")
FILLS = ("zeros", "mean", "noise", "blur")

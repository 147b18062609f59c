"""Is SynthFER learnable yet not trivial? Train the small CNN briefly and score test and test_wild.

    python -m bench.synth_baseline --data data/synth --epochs 8

Writes the data set first if DIR has none. Prints accuracies as JSON (with time and machine).
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from pasm.data import open_dataset
from pasm.data.synth import write_synth
from pasm.data.transforms import eval_transform, train_transform
from pasm.evaluate import evaluate
from pasm.models import build_model, default_input_spec
from pasm.train import fit_supervised


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--train", type=int, default=3500)
    parser.add_argument("--test", type=int, default=700)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (Path(args.data) / "manifest.json").exists():
        write_synth(args.data, train=args.train, test=args.test, size=64, seed=args.seed)
    torch.manual_seed(args.seed)
    spec = default_input_spec(args.arch, size=64)
    train = open_dataset(f"synth:{args.data}", "train", train_transform(spec))
    model = build_model(args.arch, len(train.classes), spec)
    start = time.time()
    losses = fit_supervised(model, train, epochs=args.epochs, log=print)
    seconds = time.time() - start
    scores = {split: evaluate(model, open_dataset(f"synth:{args.data}", split, eval_transform(spec)))
              for split in ("train", "test", "test_wild")}
    print(json.dumps({
        "arch": args.arch, "epochs": args.epochs, "train_images": len(train), "train_seconds": round(seconds, 1),
        "final_loss": round(losses[-1], 4),
        "accuracy": {s: round(m["accuracy"], 4) for s, m in scores.items()},
        "mean_class_accuracy": {s: round(m["mean_class_accuracy"], 4) for s, m in scores.items()},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
    }, indent=2))


if __name__ == "__main__":
    main()

"""The first-run demo's teacher over training seeds and thread counts: how far above 0.75 its test accuracy stays.

    python -m bench.demo_spread [--seeds 0,1,2,3] [--threads 1,2] [--epochs E] [--json OUT]

Another machine's CPU or thread count changes the order of float sums, and from there a training run's trajectory,
as much as another seed does: the spread over seeds and thread counts stands for the spread over machines. The
demo's data set is always the same (SynthFER seed 0, as ``pasm.train.demo`` writes it); each cell trains the demo's
teacher (generation 0, the recipe ``pasm.train.DEMO``) on the CPU, one cell after another.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pasm.train import DEMO, demo_config, train, write_demo_data

TARGET = 0.75


def demo_teacher_accuracy(data, out, seed, threads, epochs):
    config = demo_config(data, generations=0, epochs=epochs, seed=seed, threads=threads)
    return train(config, out, device="cpu", workers=0)["generations"][0]["test_accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.demo_spread", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--epochs", type=int, default=DEMO["epochs"], help="the teacher's epochs (default: the demo's)")
    parser.add_argument("--json", help="also write the cells and the summary here")
    args = parser.parse_args(argv)
    cells = []
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        write_demo_data(data)
        for threads in [int(t) for t in args.threads.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                started = time.perf_counter()
                accuracy = demo_teacher_accuracy(data, Path(work) / f"t{threads}-s{seed}", seed, threads,
                                                args.epochs)
                cells.append({"epochs": args.epochs, "seed": seed, "threads": threads,
                              "test_accuracy": round(accuracy, 4), "seconds": round(time.perf_counter() - started, 1)})
                print(json.dumps(cells[-1]), flush=True)
    accuracies = [cell["test_accuracy"] for cell in cells]
    summary = {"target": TARGET, "min": min(accuracies), "mean": round(statistics.mean(accuracies), 4),
               "std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else 0.0,
               "margin_of_min": round(min(accuracies) - TARGET, 4)}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"cells": cells, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

"""What does PASM's mining cost? One PASM generation against one none-erasing generation of the same length.

    python -m bench.train_overhead --data data/synth --epochs 15

Both students learn from the same teacher (trained first, or given with --teacher) with the same
distillation, so the only differences are PASM's mining pass before training and the batched
erasing during it. Everything runs in this one process. Prints the ratio of their wall times
(mining + training; evaluation, the same for both, is reported apart) as JSON.
"""
import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pasm.data.synth import write_synth
from pasm.train import TrainConfig, train


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synth", help="SynthFER directory (written first if missing)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each student generation")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--teacher", help="a trained small_cnn checkpoint to use as the teacher")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two arms this many times")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--work", help="where the runs go (default: a temporary directory, removed after)")
    args = parser.parse_args()
    if not (Path(args.data) / "manifest.json").exists():
        write_synth(args.data, train=3500, test=700, size=64, seed=0)
    work = Path(args.work or tempfile.mkdtemp(prefix="pasm-overhead-"))
    try:
        report = measure(f"synth:{args.data}", work, args)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def measure(data, work, args):
    teacher = args.teacher
    if teacher is None:
        started = time.monotonic()
        train(TrainConfig(data=data, generations=0, epochs=args.teacher_epochs), work / "teacher", workers=args.workers)
        teacher_seconds = time.monotonic() - started
        teacher = str(work / "teacher" / "gen0.safetensors")
    else:
        teacher_seconds = None
    runs, cpu = {"none": [], "pasm": []}, {"none": [], "pasm": []}
    for repeat in range(args.repeats):
        for arm in runs:
            config = TrainConfig(data=data, generations=1, epochs=args.epochs, erasing=arm, teacher=teacher)
            started = time.process_time()
            summary = train(config, work / f"{arm}-{repeat}", workers=args.workers)
            cpu[arm].append(time.process_time() - started)
            runs[arm].append(summary["generations"][1])
    seconds = {arm: _median_seconds(entries) for arm, entries in runs.items()}
    cost = {arm: s["mining"] + s["train"] for arm, s in seconds.items()}
    cpu = {arm: sorted(values)[len(values) // 2] for arm, values in cpu.items()}
    return {
        "what": "wall time of one student generation, PASM vs no erasing, same teacher, same epochs",
        "ratio": round(cost["pasm"] / cost["none"], 3),
        "ratio_with_eval": round((cost["pasm"] + seconds["pasm"]["eval"]) / (cost["none"] + seconds["none"]["eval"]), 3),
        # CPU time of the whole run (loading and evaluation included): robust to other load on the machine
        "cpu_ratio": round(cpu["pasm"] / cpu["none"], 3),
        "cpu_seconds": {arm: round(v, 1) for arm, v in cpu.items()},
        "seconds": {arm: {k: round(v, 1) for k, v in s.items()} for arm, s in seconds.items()},
        "mining": runs["pasm"][0]["mining"],
        "accuracy": {arm: [round(e["test_accuracy"], 4) for e in entries] for arm, entries in runs.items()},
        "occluded_accuracy": {arm: [round(e["occluded_accuracy"], 4) for e in entries] for arm, entries in runs.items()},
        "epochs": args.epochs, "repeats": args.repeats, "teacher_seconds": teacher_seconds and round(teacher_seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }


def _median_seconds(entries):
    keys = entries[0]["seconds"]
    return {k: sorted(e["seconds"][k] for e in entries)[len(entries) // 2] for k in keys}


if __name__ == "__main__":
    main()

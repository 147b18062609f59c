"""What does PASM cost in training? A PASM generation against a no-erasing one, and an epoch against its compute.

    python -m bench.train_overhead --data data/synth --epochs 15 [--device cpu|cuda] [--json OUT]

Both students learn from the same teacher (trained first, or given with --teacher) with the same
distillation, so the only differences are PASM's mining pass before training and the erasing during
it. Everything runs in this one process, through pasm.train's public ``train`` and ``TrainConfig``, so
it measures whatever the trainer does (data loading, augmentation, erasing) and needs no change when
that moves. Reports as JSON:

- ``ratio``: wall time of the PASM generation (mining + training) over the no-erasing one's; evaluation,
  the same for both, is reported apart.
- ``step_over_compute``: the PASM arm's epoch wall time per step (median epoch after the first, from
  the run's metrics.jsonl) over ``compute_step_s``, one step's bare compute timed in the same process: student
  forward + backward + optimizer step + teacher forward at the same batch, on random images on the
  device. What is above 1 is what the epoch adds: loading, augmenting and erasing the batch, bookkeeping.
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench.common import device_and_threads, machine, median, now, sync, write_report
from pasm.checkpoints import load_checkpoint
from pasm.data import open_dataset
from pasm.data.synth import write_synth
from pasm.errors import PasmError
from pasm.models import build_model
from pasm.runs import Run, read_metrics
from pasm.threads import default_threads
from pasm.train import TrainConfig, distillation_loss, make_optimizer, train

COMPUTE_STEPS = 10  # bare steps timed per measurement, before and after each PASM generation


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.train_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synth", help="SynthFER directory (written first if missing)")
    parser.add_argument("--train-images", type=int, default=3500, help="training images when the data set is written")
    parser.add_argument("--test-images", type=int, default=700, help="test (and test_wild) images when it is written")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, help="input size (default: the architecture's); the data set is written at it")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each student generation")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--teacher", help="a trained checkpoint (of --arch, at --size) to use as the teacher")
    parser.add_argument("--arms", default="none,pasm", help="the arms to run: none,pasm (both give the ratio) or pasm")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the arms this many times")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch's intra-op threads, the runs' and the bare step's "
                        "(default: the trainer's, pasm.threads.default_threads)")
    parser.add_argument("--work", help="where the runs go (default: a temporary directory, removed after)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    if "pasm" not in args.arms or not set(args.arms) <= {"none", "pasm"}:
        parser.error("--arms must be pasm or none,pasm")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    args.threads = args.threads or default_threads()
    return args


def main(argv=None):
    args = parse(argv)
    device = device_and_threads(args.device, args.threads)
    if not (Path(args.data) / "manifest.json").exists():
        write_synth(args.data, train=args.train_images, test=args.test_images, size=args.size or 64, seed=0)
    work = Path(args.work or tempfile.mkdtemp(prefix="pasm-overhead-"))
    try:
        report = measure(f"synth:{args.data}", work, args, device)
    except PasmError as e:
        raise SystemExit(f"error: {e}") from None
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_report(report, args.json)
    return report


def config(args, data, **fields):
    return TrainConfig(data=data, arch=args.arch, size=args.size, batch=args.batch, threads=args.threads, **fields)


def measure(data, work, args, device):
    """The arms, alternated ``repeats`` times, then their ratios; bare compute is timed around each PASM run."""
    teacher, teacher_seconds = teacher_checkpoint(data, work, args, device)
    runs, epochs, compute = {arm: [] for arm in args.arms}, [], []
    for repeat in range(args.repeats):
        for arm in args.arms:
            cfg = config(args, data, generations=1, epochs=args.epochs, erasing=arm, teacher=teacher)
            if arm == "pasm":
                compute.append(compute_step_seconds(cfg, teacher, device))
            summary = train(cfg, work / f"{arm}-{repeat}", device=str(device), workers=args.workers)
            runs[arm].append(summary["generations"][-1])
            if arm == "pasm":
                epochs += epoch_seconds(work / f"{arm}-{repeat}")
                compute.append(compute_step_seconds(cfg, teacher, device))
    report = {"date": now(), "machine": machine(device), "device": str(device), "arch": cfg.arch, "size": cfg.size,
              "batch": cfg.batch, "epochs": args.epochs, "repeats": args.repeats,
              "teacher_seconds": teacher_seconds and round(teacher_seconds, 1)}
    return {**report, **arm_ratios(runs), **step_figures(epochs, steps_per_epoch(cfg), compute)}


def teacher_checkpoint(data, work, args, device):
    """``--teacher``, or one trained here first (and how long that took)."""
    if args.teacher:
        return args.teacher, None
    started = time.monotonic()
    train(config(args, data, generations=0, epochs=args.teacher_epochs), work / "teacher", device=str(device),
          workers=args.workers)
    return str(work / "teacher" / "gen0.safetensors"), time.monotonic() - started


def arm_ratios(runs):
    """PASM against no erasing (when both ran): mining + training wall time, and the accuracies."""
    seconds = {arm: _median_seconds(entries) for arm, entries in runs.items()}
    cost = {arm: s["mining"] + s["train"] for arm, s in seconds.items()}
    figures = {"seconds": {arm: {k: round(v, 2) for k, v in s.items()} for arm, s in seconds.items()},
               "mining": runs["pasm"][0]["mining"],
               "accuracy": {arm: [round(e["test_accuracy"], 4) for e in entries] for arm, entries in runs.items()}}
    if "none" in runs:
        figures["what"] = "wall time of one student generation, PASM vs no erasing, same teacher, same epochs"
        figures["ratio"] = round(cost["pasm"] / cost["none"], 3)
        figures["ratio_with_eval"] = round((cost["pasm"] + seconds["pasm"]["eval"]) / (cost["none"] + seconds["none"]["eval"]), 3)
    return figures


def step_figures(epochs, steps, compute):
    """An epoch's wall time per step (median epoch; the first is left out when there are more, as it also
    pays for warming up) against the bare compute of one step (median)."""
    per_step = median(epochs[1:] or epochs) / steps
    compute_s = median(compute)
    return {"steps_per_epoch": steps, "epoch_seconds": [round(s, 3) for s in epochs],
            "epoch_step_s": per_step, "compute_step_s": compute_s,
            "compute": "student forward + backward + optimizer step + teacher forward (no_grad), same batch, random images",
            "step_over_compute": per_step / compute_s}


def epoch_seconds(run_dir):
    """The student generation's epoch wall times, as the trainer recorded them (metrics.jsonl)."""
    records = read_metrics(Run(run_dir).metrics_path)
    return [r["seconds"] for r in records if r.get("kind") == "epoch" and r.get("generation", 0) > 0]


def steps_per_epoch(cfg):
    """As the trainer counts them on one process: full batches only, unless the set is smaller than one batch."""
    count = len(open_dataset(cfg.data, "train"))
    count = count if cfg.limit is None else min(cfg.limit, count)
    return count // cfg.batch if count >= cfg.batch else 1


def compute_step_seconds(cfg, teacher_path, device):
    """Median wall time of one bare training step at the run's batch (after two warm-up steps)."""
    step = bare_step(cfg, teacher_path, device)
    times = []
    for _ in range(COMPUTE_STEPS + 2):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return median(times[2:])


def bare_step(cfg, teacher_path, device):
    """One training step with nothing around it: the student (from the teacher's weights, as students start)
    and its optimizer as ``cfg`` makes them, on random images already on the device."""
    teacher = load_checkpoint(teacher_path, device=device).model.eval().requires_grad_(False)
    student = build_model(cfg.arch, teacher.num_classes, teacher.input_spec).to(device).train()
    student.load_state_dict(teacher.state_dict())
    optimizer = make_optimizer(student.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    spec = teacher.input_spec
    images = torch.rand(cfg.batch, spec.channels, spec.size, spec.size, device=device)
    labels = torch.randint(0, teacher.num_classes, (cfg.batch,), device=device)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def step():
        logits = student(images)
        with torch.no_grad():
            teacher_logits = teacher(images)
        loss = criterion(logits, labels) + cfg.lam * distillation_loss(logits, teacher_logits, cfg.tau)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _median_seconds(entries):
    keys = entries[0]["seconds"]
    return {k: sorted(e["seconds"][k] for e in entries)[len(entries) // 2] for k in keys}


if __name__ == "__main__":
    main()

"""The GPU run in one step: the attack, mining and training benchmarks on CUDA, written to one JSON.

    python -m bench.gpu [--json bench_gpu.json]              # resnet18, 112 px, batch 256, bf16 autocast
    python -m bench.gpu --device cpu --quick --json OUT      # the same plumbing, tiny, on the CPU (the tests)

The attack part is ``python -m bench.attack`` (continuous batching against one image at a time, the
distance to the forward + backward bound, mining memory); the training part is
``python -m bench.train_overhead`` (PASM against no erasing, and an epoch against its bare compute).
Both run in this process on the same device; their reports are nested under "attack" and "train".
Fails at once, in one line, where the device is CUDA and torch sees none.
"""
import argparse
import shutil
import tempfile
from pathlib import Path

from bench import attack as attack_bench
from bench import train_overhead
from bench.common import device_or_exit, machine, now, write_report

# The GPU figures the issue asks for, sized to finish in a few minutes on one GPU (the one-image loops over
# the stream's 1024 images take most of it).
FULL = {"arch": "resnet18", "size": 112, "batch": 256, "stream_batches": 4, "repeats": 2, "memory_images": 10000,
        "train_images": 2048, "test_images": 256, "epochs": 3, "teacher_epochs": 3, "quick_teacher_images": 1400}
# The same calls in seconds on a CPU: only the plumbing is checked.
QUICK = {"arch": "resnet18", "size": 32, "batch": 4, "stream_batches": 2, "repeats": 1, "memory_images": 64,
         "train_images": 32, "test_images": 8, "epochs": 1, "teacher_epochs": 1, "quick_teacher_images": 28}


def attack_argv(sizes, device, autocast):
    argv = ["--device", device, "--arch", sizes["arch"], "--size", str(sizes["size"]), "--batch", str(sizes["batch"]),
            "--stream-batches", str(sizes["stream_batches"]), "--repeats", str(sizes["repeats"]),
            "--train-images", str(sizes["quick_teacher_images"]), "--peer-images", "0",
            "--memory-images", str(sizes["memory_images"])]
    if sizes is QUICK:
        argv += ["--epochs", "1", "--max-points", "3", "--memory-batch", "32", "--memory-size", "16"]
    return argv + (["--autocast"] if autocast else [])


def train_argv(sizes, device, work):
    return ["--device", device, "--arch", sizes["arch"], "--size", str(sizes["size"]), "--batch", str(sizes["batch"]),
            "--data", str(work / "synth"), "--train-images", str(sizes["train_images"]),
            "--test-images", str(sizes["test_images"]), "--epochs", str(sizes["epochs"]),
            "--teacher-epochs", str(sizes["teacher_epochs"]), "--work", str(work / "runs")]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the plumbing (e.g. on a CPU)")
    parser.add_argument("--no-autocast", action="store_true", help="attack in float32 instead of bf16 autocast")
    parser.add_argument("--work", help="where the training data and runs go (default: a temporary directory, removed after)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    device = device_or_exit(args.device)
    sizes = QUICK if args.quick else FULL
    work = Path(args.work or tempfile.mkdtemp(prefix="pasm-bench-gpu-"))
    try:
        report = {"date": now(), "machine": machine(device), "sizes": sizes,
                  "attack": attack_bench.main(attack_argv(sizes, args.device, not args.no_autocast)),
                  "train": train_overhead.main(train_argv(sizes, args.device, work))}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()

"""Training on a shared CPU: a small_cnn step at 1..N intra-op threads while 0..k cores are held by busy loops.

    python -m bench.contention [--threads 1,2] [--held 0,1,2] [--steps 15] [--repeats 2] [--json OUT]
    python -m bench.contention --demo [--json OUT]

The step is the demo's: small_cnn at 40 px, batch 64, forward + cross-entropy + backward + SGD step, on random
images. A held core is a plain (not niced) ``while True: pass`` process, as a browser or another job would be.
Each OpenMP wait policy runs in a process of its own, since libgomp reads ``OMP_WAIT_POLICY`` once, when torch is
imported: ``default`` (unset: a waiting thread spins a while, then sleeps) and ``PASSIVE`` (it sleeps at once;
what pasm's training commands set, pasm.threads). Within one policy, the thread counts alternate, so that load
from elsewhere falls on all of them alike; the figure per cell is the median step over all its steps.
Reports, besides the table, each cell over the idle machine's best (``slowdown``).

With ``--demo`` it times the whole first-run demo instead (``python -m pasm demo``, as a user or the app starts it,
with its default threads), on the idle machine and then with one core held, in one run, and their ratio.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, now, write_report
from pasm.threads import usable_cores

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("default", "PASSIVE")
BUSY_LOOP = "while True: pass"
SETTLE_SECONDS = 1.0
WARMUP_STEPS = 2


def parse(argv):
    cores = usable_cores()
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=",".join(map(str, range(1, cores + 1))), help="thread counts (default 1..cores)")
    parser.add_argument("--held", default=",".join(map(str, range(cores + 1))), help="cores held by busy loops (default 0..cores)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per cell and repeat")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the thread counts per held level")
    parser.add_argument("--policies", default=",".join(POLICIES), help="OpenMP wait policies (default, PASSIVE, ACTIVE)")
    parser.add_argument("--demo", action="store_true", help="time the whole demo idle and with one core held instead")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.held = [int(h) for h in args.held.split(",")]
    args.policies = [p.strip() for p in args.policies.split(",")]
    if min(args.threads) < 1 or min(args.held) < 0 or args.steps < 1 or args.repeats < 1:
        parser.error("--threads at least 1, --held at least 0, --steps and --repeats at least 1")
    return args


def main(argv=None):
    args = parse(argv)
    if args.child:
        print(json.dumps(measure_policy(args)))
        return None
    if args.demo:
        report = {"date": now(), "machine": machine_line(), "load_average_before": os.getloadavg(), **time_demo()}
        write_report(report, args.json)
        return report
    started, load = time.monotonic(), os.getloadavg()
    cells = {policy: run_policy(policy, args) for policy in args.policies}
    report = {"date": now(), "machine": machine_line(), "load_average_before": load,
              "step": "small_cnn, 40 px, batch 64: forward + cross-entropy + backward + SGD step, random images",
              "ms_per_step": cells, "slowdown": slowdowns(cells), "seconds": round(time.monotonic() - started, 1)}
    print(table(report, args))
    write_report(report, args.json)
    return report


def run_policy(policy, args):
    """One policy's cells, measured in a fresh interpreter whose OpenMP runtime starts under that policy."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    argv = ["--threads", ",".join(map(str, args.threads)), "--held", ",".join(map(str, args.held)),
            "--steps", str(args.steps), "--repeats", str(args.repeats)]
    out = subprocess.run([sys.executable, "-m", "bench.contention", "--child", *argv], env=env, check=True,
                         capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_policy(args):
    """``{"held=H": {"threads=T": ms}}``: the median step for every held level and thread count."""
    import torch

    step = demo_step()
    cells = {}
    for held in args.held:
        loops = hold_cores(held)
        try:
            times = {t: [] for t in args.threads}
            for _ in range(args.repeats):
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    times[threads] += timed_steps(step, args.steps)
            cells[f"held={held}"] = {f"threads={t}": round(1000 * median(v), 1) for t, v in times.items()}
        finally:
            release(loops)
    return cells


def demo_step():
    """The demo's training step on random images, as a callable."""
    import torch
    from torch import nn

    from pasm.models import build_model, default_input_spec

    torch.manual_seed(0)
    spec = default_input_spec("small_cnn", 40)
    model = build_model("small_cnn", 7, spec).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images, labels = torch.rand(64, spec.channels, 40, 40), torch.randint(0, 7, (64,))
    criterion = nn.CrossEntropyLoss()

    def step():
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed_steps(step, count):
    for _ in range(WARMUP_STEPS):
        step()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def time_demo():
    """The demo's wall time on the idle machine, then with one core held by a busy loop, and their ratio."""
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="pasm-contention-") as work:
        for held in (0, 1):
            loops = hold_cores(held)
            try:
                started = time.monotonic()
                subprocess.run([sys.executable, "-m", "pasm", "demo", str(Path(work) / f"held{held}")], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
                seconds[f"held={held}"] = round(time.monotonic() - started, 1)
            finally:
                release(loops)
    return {"demo_seconds": seconds, "demo_ratio": round(seconds["held=1"] / seconds["held=0"], 2)}


def hold_cores(count):
    """``count`` busy-loop processes at normal priority, given a moment to take their cores."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    time.sleep(SETTLE_SECONDS if loops else 0)
    return loops


def release(loops):
    for loop in loops:
        loop.kill()
        loop.wait()


def slowdowns(cells):
    """Every cell over the fastest idle cell of any policy (the machine's best)."""
    idle = min(ms for by_held in cells.values() for ms in by_held.get("held=0", {}).values()) if any(
        "held=0" in by_held for by_held in cells.values()) else None
    if idle is None:
        return None
    return {policy: {held: {t: round(ms / idle, 2) for t, ms in row.items()} for held, row in by_held.items()}
            for policy, by_held in cells.items()}


def table(report, args):
    """Markdown: a row per held level, a column per (policy, threads), ms per step and × the idle best."""
    columns = [(p, f"threads={t}") for p in args.policies for t in args.threads]
    slow = report["slowdown"] or {}
    lines = ["| cores held | " + " | ".join(f"{t.split('=')[1]} thread(s), {p}" for p, t in columns) + " |",
             "| --- | " + " | ".join("---:" for _ in columns) + " |"]
    for held in args.held:
        key = f"held={held}"
        cells = []
        for policy, threads in columns:
            ms = report["ms_per_step"][policy][key][threads]
            ratio = slow.get(policy, {}).get(key, {}).get(threads)
            cells.append(f"{ms:.0f} ms" + (f" ({ratio:.2f}×)" if ratio is not None else ""))
        lines.append(f"| {held} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line():
    import platform

    import torch

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, OpenMP (libgomp)"


if __name__ == "__main__":
    main()

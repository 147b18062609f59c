"""What the benchmarks share: the device check, interleaved timing, the machine line and the JSON file.

The core library never imports this package; the benchmarks run from the repository root
(``python -m bench.attack``), where ``bench`` is importable.
"""
import json
import os
import platform
import time
from datetime import datetime, timezone

import torch


def device_or_exit(name):
    """The torch device ``name``, or a one-line exit when it is CUDA on a machine without it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"error: --device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} asks for CUDA, but torch {torch.__version__} sees no CUDA device here")
    return device


def device_and_threads(name, threads=None):
    """The benchmark's device (``device_or_exit``), with torch's intra-op threads set when ``threads`` is given."""
    device = device_or_exit(name)
    if threads:
        torch.set_num_threads(threads)
    return device


def sync(device):
    """CUDA runs asynchronously: a wall time means something only after the device has caught up."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed_together(fns, device, repeats, warmups=None):
    """The least wall time of each of ``fns`` (name -> callable) over ``repeats`` calls, after one warm-up call
    each (``warmups`` may name a cheaper warm-up for a slow one).

    The calls are interleaved (a, b, c, a, b, c, ...) rather than run in blocks, so that load from other
    processes on a shared machine falls on all of them alike; and the least time is kept, not the median,
    because such load only ever adds time: the fastest call is the one it disturbed least.
    """
    for name, fn in fns.items():
        (warmups or {}).get(name, fn)()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(wall(fn, device))
    return {name: min(values) for name, values in times.items()}


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def machine(device):
    """One line naming what the figures were measured on (they are ratios, but the machine still explains them)."""
    line = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    return line + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(report, path):
    """Print the report and, with ``path``, write it there too (atomically, as every pasm file)."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        from pasm.fileio import write_text

        write_text(path, text + "\n")

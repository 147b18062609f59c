"""How many CPU threads torch computes with: one for small work, where a thread pool only adds waiting
(``one_thread``), and for training the usable cores but one (``default_threads``, set by ``computing_on``).
"""
import os
import threading
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_users = {"count": 0, "saved": None}


@contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block.

    Small work (per-sample transforms of 64 px images, one face or a small batch in the app) is slower on
    a pool: 10x slower on two threads than one for the trainer's transforms, and 0.3 s against 2-4 s for
    one explorer analysis, on a busy 2-core machine.

    torch keeps the count per thread and starts every new thread from the last count set, so one app
    session leaving must not set it back while another (a script run on a thread of its own) still
    works: nested blocks and concurrent sessions share one count of users, and the last to leave
    restores the count.
    """
    with _lock:
        if _users["count"] == 0:
            _users["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _users["count"] += 1
    try:
        yield
    finally:
        with _lock:
            _users["count"] -= 1
            if _users["count"] == 0:
                torch.set_num_threads(_users["saved"])


def usable_cores():
    """The cores this process may run on: its affinity mask (which taskset and a container's cpuset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(processes=1):
    """Intra-op threads for each of ``processes`` training processes on this machine: the usable cores but one,
    shared out, at least one each.

    A machine that trains is rarely idle: the app, a browser, another job. torch's threads split every operation
    evenly and wait for each other at its end, so one of them on a core that another process holds stalls the
    others: the demo's step took 112 ms on two threads with one of two cores held, against 65 ms on one thread
    and 32 ms on two threads idle (bench.contention, docs/benchmarks.md). Leaving one core free keeps training
    near its idle pace when something else runs, and leaves the app a core for its pages. Waiting passively
    (OMP_WAIT_POLICY=PASSIVE) is no cure: 104 ms held, and twice as slow idle.
    """
    return max(1, (usable_cores() - 1) // max(1, processes))


@contextmanager
def computing_on(count):
    """Run torch on ``count`` intra-op threads inside the block, for a training in this process.

    The count is fixed for the whole run rather than following the load: on the CPU it decides how each sum is
    split, so a run on one thread and the same run on two end with different weights.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)

"""Running torch on one CPU thread for small work, where a thread pool only adds waiting."""
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

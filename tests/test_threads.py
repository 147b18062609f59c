"""pasm.threads: the one place that sets torch's thread count, shared by the trainer and the app."""
import os
import threading
from pathlib import Path

import pytest
import torch

from pasm import threads
from pasm.threads import computing_on, default_threads, one_thread

REPO = Path(__file__).resolve().parents[1]


def test_one_thread_restores_the_thread_count_when_the_last_user_leaves():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1, "the outer block still runs"
    assert torch.get_num_threads() == before


def in_a_new_thread(work):
    """What ``work`` returns when run in a thread of its own (an app session's script run is one)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join(10)
    return result[0]


def test_a_session_that_leaves_first_does_not_give_the_other_its_pool_back():
    before = torch.get_num_threads()
    with one_thread():
        inside_other = in_a_new_thread(_count_inside_one_thread)
        assert inside_other == 1
        assert torch.get_num_threads() == 1, "the other session left; this one still runs on one thread"
    assert torch.get_num_threads() == before


def test_the_last_session_to_leave_restores_the_count_new_threads_start_from():
    """torch keeps the count per thread and starts a new thread from the last one set: the last user to leave sets
    it back, whichever thread that is."""
    before = torch.get_num_threads()
    entered, leave = threading.Event(), threading.Event()

    def other_session():
        with one_thread():
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=other_session)
    try:
        with one_thread():
            other.start()
            assert entered.wait(10)
        assert in_a_new_thread(torch.get_num_threads) == 1, "the other session still holds it"
        leave.set()
        other.join(10)
        assert in_a_new_thread(torch.get_num_threads) == before
    finally:
        leave.set()
        torch.set_num_threads(before)  # this thread left first, so it kept its own count of one


def _count_inside_one_thread():
    with one_thread():
        return torch.get_num_threads()


def test_nothing_else_sets_the_thread_count():
    files = [*(REPO / "pasm").rglob("*.py"), *(REPO / "ui").glob("*.py"), *(REPO / "app_pages").glob("*.py")]
    setters = [p.relative_to(REPO).as_posix() for p in files if "set_num_threads(" in p.read_text(encoding="utf-8")]
    assert setters == ["pasm/threads.py"]


@pytest.mark.parametrize("cores, processes, expected", [(8, 1, 7), (8, 2, 3), (2, 1, 1), (2, 2, 1), (1, 1, 1), (16, 4, 3)])
def test_training_leaves_a_core_free_and_shares_the_rest(monkeypatch, cores, processes, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert threads.usable_cores() == cores
    assert default_threads(processes) == expected


def test_computing_on_sets_the_count_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with computing_on(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before

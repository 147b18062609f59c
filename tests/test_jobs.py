import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pasm import fileio, jobs
from pasm.cli import main
from pasm.errors import PasmError

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for the trainer: steps with a status.json written atomically, stops cleanly on SIGTERM,
# resumes from its last step, and waits at step --hold-at while the run directory holds a file "hold".
STAND_IN = '''
import argparse, json, os, signal, sys, time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--hold-at", type=int, default=0)
parser.add_argument("--resume", action="store_true")
args = parser.parse_args()
out = Path(args.out)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))


def status(state, step):
    (out / "status.tmp").write_text(json.dumps({"state": state, "step": step, "progress": step / args.steps,
                                                "pid": os.getpid()}))
    os.replace(out / "status.tmp", out / "status.json")


def log(line):
    with open(out / "train.log", "a") as f:
        print(line, file=f)


step = int((out / "step.txt").read_text()) if args.resume and (out / "step.txt").exists() else 0
log(f"{'resumed' if args.resume else 'started'} at step {step}")
print(f"stand-in stdout {out.name}")
status("running", step)
while step < args.steps:
    while step == args.hold_at and (out / "hold").exists() and not stopping:
        time.sleep(0.01)
    if stopping:
        log("stopped")
        status("stopped", step)
        sys.exit(0)
    step += 1
    (out / "step.txt").write_text(str(step))
    log(f"step {step}")
    status("running", step)
log("done")
status("done", step)
'''


def wait_until(condition, what, limit=30):
    """Poll a condition; the limit only keeps a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def gone(pid):
    """The process has exited and been reaped: not even a zombie is left."""
    return not Path(f"/proc/{pid}").exists() if jobs.HAS_PROC else True


@pytest.fixture
def root(tmp_path):
    """The runs directory of one test; every job left in it is killed and must be reaped, leaving no zombie."""
    root = tmp_path / "runs"
    yield root
    for job in jobs.list_jobs(root):
        jobs.kill(job, root)
    for job in jobs.list_jobs(root):
        wait_until(lambda: not job.alive and gone(job.pid), f"reaped job {job.id}")


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)

    def argv(run_dir, steps=5, hold_at=0):
        return [sys.executable, str(script), "--out", str(run_dir), "--steps", str(steps), "--hold-at", str(hold_at)]

    return argv


@pytest.fixture
def adopt_orphans():
    """Make this process the reaper of its orphaned descendants, as init would be (some sandboxes' init never reaps)."""
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        yield
        prctl(36, 0, 0, 0, 0)
    else:
        yield


def held(root, name):
    """A run directory whose stand-in will wait at its hold step until the test lets it go."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "hold").touch()
    return run_dir


def wait_running(job, step=0):
    wait_until(lambda: job.state == "running" and job.status.get("step") == step, f"running at step {step}")


def test_launch_runs_to_done(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    assert job.alive and job.status["pid"] == job.pid
    (run_dir / "hold").unlink()
    assert jobs.wait(job, 30) == "done"
    assert job.status["step"] == 5 and job.status["progress"] == 1
    record = json.loads((root / ".jobs" / f"{job.id}.json").read_text())
    assert record["pid"] == job.pid and record["run_dir"] == str(run_dir.resolve())
    log = (run_dir / "job.log").read_text()
    assert f"== job {job.id} started" in log and "stand-in stdout a" in log


def test_two_jobs_at_once_keep_apart(root, stand_in):
    dirs = [held(root, "a"), held(root, "b")]
    both = [jobs.launch(stand_in(d, steps=3), d, root) for d in dirs]
    for job in both:
        wait_running(job)
    assert all(job.alive for job in both)
    assert both[0].id != both[1].id and both[0].pid != both[1].pid
    assert {job.id for job in jobs.list_jobs(root)} == {job.id for job in both}
    for d in dirs:
        (d / "hold").unlink()
    assert [jobs.wait(job, 30) for job in both] == ["done", "done"]
    for job, other in (both, both[::-1]):
        assert job.status["pid"] == job.pid
        log = job.log.read_text()
        assert job.id in log and other.id not in log
        assert f"stand-in stdout {job.run_dir.name}" in log and f"stand-in stdout {other.run_dir.name}" not in log


def test_second_live_job_on_a_run_dir_is_refused(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    with pytest.raises(PasmError, match=job.id):
        jobs.launch(stand_in(run_dir), root / "b" / ".." / "a", root)
    with pytest.raises(PasmError, match="still running"):
        jobs.resume(job, root)
    assert [j.id for j in jobs.list_jobs(root)] == [job.id]


def test_simultaneous_launches_on_one_run_dir_start_one_job(root, stand_in):
    run_dir = held(root, "a")
    barrier = threading.Barrier(4)
    started, refused = [], []

    def try_launch():
        barrier.wait()
        try:
            started.append(jobs.launch(stand_in(run_dir), run_dir, root))
        except PasmError:
            refused.append(True)

    threads = [threading.Thread(target=try_launch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1 and len(refused) == 3
    assert len(jobs.list_jobs(root)) == 1


def test_stop_ends_cleanly(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    jobs.stop(job, timeout=30)
    assert not job.alive
    assert job.state == "stopped"
    assert jobs.tail(job, 1) == "stopped"
    jobs.stop(job)  # already gone: nothing to do, no error
    jobs.kill(job)
    assert job.state == "stopped"


def test_kill_then_resume_continues_to_done(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir, steps=8, hold_at=3), run_dir, root)
    wait_running(job, step=3)
    jobs.kill(job, root)
    wait_until(lambda: not job.alive, "killed")
    assert job.state == "killed" and jobs.failure(job) is None, "killed on request: no crash"
    (run_dir / "hold").unlink()
    resumed = jobs.resume(job, root)
    assert resumed.id != job.id and resumed.argv == job.argv + ["--resume"]
    assert jobs.wait(resumed, 30) == "done"
    assert resumed.status["step"] == 8
    log = (run_dir / "train.log").read_text().splitlines()
    assert log[log.index("resumed at step 3") + 1] == "step 4"
    assert "step 1" not in log[log.index("resumed at step 3"):]
    assert [j.id for j in jobs.list_jobs(root)] == [resumed.id, job.id]
    assert jobs.get_job(job.id, root).state == "killed"  # the run's status is the new job's now
    assert [j.state for j in jobs.list_jobs(root)] == ["done", "killed"]


def test_resumed_job_ignores_the_previous_runs_status_until_it_writes_its_own(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    jobs.stop(job, timeout=30)
    assert job.state == "stopped"
    resumed = jobs.launch([sys.executable, "-c", "import time; time.sleep(60)"], run_dir, root)
    assert resumed.status == {} and resumed.state == "starting"
    jobs.kill(resumed, root)
    wait_until(lambda: not resumed.alive, "killed")
    assert resumed.state == "killed"


def test_process_that_fails_at_once_shows_died_and_its_output(root):
    run_dir = root / "a"
    job = jobs.launch([sys.executable, "-c", "import sys; sys.exit('boom: bad flag')"], run_dir, root)
    assert jobs.wait(job, 30) == "died"
    assert jobs.tail(job, 1) == "boom: bad flag"


def test_command_that_cannot_start(root):
    with pytest.raises(PasmError, match="cannot start"):
        jobs.launch([str(root / "no-such-program")], root / "a", root)
    assert jobs.list_jobs(root) == []


def test_corrupt_registry_and_half_written_status_are_tolerated(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    registry = root / ".jobs"
    (registry / "20990101-000000-half.json").write_text('{"id": "20990101-000000-half", "pid": 1')
    (registry / "20990101-000000-keys.json").write_text('{"id": "20990101-000000-keys"}')
    (registry / "20990101-000000-list.json").write_text("[1, 2]")
    record = json.loads((registry / f"{job.id}.json").read_text())
    (registry / "20990101-000000-pid0.json").write_text(json.dumps({**record, "id": "20990101-000000-pid0", "pid": 0}))
    assert [j.id for j in jobs.list_jobs(root)] == [job.id]
    with pytest.raises(PasmError, match="unreadable job record"):
        jobs.get_job("20990101-000000-half", root)

    (run_dir / "status.json").write_text('{"state": "runn')
    assert job.status == {} and job.state == "starting"
    (run_dir / "status.json").write_text('["not", "a", "dict"]')
    assert job.status == {} and job.state == "starting"
    assert job.status_error == f"{run_dir / 'status.json'}: damaged: expected a JSON object"
    jobs.kill(job, root)
    wait_until(lambda: not job.alive, "killed")
    assert job.state == "killed"


def test_a_fresh_process_finds_the_jobs_on_disk(root, stand_in):
    done_dir, held_dir = root / "done", held(root, "held")
    finished = jobs.launch(stand_in(done_dir), done_dir, root)
    assert jobs.wait(finished, 30) == "done"
    running = jobs.launch(stand_in(held_dir), held_dir, root)
    wait_running(running)
    code = ("import json, sys; from pasm import jobs; "
            "print(json.dumps([[j.id, j.state, j.pid] for j in jobs.list_jobs(sys.argv[1])]))")
    out = subprocess.run([sys.executable, "-c", code, str(root)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[running.id, "running", running.pid], [finished.id, "done", finished.pid]]
    assert jobs.get_job(finished.id, root) == finished


def test_job_outlives_the_process_that_launched_it(root, stand_in, adopt_orphans):
    run_dir = held(root, "a")
    code = ("import sys; from pasm import jobs; "
            "print(jobs.launch(sys.argv[3:], sys.argv[1], sys.argv[2]).id)")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir), str(root), *stand_in(run_dir)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    job = jobs.get_job(out.stdout.strip(), root)
    wait_running(job)  # its launcher has exited by now
    (run_dir / "hold").unlink()
    assert jobs.wait(job, 30) == "done"
    wait_until(lambda: not job.alive and gone(job.pid), "reaped")


def test_a_reused_pid_is_not_taken_for_the_job(root, stand_in):
    run_dir = root / "a"
    job = jobs.launch(stand_in(run_dir, steps=1), run_dir, root)
    assert jobs.wait(job, 30) == "done"
    job.pid, job.token = os.getpid(), job.token.split(":")[0] + ":1"  # a live pid, with another start time
    assert not job.alive
    (run_dir / "status.json").write_text('{"state": "running"}')
    assert job.state == "died"


def test_run_path_keeps_names_inside_the_runs_directory(root):
    assert jobs.run_path("exp-1_v2.0", root) == root / "exp-1_v2.0"
    for name in ["../x", "/tmp/x", ".hidden", "..", "a/b", "", "-flag", "x" * 101, "a b", None]:
        with pytest.raises(PasmError, match="run name"):
            jobs.run_path(name, root)


def test_launch_refuses_run_dirs_outside_the_runs_directory(root, tmp_path):
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    for run_dir in [root / ".." / "x", tmp_path / "x", root, root / ".jobs", root / "link" / "x"]:
        with pytest.raises(PasmError, match="must be inside the runs directory"):
            jobs.launch([sys.executable, "-c", "pass"], run_dir, root)
    assert not (tmp_path / "x").exists()


def test_tail_returns_the_last_lines(root, stand_in):
    run_dir = root / "a"
    job = jobs.launch(stand_in(run_dir, steps=30), run_dir, root)
    assert jobs.wait(job, 30) == "done"
    assert jobs.tail(job, 3) == "step 29\nstep 30\ndone"
    assert jobs.tail(job, 1000).splitlines() == (run_dir / "train.log").read_text().splitlines()
    assert jobs.tail(job, 0) == ""
    with open(run_dir / "train.log", "a") as f:  # several read blocks from the end
        f.writelines(f"line {i} é\n" for i in range(50000))
    assert jobs.tail(job, 2) == "line 49998 é\nline 49999 é"


def test_cli_jobs_list_stop_tail_resume(root, stand_in, capsys):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)

    assert main(["jobs", "list", "--root", str(root)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "state", "progress", "run"]
    assert row.split() == [job.id, "running", "0%", "a"]

    assert main(["jobs", "stop", job.id, "--root", str(root), "--wait", "30"]) == 0
    assert capsys.readouterr().out.strip() == f"job {job.id}: stopped"

    assert main(["jobs", "tail", job.id, "--root", str(root), "-n", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["started at step 0", "stopped"]

    (run_dir / "hold").unlink()
    assert main(["jobs", "resume", job.id, "--root", str(root)]) == 0
    resumed = jobs.list_jobs(root)[0]
    assert capsys.readouterr().out.startswith(f"job {resumed.id} started")
    assert jobs.wait(resumed, 30) == "done"


def test_cli_jobs_bad_id_is_one_line_error(root, capsys):
    for argv in (["jobs", "stop", "nope"], ["jobs", "tail", "../../etc/passwd"], ["jobs", "resume", "x"]):
        assert main([*argv, "--root", str(root)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: job ") and "no such job" in err
    assert main(["jobs", "list", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == f"no jobs in {root}"


def test_the_runs_directory_is_pasm_runs_when_called_not_when_imported(tmp_path, monkeypatch, capsys):
    root = tmp_path / "from-env"
    monkeypatch.setenv("PASM_RUNS", str(root))
    assert jobs.run_path("a") == root / "a"
    assert jobs.new_run_dir("b") == root / "b"
    job = jobs.launch([sys.executable, "-c", "pass"], root / "c")
    assert [j.id for j in jobs.list_jobs()] == [job.id] and jobs.get_job(job.id).id == job.id
    assert jobs.wait(job, 30) == "died", "it wrote no status and ended"
    assert main(["jobs", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "c"
    monkeypatch.setenv("PASM_RUNS", str(tmp_path / "empty"))
    assert jobs.list_jobs() == [] and jobs.format_table([]) == f"no jobs in {tmp_path / 'empty'}"


@pytest.mark.parametrize("name, reason", [("uploads", "reserved"), ("checkpoints", "reserved"),
                                          (".jobs", "starting with")])
def test_a_new_run_cannot_take_a_folder_of_the_runs_directory(root, name, reason):
    with pytest.raises(PasmError, match=reason):
        jobs.new_run_dir(name, root)


@pytest.mark.parametrize("content", ['{"state": "runn', "[1, 2]", "\xff"])
def test_a_status_that_cannot_be_read_is_an_empty_status(tmp_path, content):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    job = jobs.Job(id="j", run_dir=run_dir, argv=["x"], pid=os.getpid(), started="now", cwd=".",
                   log=run_dir / "job.log", resume_argv=["x"], stamps={})
    assert job.status == {}, "nothing written yet"
    (run_dir / "status.json").write_bytes(content.encode("latin-1"))
    assert job.status == {}
    (run_dir / "status.json").write_text('{"state": "running", "step": 3}')
    assert job.status == {"state": "running", "step": 3}


# The demo job and why jobs die


def test_the_demo_job_stops_resumes_and_finishes(root):
    """The app's path: launch_demo, Stop (SIGTERM), then Resume, whose command the demo must accept."""
    job = jobs.launch_demo(root, quick=True, cwd=ROOT)
    wait_until(lambda: job.state == "running" or job.state not in jobs.ACTIVE_STATES, "running", limit=300)
    jobs.stop(job, timeout=300)
    assert job.state == "stopped", jobs.failure(job) or jobs.tail(job)
    resumed = jobs.resume(job, root)
    assert resumed.argv == job.argv + ["--resume"]
    assert jobs.wait(resumed, 600) == "done", jobs.failure(resumed) or jobs.tail(resumed)
    assert (root / "demo" / "gen1.safetensors").is_file()


def test_every_command_the_app_starts_accepts_its_resume_command(tmp_path):
    from pasm.cli import build_parser
    from pasm.commands import train_command
    from pasm.train import TrainConfig

    train = train_command(TrainConfig(data="synth:data/synth"), tmp_path / "x")  # the Train page's command
    demo = [sys.executable, "-m", "pasm", "demo", str(tmp_path / jobs.DEMO_RUN)]
    for argv in (train, demo):
        assert argv[1:3] == ["-m", "pasm"]
        assert build_parser().parse_args(argv[3:] + ["--resume"]).resume is True


RAISES = "import sys; print('loading', flush=True); print('error: early warning', file=sys.stderr); " \
         "raise RuntimeError('no faces in the_data_set')"
FAILS = ("import json, pathlib, sys; pathlib.Path(sys.argv[1], 'status.json').write_text("
         "json.dumps({'state': 'failed', 'error': 'ValueError: lr must be positive'})); sys.exit(1)")


@pytest.mark.parametrize("code, state, reason", [
    (RAISES, "died", "RuntimeError: no faces in the_data_set"),
    ("import sys; print('error: synth:/x: no such file or directory', file=sys.stderr); sys.exit(2)", "died",
     "error: synth:/x: no such file or directory"),
    (FAILS, "failed", "ValueError: lr must be positive"),
    ("import os, signal; print('step 1', flush=True); os.kill(os.getpid(), signal.SIGKILL)", "died",
     jobs.NO_ERROR_LOGGED),
])
def test_a_job_that_ended_badly_says_why(root, code, state, reason):
    run_dir = root / "a"
    job = jobs.launch([sys.executable, "-c", code, str(run_dir)], run_dir, root)
    assert jobs.wait(job, 60) == state
    assert jobs.failure(job) == reason


def test_a_jobs_failure_is_its_own_not_an_earlier_jobs_of_the_run(root, stand_in):
    run_dir = root / "a"
    first = jobs.launch([sys.executable, "-c", RAISES], run_dir, root)
    assert jobs.wait(first, 60) == "died"
    second = jobs.resume(first, root)
    assert jobs.wait(second, 60) == "died"
    assert jobs.failure(second) == "RuntimeError: no faces in the_data_set"
    quiet = jobs.launch([sys.executable, "-c", "import os; os._exit(3)"], run_dir, root)
    assert jobs.wait(quiet, 60) == "died"
    assert jobs.failure(quiet) == jobs.NO_ERROR_LOGGED
    assert jobs.failure(jobs.get_job(first.id, root)) == "RuntimeError: no faces in the_data_set"
    done = jobs.launch(stand_in(run_dir, steps=1), run_dir, root)
    assert jobs.wait(done, 60) == "done" and jobs.failure(done) is None


def test_last_error_finds_the_line_that_says_why():
    chained = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'a'\n\n"
               "During handling of the above exception, another exception occurred:\n\n"
               "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise PasmError(a, b)\n"
               "    ^^^^^^^^^^^^^^^^^^^^\npasm.errors.PasmError: data/x: no such file\n")
    assert jobs.last_error(chained) == "pasm.errors.PasmError: data/x: no such file"
    ranked = ("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"t.py\"\n"
              "[rank1]: RuntimeError: NCCL timeout\n")
    assert jobs.last_error(ranked) == "RuntimeError: NCCL timeout"
    argparse = "usage: python -m pasm [-h]\npython -m pasm: error: unrecognized arguments: --resume\n"
    assert jobs.last_error(argparse) == "python -m pasm: error: unrecognized arguments: --resume"
    assert jobs.last_error("epoch 1: loss 2.0, error rate 0.3\nstep 2\n") is None


# Kill on request, the state from what a run holds, a run's history, deleting a run, studies and mining


def test_a_kill_on_request_is_no_crash_and_an_outside_sigkill_is(root, stand_in):
    asked, outside = held(root, "asked"), held(root, "outside")
    killed = jobs.launch(stand_in(asked), asked, root)
    crashed = jobs.launch(stand_in(outside), outside, root)
    wait_running(killed)
    wait_running(crashed)
    jobs.kill(killed, root)
    os.killpg(crashed.pid, 9)  # the system, not the app: no request on record
    wait_until(lambda: not killed.alive and not crashed.alive, "ended")
    assert jobs.get_job(killed.id, root).state == "killed"  # read back from the registry, as a restarted app would
    assert jobs.ending(killed) == "killed on request" and jobs.failure(killed) is None
    assert jobs.get_job(crashed.id, root).state == "died"
    assert jobs.ending(crashed) == f"died: {jobs.NO_ERROR_LOGGED}"


def finished_run(run_dir, generations=1):
    """A run's files as the trainer leaves them once it finished (checkpoints that only need to be there)."""
    from pasm.runs import Run

    run = Run(run_dir)
    run.create({"data": "synth:/x", "generations": generations})
    for g in range(generations + 1):
        run.checkpoint_path(g).write_bytes(b"weights")
    entries = [{"index": g, "checkpoint": run.checkpoint_name(g)} for g in range(generations + 1)]
    run.write_summary({"generations": entries})
    return run


DAMAGES_STATUS = ("import pathlib, sys; "
                  "pathlib.Path(sys.argv[1], 'status.json').write_text('{\"state\": \"done\", \"err')")


def test_a_damaged_status_leaves_the_state_to_what_the_run_holds(root):
    done_dir, cut_dir = root / "done", root / "cut"
    finished_run(done_dir)
    finished_run(cut_dir).checkpoint_path(1).unlink()  # generation 1 never written: not finished
    done = jobs.launch([sys.executable, "-c", DAMAGES_STATUS, str(done_dir)], done_dir, root)
    cut = jobs.launch([sys.executable, "-c", DAMAGES_STATUS, str(cut_dir)], cut_dir, root)
    wait_until(lambda: not done.alive and not cut.alive, "ended")
    assert done.state == "done", "finished: summary.json and checkpoints hold every generation"
    assert cut.state == "died"
    assert done.status_error == f"{done_dir / 'status.json'}: damaged: not valid JSON " \
                                "(Unterminated string at line 1); truncated?"
    assert jobs.failure(done) is None


def test_one_entry_per_run_with_its_attempts_newest_first(root, stand_in):
    a, b = held(root, "a"), root / "b"
    first = jobs.launch(stand_in(a), a, root)
    wait_running(first)
    jobs.stop(first, timeout=30)
    second = jobs.resume(first, root)
    wait_running(second)
    jobs.kill(second, root)
    wait_until(lambda: not second.alive, "killed")
    other = jobs.launch(stand_in(b, steps=1), b, root)
    assert jobs.wait(other, 30) == "done"
    (a / "hold").unlink()
    third = jobs.resume(second, root)
    assert jobs.wait(third, 30) == "done"
    grouped = jobs.by_run(jobs.list_jobs(root))
    assert [[job.id for job in attempts] for attempts in grouped] == [[third.id, second.id, first.id], [other.id]]
    assert [jobs.ending(job) for job in grouped[0]] == ["finished", "killed on request", "stopped on request"]


def test_deleting_a_run_needs_a_confirmation_and_no_live_job(root, stand_in):
    live_dir, old_dir = held(root, "live"), root / "old"
    live = jobs.launch(stand_in(live_dir), live_dir, root)
    old = jobs.launch(stand_in(old_dir, steps=1), old_dir, root)
    assert jobs.wait(old, 30) == "done"
    wait_until(lambda: not old.alive, "exited")  # "done" is written just before the process ends
    again = jobs.resume(old, root)
    assert jobs.wait(again, 30) == "done"
    wait_until(lambda: not again.alive, "exited")
    wait_running(live)
    with pytest.raises(PasmError, match=f"job {live.id} .* is still running there"):
        jobs.delete_run("live", root, confirmed=True)
    with pytest.raises(PasmError, match=r"removes \d+ file\(s\) and 2 job record\(s\): confirm"):
        jobs.delete_run("old", root)
    assert old_dir.is_dir() and len(jobs.list_jobs(root)) == 3
    removed = jobs.delete_run(old_dir, root, confirmed=True)
    assert {job.id for job in removed} == {old.id, again.id}
    assert not old_dir.exists() and [job.id for job in jobs.list_jobs(root)] == [live.id]
    assert live_dir.is_dir()
    (root / "plain").mkdir()
    (root / "uploads").mkdir()
    (root / "uploads" / "config.json").write_text("{}")
    for run, reason in [("plain", "not a run directory"), ("gone", "no such run directory"),
                        ("uploads", "own folders"), (".jobs", "must be inside the runs directory"),
                        ("..", "must be inside the runs directory")]:
        with pytest.raises(PasmError, match=reason):
            jobs.delete_run(run, root, confirmed=True)
    assert all((root / name).is_dir() for name in ("plain", "uploads", ".jobs"))


def test_cli_jobs_delete_asks_for_yes(root, capsys):
    finished_run(root / "study" / "none-seed0")
    assert main(["jobs", "delete", "study/none-seed0", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run study/none-seed0: deleting it removes 4 file(s)") and err.count("\n") == 1
    assert (root / "study" / "none-seed0").is_dir()
    assert main(["jobs", "delete", "study/none-seed0", "--yes", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == "deleted study/none-seed0 and 0 job record(s)"
    assert not (root / "study" / "none-seed0").exists() and (root / "study").is_dir()


def test_an_unnamed_run_is_named_by_data_set_erasing_and_time():
    from datetime import datetime

    when = datetime(2026, 12, 6, 10, 15, 0)
    assert jobs.default_run_name("synth:/x/demo/data", "pasm", when) == "synth-pasm-20261206-101500"
    assert jobs.default_run_name("folder:/photos/my faces!", "study", when) == "my_faces_-study-20261206-101500"
    assert jobs.run_path(jobs.default_run_name("folder:/.hidden", "none", when), "/r").name == \
        "hidden-none-20261206-101500"


FAKE_STUDY = """
import json, sys, time
from pathlib import Path
out = Path(sys.argv[1])
for name, status in (("none-seed0", {"state": "done", "progress": 1.0}),
                     ("pasm-seed0", {"state": "running", "progress": 0.5})):
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "status.json").write_text(json.dumps(status))
while (out / "hold").exists():
    time.sleep(0.01)
(out / "study.json").write_text("{}")
"""


def test_a_study_job_follows_the_runs_it_plans(root):
    study = held(root, "study")
    argv = [sys.executable, "-c", FAKE_STUDY, str(study)]
    job = jobs.launch(argv, study, root, resume_argv=argv, study_runs=["none-seed0", "pasm-seed0"])
    wait_until(lambda: job.status.get("runs_done") == 1 and job.status.get("progress") == 0.75, "one run done")
    assert job.state == "running" and jobs.progress_line(job, job.status) == "runs 1/2 finished"
    assert jobs.get_job(job.id, root).study_runs == ["none-seed0", "pasm-seed0"]
    jobs.kill(job, root)
    wait_until(lambda: not job.alive, "killed")
    assert job.state == "killed"
    (study / "hold").unlink()
    resumed = jobs.resume(job, root)
    assert resumed.argv == argv and resumed.study_runs == job.study_runs, "a study resumes by starting again"
    assert jobs.wait(resumed, 30) == "done"
    assert "runs 1/2 finished" in jobs.format_table([resumed], root)


def test_mining_progress_shows_in_the_table(root):
    job = jobs.Job(id="j", run_dir=root / "a", argv=["x"], pid=os.getpid(), started="now", cwd=".",
                   log=root / "a" / "job.log", resume_argv=["x"], stamps={})
    status = {"state": "running", "phase": "mining", "mining": {"done": 120, "total": 400}, "progress": 0.0}
    assert jobs.progress_line(job, status) == "mining 120/400 images"
    assert jobs.progress_line(job, {**status, "phase": "training"}) is None
    (root / "a").mkdir(parents=True)
    fileio.write_json(root / "a" / "status.json", status)
    job.stamps = {}
    assert "0% (mining 120/400 images)" in jobs.format_table([job], root)

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pasm import jobs
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
        jobs.kill(job)
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
    jobs.kill(job)
    wait_until(lambda: not job.alive, "killed")
    assert job.state == "died"
    (run_dir / "hold").unlink()
    resumed = jobs.resume(job, root)
    assert resumed.id != job.id and resumed.argv == job.argv + ["--resume"]
    assert jobs.wait(resumed, 30) == "done"
    assert resumed.status["step"] == 8
    log = (run_dir / "train.log").read_text().splitlines()
    assert log[log.index("resumed at step 3") + 1] == "step 4"
    assert "step 1" not in log[log.index("resumed at step 3"):]
    assert [j.id for j in jobs.list_jobs(root)] == [resumed.id, job.id]
    assert jobs.get_job(job.id, root).state == "died"  # the run's status is the new job's now
    assert [j.state for j in jobs.list_jobs(root)] == ["done", "died"]


def test_resumed_job_ignores_the_previous_runs_status_until_it_writes_its_own(root, stand_in):
    run_dir = held(root, "a")
    job = jobs.launch(stand_in(run_dir), run_dir, root)
    wait_running(job)
    jobs.stop(job, timeout=30)
    assert job.state == "stopped"
    resumed = jobs.launch([sys.executable, "-c", "import time; time.sleep(60)"], run_dir, root)
    assert resumed.status == {} and resumed.state == "starting"
    jobs.kill(resumed)
    wait_until(lambda: not resumed.alive, "killed")
    assert resumed.state == "died"


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
    jobs.kill(job)
    wait_until(lambda: not job.alive, "killed")
    assert job.state == "died"


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
    from pasm.cli import build_parser, train_command
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

"""Training runs as detached background jobs, which outlive the app or shell that started them.

Everything about a job lives on disk, so a restarted app finds its jobs again: the registry
record ``ROOT/.jobs/<id>.json`` (what was run, where, and which process), the files the trainer
writes into its run directory (``status.json``, ``train.log``), and ``job.log`` there, which takes
the process's own stdout and stderr. A job's state is its run's status checked against its
process: a process that is gone while the status still says "running" ended without saying so. Then what
the run holds decides: a run whose summary names every generation with its checkpoint is "done" (its status
may be damaged); a job killed on request (``kill``, which notes the request in its record first) is "killed";
any other is "died", a crash. Those three end states besides "stopped" can be resumed. A job that died or
failed says why in one line (``failure``: the last error line of its log), so a card need not show a traceback.

A study (``python -m pasm study``) writes no status of its own: a study job's status is made from those of the
runs it plans (``study_runs``) and its study.json. ``delete_run`` removes a run directory and its jobs' records.

A process is known by its pid and a start-time token read from ``/proc``, so a pid that the
system has since given to another process is not taken for the job. POSIX only: sessions,
process groups and signals.
"""
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import PasmError
from .fileio import write_json
from .runs import (DEMO_RUN, LAUNCHER_FILES, NOT_RUNS, REGISTRY, RUN_MARKERS, display_path, holds_every_generation,
                   now, read_json, runs_root)

ACTIVE_STATES = ("starting", "running", "stopping")
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
JOB_ID = re.compile(r"[A-Za-z0-9-]+")
TRACKED_FILES = ("status.json", "train.log", "study.json")
POLL_SECONDS = 0.1
HAS_PROC = Path("/proc/self/stat").exists()
ENDED_BADLY = ("died", "failed")
TRACEBACK = "Traceback (most recent call last):"
ERROR_LINE = re.compile(r"^error: |: error: |^Fatal Python error: ")  # ours, argparse's, the interpreter's
RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s?")  # torchrun prefixes each worker's lines with it
LOG_SCAN_BYTES = 4 << 20
NO_ERROR_LOGGED = ("its log names no error: the process was killed (Kill, a signal, or the system running out "
                   "of memory) or ended before it could say why")


@dataclass
class Job:
    id: str
    run_dir: Path
    argv: list
    pid: int
    started: str
    cwd: str
    log: Path
    resume_argv: list
    token: str | None = None
    stamps: dict | None = None  # the run's tracked files as they were at launch: a previous run's are not this job's
    final: dict | None = None  # {"state", "status"} kept when a later job took over the run directory
    killed: str | None = None  # when a Kill was asked for: its end is then no crash
    study_runs: list | None = None  # a study job: the run folders its study trains, inside run_dir

    @property
    def alive(self):
        return _process_alive(self.pid, self.token)

    @property
    def status(self):
        """This job's status.json (a study job's: made from its runs'); {} until the job has written one, and while it
        cannot be read (``status_error`` says why)."""
        if self.final is not None:
            return dict(self.final["status"])
        if self.study_runs is not None:
            return _study_status(self)
        try:
            return self._read_status() or {}
        except PasmError:  # half written by a crash, or not the trainer's: the job shows as starting, or as it ended
            return {}

    @property
    def status_error(self):
        """Why this job's status.json cannot be read, in one line; None when it can (or is not written yet)."""
        if self.final is not None or self.study_runs is not None:
            return None
        try:
            self._read_status()
        except PasmError as e:
            return str(e)
        return None

    @property
    def state(self):
        if self.final is not None:
            return self.final["state"]
        state = str(self.status.get("state") or "starting")
        if state in ACTIVE_STATES and not self.alive:
            return self._ended_state()
        return state

    def _read_status(self):
        return read_json(self.run_dir / "status.json") if self.wrote("status.json") else None

    def _ended_state(self):
        """The state of a job whose process is gone without a final status: from what its run holds."""
        if self.study_runs is None and holds_every_generation(self.run_dir):
            return "done"
        return "killed" if self.killed else "died"

    def wrote(self, name):
        """Whether the run's file ``name`` has been written since this job was launched."""
        stamp = _file_stamp(self.run_dir / name)
        return stamp is not None and stamp != (self.stamps or {}).get(name)

    def to_record(self):
        return {**asdict(self), "run_dir": str(self.run_dir), "log": str(self.log)}

    @classmethod
    def from_record(cls, record):
        """A job from its registry record; KeyError, TypeError or ValueError if the record is malformed."""
        if not isinstance(record["argv"], list) or not isinstance(record["resume_argv"], list):
            raise TypeError("argv must be a list")
        final = record.get("final")
        if final is not None and not (isinstance(final, dict) and isinstance(final.get("state"), str)
                                      and isinstance(final.get("status"), dict)):
            raise TypeError("final must hold a state and a status")
        pid = int(record["pid"])
        if pid <= 0:
            raise ValueError(f"pid {pid}")  # os.kill would signal a whole process group
        return cls(id=str(record["id"]), run_dir=Path(record["run_dir"]), argv=[str(a) for a in record["argv"]],
                   pid=pid, started=str(record["started"]), cwd=str(record["cwd"]),
                   log=Path(record["log"]), resume_argv=[str(a) for a in record["resume_argv"]],
                   token=record.get("token"), stamps=dict(record.get("stamps") or {}), final=final,
                   killed=record.get("killed"), study_runs=_study_runs(record.get("study_runs")))


def run_path(name, root=None):
    """The run directory for a name a person typed; a plain name cannot point outside the runs directory."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise PasmError(f"run name {name!r}", "use up to 100 letters, digits, '-', '_' and '.', "
                                               "starting with a letter, digit or '_'")
    return _root(root) / name


def launch(argv, run_dir, root=None, resume_argv=None, cwd=None, study_runs=None):
    """Start ``argv`` as a detached job that writes into ``run_dir``; it goes on after the caller exits.

    ``resume_argv`` is what ``resume`` runs later (default: ``argv`` plus ``--resume``, which every pasm
    training command, train and demo, accepts; a command that does not must be given its own; a study resumes
    when started again). ``study_runs`` makes it a study job: the run folders the study writes in ``run_dir``. Launches
    serialise on a lock in the registry, so two at once cannot both find ``run_dir`` free. The
    earlier jobs of ``run_dir`` keep their last state and status in their records, since the new
    job rewrites the run's files (a ``Job`` read before this launch does not see that: read it again).
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise PasmError("job command", "is empty")
    if resume_argv is None:
        resume_argv = argv if "--resume" in argv else argv + ["--resume"]
    root = _root(root)
    run_dir = _checked_run_dir(run_dir, root)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _registry_lock(root):
        earlier = [job for job in list_jobs(root) if job.run_dir == run_dir]
        busy = [job for job in earlier if job.alive]
        if busy:
            raise PasmError(run_dir, f"job {busy[0].id} (pid {busy[0].pid}) is still running there; stop it first")
        for job in earlier:
            if job.final is None:
                job.final = {"state": job.state, "status": job.status}
                write_json(_record_path(root, job.id), job.to_record())
        job = _start_process(argv, run_dir, [str(a) for a in resume_argv], Path(cwd or os.getcwd()).resolve())
        job.study_runs = _study_runs(study_runs)
        write_json(_record_path(root, job.id), job.to_record())
    return job


def launch_demo(root=None, quick=False, cwd=None):
    """The demo run (``python -m pasm demo ROOT/demo``) as a job: the one path the app and its tests start it by."""
    root = _root(root)
    run_dir = root / DEMO_RUN
    return launch([sys.executable, "-m", "pasm", "demo", str(run_dir)] + (["--quick"] if quick else []),
                  run_dir, root=root, cwd=cwd)


def list_jobs(root=None):
    """Every job in the registry, newest first; unreadable records are skipped."""
    jobs = []
    for path in (_root(root) / REGISTRY).glob("*.json"):
        try:
            jobs.append(_read_job(path))
        except PasmError:
            continue
    return sorted(jobs, key=lambda job: (job.started, job.id), reverse=True)


def get_job(job_id, root=None):
    root = _root(root)
    path = _record_path(root, job_id)
    if not JOB_ID.fullmatch(str(job_id)) or not path.exists():
        raise PasmError(f"job {job_id}", f"no such job in {root / REGISTRY}")
    return _read_job(path)


def stop(job, timeout=0):
    """Ask the job to stop at its next step boundary (SIGTERM); with a timeout, wait up to that long for it to end.

    The signal goes to the trainer alone, not its process group: DataLoader workers die on
    SIGTERM, which would turn a clean stop into a crash; the trainer ends its workers itself.
    """
    if job.alive:
        _send_signal(os.kill, job.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while job.alive and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def kill(job, root=None):
    """Force stop: SIGKILL to the whole process group, DataLoader workers included. The request is noted in the
    job's record in ``root``'s registry first, so the job shows as "killed" (on request, resumable), not as "died"
    (a crash); a registry that holds no record of the job gets none."""
    if not job.alive:
        return
    job.killed = now()
    record = _record_path(_root(root), job.id)
    if record.exists():
        write_json(record, job.to_record())
    _send_signal(os.killpg, job.pid, signal.SIGKILL)


def resume(job, root=None):
    """Run the job's resume command in the same run directory, as a new job; refused while it is alive."""
    return launch(job.resume_argv, job.run_dir, root, resume_argv=job.resume_argv, cwd=job.cwd,
                  study_runs=job.study_runs)


def by_run(found):
    """``found`` (newest first) as one list per run directory, newest job first; runs in the order of their newest job.
    A run's card shows its newest job, the others are its history."""
    groups = {}
    for job in found:
        groups.setdefault(job.run_dir, []).append(job)
    return list(groups.values())


def ending(job):
    """How a job ended, or where it stands, in one line: a run's history of attempts."""
    reason = failure(job)
    if reason:
        return f"{job.state}: {reason}"
    said = {"killed": "killed on request", "stopped": "stopped on request", "done": "finished"}
    return said.get(job.state, job.state)


def delete_run(run, root=None, confirmed=False):
    """Delete run (or study) directory ``run`` (a path, or a name under the runs directory) and its jobs' records;
    returns the jobs removed. Refused: anything that is not a run inside the runs directory, and a run with a live
    job. Unless ``confirmed``, nothing is deleted and the refusal says what would be."""
    root = _root(root)
    run_dir = _existing_run_dir(run, root)
    with _registry_lock(root):
        own = [job for job in list_jobs(root) if job.run_dir.is_relative_to(run_dir)]
        live = [job for job in own if job.alive]
        what = f"run {display_path(run_dir, root.resolve())}"
        if live:
            raise PasmError(what, f"job {live[0].id} (pid {live[0].pid}) is still running there; stop it first")
        if not confirmed:
            files = sum(1 for path in run_dir.rglob("*") if not path.is_dir())
            raise PasmError(what, f"deleting it removes {files} file(s) and {len(own)} job record(s): "
                                  "confirm with --yes")
        try:
            shutil.rmtree(run_dir)
        except OSError as e:
            raise PasmError(what, f"could not be deleted whole: {e.strerror or e}") from None
        for job in own:
            _record_path(root, job.id).unlink(missing_ok=True)
    return own


def tail(job, lines=50):
    """The end of the run's train.log once this job writes it, else of job.log, where a crash before training shows."""
    path = job.run_dir / "train.log" if job.wrote("train.log") else job.log
    return _last_lines(path, lines)


def failure(job):
    """Why a job that died or failed ended, in one line; None for any other job.

    The card of a dead job must say why without the reader digging through a traceback: the last
    error line of this job's part of job.log (a traceback's exception line, our ``error: what: why``,
    argparse's complaint), else the error the trainer put in status.json, else one in train.log.
    """
    if job.state not in ENDED_BADLY:
        return None
    found = last_error(_own_log(job)) or job.status.get("error")
    if not found and job.wrote("train.log"):
        found = last_error(_last_lines(job.run_dir / "train.log", 200))
    return str(found)[:500] if found else NO_ERROR_LOGGED


def last_error(text):
    """The last line of a log that says what went wrong: a Python traceback's exception line, or an error: line."""
    found, in_traceback = None, False
    for line in text.splitlines():
        line = RANK_PREFIX.sub("", line).rstrip()
        if line.startswith(TRACEBACK):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            found, in_traceback = line, False
        elif not in_traceback and ERROR_LINE.search(line):
            found = line
    return found


def wait(job, timeout=None):
    """Poll until the job is no longer starting, running or stopping, or until ``timeout`` seconds; returns its state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while (state := job.state) in ACTIVE_STATES:
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return state


def progress_line(job, status):
    """Where the job stands, for a card or a table: the study's runs, or the images mined while a run mines."""
    if job.study_runs is not None:
        return f"runs {status.get('runs_done', 0)}/{len(job.study_runs)} finished"
    mined = mining_counts(status)
    return f"mining {mined[0]}/{mined[1]} images" if mined else None


def mining_counts(status):
    """(images mined, images to mine) while the run in ``status`` mines its regions; else None."""
    mining = status.get("mining")
    if status.get("phase") != "mining" or not isinstance(mining, dict):
        return None
    total, done = mining.get("total"), mining.get("done", 0)
    if not isinstance(total, (int, float)) or total <= 0 or not isinstance(done, (int, float)):
        return None
    return done, total


def format_table(jobs, root=None):
    """The jobs as a text table: id, state, progress, run (relative to the runs directory)."""
    root = _root(root)
    if not jobs:
        return f"no jobs in {root}"
    rows = [("id", "state", "progress", "run")]
    for job in jobs:
        status = job.status
        progress = status.get("progress")
        shown = f"{progress:.0%}" if isinstance(progress, (int, float)) else "-"
        detail = progress_line(job, status)
        rows.append((job.id, job.state, f"{shown} ({detail})" if detail else shown, display_path(job.run_dir, root)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _start_process(argv, run_dir, resume_argv, cwd):
    """Popen in a new session, so the job neither shares the caller's terminal signals nor dies with it."""
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    started = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    stamps = {name: _file_stamp(run_dir / name) for name in TRACKED_FILES}
    log = run_dir / "job.log"
    with open(log, "ab") as out:
        out.write(f"== job {job_id} started {started}: {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    close_fds=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except OSError as e:
            raise PasmError("job command", f"cannot start {argv[0]}: {e.strerror or e}") from None
    token = _process_token(proc.pid)  # before the reaper can let the pid go
    threading.Thread(target=proc.wait, name=f"pasm-job-{job_id}", daemon=True).start()
    return Job(id=job_id, run_dir=run_dir, argv=argv, pid=proc.pid, started=started, cwd=str(cwd), log=log,
               resume_argv=resume_argv, token=token, stamps=stamps)


def _own_log(job):
    """This job's part of job.log, which every job of the run directory appends to after a "== job ID" line.

    Only the last LOG_SCAN_BYTES are read; if this job's header is not among them, the text before
    the first header there is taken as the end of its part.
    """
    try:
        with open(job.log, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - LOG_SCAN_BYTES, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()
    header = f"== job {job.id} started"
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith(header)), 0)
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("== job ")), len(lines))
    return "\n".join(lines[start:end])


def _study_runs(value):
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise TypeError("study_runs must be a list of run folders")
    return [str(name) for name in value]


def _study_status(job):
    """A study job's status from its runs' status.json files: state, the share of the runs' training done, and how
    many runs finished. "done" once the study wrote study.json; while its process lives, "running"; after it, a run
    that failed or stopped says how the study ended."""
    statuses = []
    for name in job.study_runs:
        try:
            statuses.append(read_json(job.run_dir / name / "status.json") or {})
        except PasmError:
            statuses.append({})
    states = [status.get("state") for status in statuses]
    progress = [1.0 if state == "done" else status.get("progress") for state, status in zip(states, statuses)]
    status = {"runs_done": states.count("done"),
              "progress": round(sum(p for p in progress if isinstance(p, (int, float))) / len(statuses), 4)}
    if job.wrote("study.json"):
        return {**status, "state": "done"}
    ended = next((s for s in statuses if s.get("state") == "failed"), None) or \
        next((s for s in statuses if s.get("state") == "stopped"), None)
    if ended is not None and not job.alive:
        return {**status, "state": ended["state"], "error": ended.get("error")}
    return {**status, "state": "running" if any(states) else "starting"}


def _existing_run_dir(run, root):
    """The run directory ``run`` names: a name under the runs directory (as ``jobs list`` shows it) or a path."""
    path = next((p for p in (Path(root) / str(run), Path(run)) if p.is_dir()), None)
    if path is None:
        raise PasmError(f"run {run}", f"no such run directory in {root}")
    run_dir = _checked_run_dir(path, root)
    if run_dir.relative_to(Path(root).resolve()).parts[0] in NOT_RUNS:
        raise PasmError(f"run {run}", "is one of the runs directory's own folders, not a run")
    if not any((run_dir / marker).exists() for marker in (*RUN_MARKERS, *LAUNCHER_FILES)):
        raise PasmError(f"run {run}", f"not a run directory (none of {', '.join(RUN_MARKERS)})")
    return run_dir


def _checked_run_dir(run_dir, root):
    """``run_dir`` resolved (symlinks too), and refused unless it lies inside ``root``."""
    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()
    if not run_dir.is_relative_to(root) or run_dir == root or run_dir.relative_to(root).parts[0] == REGISTRY:
        raise PasmError(run_dir, f"a run directory must be inside the runs directory {root}")
    return run_dir


@contextmanager
def _registry_lock(root):
    registry = Path(root) / REGISTRY
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _root(root):
    """``root``, or else the runs directory as ``PASM_RUNS`` names it now (not when this module was imported)."""
    return runs_root() if root is None else Path(root)


def _record_path(root, job_id):
    return Path(root) / REGISTRY / f"{job_id}.json"


def _read_job(path):
    try:
        return Job.from_record(read_json(path))
    except PasmError as e:
        raise PasmError(path, f"unreadable job record ({e.why})") from None
    except (ValueError, KeyError, TypeError) as e:  # no record (gone), or one that lacks what a job needs
        raise PasmError(path, f"unreadable job record ({e})") from None


def _send_signal(send, pid, signum):
    try:
        send(pid, signum)
    except ProcessLookupError:
        pass


def _file_stamp(path):
    """Inode, modification time and size: a file rewritten atomically or appended to gets a new stamp."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _last_lines(path, count, block=65536):
    """The last ``count`` lines of a text file, read backwards from its end in blocks."""
    if count <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            pos = f.seek(0, os.SEEK_END)
            data = b""
            while pos > 0 and data.count(b"\n") <= count:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return ""
    return b"\n".join(data.splitlines()[-count:]).decode("utf-8", errors="replace")


def _proc_stat(pid):
    """(state letter, start time in clock ticks since boot) from /proc/<pid>/stat; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name in (...) may hold spaces
    return fields[0], fields[19]


def _boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_token(pid):
    """Names one process across pid reuse: this boot, and the process's start time in it. None without /proc."""
    stat = _proc_stat(pid)
    return f"{_boot_id()}:{stat[1]}" if stat else None


def _process_alive(pid, token):
    """Whether ``pid`` is still the job's process, running (a zombie is not)."""
    if not HAS_PROC:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    stat = _proc_stat(pid)
    if stat is None or (token is not None and f"{_boot_id()}:{stat[1]}" != token):
        return False
    if stat[0] in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid):
    """Collect an exited job that is our child: one adopted after its launcher exited, when we are init or a subreaper."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def default_run_name(data, method, when=None):
    """The name of a run a person left unnamed: its data set (the spec's kind, or a folder's name), its erasing (or
    "study") and the local time to the second, e.g. ``synth-pasm-20261206-101500``; always a valid ``run_path``."""
    kind, _, path = str(data).strip().partition(":")
    dataset = Path(path).name if kind == "folder" else kind
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = "-".join(part for part in (dataset, method, stamp) if part)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".-")[:100]


def new_run_dir(name, root=None):
    """The run directory for a new run a person named. Refused: a name that would leave the runs directory,
    one of the runs directory's own folders (pasm.runs.NOT_RUNS), and a name already used, since a stopped
    run is resumed (its job's Resume), not started again over its files."""
    run_dir = run_path(name.strip(), root)
    if run_dir.name in NOT_RUNS:
        raise PasmError(f"run name {name!r}", "is reserved for the app's own files")
    if run_dir.exists() and (not run_dir.is_dir() or any(e.name not in LAUNCHER_FILES for e in run_dir.iterdir())):
        raise PasmError(run_dir, "holds a run already; choose another name "
                                 "(a stopped run is resumed from the job list)")
    return run_dir

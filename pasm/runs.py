"""A training run on disk: the files the trainer writes, the app polls and ``--resume`` reads back.

::

    RUN/config.json          {"format": "pasm-run", "version": 1, "config": {...}}   what defines the run
    RUN/status.json          {"state", "phase", "generation", "epoch", "step", "progress", "eta_seconds", "error", "pid", "updated"}
    RUN/metrics.jsonl        one line per epoch ({"kind": "epoch", ...}) and per generation ({"kind": "generation", ...})
    RUN/train.log            the progress lines, plain text
    RUN/summary.json         {"generations": [{"index", "checkpoint", "test_accuracy", ...}, ...], ...}
    RUN/gen<g>.safetensors   one pasm checkpoint per finished generation
    RUN/state.pt             what --resume needs: weights, optimizer, schedule, position (tensors and plain values)

In status.json, ``epoch`` counts the generation's complete epochs and ``step`` the steps of the
one under way; ``progress`` (0..1) runs over the training steps of the whole run; ``phase`` is
loading, mining, training or evaluating while running; ``eta_seconds`` is None until a step was
timed. To stop a run, send SIGTERM (or SIGINT) to ``pid``: it stops at the next step and says "stopped".

Every file is replaced atomically (pasm.fileio), so a reader never sees half of one and a run
killed at any moment, even by SIGKILL, leaves the last complete epoch to resume from.
"""
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import fileio
from .errors import PasmError

FORMAT = "pasm-run"
VERSION = 1
STATES = ("running", "stopping", "stopped", "done", "failed")
# Files a launcher may put in a run directory before the trainer starts (pasm.jobs sends the
# process's own output to job.log there); a new run does not count them as content.
LAUNCHER_FILES = ("job.log",)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Run:
    """One run directory. Reading is strict: anything damaged or foreign is a one-line PasmError."""

    def __init__(self, path):
        self.path = Path(path)
        self._status = {}
        self._log_lines = None

    @property
    def config_path(self):
        return self.path / "config.json"

    @property
    def status_path(self):
        return self.path / "status.json"

    @property
    def metrics_path(self):
        return self.path / "metrics.jsonl"

    @property
    def log_path(self):
        return self.path / "train.log"

    @property
    def summary_path(self):
        return self.path / "summary.json"

    @property
    def state_path(self):
        return self.path / "state.pt"

    def checkpoint_name(self, generation):
        return f"gen{generation}.safetensors"

    def checkpoint_path(self, generation):
        return self.path / self.checkpoint_name(generation)

    # -------------------------------------------------------------------- reading

    def read_config(self):
        """The stored training config; refuses a directory that is not (or no longer) a pasm run."""
        if not self.path.is_dir():
            raise PasmError(self.path, "no such run directory" if not self.path.exists() else "not a directory")
        if not self.config_path.is_file():
            raise PasmError(self.path, "not a pasm run directory (no config.json)")
        stored = _read_json(self.config_path)
        if stored.get("format") != FORMAT or not isinstance(stored.get("config"), dict):
            raise PasmError(self.config_path, f"not a pasm run config (format is not {FORMAT!r})")
        if stored.get("version") != VERSION:
            raise PasmError(self.config_path, f"unsupported run version {stored.get('version')!r}, expected {VERSION}")
        return stored["config"]

    def read_status(self):
        """The last status written, or None before the first one."""
        if not self.status_path.exists():
            return None
        status = _read_json(self.status_path)
        if status.get("state") not in STATES:
            raise PasmError(self.status_path, f"not a run status (state {status.get('state')!r})")
        return status

    def read_summary(self):
        return _read_json(self.summary_path) if self.summary_path.exists() else None

    def load_state(self):
        """The resumable state, or None when the run was killed before its first epoch ended."""
        if not self.state_path.exists():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types on damaged bytes; all mean "cannot resume from it"
            raise PasmError(self.state_path, f"unreadable resume state ({_first_line(e)})") from None

    # -------------------------------------------------------------------- checks

    def check_new(self, keep=()):
        """A new run needs an empty (or missing) directory: a run is never silently overwritten."""
        if self.path.exists() and not self.path.is_dir():
            raise PasmError(self.path, "exists and is not a directory")
        if self.path.is_dir():
            ignored = set(keep) | set(LAUNCHER_FILES)
            found = sorted(entry.name for entry in self.path.iterdir() if entry.name not in ignored)
            if found:
                hint = "pass --resume to continue it" if "config.json" in found else "choose an empty directory"
                raise PasmError(self.path, f"not empty (found {', '.join(found[:3])}); {hint}")

    def check_resumable(self, config):
        """The stored config must equal ``config``; the first key that differs is named."""
        stored = self.read_config()
        self.read_status()
        config = json.loads(json.dumps(config))
        for key in list(stored) + [k for k in config if k not in stored]:
            if stored.get(key, "<missing>") != config.get(key, "<missing>"):
                raise PasmError(
                    self.config_path,
                    f"config mismatch on resume: {key} is {config.get(key)!r} now but {stored.get(key)!r} in the run",
                )

    # -------------------------------------------------------------------- writing

    def create(self, config):
        self.path.mkdir(parents=True, exist_ok=True)
        fileio.write_json(self.config_path, {"format": FORMAT, "version": VERSION, "created": now(), "config": config})

    def write_status(self, **fields):
        """Merge ``fields`` into the last status written by this process and write it with pid and time."""
        if not self._status and self.status_path.exists():
            self._status = self.read_status() or {}
        self._status.update(fields, pid=os.getpid(), updated=now())
        fileio.write_json(self.status_path, self._status)

    def write_metrics(self, records):
        fileio.write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def write_summary(self, summary):
        fileio.write_json(self.summary_path, summary)

    def log(self, line):
        """Append a line to train.log (rewritten whole, so even the log is never half a line)."""
        if self._log_lines is None:
            self._log_lines = self.log_path.read_text(encoding="utf-8").splitlines() if self.log_path.exists() else []
        self._log_lines.append(line)
        fileio.write_text(self.log_path, "\n".join(self._log_lines) + "\n")

    def save_state(self, state):
        with fileio.atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)


def _read_json(path):
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise PasmError(path, f"unreadable ({e.__class__.__name__}: {_first_line(e)})") from None
    except json.JSONDecodeError as e:
        raise PasmError(path, f"damaged: not valid JSON ({e.msg} at line {e.lineno}); truncated?") from None
    if not isinstance(value, dict):
        raise PasmError(path, "damaged: expected a JSON object")
    return value


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__

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

Runs live under the runs directory (``runs_root``), up to three folders deep (a study's runs sit in
its own folder); the app finds them there (``find_runs``) and reads each one whole and leniently
(``read_run``), so a damaged file is one error line on a page rather than a failed page.
"""
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import fileio
from .data.synth import read_manifest
from .errors import PasmError, first_line

FORMAT = "pasm-run"
VERSION = 1
STATES = ("running", "stopping", "stopped", "done", "failed")
# Files a launcher may put in a run directory before the trainer starts (pasm.jobs sends the
# process's own output to job.log there); a new run does not count them as content.
LAUNCHER_FILES = ("job.log",)
# The runs directory's own folders, which hold no runs: the job registry (pasm.jobs) and the checkpoints a
# user added (pasm.checkpoint_store).
REGISTRY = ".jobs"
CHECKPOINTS = "checkpoints"
UPLOADS = "uploads"
NOT_RUNS = (REGISTRY, UPLOADS, CHECKPOINTS)
# A folder holding any of these is a run or a study.
RUN_MARKERS = ("config.json", "status.json", "summary.json", "study.json")
# Searched that deep under the runs directory: a study's runs are one folder below it, and naming the
# depths instead of using ``**`` never walks a data set folder full of images.
SEARCH_DEPTHS = (1, 2, 3)
GENERATION_FILE = re.compile(r"gen(\d+)")
# json's messages that end in the place they refer to; the reader says the place itself.
JSON_MESSAGE_END = re.compile(r"( starting)? at$")
# The first-run demo's run (pasm.jobs.launch_demo); its SynthFER data set is written into its data/ folder.
DEMO_RUN = "demo"


def runs_root():
    """The runs directory: ``PASM_RUNS``, else ./runs. Read at every call, so a test or a user can point elsewhere
    after import."""
    return Path(os.environ.get("PASM_RUNS", "runs"))


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
        stored = read_json(self.config_path) if self.config_path.is_file() else None
        if stored is None:
            raise PasmError(self.path, "not a pasm run directory (no config.json)")
        if stored.get("format") != FORMAT or not isinstance(stored.get("config"), dict):
            raise PasmError(self.config_path, f"not a pasm run config (format is not {FORMAT!r})")
        if stored.get("version") != VERSION:
            raise PasmError(self.config_path, f"unsupported run version {stored.get('version')!r}, expected {VERSION}")
        return stored["config"]

    def read_status(self):
        """The last status written, or None before the first one."""
        status = read_json(self.status_path)
        if status is not None and status.get("state") not in STATES:
            raise PasmError(self.status_path, f"not a run status (state {status.get('state')!r})")
        return status

    def read_summary(self):
        return read_json(self.summary_path)

    def load_state(self):
        """The resumable state, or None when the run was killed before its first epoch ended."""
        if not self.state_path.exists():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types on damaged bytes; all mean "cannot resume from it"
            raise PasmError(self.state_path, f"unreadable resume state ({first_line(e)})") from None

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

    def check_resumable(self, config, absent=None):
        """The stored config must equal ``config``; the first key that differs is named. ``absent`` gives the
        value a key the stored config lacks stood for (a field added to the config after the run was written)."""
        stored = {**(absent or {}), **self.read_config()}
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


def read_json(path):
    """The JSON object in ``path``, None when there is no such file. The one reader of the runs directory's JSON
    files (a run's, a study's, the job registry's): anything else is a PasmError naming the file, so a caller
    that shows a page or polls a job decides for itself what a damaged file means."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise PasmError(path, f"unreadable ({first_line(e, with_type=True)})") from None
    except json.JSONDecodeError as e:  # its message may end in "at" ("Unterminated string starting at")
        where = JSON_MESSAGE_END.sub("", e.msg)
        raise PasmError(path, f"damaged: not valid JSON ({where} at line {e.lineno}); truncated?") from None
    if not isinstance(value, dict):
        raise PasmError(path, "damaged: expected a JSON object")
    return value


def display_path(path, root=None):
    """``path`` relative to the runs directory where it lies inside (as given or resolved), else whole: short, and
    unique among the runs and checkpoints a person picks from."""
    path, root = Path(path), Path(root or runs_root())
    for inside, base in ((path, root), (path.resolve(), root.resolve())):
        if inside.is_relative_to(base):
            return str(inside.relative_to(base))
    return str(path)


def generation_number(path):
    """``g`` for a generation checkpoint ``gen<g>.*``, None for any other file."""
    number = GENERATION_FILE.fullmatch(Path(path).stem)
    return int(number.group(1)) if number else None


def generation_order(path):
    """Sort key for checkpoints: by folder, a run's generations by number (gen10 after gen9), other files by name."""
    path = Path(path)
    number = generation_number(path)
    return str(path.parent), -1 if number is None else number, path.name


# Reading runs for a person: everything a run or study directory holds, damaged files included


def find_runs(root=None):
    """Run and study directories under the runs directory, by path; the runs directory's own folders left out."""
    root = Path(root or runs_root())
    found = set()
    for depth in SEARCH_DEPTHS:
        for marker in RUN_MARKERS:
            found.update(p.parent for p in root.glob("*/" * depth + marker))
    return sorted((p for p in found if p.relative_to(root).parts[0] not in NOT_RUNS),
                  key=lambda p: p.relative_to(root).parts)


def read_metrics(path):
    """The metrics.jsonl records (dicts), in order; a damaged line is a PasmError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise PasmError(path, f"line {number} is not JSON") from None
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class RunFiles:
    """What one run or study directory holds, read by ``read_run``; ``errors`` has one line for each file that is
    there but damaged, so a page can show them and everything else."""

    path: Path
    config: dict | None = None
    status: dict | None = None
    summary: dict | None = None
    metrics: list | None = None
    study: dict | None = None
    study_md: str | None = None
    errors: list | None = None
    damaged: set | None = None  # the fields above whose file is there but could not be read

    @property
    def finished(self):
        """Whether the run's files hold every generation its config asks for (``holds_every_generation``)."""
        return not self.is_study and _holds_every_generation(self.path, self.config, self.summary)

    @property
    def student_generations(self):
        """Finished student generations (generation 0 is the teacher): what the Train form's "Generations" counts."""
        return sum(1 for e in self.generations if e["index"] > 0)

    @property
    def is_study(self):
        return self.study is not None or self.study_md is not None

    @property
    def classes(self):
        classes = (self.summary or {}).get("classes")
        return classes if isinstance(classes, list) else None

    @property
    def generations(self):
        """summary.json's generation entries that name a checkpoint, by index."""
        entries = (self.summary or {}).get("generations") or []
        return sorted((e for e in entries if isinstance(e, dict) and isinstance(e.get("index"), int)
                       and isinstance(e.get("checkpoint"), str)), key=lambda e: e["index"])

    def checkpoint(self, entry):
        """A generation's checkpoint: summary.json names it relative to the run directory."""
        return self.path / Path(entry["checkpoint"]).name

    def checkpoints(self):
        """The run's generation checkpoints, in order (state.pt, the resume state, is no model)."""
        return sorted((p for p in self.path.glob("gen*.safetensors") if p.is_file()), key=generation_order)

    def confusions(self):
        """(generation, confusion matrix) from metrics.jsonl's generation lines, where the matrix fits the classes."""
        size = len(self.classes or [])
        found = []
        for record in self.metrics or []:
            matrix = record.get("confusion")
            if record.get("kind") == "generation" and _square(matrix, size):
                found.append((record.get("generation"), matrix))
        return found


def _square(value, size):
    return (size > 0 and isinstance(value, list) and len(value) == size
            and all(isinstance(row, list) and len(row) == size for row in value))


def read_run(path):
    """A run or study directory read fresh from disk; a damaged file is a line in ``errors``, never an exception."""
    run, files = RunFiles(Path(path), metrics=[], errors=[], damaged=set()), Run(path)
    readers = {
        "config": lambda: files.read_config() if files.config_path.exists() else None,
        "status": files.read_status,
        "summary": files.read_summary,
        "metrics": lambda: read_metrics(files.metrics_path),
        "study": lambda: read_json(run.path / "study.json"),
        "study_md": lambda: _read_text(run.path / "study.md") if (run.path / "study.md").exists() else None,
    }
    for field, read in readers.items():
        try:
            setattr(run, field, read())
        except PasmError as e:
            run.errors.append(str(e))
            run.damaged.add(field)
    if run.summary is not None and not isinstance(run.summary.get("generations"), list):
        run.errors.append(f"{files.summary_path}: damaged: 'generations' is not a list")
        run.summary = None
        run.damaged.add("summary")
    return run


def holds_every_generation(path):
    """Whether the run in ``path`` finished: its summary.json names the teacher and every student generation its
    config asks for, each with its checkpoint there. What the run holds, not its status.json, which a job reads to
    tell a finished run from one that died when that status cannot be read or was left saying "running"."""
    run = Run(path)
    try:
        config, summary = run.read_config(), run.read_summary()
    except PasmError:
        return False
    return _holds_every_generation(run.path, config, summary)


def _holds_every_generation(path, config, summary):
    """``holds_every_generation`` on the run's config and summary, already read."""
    entries = (summary or {}).get("generations")
    wanted = (config or {}).get("generations")
    if not isinstance(entries, list) or not isinstance(wanted, int):
        return False
    found = {e.get("index") for e in entries if isinstance(e, dict) and isinstance(e.get("checkpoint"), str)
             and (Path(path) / Path(e["checkpoint"]).name).is_file()}
    return found >= set(range(wanted + 1))


def _read_text(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PasmError(path, f"unreadable ({first_line(e, with_type=True)})") from None


def default_data_spec(root=None):
    """The data set a new run can default to: the demo's SynthFER set once written, else other SynthFER data under
    the runs directory; "" when there is none, since a fresh machine has no data set to offer."""
    root = Path(root or runs_root())
    manifests = [root / DEMO_RUN / "data" / "manifest.json"]
    for depth in SEARCH_DEPTHS:
        manifests += sorted(root.glob("*/" * depth + "manifest.json"))
    for manifest in manifests:
        try:
            read_manifest(manifest.parent)
        except PasmError:
            continue
        return f"synth:{manifest.parent}"
    return ""


def generation_table(run):
    """One row per generation with the summary's numbers and labels (nested values left out)."""
    return [{k: v for k, v in entry.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
             and k not in ("sha256", "parent_hash")} for entry in run.generations]


def per_class_accuracies(run):
    """``{generation: {class: accuracy}}`` from the summary."""
    return {e["index"]: e["per_class_accuracy"] for e in run.generations
            if isinstance(e.get("per_class_accuracy"), dict)
            and all(isinstance(v, (int, float)) for v in e["per_class_accuracy"].values())}

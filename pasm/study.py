"""A study: the same training under several arms and seeds, as mean ± std per generation.

An arm is a name in ``options.STUDY_ARMS``: an erasing (none, random, attention, pasm) or a variant of PASM erasing
(pasm-adaptive, pasm-disks, pasm-remine, pasm-small), laid over the study's training options. One run per arm and seed
goes in ``DIR/<arm>-seed<k>`` (an ordinary run directory). The runs of a seed share one teacher: the first arm trains
generation 0, the others adopt its checkpoint (``TrainConfig.teacher``), so arms differ only in what their students
are trained on — and the study costs one teacher per seed, not one per run. The seeds' teachers are trained first
(the first arm's run, with no student yet), then every run; with ``jobs`` > 1 that many runs train side by side, each
in a ``python -m pasm train`` process of its own with its share of the CPU threads, and the same threads give the same
metrics as one after another. A study started again skips finished runs and resumes interrupted ones, and arms added
later adopt the seed's teacher. A SIGTERM or SIGINT stops every run at its next step, resumable.

The results go to ``study.json``, ``study.md`` and ``study.html`` (a plotly figure; plus ``study.png`` where kaleido
is installed): per arm and generation the mean ± std over seeds of train, test, occluded and test_wild accuracy and
of test_wild accuracy per hidden region; and, with a ``none`` arm (and again with a ``random`` one), each arm's paired
difference to it (same seed, same generation, same teacher), mean ± std over seeds and per seed.
"""
import contextlib
import dataclasses
import importlib.util
import signal
import statistics
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import fileio
from .commands import train_command
from .data.synth import REGIONS
from .errors import PasmError
from .options import LAUNCHERS, STUDY_ARMS
from .runs import Run
from .threads import default_threads
from .train import NEWER_FIELDS, RunStopped, TrainConfig, train

# What the report shows, as labels a reader knows (the summary keys stay in study.json).
METRICS = (("train_accuracy", "train accuracy (clean)"), ("test_accuracy", "test accuracy"),
           ("occluded_accuracy", "test, occluders pasted"), ("wild_accuracy", "occluded test (test_wild)"),
           ("mean_class_accuracy", "mean class accuracy"))
# The paired differences to the ``none`` arm: clean and occluded test, then the occluded test per hidden region.
PAIRED = ("test_accuracy", "wild_accuracy")
BY_REGION = "wild_accuracy_by_region"
BASELINE = "none"
# Every arm is also paired with random erasing, the arm to beat under occlusion, where the study has one.
BASELINES = (BASELINE, "random")


def run_path(out, arm, seed):
    return Path(out) / f"{arm}-seed{seed}"


def arm_settings(arm, epochs):
    """The TrainConfig fields arm ``arm`` sets (options.STUDY_ARMS), with those that depend on the epochs resolved."""
    return {key: value(epochs) if callable(value) else value for key, value in STUDY_ARMS[arm].items()}


def arm_config(options, arm, seed, teacher):
    """One run's config: the study's options with the arm's settings over them (an arm is what it sets)."""
    settings = arm_settings(arm, options.get("epochs") or TrainConfig.epochs)
    return TrainConfig(**{**options, **settings, "seed": seed, "teacher": teacher})


def run_study(out, options, arms, seeds, device="auto", workers=None, jobs=1, threads=None, launcher="local"):
    """Train every arm × seed (skipping finished runs), then write and return the study's results.

    ``threads`` per run (else the options') defaults to the usable cores but one, shared out over the ``jobs``
    (pasm.threads.default_threads); a resumed run keeps its own. ``launcher`` "ray" makes each run a Ray task
    (pasm.study_ray). Raises RunStopped after a stop request."""
    check_study(arms, seeds, options)
    if jobs < 1:
        raise PasmError(f"--jobs {jobs}", "must be a whole number of at least 1")
    if launcher not in LAUNCHERS:
        raise PasmError(f"--launcher {launcher}", f"unknown; choose one of {', '.join(LAUNCHERS)}")
    options = {**options, "threads": threads or options.get("threads")}
    teachers = [_task(out, options, arms[0], seed, None, jobs, teacher_only=True) for seed in seeds
                if not _seed_teacher(out, seed, options)]
    _run_tasks(teachers, jobs, device, workers, launcher)
    tasks = [_task(out, options, arm, seed, _seed_teacher(out, seed, options), jobs) for seed in seeds for arm in arms]
    _run_tasks(tasks, jobs, device, workers, launcher)
    return write_study(out, arms, seeds)


def _task(out, options, arm, seed, teacher, jobs, teacher_only=False):
    """One run to train: its config, directory and whether it resumes. A resumed run keeps the teacher it started
    from (none for the run that trains the seed's teacher) and its threads, unless given; a teacher-only run stops
    after generation 0 and grows to the study's generations when resumed."""
    path = run_path(out, arm, seed)
    resume = (path / "config.json").exists()
    stored = Run(path).read_config() if resume else {}
    if resume and not options.get("teacher"):
        teacher = stored.get("teacher")
    threads = options["threads"] or (stored.get("threads", NEWER_FIELDS["threads"]) if resume else default_threads(jobs))
    config = arm_config({**options, "threads": threads}, arm, seed, teacher)
    if teacher_only and not resume:
        config = dataclasses.replace(config, generations=0)
    return config, path, resume


def _run_tasks(tasks, jobs, device, workers, launcher):
    if launcher == "ray":
        from .study_ray import run_on_ray

        run_on_ray(tasks, device, workers)
        return
    if jobs == 1:
        for config, path, resume in tasks:
            train(config, path, resume=resume, device=device, workers=workers)
        return
    runner = _SideBySide(device, workers)
    with runner.forwarding_stops(), ThreadPoolExecutor(jobs) as pool:
        for _ in pool.map(runner.train, tasks):
            pass
    if runner.stopped:
        raise RunStopped(runner.stopped)


class _SideBySide:
    """Runs as ``python -m pasm train`` processes, each on the threads its config names and, where CUDA devices are
    visible and ``device`` lets pasm choose, on the device that has the fewest runs (round-robin as they start);
    a stop request reaches all of them."""

    def __init__(self, device, workers):
        self.workers = workers
        self.busy = {name: 0 for name in visible_devices(device)}
        self.live, self.stopped, self.lock = set(), None, threading.Lock()

    def train(self, task):
        config, path, resume = task
        with self.lock:
            if self.stopped:
                return
            device = min(self.busy, key=self.busy.get)
            command = train_command(config, path, device=device, workers=self.workers, resume=resume)
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            self.live.add(process)
            self.busy[device] += 1
        code = process.wait()
        with self.lock:
            self.live.discard(process)
            self.busy[device] -= 1
        if code != 0 and not self.stopped:
            raise PasmError(path, f"training failed (exit code {code}); its train.log says why")

    @contextlib.contextmanager
    def forwarding_stops(self):
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _forward(self, signum, frame):
        """Runs in the main thread, which never holds the lock, so taking it here cannot deadlock."""
        with self.lock:
            self.stopped = signum
            for process in self.live:
                process.send_signal(signal.SIGTERM)


def visible_devices(device):
    """The devices side-by-side runs take turns on: every visible CUDA device when ``device`` is "auto" or "cuda" and
    torch sees more than one, else ``device`` itself."""
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.device_count() > 1:
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return [device]


def _seed_teacher(out, seed, options):
    """The teacher a seed's new runs adopt: --teacher, else generation 0 of any run of the seed already in the study
    (so that arms added later, first or not, share it too), else None: the first arm trains it."""
    if options.get("teacher"):
        return options["teacher"]
    found = (run_path(out, arm, seed) / "gen0.safetensors" for arm in STUDY_ARMS)
    return next((str(path) for path in found if path.is_file()), None)


def parse_seeds(text):
    """A study's seeds from their comma-separated form, e.g. "0,1,2" (``check_study`` checks the values)."""
    try:
        seeds = [int(seed) for seed in str(text).split(",") if seed.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise PasmError(f"--seeds {text}", "must be comma-separated whole numbers, e.g. 0,1,2")
    return seeds


def planned_runs(out, arms, seeds):
    """The run directories a study trains, in the order it trains them."""
    return [run_path(out, arm, seed) for seed in seeds for arm in arms]


def check_study(arms, seeds, options):
    """Refuse bad arms, seeds and arm/option combinations (say --adaptive with pasm-disks) before any training."""
    if not options.get("data"):
        raise PasmError("--data", "a study needs a data set spec (e.g. synth:data/synth)")
    if not arms:
        raise PasmError("--arms", "name at least one arm")
    if len(set(arms)) != len(arms):
        raise PasmError(f"--arms {','.join(arms)}", "must name each arm once")
    for arm in arms:
        if arm not in STUDY_ARMS:
            raise PasmError(f"--arms {arm}", f"unknown arm; choose from {', '.join(STUDY_ARMS)}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise PasmError(f"--seeds {','.join(map(str, seeds))}", "must be distinct whole numbers >= 0")
    for arm in arms:
        try:
            arm_config(options, arm, seeds[0], None)
        except PasmError as e:
            raise PasmError(f"--arms {arm}", f"{e.what}: {e.why}") from None


def read_runs(out, arms, seeds):
    """Each run's summary entries: ``{arm: {seed: {generation: entry}}}``."""
    runs = {}
    for arm in arms:
        for seed in seeds:
            summary = Run(run_path(out, arm, seed)).read_summary()
            if summary is None:
                raise PasmError(run_path(out, arm, seed), "run has no summary.json (did it finish?)")
            runs.setdefault(arm, {})[seed] = {entry["index"]: entry for entry in summary["generations"]}
    return runs


def collect(runs):
    """Per arm, per generation: mean, std (over seeds, n - 1) and the values of each metric and of each region's
    occluded test accuracy."""
    results = {}
    for arm, by_seed in runs.items():
        generations = sorted({g for entries in by_seed.values() for g in entries})
        results[arm] = [_aggregate(g, [entries[g] for entries in by_seed.values() if g in entries])
                        for g in generations]
    return results


def _aggregate(generation, entries):
    row = {"generation": generation, "seeds": len(entries)}
    for key, _ in METRICS:
        values = [e[key] for e in entries if e.get(key) is not None]
        if values:
            row[key] = _stats(values)
    regions = _regions(entries)
    if regions:
        row[BY_REGION] = {r: _stats([e[BY_REGION][r] for e in entries if r in (e.get(BY_REGION) or {})])
                          for r in regions}
    return row


def _stats(values):
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _regions(entries):
    """The hidden regions the entries score, in face order (runs evaluated before regions were recorded have None)."""
    found = {r for e in entries for r in (e.get(BY_REGION) or {})}
    return sorted(found, key=lambda r: (REGIONS.index(r) if r in REGIONS else len(REGIONS), r))


def paired(runs, baseline=BASELINE):
    """Per arm but ``baseline``, per student generation: the arm minus the baseline on the same seed (so from the same
    teacher), as mean and std over seeds of those differences, with each seed's; None without a baseline arm.

    Pairing removes what the arms share, the teacher's luck on a seed, which is most of the spread between seeds."""
    if baseline not in runs:
        return None
    base = runs[baseline]
    table = {}
    for arm, by_seed in runs.items():
        if arm == baseline:
            continue
        generations = sorted({g for entries in by_seed.values() for g in entries if g > 0})
        table[arm] = [_differences(g, by_seed, base) for g in generations]
    return table


def _differences(generation, by_seed, base):
    pairs = {seed: (entries[generation], base[seed][generation]) for seed, entries in by_seed.items()
             if generation in entries and generation in base.get(seed, {})}
    row = {"generation": generation, "seeds": list(pairs)}
    for key in PAIRED:
        row[key] = _paired_stats({s: (a.get(key), b.get(key)) for s, (a, b) in pairs.items()})
    regions = _regions([entry for pair in pairs.values() for entry in pair])
    if regions:
        row[BY_REGION] = {r: _paired_stats({s: ((a.get(BY_REGION) or {}).get(r), (b.get(BY_REGION) or {}).get(r))
                                            for s, (a, b) in pairs.items()}) for r in regions}
    return row


def _paired_stats(scores):
    """``{seed: (arm, none)}`` -> mean, std and the values of arm - none, over the seeds that have both."""
    differences = {seed: a - b for seed, (a, b) in scores.items() if a is not None and b is not None}
    if not differences:
        return None
    return {**_stats(list(differences.values())), "seeds": list(differences)}


def _cell(stats, signed=False):
    if stats is None:
        return "-"
    sign = "+" if signed else ""
    return f"{stats['mean']:{sign}.4f} ± {stats['std']:.4f}"


def _study_rows(results):
    """(label, row) per line of a results table: the teacher (generation 0, shared by a seed's arms) once, as the
    first arm's runs measured it, then every arm's students."""
    rows = [(arm, row) for arm, arm_rows in results.items() for row in arm_rows if row["generation"] > 0]
    first = next(iter(results.values()), [])
    return [("teacher (all arms)", row) for row in first if row["generation"] == 0] + rows


def markdown_table(results):
    """Mean ± std of each metric per arm and generation, the shared teacher once."""
    keys = [(k, name) for k, name in METRICS if any(k in row for rows in results.values() for row in rows)]
    lines = ["| arm | generation | " + " | ".join(name for _, name in keys) + " | seeds |",
             "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
    for label, row in _study_rows(results):
        cells = [_cell(row.get(k)) for k, _ in keys]
        lines.append(f"| {label} | {row['generation']} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines) + "\n"


def region_table(results):
    """Mean ± std of the occluded test accuracy per hidden region; empty where no run recorded regions."""
    regions = _regions([row for rows in results.values() for row in rows])
    if not regions:
        return ""
    lines = ["| arm | generation | " + " | ".join(f"{r} hidden" for r in regions) + " | seeds |",
             "| --- | ---: | " + " | ".join("---:" for _ in regions) + " | ---: |"]
    for label, row in _study_rows(results):
        cells = [_cell((row.get(BY_REGION) or {}).get(r)) for r in regions]
        lines.append(f"| {label} | {row['generation']} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines) + "\n"


def _paired_columns(differences):
    """(label, how to take the stats from a paired row) for the paired tables."""
    regions = _regions([row for arm_rows in differences.values() for row in arm_rows])
    columns = [(dict(METRICS)[k], lambda row, k=k: row.get(k)) for k in PAIRED]
    return columns + [(f"{r} hidden", lambda row, r=r: (row.get(BY_REGION) or {}).get(r)) for r in regions]


def paired_tables(differences):
    """The paired differences to a baseline: mean ± std over seeds, then each seed's."""
    columns = _paired_columns(differences)
    header = " | ".join(label for label, _ in columns)
    aligned = " | ".join("---:" for _ in columns)
    mean = [f"| arm | generation | {header} | seeds |", f"| --- | ---: | {aligned} | ---: |"]
    each = [f"| arm | generation | seed | {header} |", f"| --- | ---: | ---: | {aligned} |"]
    for arm, rows in differences.items():
        for row in rows:
            cells = [_cell(take(row), signed=True) for _, take in columns]
            mean.append(f"| {arm} | {row['generation']} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
            for seed in row["seeds"]:
                cells = [_seed_value(take(row), seed) for _, take in columns]
                each.append(f"| {arm} | {row['generation']} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(mean) + "\n", "\n".join(each) + "\n"


def _seed_value(stats, seed):
    if stats is None or seed not in stats["seeds"]:
        return "-"
    return f"{stats['values'][stats['seeds'].index(seed)]:+.4f}"


def report(results, differences, arms, seeds, epochs):
    """study.md below its title: the accuracy table, the table per hidden region, and the paired differences
    (``differences``: {baseline: ``paired``'s table}, for each baseline arm the study has)."""
    settings = "; ".join(f"{arm} ({', '.join(f'{k} {v}' for k, v in arm_settings(arm, epochs).items())})"
                         for arm in arms)
    parts = [f"Arms: {settings}.\n\nMean ± std over seeds {', '.join(map(str, seeds))} (sample std, n - 1). The "
             "arms of a seed share its teacher (generation 0), shown once.\n", "## Accuracy\n", markdown_table(results)]
    regions = region_table(results)
    if regions:
        parts += ["## Occluded test (test_wild) accuracy by hidden region\n", regions]
    for baseline, table in (differences or {}).items():
        mean, each = paired_tables(table)
        parts += [f"## Paired difference to `{baseline}`\n",
                  f"Each arm minus `{baseline}` on the same seed and generation (so from the same teacher): mean ± "
                  "std over seeds of the differences, then each seed's.\n", mean, each]
    return "\n".join(parts)


def figure(results):
    """Accuracy per generation per arm (error bars: std over seeds), one panel per metric the runs recorded."""
    from plotly import graph_objects as go
    from plotly.subplots import make_subplots

    keys = [(k, name) for k, name in METRICS[:4] if any(k in row for rows in results.values() for row in rows)]
    fig = make_subplots(rows=max(1, (len(keys) + 1) // 2), cols=2, subplot_titles=[name for _, name in keys])
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692"]
    for i, (arm, rows) in enumerate(results.items()):
        for panel, (key, _) in enumerate(keys):
            rows_with = [r for r in rows if key in r]
            fig.add_trace(go.Scatter(
                x=[r["generation"] for r in rows_with], y=[r[key]["mean"] for r in rows_with],
                error_y={"type": "data", "array": [r[key]["std"] for r in rows_with]},
                mode="lines+markers", name=arm, legendgroup=arm, showlegend=panel == 0,
                line={"color": palette[i % len(palette)]}), row=panel // 2 + 1, col=panel % 2 + 1)
    fig.update_xaxes(title_text="generation (0: the shared teacher)", dtick=1)
    fig.update_yaxes(title_text="accuracy")
    fig.update_layout(title="PASM study: accuracy per generation (mean ± std over seeds)", template="plotly_white")
    return fig


def write_study(out, arms, seeds):
    out = Path(out)
    runs = read_runs(out, arms, seeds)
    results = collect(runs)
    differences = {baseline: paired(runs, baseline) for baseline in BASELINES if baseline in runs}
    config = Run(run_path(out, arms[0], seeds[0])).read_config()
    text = report(results, differences, arms, seeds, config["epochs"])
    study = {"arms": arms, "arm_settings": {arm: arm_settings(arm, config["epochs"]) for arm in arms}, "seeds": seeds,
             "runs": [run_path(out, a, s).name for a in arms for s in seeds], "results": results, "report": text}
    for baseline in BASELINES:
        key = "paired" if baseline == BASELINE else f"paired_to_{baseline}"
        table = differences.get(baseline)
        study[key] = None if table is None else {"baseline": baseline, "arms": table}
    fileio.write_text(out / "study.md", f"# Study on {config['data']}\n\n{text}")
    study.update(_write_figure(out, results))
    fileio.write_json(out / "study.json", {"data": config["data"], **study})
    return study


def _write_figure(out, results):
    """study.html always (plotly is a dependency of the app); study.png only where kaleido is installed."""
    try:
        fig = figure(results)
    except ImportError:
        return {"figure": None, "figure_note": "plotly is not installed; no figure written"}
    fileio.write_text(out / "study.html", fig.to_html(include_plotlyjs=True, full_html=True))
    if importlib.util.find_spec("kaleido") is None:
        return {"figure": "study.html", "png": None, "png_note": "no PNG: plotly needs the kaleido package to write one"}
    fileio.write_bytes(out / "study.png", fig.to_image(format="png"))
    return {"figure": "study.html", "png": "study.png"}

"""A study: the same training under several erasing arms and seeds, as mean ± std per generation.

One run per arm and seed goes in ``DIR/<arm>-seed<k>`` (an ordinary run directory). The runs of a
seed share one teacher: the first arm trains generation 0, the others adopt its checkpoint
(``TrainConfig.teacher``), so arms differ only in what their students are trained on — and the
study costs one teacher per seed, not one per run. Runs go one after another; a study started
again skips finished runs and resumes an interrupted one. The results go to ``study.json``,
``study.md`` (the table) and ``study.html`` (a plotly figure; plus ``study.png`` where kaleido is
installed).
"""
import importlib.util
import statistics
from pathlib import Path

from . import fileio
from .errors import PasmError
from .runs import Run
from .options import ERASING
from .train import TrainConfig, train

METRICS = (("test_accuracy", "test accuracy"), ("occluded_accuracy", "occluded accuracy"),
           ("wild_accuracy", "test_wild accuracy"), ("mean_class_accuracy", "mean class accuracy"))


def run_path(out, arm, seed):
    return Path(out) / f"{arm}-seed{seed}"


def run_study(out, options, arms, seeds, device="auto", workers=None):
    """Train every arm × seed (skipping finished runs), then write and return the study's results."""
    _check(arms, seeds, options)
    for seed in seeds:
        teacher = options.get("teacher")
        for arm in arms:
            path = run_path(out, arm, seed)
            config = TrainConfig(**{**options, "erasing": arm, "seed": seed, "teacher": teacher})
            resume = (path / "config.json").exists()
            train(config, path, resume=resume, device=device, workers=workers)
            teacher = teacher or str(Run(path).checkpoint_path(0))
    return write_study(out, arms, seeds)


def _check(arms, seeds, options):
    if not options.get("data"):
        raise PasmError("--data", "a study needs a data set spec (e.g. synth:data/synth)")
    if not arms or len(set(arms)) != len(arms):
        raise PasmError(f"--arms {','.join(arms)}", "must name each arm once")
    for arm in arms:
        if arm not in ERASING:
            raise PasmError(f"--arms {arm}", f"unknown arm; choose from {', '.join(ERASING)}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise PasmError(f"--seeds {','.join(map(str, seeds))}", "must be distinct whole numbers >= 0")


def collect(out, arms, seeds):
    """Per arm, per generation: mean, std (over seeds, n - 1) and the values of each metric."""
    results = {}
    for arm in arms:
        per_generation = {}
        for seed in seeds:
            summary = Run(run_path(out, arm, seed)).read_summary()
            if summary is None:
                raise PasmError(run_path(out, arm, seed), "run has no summary.json (did it finish?)")
            for entry in summary["generations"]:
                per_generation.setdefault(entry["index"], []).append(entry)
        results[arm] = [_aggregate(g, entries) for g, entries in sorted(per_generation.items())]
    return results


def _aggregate(generation, entries):
    row = {"generation": generation, "seeds": len(entries)}
    for key, _ in METRICS:
        values = [e[key] for e in entries if key in e]
        if values:
            row[key] = {"mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return row


def markdown_table(results):
    keys = [(k, name) for k, name in METRICS if any(k in row for rows in results.values() for row in rows)]
    lines = ["| arm | generation | " + " | ".join(name for _, name in keys) + " | seeds |",
             "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
    for arm, rows in results.items():
        for row in rows:
            cells = [f"{row[k]['mean']:.4f} ± {row[k]['std']:.4f}" if k in row else "-" for k, _ in keys]
            lines.append(f"| {arm} | {row['generation']} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines) + "\n"


def figure(results):
    """Accuracy per generation per arm (error bars: std over seeds), clean and occluded side by side."""
    from plotly import graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("clean test accuracy", "occluded test accuracy"))
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"]
    for i, (arm, rows) in enumerate(results.items()):
        for col, key in enumerate(("test_accuracy", "occluded_accuracy"), start=1):
            rows_with = [r for r in rows if key in r]
            fig.add_trace(go.Scatter(
                x=[r["generation"] for r in rows_with], y=[r[key]["mean"] for r in rows_with],
                error_y={"type": "data", "array": [r[key]["std"] for r in rows_with]},
                mode="lines+markers", name=arm, legendgroup=arm, showlegend=col == 1,
                line={"color": palette[i % len(palette)]}), row=1, col=col)
    fig.update_xaxes(title_text="generation", dtick=1)
    fig.update_yaxes(title_text="accuracy")
    fig.update_layout(title="PASM study: accuracy per generation (mean ± std over seeds)", template="plotly_white")
    return fig


def write_study(out, arms, seeds):
    out = Path(out)
    results = collect(out, arms, seeds)
    table = markdown_table(results)
    study = {"arms": arms, "seeds": seeds, "runs": [run_path(out, a, s).name for a in arms for s in seeds],
             "results": results, "table": table}
    data = Run(run_path(out, arms[0], seeds[0])).read_config()["data"]
    fileio.write_text(out / "study.md", f"# Study on {data}\n\nMean ± std over seeds {', '.join(map(str, seeds))}.\n\n{table}")
    study.update(_write_figure(out, results))
    fileio.write_json(out / "study.json", {"data": data, **study})
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

"""Figures of training runs, for the Runs, Train and Generations pages: training curves from metrics.jsonl,
accuracy across generations and per class from summary.json, and confusion matrices."""
import numpy as np
import plotly.graph_objects as go

from ui.figures import MARGIN, subplots


# summary.json's headline numbers: (key, legend label, line, marker). The first is drawn wide and solid, the
# others narrower and broken over it: on a balanced test set accuracy and mean class accuracy are the same
# numbers, and the line drawn second must not hide the first.
GENERATION_METRICS = (
    ("test_accuracy", "accuracy, clean test", dict(width=5), "circle"),
    ("mean_class_accuracy", "mean class accuracy, clean test", dict(width=2, dash="dash"), "diamond"),
    ("occluded_accuracy", "accuracy, synthetic occluders", dict(width=2, dash="dot"), "square"),
    ("wild_accuracy", "accuracy, occluded test (test_wild)", dict(width=2, dash="dashdot"), "triangle-up"),
)
# metrics.jsonl's epoch fields as the legend names them, and how each is drawn (the same idea: without
# distillation the loss is the cross-entropy, and the dashed line shows over the wide one).
CURVE_LABELS = {"ce": "cross-entropy", "kd": "distillation (KD)", "train_accuracy": "train accuracy",
                "erased_fraction": "erased fraction"}
CURVE_LINES = {"loss": dict(width=4), "ce": dict(width=2, dash="dash"), "kd": dict(width=2, dash="dot"),
               "train_accuracy": dict(width=3), "erased_fraction": dict(width=2, dash="dash")}
LOSS_KEYS = ("loss", "ce", "kd")
NOT_CURVES = ("kind", "generation", "epoch", "step", "seconds", "lr")


def training_curves(records, title="Training curves"):
    """metrics.jsonl against the epoch count over all generations: losses on top, training accuracy and
    erased fraction below with each generation's test accuracy as a diamond where it ended, and a
    dotted line where a new generation starts."""
    fig = subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                    subplot_titles=("loss", "accuracy and erased fraction"))
    series, ends, starts, epochs, previous = {}, ([], []), [], 0, None
    for record in records:
        if record.get("kind") == "generation":
            if isinstance(record.get("test_accuracy"), (int, float)):
                ends[0].append(epochs)
                ends[1].append(record["test_accuracy"])
            continue
        if record.get("kind") != "epoch":
            continue
        epochs += 1
        if previous is not None and record.get("generation") != previous:
            starts.append(epochs - 0.5)
        previous = record.get("generation")
        for key, value in record.items():
            if key not in NOT_CURVES and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, ([], []))
                series[key][0].append(epochs)
                series[key][1].append(value)
    for key, (xs, ys) in series.items():
        row = 1 if key in LOSS_KEYS or "loss" in key else 2
        name = CURVE_LABELS.get(key, key.replace("_", " "))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=CURVE_LINES.get(key),
                                 hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"), row=row, col=1)
    if ends[0]:
        fig.add_trace(go.Scatter(x=ends[0], y=ends[1], mode="markers", name="test accuracy (generation end)",
                                 marker=dict(symbol="diamond", size=11),
                                 hovertemplate="test accuracy<br>after epoch %{x}: %{y:.4f}<extra></extra>"), row=2, col=1)
    for x in starts:  # after the traces: plotly leaves lines out of subplots that are still empty
        fig.add_vline(x=x, line=dict(dash="dot", color="grey"))
    fig.update_layout(title=title, height=480, margin=MARGIN, legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(dtick=max(1, epochs // 10))
    fig.update_xaxes(title="epoch (all generations)", row=2, col=1)
    return fig


def generation_curves(generations, title="Accuracy across generations"):
    """summary.json's headline numbers per generation: clean, mean per-class, occluded (and wild) accuracy."""
    fig = go.Figure()
    indices = [g["index"] for g in generations]
    for key, label, line, marker in GENERATION_METRICS:
        values = [g.get(key) for g in generations]
        if any(isinstance(v, (int, float)) for v in values):
            fig.add_trace(go.Scatter(x=indices, y=values, mode="lines+markers", name=label, line=line,
                                     marker=dict(symbol=marker, size=11 if line.get("dash") is None else 8),
                                     hovertemplate=f"{label}<br>generation %{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=title, height=340, margin=MARGIN, legend=dict(orientation="h", y=-0.25),
                      xaxis=dict(title="generation (0: the teacher, then the students)", dtick=1), yaxis=dict(title="accuracy", rangemode="tozero"))
    return fig


def per_class_accuracy(per_class, title="Per-class accuracy by generation"):
    """``{generation: {class: accuracy}}`` as grouped bars, one group per class."""
    fig = go.Figure()
    for generation, accuracies in per_class.items():
        classes = list(accuracies)
        fig.add_trace(go.Bar(name=f"generation {generation}", x=classes, y=[float(accuracies[c]) for c in classes],
                             hovertemplate=f"generation {generation}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=title, barmode="group", height=360, margin=MARGIN, legend=dict(orientation="h", y=-0.25),
                      yaxis=dict(title="accuracy", range=[0, 1]))
    return fig


def confusion_heatmap(matrix, classes, title="Confusion matrix"):
    """Rows true classes, columns predictions; colour is the share of the row, the text the count."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(z=shares, x=list(classes), y=list(classes), zmin=0, zmax=1, colorscale="Blues",
                               text=counts.astype(int), texttemplate="%{text}", colorbar=dict(title="row share"),
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text} (%{z:.0%})<extra></extra>"))
    fig.update_layout(title=title, height=160 + 40 * len(classes), margin=MARGIN,
                      xaxis=dict(title="predicted"), yaxis=dict(title="true", autorange="reversed"))
    return fig

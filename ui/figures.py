"""Plotly figures (and one PNG) for the app's pages: pure functions of arrays and dicts, no streamlit.

Images go into figures as PNG data URIs (``go.Image(source=...)``) rather than pixel arrays: a 600 px
photo as JSON numbers is megabytes, as a PNG it is tens of kilobytes, which keeps reruns fast.

Coordinates follow pasm.faces: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``. Every image trace is
placed so that this holds in the figure too (its first pixel centre sits at (0.5, 0.5)), so detection
boxes, region boxes (exclusive ends) and attack points (pixel indices, drawn at their centres) need no
shifting.
"""
import base64
import io
import math

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.subplots import make_subplots

MARGIN = dict(l=10, r=10, t=40, b=10)
# Subplot titles sit above each panel: the figure title needs room above them.
SUBPLOT_MARGIN = dict(l=10, r=10, t=80, b=10)
# Subplot titles are annotations; every figure with subplots sets their size, so none comes out tiny.
SUBPLOT_TITLE_SIZE = 16
CHOSEN_COLOUR = "#00c853"
OTHER_COLOUR = "#ffd600"
REGION_COLOUR = "#00e5ff"
MASK_COLOUR = (255, 40, 40)
MAX_DISPLAY_SIDE = 800
JPEG_ABOVE = 256
# For densities over a face: zero is fully transparent, so the face shows wherever no point landed.
DENSITY_SCALE = [[0.0, "rgba(255, 235, 59, 0)"], [0.15, "rgba(255, 193, 7, 0.55)"], [0.5, "rgba(255, 87, 34, 0.8)"],
                 [1.0, "rgba(183, 28, 28, 0.95)"]]


# Images


def as_image(image):
    """Any picture the app handles (torch CxHxW in [0, 1], numpy HxW / HxWx1 / HxWx3, float or uint8)
    as an HxWx3 uint8 array, so every figure and the PNG export take the same thing."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().float().numpy()
        if image.ndim == 3:
            image = image.transpose(1, 2, 0)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def data_uri(image):
    """PNG for crops and masks, whose exact pixels matter; JPEG for photos, which are big and already lossy."""
    image = as_image(image)
    kind = "jpeg" if max(image.shape[:2]) > JPEG_ABOVE else "png"
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind.upper(), **({"quality": 88} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_trace(image, max_side=None):
    """An image trace in the image's own pixel coordinates; big images are shown shrunk but keep them."""
    image = as_image(image)
    height, width = image.shape[:2]
    scale = 1.0
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        image = np.asarray(Image.fromarray(image).resize((round(width * scale), round(height * scale)), Image.BILINEAR))
    step = 1.0 / scale
    return go.Image(source=data_uri(image), x0=step / 2, y0=step / 2, dx=step, dy=step, hoverinfo="skip")


def tinted(image, mask, colour=MASK_COLOUR, strength=0.55):
    """``image`` with ``mask`` painted over in a translucent colour: how a region is shown on a face."""
    image = as_image(image).astype(np.float32)
    mask = np.asarray(mask, dtype=bool)
    image[mask] = (1 - strength) * image[mask] + strength * np.asarray(colour, dtype=np.float32)
    return np.round(image).astype(np.uint8)


def _subplots(**kwargs):
    """``make_subplots`` with readable subplot titles (SUBPLOT_TITLE_SIZE); call before adding annotations."""
    fig = make_subplots(**kwargs)
    fig.update_annotations(font_size=SUBPLOT_TITLE_SIZE)
    return fig


def _hide_axes(fig):
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def picture(image, title=None, height=360, max_side=None):
    """One image as a figure, pixels kept sharp and zoomable (st.image would blur a 64 px crop)."""
    fig = go.Figure(image_trace(image, max_side))
    fig.update_layout(height=height, margin=MARGIN, showlegend=False)
    if title:
        fig.update_layout(title=title)
    return _hide_axes(fig)


def _box_shape(box, colour, width):
    x0, y0, x1, y1 = (float(v) for v in box)
    return dict(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color=colour, width=width))


# Home


LOOP_STEPS = (
    ("Teacher", "generation g, frozen"),
    ("Point attack", "the few pixels that flip<br>its prediction"),
    ("Informative region", "the window where<br>the points gather"),
    ("Erase it", "a harder face<br>to learn from"),
    ("Student", "learns erased faces and<br>the teacher's soft labels"),
    ("Next teacher", "the student becomes<br>generation g + 1"),
)
# Steps 1-3 left to right along the top, 4-6 right to left along the bottom: the loop reads like text.
LOOP_GRID = ((0, 1), (1, 1), (2, 1), (2, 0), (1, 0), (0, 0))
LOOP_BOX = (190, 56)


def pasm_loop():
    """The self-mining loop as six boxed steps joined by arrows, so the method reads at a glance.

    Boxes have a fixed size in pixels, so the arrows stop at their edges (``standoff``) whatever the width.
    """
    xs, ys = zip(*LOOP_GRID)
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(size=1, opacity=0), hoverinfo="skip"))
    width, height = LOOP_BOX
    for i, ((title, detail), (x, y)) in enumerate(zip(LOOP_STEPS, LOOP_GRID)):
        fig.add_annotation(x=x, y=y, text=f"<b>{i + 1}. {title}</b><br>{detail}", showarrow=False, width=width,
                           height=height, font=dict(size=13, color="#1a237e"), bgcolor="#e8eefc",
                           bordercolor="#4285f4", borderwidth=1.5, borderpad=4)
        nx, ny = LOOP_GRID[(i + 1) % len(LOOP_GRID)]
        gap = (width if ny == y else height) / 2 + 8
        fig.add_annotation(x=nx, y=ny, ax=x, ay=y, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=3, arrowsize=1.3, arrowwidth=2, arrowcolor="#4285f4",
                           standoff=gap, startstandoff=gap)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    fig.update_xaxes(visible=False, range=[-0.6, 2.6])
    fig.update_yaxes(visible=False, range=[-0.45, 1.45])
    return fig


# Attack explorer


def photo_faces(photo, boxes, scores=None, chosen=0, max_side=MAX_DISPLAY_SIDE, title="Detected faces"):
    """The photo with every detected face boxed and numbered from 1; the chosen one stands out."""
    height, width = as_image(photo).shape[:2]
    fig = picture(photo, title=title, height=min(520, max(260, round(480 * height / max(width, 1)))), max_side=max_side)
    for i, box in enumerate(boxes):
        colour, line = (CHOSEN_COLOUR, 4) if i == chosen else (OTHER_COLOUR, 2)
        fig.add_shape(**_box_shape(box, colour, line))
        label = f"face {i + 1}" + (f" ({scores[i]:.2f})" if scores is not None else "")
        fig.add_annotation(x=float(box[0]), y=float(box[1]), text=label, showarrow=False, xanchor="left",
                           yanchor="bottom", font=dict(color="black", size=12), bgcolor=colour)
    return fig


def prediction_bars(predictions, title="Prediction"):
    """Class probabilities of one or more models (``{"teacher": {class: p}, "student": {...}}``) side by side."""
    fig = go.Figure()
    for name, probs in predictions.items():
        classes = list(probs)
        values = [float(probs[c]) for c in classes]
        fig.add_trace(go.Bar(name=name, x=values, y=classes, orientation="h",
                             text=[f"{v:.2f}" for v in values], textposition="auto",
                             hovertemplate=f"{name}<br>%{{y}}: %{{x:.3f}}<extra></extra>"))
    fig.update_layout(title=title, barmode="group", height=max(220, 40 + 28 * _class_count(predictions)),
                      margin=MARGIN, xaxis=dict(range=[0, 1], title="probability"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_yaxes(autorange="reversed")
    return fig


def _class_count(predictions):
    return len({c for probs in predictions.values() for c in probs}) * max(1, len(predictions))


def attack_points(crop, points, scores, trajectory, classes, title="Attack points, in attack order"):
    """The crop with the attack's points numbered in the order they were pushed.

    Hovering a point tells its gradient score and what the teacher predicted once that point (and all
    before it) had been changed, read from the trajectory, so one can watch the prediction give way.
    """
    fig = picture(crop, title=title, height=420)
    if not points:
        return fig
    xs = [p[0] + 0.5 for p in points]
    ys = [p[1] + 0.5 for p in points]
    hover = []
    for k, score in enumerate(scores, start=1):
        after = np.asarray(trajectory[k]) if k < len(trajectory) else None
        predicted = f"{classes[int(after.argmax())]} ({after.max():.2f})" if after is not None else "n/a"
        hover.append(f"point {k}<br>gradient score {score:.4g}<br>after it: {predicted}")
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers+text", text=[str(k) for k in range(1, len(points) + 1)],
        textposition="top center", textfont=dict(color="white", size=11),
        marker=dict(size=9, color=list(range(1, len(points) + 1)), colorscale="Plasma",
                    line=dict(color="white", width=1), colorbar=dict(title="order", thickness=10)),
        hovertext=hover, hoverinfo="text", name="points"))
    return fig


def trajectory(probabilities, classes, attacked=None, title="Class probabilities as points are added"):
    """One line per class against the number of points changed; the attacked class is drawn bold."""
    probabilities = np.asarray(probabilities, dtype=float)
    steps = list(range(len(probabilities)))
    fig = go.Figure()
    for i, name in enumerate(classes):
        bold = attacked is not None and i == attacked
        fig.add_trace(go.Scatter(x=steps, y=probabilities[:, i], mode="lines+markers", name=name,
                                 line=dict(width=4 if bold else 1.5), marker=dict(size=5 if bold else 3),
                                 hovertemplate=f"{name}<br>%{{x}} points: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=title, height=360, margin=MARGIN,
                      xaxis=dict(title="points changed", range=[-0.3, len(steps) - 0.7],
                                 dtick=max(1, len(steps) // 10)),
                      yaxis=dict(title="probability", range=[0, 1]), legend=dict(orientation="h", y=-0.25))
    return fig


def region_and_erased(crop, box, erased, points=(), title="Located region and the erased face"):
    """Where PASM erases (the box over the points) next to the face the student will learn from."""
    fig = _subplots(rows=1, cols=2, subplot_titles=("located region", "erased face"), horizontal_spacing=0.03)
    fig.add_trace(image_trace(crop), row=1, col=1)
    fig.add_trace(image_trace(erased), row=1, col=2)
    if len(points):
        fig.add_trace(go.Scatter(x=[p[0] + 0.5 for p in points], y=[p[1] + 0.5 for p in points], mode="markers",
                                 marker=dict(size=6, color="white", line=dict(color="black", width=1)),
                                 hoverinfo="skip", name="points"), row=1, col=1)
    if box is not None and box[2] > box[0]:
        fig.add_shape(**_box_shape(box, REGION_COLOUR, 3), row=1, col=1)
    fig.update_layout(title=title, height=400, margin=SUBPLOT_MARGIN, showlegend=False)
    return _hide_axes(fig)


def erasing_comparison(crop, masks, erased, subtitles=None,
                       title="PASM, random and attention erasing at the same area"):
    """Row 1: each method's mask on the face; row 2: the face it erases. Columns follow ``masks``' order."""
    names = list(masks)
    subtitles = subtitles or {}
    titles = [subtitles.get(n, n) for n in names] + [f"{n}: erased" for n in names]
    fig = _subplots(rows=2, cols=len(names), subplot_titles=titles, vertical_spacing=0.08, horizontal_spacing=0.03)
    for col, name in enumerate(names, start=1):
        fig.add_trace(image_trace(tinted(crop, masks[name])), row=1, col=col)
        fig.add_trace(image_trace(erased[name]), row=2, col=col)
    fig.update_layout(title=title, height=600, margin=SUBPLOT_MARGIN, showlegend=False)
    return _hide_axes(fig)


def attribution_maps(crop, maps, title="Where the teacher looks (for reference)"):
    """Each map (HxW in [0, 1]: Grad-CAM, saliency) as a heat overlay on the face, on one colour scale."""
    names = list(maps)
    fig = _subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.03)
    for col, name in enumerate(names, start=1):
        values = np.asarray(maps[name], dtype=float)
        fig.add_trace(image_trace(crop), row=1, col=col)
        fig.add_trace(_overlay_heatmap(values, show_scale=col == len(names)), row=1, col=col)
    fig.update_layout(title=title, height=340, margin=SUBPLOT_MARGIN, showlegend=False)
    return _hide_axes(fig)


def _overlay_heatmap(values, show_scale=True, zmax=None, opacity=0.55, name="", colorscale="Inferno"):
    height, width = values.shape
    return go.Heatmap(z=values, x=np.arange(width) + 0.5, y=np.arange(height) + 0.5, colorscale=colorscale,
                      opacity=opacity, zmin=0, zmax=zmax if zmax is not None else float(values.max() or 1.0),
                      showscale=show_scale, colorbar=dict(thickness=10),
                      hovertemplate=name + "(%{x:.0f}, %{y:.0f}): %{z:.3g}<extra></extra>")


def region_counts(names, order, title="Facial regions the points fall in"):
    """How many attack points land in each facial region, regions in ``order`` (those with none included)."""
    counts = {region: 0 for region in order}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    total = max(1, sum(counts.values()))
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()),
                           text=[f"{c / total:.0%}" if c else "" for c in counts.values()], textposition="auto",
                           hovertemplate="%{x}: %{y} points<extra></extra>"))
    fig.update_layout(title=title, height=320, margin=MARGIN, yaxis=dict(title="points", rangemode="tozero"))
    return fig


# Data set atlas


def density_map(density, background=None, title="Attack point density"):
    """Points per face per pixel as a heat overlay; on the average face when one is given."""
    density = np.asarray(density, dtype=float)
    fig = go.Figure()
    if background is not None:
        fig.add_trace(image_trace(background))
    fig.add_trace(_overlay_heatmap(density, opacity=1.0, name="density ", colorscale=DENSITY_SCALE))
    fig.update_layout(title=title, height=440, margin=MARGIN, showlegend=False)
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _hide_axes(fig)


def class_density_maps(densities, backgrounds=None, cols=4, title="Attack point density per class"):
    """Small multiples of the density, one per class, on one colour scale so classes compare directly."""
    names = list(densities)
    rows = max(1, math.ceil(len(names) / cols))
    zmax = max((float(np.max(d)) for d in densities.values()), default=1.0) or 1.0
    fig = _subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.08)
    for i, name in enumerate(names):
        row, col = i // cols + 1, i % cols + 1
        if backgrounds is not None and name in backgrounds:
            fig.add_trace(image_trace(backgrounds[name]), row=row, col=col)
        fig.add_trace(_overlay_heatmap(np.asarray(densities[name], dtype=float), show_scale=i == 0, zmax=zmax,
                                       opacity=1.0, name=f"{name} ", colorscale=DENSITY_SCALE),
                      row=row, col=col)
    fig.update_layout(title=title, height=80 + 230 * rows, margin=SUBPLOT_MARGIN, showlegend=False)
    fig.update_yaxes(autorange="reversed")
    for i in range(len(names)):
        axis = "" if i == 0 else str(i + 1)
        fig.update_layout({f"yaxis{axis}": dict(scaleanchor=f"x{axis}")})
    return _hide_axes(fig)


def region_shares(shares, order, title="Share of attack points per facial region, per class"):
    """Stacked bars: for each class, the fraction of its points in each region (each bar sums to 1)."""
    classes = list(shares)
    fig = go.Figure()
    for region in order:
        values = [float(shares[c].get(region, 0.0)) for c in classes]
        fig.add_trace(go.Bar(name=region, x=classes, y=values,
                             hovertemplate=f"{region}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(title=title, barmode="stack", height=400, margin=MARGIN,
                      yaxis=dict(title="share of points", range=[0, 1], tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.2))
    return fig


# PNG export


def comparison_png(crop, masks, erased, captions=None, scale=4):
    """The erasing comparison as one PNG (mask row over erased row), drawn with PIL: no browser or kaleido needed."""
    names = list(masks)
    captions = captions or {}
    tiles = [[as_image(tinted(crop, masks[n])) for n in names], [as_image(erased[n]) for n in names]]
    size = tiles[0][0].shape[0] * scale
    gap, text_height = 8, 34
    font = ImageFont.load_default()
    sheet = Image.new("RGB", (len(names) * (size + gap) + gap, 2 * (size + text_height + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for row, tile_row in enumerate(tiles):
        for col, (name, tile) in enumerate(zip(names, tile_row)):
            x = gap + col * (size + gap)
            y = gap + row * (size + text_height + gap)
            caption = captions.get(name, name) if row == 0 else f"{name}: erased"
            draw.multiline_text((x, y), caption, fill="black", font=font)
            sheet.paste(Image.fromarray(tile).resize((size, size), Image.NEAREST), (x, y + text_height))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


# Runs: training curves, generations and confusion matrices


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
    fig = _subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
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
                      xaxis=dict(title="generation", dtick=1), yaxis=dict(title="accuracy", rangemode="tozero"))
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


def confusion_matrix(matrix, classes, title="Confusion matrix"):
    """Rows true classes, columns predictions; colour is the share of the row, the text the count."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(z=shares, x=list(classes), y=list(classes), zmin=0, zmax=1, colorscale="Blues",
                               text=counts.astype(int), texttemplate="%{text}", colorbar=dict(title="row share"),
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text} (%{z:.0%})<extra></extra>"))
    fig.update_layout(title=title, height=160 + 40 * len(classes), margin=MARGIN,
                      xaxis=dict(title="predicted"), yaxis=dict(title="true", autorange="reversed"))
    return fig


def generation_faces(results, face_labels=None, title="Points and region of every generation on the same faces"):
    """Rows: faces; columns: generations. Each tile is the face with that generation's attack points
    (coloured by order) and the region it locates, titled with its prediction."""
    rows, cols = len(results[0]["crops"]), len(results)
    titles = []
    for face in range(rows):
        for entry in results:
            prediction = entry["reports"][face]["prediction"]
            label = f"gen {entry['index']}: {prediction['label']} {prediction['probs'][prediction['label']]:.2f}"
            titles.append(label + (f"<br>true: {face_labels[face]}" if face_labels else ""))
    # Titles on two lines (the true class below) stay inside a narrow tile; rows are kept apart in pixels
    # so a full-size title fits between them whatever the number of faces.
    tile = max(180, min(300, 1100 // max(cols, 1)))
    title_height = round(SUBPLOT_TITLE_SIZE * 1.4) * (2 if face_labels else 1)
    gap = title_height + 16
    plot_height = tile * rows + gap * (rows - 1)
    fig = _subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                    vertical_spacing=gap / plot_height)
    for col, entry in enumerate(results, start=1):
        for face in range(rows):
            report = entry["reports"][face]
            fig.add_trace(image_trace(entry["crops"][face]), row=face + 1, col=col)
            points = report["points_crop"]
            if points:
                fig.add_trace(go.Scatter(
                    x=[p[0] + 0.5 for p in points], y=[p[1] + 0.5 for p in points], mode="markers",
                    marker=dict(size=7, color=list(range(1, len(points) + 1)), colorscale="Plasma",
                                cmin=1, cmax=max(len(points), 2), line=dict(color="white", width=1)),
                    hovertext=[f"point {k}" for k in range(1, len(points) + 1)], hoverinfo="text"),
                    row=face + 1, col=col)
            box = entry["boxes"][face]
            if box[2] > box[0]:
                fig.add_shape(**_box_shape(box, REGION_COLOUR, 2), row=face + 1, col=col)
    top = 60 + title_height
    fig.update_layout(title=title, height=plot_height + top + 10, margin=dict(l=10, r=10, t=top, b=10),
                      showlegend=False)
    return _hide_axes(fig)


def region_overlap(results, title="Region overlap between consecutive generations"):
    """Mean mask and box IoU of the regions that generation g and the next locate on the same faces."""
    pairs, masks, boxes = [], [], []
    for previous, entry in zip(results, results[1:]):
        if entry["mask_iou"] is None:
            continue
        pairs.append(f"gen {previous['index']} → {entry['index']}")
        masks.append(float(np.mean(entry["mask_iou"])))
        boxes.append(float(np.mean(entry["box_iou"])))
    fig = go.Figure([go.Bar(name="mask IoU", x=pairs, y=masks, text=[f"{v:.2f}" for v in masks], textposition="auto"),
                     go.Bar(name="box IoU", x=pairs, y=boxes, text=[f"{v:.2f}" for v in boxes], textposition="auto")])
    fig.update_layout(title=title, barmode="group", height=300, margin=MARGIN, legend=dict(orientation="h", y=-0.3),
                      yaxis=dict(title="IoU (mean over faces)", range=[0, 1]), bargap=0.5)
    return fig

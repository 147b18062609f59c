"""Figures of one face attacked: the Attack explorer's (detected faces, predictions, attack points and their
trajectory, the region and the three erasings, attribution maps, region counts, the PNG export) and the
Generations page's (every generation's points and region on the same faces, and how the regions overlap).

What one hovers or zooms (the photo, the points, the trajectory, the bars) is a plotly figure; the region,
the erasings and the attribution maps are plain PNGs for ``st.image``, which a browser draws at once.
"""
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from pasm.report import to_uint8
from ui.figures import (MARGIN, PNG_COMPRESS_LEVEL, REGION_COLOUR, SUBPLOT_TITLE_SIZE, box_shape, enlarged,
                        heat_overlay, hide_axes, image_trace, picture, png_bytes, sharp_png, subplots, tinted)

CHOSEN_COLOUR = "#00c853"
OTHER_COLOUR = "#ffd600"
MAX_DISPLAY_SIDE = 800
# The attribution maps share half the page's width: two of them fit side by side at this size.
MAP_SIDE = 192


def photo_faces(photo, boxes, scores=None, chosen=0, max_side=MAX_DISPLAY_SIDE, title="Detected faces"):
    """The photo with every detected face boxed and numbered from 1; the chosen one stands out."""
    height, width = to_uint8(photo).shape[:2]
    fig = picture(photo, title=title, height=min(520, max(260, round(480 * height / max(width, 1)))), max_side=max_side)
    for i, box in enumerate(boxes):
        colour, line = (CHOSEN_COLOUR, 4) if i == chosen else (OTHER_COLOUR, 2)
        fig.add_shape(**box_shape(box, colour, line))
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
    before it) had been changed, read from the trajectory, so one can watch the prediction give way. Colour
    follows the order too, dark to bright; the numbers say it, so there is no colour bar (a third of the time
    a browser takes to draw the figure).
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
                    line=dict(color="white", width=1)),
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


def region_images(crop, box, erased, points=()):
    """PNGs of where PASM erases (the box over the points, on the crop) and of the face the student will learn
    from, both enlarged alike (``ui.figures.enlarged``) so they can be shown side by side."""
    located, scale = enlarged(crop)
    image = Image.fromarray(located)
    draw = ImageDraw.Draw(image)
    radius = max(2, round(0.75 * scale))
    for x, y in points:
        cx, cy = (x + 0.5) * scale, (y + 0.5) * scale
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill="white", outline="black")
    if box is not None and box[2] > box[0]:
        x0, y0, x1, y1 = (int(v) * scale for v in box)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=REGION_COLOUR, width=max(2, scale - 1))
    return [png_bytes(np.asarray(image)), sharp_png(erased)]


def comparison_images(crop, masks, erased):
    """PNGs of each method's mask on the face (``"masks"``) and of the face it erases (``"erased"``), methods in
    ``masks``' order: the rows of the erasing comparison."""
    return {"masks": [sharp_png(tinted(crop, masks[name])) for name in masks],
            "erased": [sharp_png(erased[name]) for name in masks]}


def attribution_images(crop, maps, side=MAP_SIDE):
    """PNGs of each map (HxW in [0, 1]: Grad-CAM, saliency) as a heat overlay on the face, 0 to the map's
    maximum on plotly's Inferno scale (black, purple, orange, pale yellow), in ``maps``' order."""
    return [sharp_png(heat_overlay(crop, maps[name]), side) for name in maps]


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


def comparison_png(crop, masks, erased, captions=None, scale=4):
    """The erasing comparison as one PNG (mask row over erased row), drawn with PIL: no browser or kaleido needed."""
    names = list(masks)
    captions = captions or {}
    tiles = [[to_uint8(tinted(crop, masks[n])) for n in names], [to_uint8(erased[n]) for n in names]]
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
    sheet.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


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
    fig = subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
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
                fig.add_shape(**box_shape(box, REGION_COLOUR, 2), row=face + 1, col=col)
    top = 60 + title_height
    fig.update_layout(title=title, height=plot_height + top + 10, margin=dict(l=10, r=10, t=top, b=10),
                      showlegend=False)
    return hide_axes(fig)


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

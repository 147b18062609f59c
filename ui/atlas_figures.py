"""Figures of the Data set atlas: where attack points land over many faces, as densities over the average face
and as shares per facial region, per class."""
import math

import numpy as np
import plotly.graph_objects as go

from ui.figures import MARGIN, SUBPLOT_MARGIN, hide_axes, image_trace, overlay_heatmap, subplots

# For densities over a face: zero is fully transparent, so the face shows wherever no point landed.
DENSITY_SCALE = [[0.0, "rgba(255, 235, 59, 0)"], [0.15, "rgba(255, 193, 7, 0.55)"], [0.5, "rgba(255, 87, 34, 0.8)"],
                 [1.0, "rgba(183, 28, 28, 0.95)"]]


def density_map(density, background=None, title="Attack point density"):
    """Points per face per pixel as a heat overlay; on the average face when one is given."""
    density = np.asarray(density, dtype=float)
    fig = go.Figure()
    if background is not None:
        fig.add_trace(image_trace(background))
    fig.add_trace(overlay_heatmap(density, opacity=1.0, name="density ", colorscale=DENSITY_SCALE))
    fig.update_layout(title=title, height=440, margin=MARGIN, showlegend=False)
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return hide_axes(fig)


def class_density_maps(densities, backgrounds=None, cols=4, title="Attack point density per class"):
    """Small multiples of the density, one per class, on one colour scale so classes compare directly."""
    names = list(densities)
    rows = max(1, math.ceil(len(names) / cols))
    zmax = max((float(np.max(d)) for d in densities.values()), default=1.0) or 1.0
    fig = subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.08)
    for i, name in enumerate(names):
        row, col = i // cols + 1, i % cols + 1
        if backgrounds is not None and name in backgrounds:
            fig.add_trace(image_trace(backgrounds[name]), row=row, col=col)
        fig.add_trace(overlay_heatmap(np.asarray(densities[name], dtype=float), show_scale=i == 0, zmax=zmax,
                                       opacity=1.0, name=f"{name} ", colorscale=DENSITY_SCALE),
                      row=row, col=col)
    fig.update_layout(title=title, height=80 + 230 * rows, margin=SUBPLOT_MARGIN, showlegend=False)
    fig.update_yaxes(autorange="reversed")
    for i in range(len(names)):
        axis = "" if i == 0 else str(i + 1)
        fig.update_layout({f"yaxis{axis}": dict(scaleanchor=f"x{axis}")})
    return hide_axes(fig)


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

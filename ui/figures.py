"""Plotly figures for the app's pages: pure functions of arrays and dicts, no streamlit. This module holds the
pieces every figure uses (images as traces, subplots with readable titles) and the Home page's loop; each
page's own figures are in ui.attack_figures, ui.atlas_figures and ui.run_figures.

Images go into figures as PNG data URIs (``go.Image(source=...)``) rather than pixel arrays: a 600 px
photo as JSON numbers is megabytes, as a PNG it is tens of kilobytes, which keeps reruns fast. Views that
need no zoom or hover (faces side by side, erased faces, attribution maps) are plain PNGs for ``st.image``
instead (``sharp_png``, ``heat_overlay``): a browser draws an image in a few milliseconds, a plotly figure
in tens to hundreds of them, more with subplots.

Coordinates follow pasm.faces: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``. Every image trace is
placed so that this holds in the figure too (its first pixel centre sits at (0.5, 0.5)), so detection
boxes, region boxes (exclusive ends) and attack points (pixel indices, drawn at their centres) need no
shifting.
"""
import base64
import io

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from pasm.report import to_uint8

MARGIN = dict(l=10, r=10, t=40, b=10)
# Subplot titles sit above each panel: the figure title needs room above them.
SUBPLOT_MARGIN = dict(l=10, r=10, t=80, b=10)
# Subplot titles are annotations; every figure with subplots sets their size, so none comes out tiny.
SUBPLOT_TITLE_SIZE = 16
REGION_COLOUR = "#00e5ff"
MASK_COLOUR = (255, 40, 40)
JPEG_ABOVE = 256
# Crops shown as plain images are blown up to about this many pixels a side (ui.figures.enlarged).
DISPLAY_SIDE = 256
PNG_COMPRESS_LEVEL = 1


# Images


def data_uri(image):
    """PNG for crops and masks, whose exact pixels matter; JPEG for photos, which are big and already lossy."""
    image = to_uint8(image)
    kind = "jpeg" if max(image.shape[:2]) > JPEG_ABOVE else "png"
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=kind.upper(), **({"quality": 88} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_trace(image, max_side=None):
    """An image trace in the image's own pixel coordinates; big images are shown shrunk but keep them."""
    image = to_uint8(image)
    height, width = image.shape[:2]
    scale = 1.0
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        image = np.asarray(Image.fromarray(image).resize((round(width * scale), round(height * scale)), Image.BILINEAR))
    step = 1.0 / scale
    return go.Image(source=data_uri(image), x0=step / 2, y0=step / 2, dx=step, dy=step, hoverinfo="skip")


def tinted(image, mask, colour=MASK_COLOUR, strength=0.55):
    """``image`` with ``mask`` painted over in a translucent colour: how a region is shown on a face."""
    image = to_uint8(image).astype(np.float32)
    mask = np.asarray(mask, dtype=bool)
    image[mask] = (1 - strength) * image[mask] + strength * np.asarray(colour, dtype=np.float32)
    return np.round(image).astype(np.uint8)


def enlarged(image, side=DISPLAY_SIDE):
    """``(image, scale)``: the image blown up by a whole factor to about ``side`` pixels, each pixel a sharp square.
    A browser smooths a small image it stretches; a 64 px crop shown this way keeps its pixels."""
    image = to_uint8(image)
    scale = max(1, -(-side // max(image.shape[:2])))
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1), scale


def png_bytes(image):
    """An HxWx3 image as PNG bytes: what ``st.image`` shows as it is (no re-encoding) and a cache keeps cheaply.
    Fast compression: half the encoding time of the default for files a fifth bigger, a few kilobytes here."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def sharp_png(image, side=DISPLAY_SIDE):
    """PNG of the image enlarged to about ``side`` pixels (``enlarged``): a crop for ``st.image``."""
    return png_bytes(enlarged(image, side)[0])


def colour_lookup(colorscale="Inferno", steps=256):
    """A ``steps`` x 3 uint8 table of a plotly colour scale, interpolated between its stops as plotly does."""
    stops = plotly.colors.get_colorscale(colorscale)
    positions = [float(p) for p, _ in stops]
    rgb = np.array([plotly.colors.hex_to_rgb(c) if c.startswith("#") else plotly.colors.unlabel_rgb(c)
                    for _, c in stops], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, steps)
    return np.round(np.stack([np.interp(grid, positions, rgb[:, k]) for k in range(3)], axis=1)).astype(np.uint8)


def heat_overlay(image, values, zmax=None, opacity=0.55, colorscale="Inferno"):
    """An HxW map painted over an HxWx3 image of the same size, pixel for pixel, on the scale 0..``zmax`` (the
    map's maximum by default): the picture ``overlay_heatmap`` over ``image_trace`` draws, as pixels."""
    values = np.asarray(values, dtype=np.float64)
    top = zmax if zmax is not None else float(values.max() or 1.0)
    lookup = colour_lookup(colorscale)
    index = np.round(np.clip(values / top, 0.0, 1.0) * (len(lookup) - 1)).astype(np.int64)
    blended = (1 - opacity) * to_uint8(image).astype(np.float64) + opacity * lookup[index]
    return np.round(blended).astype(np.uint8)


def subplots(**kwargs):
    """``make_subplots`` with readable subplot titles (SUBPLOT_TITLE_SIZE); call before adding annotations."""
    fig = make_subplots(**kwargs)
    fig.update_annotations(font_size=SUBPLOT_TITLE_SIZE)
    return fig


def hide_axes(fig):
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def picture(image, title=None, height=360, max_side=None):
    """One image as a figure, pixels kept sharp and zoomable (st.image would blur a 64 px crop)."""
    fig = go.Figure(image_trace(image, max_side))
    fig.update_layout(height=height, margin=MARGIN, showlegend=False)
    if title:
        fig.update_layout(title=title)
    return hide_axes(fig)


def box_shape(box, colour, width):
    x0, y0, x1, y1 = (float(v) for v in box)
    return dict(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color=colour, width=width))


def overlay_heatmap(values, show_scale=True, zmax=None, opacity=0.55, name="", colorscale="Inferno"):
    """An HxW map as a heat layer to put over an image trace of the same size, pixel for pixel."""
    height, width = values.shape
    return go.Heatmap(z=values, x=np.arange(width) + 0.5, y=np.arange(height) + 0.5, colorscale=colorscale,
                      opacity=opacity, zmin=0, zmax=zmax if zmax is not None else float(values.max() or 1.0),
                      showscale=show_scale, colorbar=dict(thickness=10),
                      hovertemplate=name + "(%{x:.0f}, %{y:.0f}): %{z:.3g}<extra></extra>")


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

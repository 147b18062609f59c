"""Synthetic occluders over an aligned face crop, for an occluded copy of any test set.

Occlusion robustness is what PASM's erased training samples are meant to buy, but only SynthFER
ships an occluded split. This module draws one occluder per image over one facial region of an
aligned crop (eyes around the upper third, mouth around the lower third), the way hands,
sunglasses, masks, scarves and hair hide faces in the wild. Everything depends only on
``(seed, index)``, so the occluded copy of a test set is the same in every run and on every machine.
"""
import math

import numpy as np
from PIL import Image, ImageDraw

from .base import FERDataset

OCCLUDERS = ("hand", "sunglasses", "mask", "scarf", "hair", "patch")

# Where things are in an aligned face crop, as fractions of its side (RAF-DB's aligned crops and
# SynthFER's faces both put the eyes near 0.4 and the mouth near 0.7 of the height).
EYES_Y, EYE_DX, MOUTH_Y = 0.41, 0.17, 0.72
SUPERSAMPLING = 4

_SKIN = [(255, 224, 196), (241, 194, 157), (224, 172, 125), (198, 134, 90), (141, 85, 54), (92, 58, 40)]
_HAIR = [(20, 16, 14), (55, 35, 22), (95, 62, 35), (190, 150, 90), (150, 60, 30), (140, 140, 140)]


def occluder_kind(index, seed=0):
    """Which occluder image ``index`` gets; cheap, so per-occluder scores need no drawing."""
    return OCCLUDERS[int(_rng(index, seed).integers(len(OCCLUDERS)))]


def _rng(index, seed):
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x0CC]))


def occlude(image, index, seed=0):
    """(occluded image, occluder mask (H, W) bool, occluder name) for a PIL image of mode L or RGB.

    Shapes are drawn at four times the image's resolution and averaged down, so edges are smooth
    at 32 px as at 224 px; the mask marks pixels at least half covered.
    """
    rng = _rng(index, seed)
    kind = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
    width, height = image.size
    canvas = (width * SUPERSAMPLING, height * SUPERSAMPLING)
    color_layer = Image.new("RGB", canvas)
    alpha_layer = Image.new("L", canvas, 0)
    pen = _Pen(ImageDraw.Draw(color_layer), ImageDraw.Draw(alpha_layer), canvas)
    _DRAW[kind](pen, rng)
    alpha = alpha_layer.resize((width, height), Image.BOX)
    color = color_layer.resize((width, height), Image.BOX).convert(image.mode)
    occluded = Image.composite(color, image, alpha)
    return occluded, np.asarray(alpha) >= 128, kind


class _Pen:
    """Draws in crop units ((0, 0) top left, (1, 1) bottom right) into the colour and coverage layers."""

    def __init__(self, color_draw, alpha_draw, canvas):
        self.color_draw, self.alpha_draw = color_draw, alpha_draw
        self.width, self.height = canvas

    def _points(self, xs, ys):
        return [(x * self.width, y * self.height) for x, y in zip(np.ravel(xs), np.ravel(ys))]

    def polygon(self, xs, ys, fill):
        points = self._points(xs, ys)
        self.color_draw.polygon(points, fill=fill)
        self.alpha_draw.polygon(points, fill=255)

    def line(self, xs, ys, fill, width):
        points = self._points(xs, ys)
        pixels = max(1, int(round(width * self.width)))
        self.color_draw.line(points, fill=fill, width=pixels, joint="curve")
        self.alpha_draw.line(points, fill=255, width=pixels, joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill, angle=0.0):
        theta = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        xs, ys = _turned(rx * np.cos(theta), ry * np.sin(theta), angle)
        self.polygon(cx + xs, cy + ys, fill)


def _turned(xs, ys, angle):
    c, s = math.cos(angle), math.sin(angle)
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    return c * xs - s * ys, s * xs + c * ys


def _jitter(rng, color, amount=12):
    return tuple(int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in color)


def _random_color(rng, low=0, high=255):
    return tuple(int(c) for c in rng.integers(low, high, 3))


def _shade(color, factor):
    return tuple(int(c * factor) for c in color)


def _target(rng):
    """The centre of one eye, both eyes or the mouth, jittered a little as alignment is never exact."""
    x, y = [(0.5 - EYE_DX, EYES_Y), (0.5 + EYE_DX, EYES_Y), (0.5, EYES_Y), (0.5, MOUTH_Y)][rng.integers(4)]
    return x + rng.uniform(-0.03, 0.03), y + rng.uniform(-0.03, 0.03)


def _draw_hand(pen, rng):
    """A palm with four fingers and a thumb, over an eye or the mouth, fingers up or down."""
    cx, cy = _target(rng)
    angle = rng.uniform(-0.5, 0.5) + (math.pi if rng.random() < 0.5 else 0.0)
    skin = _jitter(rng, _SKIN[rng.integers(len(_SKIN))])
    edge = _shade(skin, 0.8)
    pen.ellipse(cx, cy, 0.15, 0.17, skin, angle)
    for offset, length in zip((-0.11, -0.04, 0.03, 0.10), (0.2, 0.24, 0.23, 0.18)):
        xs, ys = _turned([offset, offset * 1.15], [-0.08, -0.08 - length], angle)
        pen.line(cx + xs, cy + ys, edge, 0.07)
        pen.line(cx + xs, cy + ys, skin, 0.055)
    xs, ys = _turned([0.12, 0.24], [0.05, -0.08], angle)
    pen.line(cx + xs, cy + ys, skin, 0.065)


def _draw_sunglasses(pen, rng):
    """Two dark lenses over the eyes, a bridge and the temples out to the sides."""
    y = EYES_Y + rng.uniform(-0.03, 0.03)
    lens, frame = _random_color(rng, 5, 60), _random_color(rng, 0, 80)
    rx, ry = rng.uniform(0.11, 0.14), rng.uniform(0.07, 0.1)
    for side in (-1, 1):
        x = 0.5 + side * EYE_DX
        pen.ellipse(x, y, rx + 0.015, ry + 0.015, frame)
        pen.ellipse(x, y, rx, ry, lens)
        pen.line([x + side * rx, 0.5 + side * 0.48], [y - 0.01, y - 0.02], frame, 0.02)
    pen.line([0.5 - EYE_DX + rx, 0.5, 0.5 + EYE_DX - rx], [y - 0.01, y - 0.03, y - 0.01], frame, 0.02)


def _draw_mask(pen, rng):
    """A surgical mask from the nose down over mouth and chin, with its ear loops."""
    fill = [(190, 215, 235), (235, 235, 235), (30, 30, 35), _random_color(rng, 40, 220)][rng.integers(4)]
    top = MOUTH_Y - rng.uniform(0.13, 0.18)
    xs = np.array([0.22, 0.36, 0.5, 0.64, 0.78, 0.74, 0.62, 0.5, 0.38, 0.26])
    ys = np.array([top + 0.04, top, top - 0.01, top, top + 0.04, 0.86, 0.94, 0.96, 0.94, 0.86])
    pen.polygon(xs, ys, fill)
    for side in (-1, 1):
        pen.line([0.5 + side * 0.28, 0.5 + side * 0.36], [top + 0.04, top - 0.06], _shade(fill, 0.85), 0.012)


def _draw_scarf(pen, rng):
    """A striped scarf pulled up over the chin and the lower lip."""
    fill = _random_color(rng, 20, 235)
    stripe = _random_color(rng)
    top = MOUTH_Y + rng.uniform(-0.06, 0.02)
    pen.polygon([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.0], [top + 0.05, top, top - 0.02, top, top + 0.05, 1.0, 1.0], fill)
    for y in np.arange(top + 0.07, 1.0, 0.07):
        pen.line([0.02, 0.5, 0.98], [y + 0.02, y, y + 0.02], stripe, 0.015)


def _draw_hair(pen, rng):
    """A thick strand falling from the top of the crop across one eye."""
    side = -1 if rng.random() < 0.5 else 1
    s = np.linspace(0, 1, 12)
    x = 0.5 + side * (0.05 + 0.16 * s + rng.uniform(-0.04, 0.04) * np.sin(np.pi * s))
    y = -0.02 + (EYES_Y + 0.16) * s
    half = rng.uniform(0.05, 0.08) * (0.6 + 0.6 * np.sin(np.pi * s * 0.9))
    color = _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 15)
    pen.polygon(np.concatenate([x - half, (x + half)[::-1]]), np.concatenate([y, y[::-1]]), color)
    for offset in (-0.5, 0.5):
        pen.line(x + offset * half, y, _shade(color, 1.2 if sum(color) < 300 else 0.85), 0.006)


def _draw_patch(pen, rng):
    """A plain rectangle or ellipse of a random colour, the generic occluder of occlusion benchmarks."""
    cx, cy = _target(rng)
    rx, ry = rng.uniform(0.1, 0.17, 2)
    fill = _random_color(rng)
    if rng.random() < 0.5:
        pen.ellipse(cx, cy, rx, ry, fill)
    else:
        pen.polygon([cx - rx, cx + rx, cx + rx, cx - rx], [cy - ry, cy - ry, cy + ry, cy + ry], fill)


_DRAW = {"hand": _draw_hand, "sunglasses": _draw_sunglasses, "mask": _draw_mask, "scarf": _draw_scarf,
         "hair": _draw_hair, "patch": _draw_patch}


class OccludedDataset(FERDataset):
    """A data set with one synthetic occluder drawn over each image (same labels, same order)."""

    def __init__(self, base, seed=0, transform=None):
        self.base, self.seed = base, seed
        super().__init__(f"{base.name}+occluders", base.classes, base.samples, transform)

    def load_image(self, index):
        return occlude(self.base.load_image(index), index, self.seed)[0]

    def occluder(self, index):
        return occluder_kind(index, self.seed)

    def occluder_mask(self, index):
        return occlude(self.base.load_image(index), index, self.seed)[1]

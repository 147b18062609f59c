"""SynthFER: procedurally drawn faces for the 7 basic expressions, with the ground truth that real data lacks.

Real FER data sets cannot say *which pixels* carry an expression, nor what an occluder hides. Here every image
comes with a cue mask (where the label's evidence was drawn) and an occluder mask, so attention maps and
adversarial points (PASM) can be scored against the truth. Two cue designs (``CUE_DESIGNS``): ``redundant``
(``REDUNDANT``, the default) shows an expression in 2-4 regions after its FACS prototype, each region with its own
chance and strength, so erasing one region usually leaves weaker evidence elsewhere, the premise of PASM;
``exclusive`` (``EXPRESSIONS``, the first design) shows it in all regions with cues shared between classes, which
leaves some labels (happiness: the mouth) a single region of evidence.

Every sample depends only on ``(seed, split, index, cue design)``: a data set can be regenerated instead of shipped,
and ``test_wild[i]`` is ``test[i]`` with one occluder added over one region (``occluded_region``, balanced over
``REGIONS``), so the test/test_wild accuracy gap measures occlusion alone, region by region.
"""
import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pasm.data.base import FERDataset
from pasm.errors import DataError
from pasm.fileio import write_json

CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
SPLITS = ("train", "test", "test_wild")
REGIONS = ("brows", "eyes", "nose", "mouth")
OCCLUDERS = ("hand", "sunglasses", "mask", "scarf", "hair", "patch")
FORMAT = "pasm-synthfer"
VERSION = 1
CUE_DESIGNS = ("redundant", "exclusive")

# The exclusive design, what each expression looks like: class -> region -> the cues it may show there
# (one is drawn per sample). Loosely after FACS action units. Cues are deliberately shared so that a region on its
# own is ambiguous: raised brows and wide eyes say "surprise or fear" and only the mouth tells them apart;
# inner-raised brows are fear or sadness; narrowed eyes are disgust, happiness or anger; a wrinkled nose is
# disgust or anger; a frown is sadness or anger. No two classes can produce the same combination of cues.
EXPRESSIONS = {
    "surprise": {"brows": ("raised",), "eyes": ("wide",), "nose": ("neutral",), "mouth": ("O", "open")},
    "fear": {"brows": ("raised", "inner_raised"), "eyes": ("wide",), "nose": ("neutral",), "mouth": ("stretched",)},
    "disgust": {"brows": ("lowered",), "eyes": ("neutral", "narrowed"), "nose": ("wrinkled",),
                "mouth": ("asymmetric",)},
    "happiness": {"brows": ("neutral",), "eyes": ("neutral", "narrowed"), "nose": ("neutral",), "mouth": ("smile",)},
    "sadness": {"brows": ("inner_raised",), "eyes": ("neutral",), "nose": ("neutral",), "mouth": ("frown",)},
    "anger": {"brows": ("knitted",), "eyes": ("narrowed",), "nose": ("neutral", "wrinkled"),
              "mouth": ("pressed", "frown")},
    "neutral": {"brows": ("neutral",), "eyes": ("neutral",), "nose": ("neutral",), "mouth": ("neutral",)},
}

# The redundant design, after the EMFACS prototypes: class -> region -> (the cues it may show there, the chance
# that the region shows one). Regions absent from a class, and regions whose draw fails, stay neutral; a face whose
# every draw fails shows its likeliest region, so a label never lacks evidence. Each shown cue has its own
# intensity, uniform in REDUNDANT_INTENSITY.
REDUNDANT = {
    # AU1+2 brows, AU5 eyes, AU26 jaw drop
    "surprise": {"brows": (("raised",), 0.8), "eyes": (("wide",), 0.75), "mouth": (("open", "O"), 0.9)},
    # AU1+2+4 brows, AU5 eyes, AU20+26 mouth
    "fear": {"brows": (("raised_knit",), 0.8), "eyes": (("wide",), 0.8), "mouth": (("stretched",), 0.85)},
    # AU9 nose (it lowers the brows too), AU15+16 mouth
    "disgust": {"brows": (("lowered",), 0.65), "nose": (("wrinkled",), 0.9), "mouth": (("asymmetric",), 0.8)},
    # AU6 cheeks and narrowed eyes, AU12 lip corners
    "happiness": {"eyes": (("narrowed",), 0.85), "mouth": (("smile",), 0.9)},
    # AU1+4 brows, lowered upper lids, AU15 lip corners
    "sadness": {"brows": (("inner_raised",), 0.85), "eyes": (("drooped",), 0.7), "mouth": (("frown",), 0.8)},
    # AU4 brows, AU5+7 eyes, AU23 lips
    "anger": {"brows": (("knitted",), 0.9), "eyes": (("glaring",), 0.75), "mouth": (("pressed",), 0.75)},
    "neutral": {},
}
REDUNDANT_INTENSITY = (0.6, 1.0)

# test_wild shares the test stream: same faces, plus an occluder drawn from its own stream.
_SPLIT_STREAM = {"train": 0, "test": 1, "test_wild": 1}
_LABEL_STREAM, _FACE_STREAM, _OCCLUDER_STREAM, _REGION_STREAM = 0, 1, 2, 3

_SKIN_TONES = [(255, 224, 196), (241, 194, 157), (224, 172, 125), (198, 134, 90), (141, 85, 54), (92, 58, 40)]
_HAIR_COLORS = [(20, 16, 14), (55, 35, 22), (95, 62, 35), (190, 150, 90), (150, 60, 30), (140, 140, 140)]
_IRIS_COLORS = [(60, 40, 25), (90, 60, 30), (50, 90, 130), (70, 110, 70), (30, 25, 20)]
_HAIR_STYLES = ("short", "long", "bangs", "none")
_DARK = (35, 25, 25)
_MOUTH_INSIDE = (70, 20, 25)
_TEETH = (240, 236, 225)


@dataclass
class SynthSample:
    """One rendered face and its ground truth.

    ``cue_mask`` marks the drawn parts of every region whose cue differs from neutral (for a neutral face: its
    brows, eyes and mouth). It is drawn as if nothing occluded it; ``cue_mask & ~occluder_mask`` is the visible
    evidence. ``cues`` maps each region to its cue name, ``intensity`` maps each region to its cue's strength, up to
    1 (strong; from 0.2 in the exclusive design, see REDUNDANT_INTENSITY for the redundant one), and 0 where the
    cue is neutral; ``occluder`` names the occluder of a test_wild image
    and ``occluded_region`` the region it was drawn over. ``region_masks`` splits the cue mask by region (each
    lies within it; a region not in the cue mask has an empty one), in memory only: the files hold ``cue_mask``.
    """

    image: Image.Image
    label: int
    cue_mask: np.ndarray
    occluder_mask: np.ndarray
    cues: dict
    intensity: dict
    region_masks: dict
    occluder: str = None
    occluded_region: str = None


def _check_split(split):
    if split not in SPLITS:
        raise DataError(f"split {split!r}", f"unknown split; expected one of {', '.join(SPLITS)}")


def _check_settings(seed, size):
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed={seed!r}", "the seed must be an integer >= 0")
    if not isinstance(size, int) or size < 16:
        raise DataError(f"size={size!r}", "the image size must be an integer of at least 16 pixels")


def _check_design(cues):
    if cues not in CUE_DESIGNS:
        raise DataError(f"cues={cues!r}", f"unknown cue design; expected one of {', '.join(CUE_DESIGNS)}")


def _rng(seed, split, index, stream):
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_STREAM[split], index, stream]))


def label_of(seed, split, index):
    """Labels are a fresh permutation of the 7 classes in every block of 7 indices: balanced, yet unordered."""
    _check_split(split)
    block_order = _rng(seed, split, index // len(CLASSES), _LABEL_STREAM).permutation(len(CLASSES))
    return int(block_order[index % len(CLASSES)])


def occluded_region(seed, index):
    """The region test_wild image ``index`` hides: each block of 4 indices hides every region once, in its own order,
    so accuracy per occluded region is measured on equal shares of the split."""
    block_order = _rng(seed, "test_wild", index // len(REGIONS), _REGION_STREAM).permutation(len(REGIONS))
    return REGIONS[block_order[index % len(REGIONS)]]


# ----------------------------------------------------------------------------------------------- sampling


def _jitter_color(rng, color, amount):
    return tuple(int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in color)


def _mix(a, b, weight):
    """Colour ``a`` moved ``weight`` of the way to colour ``b``."""
    return tuple(int(round(x + (y - x) * weight)) for x, y in zip(a, b))


def _sample_identity(rng):
    """Everything about the person that does not depend on the expression (always the same number of draws)."""
    skin = _jitter_color(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 12)
    hair = _jitter_color(rng, _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))], 15)
    return {
        "skin": skin,
        "skin_dark": _mix(skin, (60, 30, 20), 0.3),
        "lips": _mix(skin, (170, 60, 70), rng.uniform(0.3, 0.6)),
        "hair": hair,
        "brow_color": _mix(hair, (15, 10, 10), 0.4),
        "iris": _jitter_color(rng, _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))], 15),
        "clothes": tuple(int(c) for c in rng.integers(30, 230, 3)),
        "hair_style": _HAIR_STYLES[rng.choice(len(_HAIR_STYLES), p=[0.35, 0.3, 0.2, 0.15])],
        "glasses": bool(rng.random() < 0.15),
        "glasses_color": tuple(int(c) for c in rng.integers(10, 120, 3)),
        "face_width": rng.uniform(0.9, 1.05),
        "aspect": rng.uniform(1.2, 1.4),
        "jaw": rng.uniform(0.0, 0.3),
        "eye_dx": rng.uniform(0.36, 0.43),
        "eye_w": rng.uniform(0.16, 0.21),
        "eye_open": rng.uniform(0.8, 1.2),
        "gaze": rng.uniform(-1, 1, 2),
        "brow_v": rng.uniform(-0.43, -0.37),
        "brow_arch": rng.uniform(0.03, 0.08),
        "brow_th": rng.uniform(0.05, 0.09),
        "nose_w": rng.uniform(0.85, 1.2),
        "mouth_w": rng.uniform(0.3, 0.38),
        "lip_th": rng.uniform(0.045, 0.08),
    }


def _exclusive_cues(rng, name):
    """Every region from ``EXPRESSIONS``, one intensity shared by the face's non-neutral cues."""
    table = EXPRESSIONS[name]
    cues = {region: table[region][rng.integers(len(table[region]))] for region in REGIONS}
    strength = float(rng.uniform(0.2, 1.0))  # drawn for every class, so later draws line up across classes
    return cues, {region: 0.0 if cue == "neutral" else strength for region, cue in cues.items()}


def _redundant_cues(rng, name):
    """Each region of ``REDUNDANT`` shown with its own chance and intensity; the likeliest one if none is."""
    table = REDUNDANT[name]
    draws = rng.random((len(REGIONS), 3))  # (shown?, intensity, which cue) for every region and class alike
    shown = {region for region, (show, _, _) in zip(REGIONS, draws) if region in table and show < table[region][1]}
    if table and not shown:
        shown = {max(table, key=lambda region: table[region][1])}
    low, high = REDUNDANT_INTENSITY
    cues, intensity = {}, {}
    for region, (_, strength, which) in zip(REGIONS, draws):
        options = table[region][0] if region in shown else ("neutral",)
        cues[region] = options[int(which * len(options))]
        intensity[region] = float(low + (high - low) * strength) if region in shown else 0.0
    return cues, intensity


_SAMPLE_CUES = {"exclusive": _exclusive_cues, "redundant": _redundant_cues}


def _sample_expression(rng, label, design):
    """Cues and their intensities for the class, and the free choices some cues have."""
    cues, intensity = _SAMPLE_CUES[design](rng, CLASSES[label])
    return cues, intensity, {"mouth_open": rng.uniform(0, 1), "side": 1 if rng.random() < 0.5 else -1}


def _sample_scene(rng):
    """Pose, background, lighting and camera: the nuisances that have nothing to do with the person."""
    return {
        "angle": rng.uniform(-12, 12),
        "scale": rng.uniform(0.88, 1.08),
        "shift": rng.uniform(-0.05, 0.05, 2),
        "background": tuple(int(c) for c in rng.integers(20, 235, 3)),
        "background_blobs": rng.uniform(-1, 1, (4, 4, 3)),
        "background_shapes": [(rng.integers(3), rng.uniform(0, 1, 4), tuple(int(c) for c in rng.integers(0, 255, 3)))
                              for _ in range(rng.integers(0, 5))],
        "light_angle": rng.uniform(0, 2 * math.pi),
        "light_strength": rng.uniform(0, 0.4),
        "brightness": rng.uniform(0.8, 1.15),
        "noise": rng.uniform(0, 8),
        "noise_seed": int(rng.integers(2**31)),
        "jpeg_quality": int(rng.integers(35, 96)),
    }


# ----------------------------------------------------------------------------------------------- drawing


class _Painter:
    """Draws in face units onto the supersampled picture, and the same shapes into the cue/occluder masks.

    ``cue`` names the region a shape is evidence of (None: not evidence); it goes into the cue mask and into
    that region's own mask.

    Face units: (0, 0) is the face centre, 1 is the half-width of the face, v grows downwards. The head pose
    (rotation, scale, shift) is applied to the coordinates here, so the drawing code never thinks about it and
    no image has to be resampled.
    """

    def __init__(self, picture, who, scene):
        canvas = picture.size[0]
        self.cue = Image.new("L", picture.size, 0)
        self.occ = Image.new("L", picture.size, 0)
        self.regions = {region: Image.new("L", picture.size, 0) for region in REGIONS}
        self.draws = {"picture": ImageDraw.Draw(picture), "cue": ImageDraw.Draw(self.cue),
                      "occ": ImageDraw.Draw(self.occ),
                      **{region: ImageDraw.Draw(layer) for region, layer in self.regions.items()}}
        self.unit = canvas * 0.31 * who["face_width"] * scene["scale"]
        angle = math.radians(scene["angle"])
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        # The face centre sits a little above the image centre, so that the chin and neck show.
        centre = canvas / 2 + canvas * np.asarray(scene["shift"])
        self.x0 = centre[0] + self.sin * 0.04 * canvas * scene["scale"]
        self.y0 = centre[1] - self.cos * 0.04 * canvas * scene["scale"]

    def xy(self, u, v):
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        u, v = u.ravel() * self.unit, v.ravel() * self.unit
        x = self.x0 + self.cos * u - self.sin * v
        y = self.y0 + self.sin * u + self.cos * v
        return list(zip(x.tolist(), y.tolist()))

    def width(self, w):
        return max(1, int(round(w * self.unit)))

    def _targets(self, fill, cue, occ):
        """(draw, colour, is_mask) for the picture and for each mask the shape belongs to."""
        yield self.draws["picture"], fill, False
        if cue:
            yield self.draws["cue"], 255, True
            yield self.draws[cue], 255, True
        if occ:
            yield self.draws["occ"], 255, True

    def polygon(self, u, v, fill, cue=None, occ=False):
        points = self.xy(u, v)
        for draw, color, _ in self._targets(fill, cue, occ):
            draw.polygon(points, fill=color)

    def line(self, u, v, fill, width, cue=None, occ=False):
        points = self.xy(u, v)
        for draw, color, is_mask in self._targets(fill, cue, occ):
            # Thin strokes are widened in the masks so that they survive downsampling.
            draw.line(points, fill=color, width=self.width(max(width, 0.05) if is_mask else width), joint="curve")

    def ellipse(self, u, v, ru, rv, fill, cue=None, occ=False):
        """A polygon rather than ImageDraw.ellipse, since the ellipse turns with the head."""
        theta = _ELLIPSE_ANGLES[::2] if max(ru, rv) * self.unit < 6 else _ELLIPSE_ANGLES
        self.polygon(u + ru * np.cos(theta), v + rv * np.sin(theta), fill, cue, occ)


_ELLIPSE_ANGLES = np.linspace(0, 2 * np.pi, 24, endpoint=False)


def _arc(s, power):
    """Bump that is 1 in the middle of a feature (s=0) and 0 at its ends (s=+-1)."""
    return np.clip(1 - s**2, 0, None) ** power


def _draw_head(p, who):
    aspect, hair_style = who["aspect"], who["hair_style"]
    p.ellipse(0, 2.6, 2.1, 1.0, who["clothes"])
    p.polygon([-0.42, 0.42, 0.5, -0.5], [0.6, 0.6, 2.0, 2.0], who["skin_dark"])
    if hair_style == "long":
        side_u = np.array([1.15, 1.25, 1.3, 1.15, 0.8])
        side_v = [-0.4, 0.4, 1.2, 1.65, 1.75]
        p.polygon(np.concatenate([side_u, -side_u[::-1]]), side_v + side_v[::-1], who["hair"])
    if hair_style != "none":
        p.ellipse(0, -0.35, 1.12, aspect * 0.93, who["hair"])
    for side in (-1, 1):
        p.ellipse(side * 0.98, -0.02, 0.13, 0.24, who["skin_dark"])
    theta = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    down = np.clip(np.sin(theta), 0, None)
    p.polygon(np.cos(theta) * (1 - who["jaw"] * down**2), aspect * np.sin(theta), who["skin"])


def _draw_hair_front(p, who):
    """The cap of hair over the forehead; it stops above the highest a raised brow can go."""
    style, aspect = who["hair_style"], who["aspect"]
    if style == "none":
        return
    theta = np.linspace(np.pi, 2 * np.pi, 24)
    outer_u, outer_v = 1.07 * np.cos(theta), 1.04 * aspect * np.sin(theta)
    hairlines = {
        "short": ([1.0, 0.75, 0.35, 0.0, -0.35, -0.75, -1.0], [-0.3, -0.8, -0.92, -0.95, -0.92, -0.8, -0.3]),
        "bangs": ([1.0, 0.85, 0.6, 0.0, -0.6, -0.85, -1.0], [-0.35, -0.72, -0.78, -0.8, -0.78, -0.72, -0.35]),
        "long": ([1.02, 0.85, 0.55, 0.1, -0.4, -0.8, -1.02], [0.25, -0.45, -0.85, -1.0, -0.9, -0.55, 0.25]),
    }
    line_u, line_v = hairlines[style]
    p.polygon(np.concatenate([outer_u, line_u]), np.concatenate([outer_v, line_v]), who["hair"])


def _draw_nose(p, who, cue, t, mark):
    """A wrinkled nose pulls the nostrils up and wide and creases the bridge and the nasolabial folds."""
    wrinkled = cue == "wrinkled"
    k = t if wrinkled else 0.0
    w, lift = who["nose_w"] * (1 + 0.3 * k), 0.05 * k
    p.line([0.09, 0.12], [-0.02, 0.24], _mix(who["skin"], who["skin_dark"], 0.7), 0.02)
    base_u = np.array([-0.16, -0.1, 0, 0.1, 0.16]) * w
    p.line(base_u, np.array([0.28, 0.35, 0.37, 0.35, 0.28]) - lift, who["skin_dark"], 0.03, cue=mark)
    for side in (-1, 1):
        p.ellipse(side * 0.07 * w, 0.33 - lift, 0.035 * w, 0.018 + 0.01 * k, _mix(who["skin_dark"], _DARK, 0.5),
                  cue=mark)
    if not wrinkled:
        return
    crease = _mix(who["skin"], _DARK, 0.25 + 0.35 * t)
    for v in (-0.02, 0.05, 0.12)[: 2 + (t > 0.5)]:
        p.line([-0.1, 0, 0.1], [v, v - 0.025, v], crease, 0.02, cue=mark)
    for side in (-1, 1):
        p.line(side * np.array([0.17, 0.25, 0.33]) * w, [0.28 - lift, 0.42, 0.6], crease, 0.025, cue=mark)


def _eye_opening(who, cue, t):
    up, down = 0.085 * who["eye_open"], 0.055 * who["eye_open"]
    if cue == "wide":
        return up * (1 + 0.9 * t), down * (1 + 0.5 * t)
    if cue == "narrowed":
        return up * (1 - 0.55 * t), down * (1 - 0.6 * t)
    if cue == "drooped":  # upper lids lowered (sadness)
        return up * (1 - 0.5 * t), down
    if cue == "glaring":  # upper lids raised, lower lids tensed (anger: AU5+7)
        return up * (1 + 0.4 * t), down * (1 - 0.6 * t)
    return up, down


def _draw_eyes(p, who, cue, t, mark):
    """Almond eyes: sclera, then the iris, then skin painted back over whatever of the iris the lids hide."""
    up, down = _eye_opening(who, cue, t)
    half, ey, radius = who["eye_w"], -0.08, 0.075 * who["eye_w"] / 0.19
    s = np.linspace(-1, 1, 15)
    for side in (-1, 1):
        ex = side * who["eye_dx"]
        u = ex + s * half
        top, bottom = ey - up * _arc(s, 0.8), ey + down * _arc(s, 0.8)
        p.polygon(np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]]), (238, 234, 228), cue=mark)
        iu, iv = ex + who["gaze"][0] * 0.03, ey + who["gaze"][1] * 0.015
        p.ellipse(iu, iv, radius, radius, who["iris"])
        p.ellipse(iu, iv, radius * 0.45, radius * 0.45, (10, 10, 12))
        p.ellipse(iu + radius * 0.3, iv - radius * 0.3, radius * 0.2, radius * 0.2, (250, 250, 250))
        cover = radius + 0.05
        p.polygon(np.concatenate([u, [ex + half, ex - half]]), np.concatenate([top, [ey - cover] * 2]), who["skin"])
        p.polygon(np.concatenate([u, [ex + half, ex - half]]), np.concatenate([bottom, [ey + cover] * 2]), who["skin"])
        p.line(u, top, _DARK, 0.035, cue=mark)
        p.line(u[2:-2], bottom[2:-2], who["skin_dark"], 0.015, cue=mark)
        if cue == "narrowed":
            cheek = _mix(who["skin"], _DARK, 0.2 + 0.3 * t)
            p.line(ex + s[3:-3] * half, ey + down + 0.06 - 0.02 * _arc(s[3:-3], 1), cheek, 0.02, cue=mark)


_BROW_MOVES = {  # cue -> (whole brow down, more arch, inner end down, inner end towards the nose), per unit intensity
    "neutral": (0.0, 0.0, 0.0, 0.0),
    "raised": (-0.13, 0.05, 0.0, 0.0),
    "lowered": (0.08, -0.03, 0.02, 0.0),
    "knitted": (0.05, -0.04, 0.1, 0.07),
    "inner_raised": (-0.02, -0.03, -0.13, 0.02),
    "raised_knit": (-0.1, -0.03, -0.04, 0.05),  # raised and drawn together (fear: AU1+2+4)
}


def _draw_brows(p, who, cue, t, mark):
    down, arch, inner_down, knit = (t * m for m in _BROW_MOVES[cue])
    s = np.linspace(0, 1, 9)
    scale = who["eye_dx"] / 0.4
    v = (who["brow_v"] + down - (who["brow_arch"] + arch) * np.sin(np.pi * s**0.8)
         + inner_down * (1 - s) ** 1.5)
    half_th = who["brow_th"] * (1.1 - 0.5 * s) / 2
    for side in (-1, 1):
        u = side * (0.16 * scale - knit + s * (0.5 * scale + knit))
        p.polygon(np.concatenate([u, u[::-1]]), np.concatenate([v - half_th, (v + half_th)[::-1]]),
                  who["brow_color"], cue=mark)
    if cue == "knitted":
        crease = _mix(who["skin"], _DARK, 0.2 + 0.3 * t)
        for side in (-1, 1):
            p.line([side * 0.05, side * 0.06], [v[0] - 0.02, v[0] + 0.1], crease, 0.02, cue=mark)


def _mouth_shape(who, cue, t, free):
    """How the cue moves the mouth away from the person's resting mouth, scaled by the intensity ``t``.

    ``corners_down`` bends the lip line (negative: a smile), ``tilt`` lifts one corner, ``open_up``/``open_down``
    open the lips above/below that line (``roundness`` shapes the opening, ``side`` keeps it to one side),
    ``teeth`` shows upper teeth and ``lips`` scales the lip thickness.
    """
    shape = {"half": who["mouth_w"], "corners_down": 0.0, "tilt": 0.0, "open_up": 0.0, "open_down": 0.0,
             "roundness": 1.0, "side": None, "teeth": 0.0, "lips": 1.0}
    if cue == "smile":
        open_down = 0.13 * t * free["mouth_open"]
        shape.update(half=who["mouth_w"] * (1 + 0.2 * t), corners_down=-0.16 * t, open_down=open_down,
                     open_up=0.01 if open_down > 0.02 else 0.0, teeth=0.7 * open_down)
    elif cue == "frown":
        shape.update(half=who["mouth_w"] * (1 - 0.05 * t), corners_down=0.12 * t, lips=1 + 0.3 * t)
    elif cue == "open":
        shape.update(half=who["mouth_w"] * (1 - 0.05 * t), open_up=0.04 * t, open_down=0.16 * t, roundness=0.6)
    elif cue == "O":
        shape.update(half=who["mouth_w"] * (1 - 0.45 * t), open_up=0.07 * t, open_down=0.12 * t, roundness=0.5,
                     lips=1 + 0.3 * t)
    elif cue == "pressed":
        shape.update(half=who["mouth_w"] * (1 - 0.1 * t), corners_down=0.02 * t, lips=1 - 0.8 * t)
    elif cue == "asymmetric":
        shape.update(tilt=-0.08 * t * free["side"], open_up=0.08 * t, side=free["side"], teeth=0.06 * t)
    elif cue == "stretched":
        shape.update(half=who["mouth_w"] * (1 + 0.3 * t), corners_down=0.05 * t, open_up=0.04 * t,
                     open_down=0.09 * t, roundness=0.3, teeth=0.035 * t)
    return shape


def _draw_mouth(p, who, cue, t, free, mark):
    shape = _mouth_shape(who, cue, t, free)
    s = np.linspace(-1, 1, 21)
    u, mid = s * shape["half"], 0.72 + shape["corners_down"] * s**2 + shape["tilt"] * s
    opening = _arc(s, shape["roundness"])
    one_sided = ((1 + shape["side"] * s) / 2) ** 1.5 if shape["side"] else 1.0
    top, bottom = mid - shape["open_up"] * opening * one_sided, mid + shape["open_down"] * opening
    lip_up, lip_down = 0.8 * who["lip_th"] * shape["lips"], who["lip_th"] * shape["lips"]
    outer_top, outer_bottom = top - lip_up * _arc(s, 0.5), bottom + lip_down * _arc(s, 0.5)
    p.polygon(np.concatenate([u, u[::-1]]), np.concatenate([outer_top, outer_bottom[::-1]]), who["lips"], cue=mark)
    if shape["open_up"] + shape["open_down"] > 0.01:
        p.polygon(np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]]), _MOUTH_INSIDE)
        if shape["teeth"] > 0:
            teeth_bottom = np.minimum(top + shape["teeth"] * _arc(s, 0.5), bottom)
            p.polygon(np.concatenate([u[2:-2], u[2:-2][::-1]]),
                      np.concatenate([top[2:-2], teeth_bottom[2:-2][::-1]]), _TEETH)
    else:
        width = 0.035 if cue == "pressed" else 0.02
        p.line(u, mid, _mix(who["lips"], _DARK, 0.6), width, cue=mark)


def _draw_glasses(p, who):
    color = who["glasses_color"]
    for side in (-1, 1):
        ex = side * who["eye_dx"]
        theta = np.linspace(0, 2 * np.pi, 24)
        p.line(ex + 0.25 * np.cos(theta), -0.07 + 0.19 * np.sin(theta), color, 0.03)
        p.line([side * (who["eye_dx"] + 0.25), side * 1.0], [-0.1, -0.12], color, 0.03)
    p.line([-who["eye_dx"] + 0.25, 0, who["eye_dx"] - 0.25], [-0.1, -0.14, -0.1], color, 0.03)


def _cue_regions(cues):
    """Regions whose drawing goes into the cue mask: those where the expression differs from neutral.

    A neutral face differs from nothing, so its mask is the resting brows, eyes and mouth, the parts a person
    reads to call a face expressionless (the nose carries no neutral cue).
    """
    if all(cue == "neutral" for cue in cues.values()):
        return {"brows", "eyes", "mouth"}
    return {region for region in REGIONS if cues[region] != "neutral"}


def _draw_face(p, who, cues, t, free):
    """Layer order matters: eyes are clipped by painting skin, so brows, hair and glasses come after them.

    ``t`` maps each region to its cue's intensity; a region's drawing is marked with its name when it is evidence.
    """
    marked = _cue_regions(cues)
    marks = {region: region if region in marked else None for region in REGIONS}
    _draw_head(p, who)
    _draw_nose(p, who, cues["nose"], t["nose"], marks["nose"])
    _draw_eyes(p, who, cues["eyes"], t["eyes"], marks["eyes"])
    _draw_brows(p, who, cues["brows"], t["brows"], marks["brows"])
    _draw_mouth(p, who, cues["mouth"], t["mouth"], free, marks["mouth"])
    _draw_hair_front(p, who)
    if who["glasses"]:
        _draw_glasses(p, who)


# ----------------------------------------------------------------------------------------------- occluders


def _rotated(u, v, angle, cu, cv):
    c, s = math.cos(angle), math.sin(angle)
    u, v = np.asarray(u, float), np.asarray(v, float)
    return cu + c * u - s * v, cv + s * u + c * v


def _occlude_hand(p, rng, who):
    """A hand over the mouth, fingers up or down."""
    cu, cv = rng.uniform(-0.1, 0.1), 0.8
    angle = rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.5 else 0)
    skin = _jitter_color(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 12)
    edge = _mix(skin, (60, 30, 20), 0.35)
    theta = np.linspace(0, 2 * np.pi, 24)
    palm_u, palm_v = _rotated(0.32 * np.cos(theta), 0.36 * np.sin(theta) + 0.35, angle, cu, cv)
    p.polygon(palm_u, palm_v, skin, occ=True)
    for i, offset in enumerate((-0.24, -0.08, 0.08, 0.24)):
        length = (0.5, 0.58, 0.55, 0.45)[i]
        fu, fv = _rotated([offset, offset * 1.1], [0.25, 0.25 - length], angle, cu, cv)
        p.line(fu, fv, edge, 0.17, occ=True)
        p.line(fu, fv, skin, 0.13, occ=True)
    tu, tv = _rotated([0.3, 0.55], [0.45, 0.15], angle, cu, cv)
    p.line(tu, tv, skin, 0.15, occ=True)


def _occlude_sunglasses(p, rng, who):
    lens = tuple(int(c) for c in rng.integers(5, 60, 3))
    frame = tuple(int(c) for c in rng.integers(0, 80, 3))
    for side in (-1, 1):
        ex = side * who["eye_dx"]
        p.ellipse(ex, -0.08, 0.3, 0.23, frame, occ=True)
        p.ellipse(ex, -0.08, 0.27, 0.2, lens, occ=True)
        p.ellipse(ex - 0.08, -0.14, 0.05, 0.03, _mix(lens, (255, 255, 255), 0.5))
        p.line([side * (who["eye_dx"] + 0.29), side * 1.02], [-0.1, -0.12], frame, 0.04, occ=True)
    p.line([-who["eye_dx"] + 0.27, 0, who["eye_dx"] - 0.27], [-0.11, -0.15, -0.11], frame, 0.04, occ=True)


def _occlude_mask(p, rng, who):
    """A face mask worn under the nose: it hides the mouth and leaves the nose to be read."""
    color = [(190, 215, 235), (235, 235, 235), (30, 30, 35), tuple(int(c) for c in rng.integers(40, 220, 3))]
    fill = color[rng.integers(len(color))]
    aspect, top = who["aspect"], rng.uniform(0.4, 0.47)
    u = np.array([-1.0, -0.5, 0, 0.5, 1.0, 0.8, 0.4, 0, -0.4, -0.8])
    v = np.array([top + 0.1, top + 0.03, top, top + 0.03, top + 0.1, aspect * 0.7, aspect * 0.9, aspect * 0.98,
                  aspect * 0.9, aspect * 0.7])
    p.polygon(u, v, fill, occ=True)
    pleat = _mix(fill, (0, 0, 0), 0.25)
    for y in (0.65, 0.8, 0.95):
        p.line([-0.7, 0, 0.7], [y, y + 0.03, y], pleat, 0.02)
    for side in (-1, 1):
        p.line([side * 1.0, side * 1.0], [top + 0.1, -0.05], _mix(fill, (255, 255, 255), 0.3), 0.03, occ=True)


def _occlude_scarf(p, rng, who):
    fill = tuple(int(c) for c in rng.integers(20, 235, 3))
    stripe = _mix(fill, tuple(int(c) for c in rng.integers(0, 255, 3)), 0.6)
    top = rng.uniform(0.45, 0.55)
    u = np.array([-1.4, -0.7, 0, 0.7, 1.4, 1.4, -1.4])
    v = np.array([top + 0.1, top, top - 0.05, top, top + 0.1, 2.0, 2.0])
    p.polygon(u, v, fill, occ=True)
    for y in np.arange(top + 0.15, 1.9, 0.22):
        p.line([-1.3, 0, 1.3], [y + 0.05, y, y + 0.05], stripe, 0.06)


def _occlude_hair(p, rng, who):
    """A side-swept fringe from the crown down over both brows, stopping above the eyes."""
    u = np.linspace(-1.0, 1.0, 21)
    top = -1.04 * who["aspect"] * np.sqrt(1 - (u / 1.07) ** 2)
    sweep = rng.choice([-1, 1]) * rng.uniform(0.0, 0.06)
    bottom = -0.27 + sweep * u + rng.uniform(0.01, 0.03) * np.sin(u * rng.uniform(8, 14))
    p.polygon(np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]]), who["hair"], occ=True)
    strand = _mix(who["hair"], (255, 255, 255), 0.15)
    for start in (-0.6, -0.2, 0.2, 0.6):
        p.line([start, start - 4 * sweep], [-0.9, -0.35], strand, 0.015)


# region -> (centre u, centre v, half width, half height) of a patch that hides that region's cues.
_PATCH_BOXES = {"brows": (0, -0.45, 0.78, 0.22), "eyes": (0, -0.1, 0.75, 0.18), "nose": (0, 0.2, 0.28, 0.25),
                "mouth": (0, 0.75, 0.55, 0.25)}


def _occlude_patch(p, rng, who, region):
    """A plain ellipse or rectangle over one region, the generic occluder of occlusion benchmarks."""
    cu, cv, ru, rv = _PATCH_BOXES[region]
    grow = rng.uniform(1.0, 1.15)
    ru, rv = ru * grow, rv * grow
    fill = tuple(int(c) for c in rng.integers(0, 255, 3))
    if rng.random() < 0.5:
        p.ellipse(cu, cv, ru * 1.35, rv * 1.15, fill, occ=True)  # wider, so that it reaches as far as the rectangle
    else:
        p.polygon([cu - ru, cu + ru, cu + ru, cu - ru], [cv - rv, cv - rv, cv + rv, cv + rv], fill, occ=True)
    lines = _mix(fill, tuple(int(c) for c in rng.integers(0, 255, 3)), 0.5)
    for k in range(rng.integers(0, 4)):
        y = cv - rv + (k + 1) * 2 * rv / 4
        p.line([cu - ru * 0.8, cu + ru * 0.8], [y, y], lines, 0.03)


_DRAW_OCCLUDER = {"hand": _occlude_hand, "sunglasses": _occlude_sunglasses, "mask": _occlude_mask,
                  "scarf": _occlude_scarf, "hair": _occlude_hair}
# The occluders that hide each region; a patch can hide any of them.
_REGION_OCCLUDERS = {"brows": ("hair", "patch"), "eyes": ("sunglasses", "patch"), "nose": ("patch",),
                     "mouth": ("mask", "scarf", "hand", "patch")}


def _draw_occluder(p, rng, who, region):
    """Pick one of the occluders that hide ``region`` and draw it; returns its name."""
    kinds = _REGION_OCCLUDERS[region]
    kind = kinds[rng.integers(len(kinds))]
    if kind == "patch":
        _occlude_patch(p, rng, who, region)
    else:
        _DRAW_OCCLUDER[kind](p, rng, who)
    return kind


# ----------------------------------------------------------------------------------------------- camera


def _supersampling(size):
    return 3 if size <= 128 else 2


def _background(canvas, scene):
    """Smooth colour blobs plus a few flat shapes, so a model cannot find the face by colour alone."""
    base = np.array(_mix(scene["background"], (128, 128, 128), 0.4))
    blobs = np.clip(base + 50 * scene["background_blobs"], 0, 255).astype(np.uint8)
    image = Image.fromarray(blobs, "RGB").resize((canvas, canvas), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for kind, (x0, y0, x1, y1), color in scene["background_shapes"]:
        box = [min(x0, x1) * canvas, min(y0, y1) * canvas, max(x0, x1) * canvas, max(y0, y1) * canvas]
        if kind == 0:
            draw.rectangle(box, fill=color)
        elif kind == 1:
            draw.ellipse(box, fill=color)
        else:
            draw.line(box, fill=color, width=max(1, canvas // 40))
    return image


def _camera(image, scene):
    """Lighting gradient, exposure, sensor noise and a JPEG round trip, at the output resolution."""
    size = image.size[0]
    pixels = np.asarray(image, np.float32)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    gx, gy = math.cos(scene["light_angle"]), math.sin(scene["light_angle"])
    light = scene["brightness"] * (1 + scene["light_strength"] * (gx * ramp[None, :] + gy * ramp[:, None]))
    pixels = pixels * light[:, :, None]
    noise = np.random.default_rng(scene["noise_seed"]).standard_normal(pixels.shape, dtype=np.float32)
    pixels = np.clip(pixels + scene["noise"] * noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=scene["jpeg_quality"])
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _to_mask(layer, size):
    """A pixel belongs to a mask when at least a third of it was covered at the supersampled resolution."""
    return np.asarray(layer.resize((size, size), Image.BOX)) >= 85


def render_sample(seed, split, index, size=64, cues="redundant"):
    """Draw sample ``index`` of ``split`` with cue design ``cues``; the result depends only on these arguments."""
    _check_split(split)
    _check_settings(seed, size)
    _check_design(cues)
    label = label_of(seed, split, index)
    rng = _rng(seed, split, index, _FACE_STREAM)
    who = _sample_identity(rng)
    shown, intensity, free = _sample_expression(rng, label, cues)
    scene = _sample_scene(rng)

    canvas = size * _supersampling(size)
    picture = _background(canvas, scene)
    painter = _Painter(picture, who, scene)
    _draw_face(painter, who, shown, intensity, free)
    occluder = region = None
    if split == "test_wild":
        region = occluded_region(seed, index)
        occluder = _draw_occluder(painter, _rng(seed, split, index, _OCCLUDER_STREAM), who, region)
    image = _camera(picture.resize((size, size), Image.LANCZOS), scene)
    return SynthSample(image=image, label=label, cue_mask=_to_mask(painter.cue, size),
                       occluder_mask=_to_mask(painter.occ, size),
                       cues=shown, intensity=intensity,
                       region_masks={name: _to_mask(layer, size) for name, layer in painter.regions.items()},
                       occluder=occluder, occluded_region=region)


# ----------------------------------------------------------------------------------------------- on disk


def _mask_paths(root, image_file):
    """``train/fear/000012.png`` -> ``masks/train/fear/000012_cue.png`` and ``..._occ.png``."""
    relative = Path(image_file)
    base = Path(root) / "masks" / relative.parent / relative.stem
    return base.with_name(base.name + "_cue.png"), base.with_name(base.name + "_occ.png")


def _prepare_output(out_dir):
    """Clear what a previous write_synth left, but refuse to touch a directory that holds anything else."""
    out_dir = Path(out_dir)
    ours = {"manifest.json", "masks", *SPLITS}
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(out_dir, "output path exists and is not a directory")
        # A ".manifest.json.*.tmp" is what an interrupted write_json leaves behind.
        foreign = sorted(entry.name for entry in out_dir.iterdir()
                         if entry.name not in ours and not entry.name.startswith(".manifest.json."))
        if foreign:
            raise DataError(out_dir, f"not empty and not a SynthFER directory (found {', '.join(foreign[:3])})")
        for entry in out_dir.glob(".manifest.json.*"):
            entry.unlink()
        (out_dir / "manifest.json").unlink(missing_ok=True)
        for name in ours - {"manifest.json"}:
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _expression_table(cues):
    """The cue design's table, as the manifest records it."""
    if cues == "exclusive":
        return {name: {r: list(c) for r, c in table.items()} for name, table in EXPRESSIONS.items()}
    return {name: {r: {"cues": list(c), "probability": chance} for r, (c, chance) in table.items()}
            for name, table in REDUNDANT.items()}


def write_synth(out_dir, train, test, size=64, seed=0, cues="redundant", progress=None):
    """Render the three splits to an ImageFolder-style directory; the manifest is written last, atomically.

    ``progress``, if given, is called as ``progress(done, total)`` after every image. Returns the manifest.
    """
    counts = {"train": train, "test": test, "test_wild": test}
    if any(not isinstance(n, int) or n < 0 for n in counts.values()):
        raise DataError(out_dir, f"sample counts must be integers >= 0, got train={train!r} test={test!r}")
    _check_settings(seed, size)
    _check_design(cues)
    out_dir = _prepare_output(out_dir)
    total, done = sum(counts.values()), 0
    manifest = {"format": FORMAT, "version": VERSION, "seed": seed, "size": size, "classes": CLASSES,
                "cue_design": cues, "expressions": _expression_table(cues), "splits": {}}
    for split, count in counts.items():
        records = []
        for index in range(count):
            sample = render_sample(seed, split, index, size, cues)
            file = f"{split}/{CLASSES[sample.label]}/{index:06d}.png"
            _save_sample(out_dir, file, sample)
            records.append({"file": file, "label": sample.label, "cues": sample.cues,
                            "intensity": {r: round(t, 4) for r, t in sample.intensity.items()},
                            "occluder": sample.occluder, "occluded_region": sample.occluded_region})
            done += 1
            if progress is not None:
                progress(done, total)
        class_counts = {name: sum(r["label"] == i for r in records) for i, name in enumerate(CLASSES)}
        manifest["splits"][split] = {"count": count, "class_counts": class_counts, "images": records}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _save_sample(root, file, sample):
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    sample.image.save(path, compress_level=1)
    cue_path, occ_path = _mask_paths(root, file)
    cue_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample.cue_mask).save(cue_path)
    Image.fromarray(sample.occluder_mask).save(occ_path)


def read_manifest(path):
    """The manifest of a SynthFER directory, checked enough that a half-written directory is refused."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(path, "not a SynthFER directory (no manifest.json); create one with write_synth")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(manifest_path, f"unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(manifest_path, f"not a SynthFER manifest (format is not {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise DataError(manifest_path, f"unsupported SynthFER version {manifest.get('version')!r}, expected {VERSION}")
    if not isinstance(manifest.get("splits"), dict) or not isinstance(manifest.get("classes"), list):
        raise DataError(manifest_path, "manifest lacks 'splits' or 'classes'")
    if manifest.setdefault("cue_design", "exclusive") not in CUE_DESIGNS:  # written before there was a choice
        raise DataError(manifest_path, f"unknown cue design {manifest['cue_design']!r}")
    return manifest


def _read_mask(path):
    if not path.is_file():
        raise DataError(path, "mask file is missing")
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L")) > 127
    except OSError as e:
        raise DataError(path, f"cannot read mask ({e})") from None


class SynthFER(FERDataset):
    """A split of a directory written by ``write_synth``; ``samples`` are ``(image path, label)``.

    ``cue_design`` is the manifest's (``exclusive`` for directories written before there was a choice).
    """

    def __init__(self, path, split, transform=None):
        self.root = Path(path)
        manifest = read_manifest(self.root)
        if split not in manifest["splits"]:
            have = ", ".join(manifest["splits"]) or "none"
            raise DataError(self.root / str(split), f"no split {split!r} in this SynthFER directory (has {have})")
        if not (self.root / split).is_dir() and manifest["splits"][split]["count"] > 0:
            raise DataError(self.root / split, "split directory is missing")
        self.split, self.cue_design = split, manifest["cue_design"]
        self.records = manifest["splits"][split]["images"]
        samples = [(self.root / record["file"], int(record["label"])) for record in self.records]
        super().__init__("synthfer", manifest["classes"], samples, transform)

    @classmethod
    def splits(cls, path):
        """The splits of the directory that hold at least one image."""
        return [split for split, entry in read_manifest(path)["splits"].items() if entry["count"] > 0]

    def load_image(self, index):
        path = self.samples[index][0]
        if not path.is_file():
            raise DataError(path, "image file is missing")
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as e:
            raise DataError(path, f"cannot read image ({e})") from None

    def cue_mask(self, index):
        return _read_mask(_mask_paths(self.root, self.records[index]["file"])[0])

    def occluder_mask(self, index):
        return _read_mask(_mask_paths(self.root, self.records[index]["file"])[1])

    def occluded_region(self, index):
        """The region test_wild image ``index`` hides; None outside test_wild and in directories that predate it."""
        return self.records[index].get("occluded_region")


class SynthFERMemory(FERDataset):
    """The same samples as ``write_synth`` would write, rendered on demand; ``samples`` are ``(index, label)``."""

    def __init__(self, n, split="train", size=64, seed=0, transform=None, cues="redundant"):
        _check_split(split)
        _check_settings(seed, size)
        _check_design(cues)
        self.split, self.size, self.seed, self.cue_design = split, size, seed, cues
        self._last = (None, None)
        super().__init__("synthfer", CLASSES, [(i, label_of(seed, split, i)) for i in range(n)], transform)

    def sample(self, index):
        """The full ``SynthSample``; the last one is kept so image and masks of one index render once."""
        if self._last[0] != index:
            rendered = render_sample(self.seed, self.split, self.samples[index][0], self.size, self.cue_design)
            self._last = (index, rendered)
        return self._last[1]

    def load_image(self, index):
        return self.sample(index).image

    def cue_mask(self, index):
        return self.sample(index).cue_mask

    def occluder_mask(self, index):
        return self.sample(index).occluder_mask

    def occluded_region(self, index):
        """Known without drawing, so evaluation can group by it cheaply."""
        return occluded_region(self.seed, self.samples[index][0]) if self.split == "test_wild" else None

"""Where a teacher's attack points land over many faces of a data set, per class: the app's Data set atlas.

Faces are attacked batch by batch into running sums (``Atlas``): a density of points over the face,
the share of points per facial region, how often the attack flipped the teacher and the average face.
Region names come from SynthFER's fixed layout, the face mesh, or a thirds grid where no mesh fits.
"""
import math
from collections import Counter

import numpy as np
import torch
from PIL import Image

from . import faces
from .attack import AttackConfig
from .emotions import class_mapping
from .errors import PasmError
from .explorer import point_regions
from .mining import PasmRegions
from .report import to_uint8
from .threads import one_thread

# Data set images are upscaled to this side before the face mesh looks at them.
MESH_INPUT_SIZE = 192
GRID_REGIONS = ("brows/eyes", "nose", "mouth")
LAYOUT_SYNTH = "SynthFER layout"
LAYOUT_MESH = "face mesh"
LAYOUT_GRID = "thirds grid"


def synth_layout(size):
    """Facial regions of SynthFER's canonical face (pose jitter ignored), as ids into ``pasm.faces.REGIONS``.

    The bands are in the generator's face units (1 = half the face width, v down, the face centre a
    little above the image centre; see pasm.data.synth._Painter) and were set so that SynthFER's own cue
    masks fall in the regions their cues name.
    """
    centres = (np.arange(size) + 0.5) / size
    x, y = np.meshgrid(centres, centres)
    u, v = (x - 0.5) / 0.295, (y - 0.46) / 0.295
    across = np.abs(u)
    region = faces.REGIONS.index
    face = u**2 + (v / 1.3) ** 2 <= 1.05
    ids = np.zeros((size, size), dtype=np.uint8)
    ids[face] = region("cheeks")
    ids[face & (v < -0.7)] = region("forehead")
    ids[face & (v >= 1.05)] = region("jaw")
    ids[face & (v >= -0.7) & (v < -0.25) & (across < 0.8)] = region("brows")
    ids[face & (v >= -0.25) & (v < 0.12) & (across >= 0.12) & (across < 0.75)] = region("eyes")
    bridge = (v >= -0.15) & (v < 0.12) & (across < 0.12)
    ids[face & (bridge | ((v >= 0.12) & (v < 0.45) & (across < 0.4)))] = region("nose")
    ids[face & (v >= 0.45) & (v < 1.05) & (across < 0.7)] = region("mouth")
    return ids


def grid_layout(size):
    """The coarse fallback where no mesh fits: upper third brows/eyes, middle nose, lower mouth (GRID_REGIONS ids)."""
    rows = np.minimum((np.arange(size) * 3) // size, 2).astype(np.uint8)
    return np.repeat(rows[:, None], size, axis=1)


class Atlas:
    """Running sums over attacked data set faces, per class: where the points land, in which regions,
    how often the attack flipped the teacher, and the average face (the density maps' backdrop).

    A face the teacher already gets wrong "flips" after 0 points; it is counted apart, so the flip rate
    and the points needed describe the attack, not the teacher's errors.
    """

    def __init__(self, classes, size):
        self.classes = list(classes)
        self.size = size
        count = len(self.classes)
        self.points = np.zeros((count, size, size))
        self.face_sum = np.zeros((count, size, size, 3))
        self.faces = np.zeros(count, dtype=int)
        self.flipped = np.zeros(count, dtype=int)
        self.already_wrong = np.zeros(count, dtype=int)
        self.points_to_flip = np.zeros(count)
        self.regions = [Counter() for _ in self.classes]
        self.layouts = Counter()

    def add(self, images, groups, result, names):
        """``images`` HxWx3 uint8 per face, ``groups`` their class indices, ``names`` region names per point."""
        for i, (image, group) in enumerate(zip(images, groups)):
            sample = result.sample(i)
            for x, y in sample["points"]:
                self.points[group, y, x] += 1
            self.face_sum[group] += image
            self.faces[group] += 1
            if sample["points_to_flip"] == 0:
                self.already_wrong[group] += 1
            elif sample["flipped"]:
                self.flipped[group] += 1
                self.points_to_flip[group] += sample["points_to_flip"]
            self.regions[group].update(names[i])

    def density(self, group=None, sigma=None):
        """Points per face per pixel (smoothed by a Gaussian of ``sigma`` px, default 1.5 % of the side)."""
        points = self.points.sum(0) if group is None else self.points[group]
        faces = self.faces.sum() if group is None else self.faces[group]
        sigma = self.size * 0.015 if sigma is None else sigma
        return smooth(points, sigma) / max(int(faces), 1)

    def mean_face(self, group=None):
        total = self.face_sum.sum(0) if group is None else self.face_sum[group]
        faces = self.faces.sum() if group is None else self.faces[group]
        return np.round(total / max(int(faces), 1)).astype(np.uint8)

    def shares(self):
        """``{class: {region: share of that class's points}}`` for the classes that have faces."""
        out = {}
        for name, counter, faces in zip(self.classes, self.regions, self.faces):
            total = sum(counter.values())
            if faces:
                out[name] = {region: n / total for region, n in counter.items()} if total else {}
        return out

    def class_rows(self):
        rows = []
        for i, name in enumerate(self.classes):
            attacked = self.faces[i] - self.already_wrong[i]
            if self.faces[i]:
                rows.append({"class": name, "faces": int(self.faces[i]), "already wrong": int(self.already_wrong[i]),
                             "points": int(self.points[i].sum()),
                             "flip rate": round(self.flipped[i] / attacked, 3) if attacked else None,
                             "mean points to flip": round(self.points_to_flip[i] / self.flipped[i], 2)
                             if self.flipped[i] else None})
        return rows


def smooth(values, sigma):
    """Separable Gaussian blur with zero padding: a few hundred points become a readable density."""
    if sigma <= 0:
        return np.asarray(values, dtype=float)
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    rows = np.apply_along_axis(np.convolve, 1, np.asarray(values, dtype=float), kernel, mode="same")
    return np.apply_along_axis(np.convolve, 0, rows, kernel, mode="same")


def region_names(images, points_per_image, synth):
    """Region names of each image's points, and how they were found (one layout name per image).

    SynthFER faces share one geometry, so its fixed layout is used; other data sets get the face mesh
    on an upscaled copy of each image, and the thirds grid where the mesh finds no face.
    """
    size = images[0].shape[0]
    if synth:
        layout = synth_layout(size)
        return ([faces.regions_of_points(layout, np.asarray(p, dtype=float).reshape(-1, 2) + 0.5)
                 for p in points_per_image], [LAYOUT_SYNTH] * len(images))
    names, used = [], []
    for image, points in zip(images, points_per_image):
        big = np.asarray(Image.fromarray(image).resize((MESH_INPUT_SIZE, MESH_INPUT_SIZE), Image.BICUBIC))
        landmarks = faces.face_landmarks(big)
        if landmarks is not None:
            names.append(point_regions(faces.region_map(landmarks, MESH_INPUT_SIZE), points, size))
            used.append(LAYOUT_MESH)
        else:
            grid = grid_layout(size)
            centres = np.asarray(points, dtype=float).reshape(-1, 2) + 0.5
            names.append([GRID_REGIONS[grid[int(y), int(x)]] for x, y in centres])
            used.append(LAYOUT_GRID)
    return names, used


def label_map(dataset_classes, teacher_classes):
    """``(labels, note)``: data set label -> teacher class index, matched by name or emotion alias in any order
    (pasm.emotions: RAF-DB's ``anger`` is FER2013's ``angry``), and the mapping used, for a caption.

    ``(None, why)`` when the teacher has no class for one of the data set's: faces are then grouped by prediction.
    """
    try:
        mapping = class_mapping(teacher_classes, dataset_classes, source="the teacher")
    except PasmError as e:
        return None, e.why
    return mapping.indices, mapping.description


def map_dataset(teacher, dataset, indices, max_points=20, batch_size=32, labels=None, synth=False, device="cpu"):
    """Attack ``dataset[indices]`` batch by batch into an ``Atlas``; yields ``(atlas, faces done)`` after each batch.

    ``dataset`` yields model-ready tensors (eval_transform of the teacher's input spec). With ``labels``
    (``label_map``'s list) the attack pushes away from the true class and faces are grouped by it;
    without (a data set whose classes the teacher does not know) by the teacher's own prediction.
    """
    pasm = PasmRegions(teacher.model, AttackConfig(max_points=int(max_points)))
    atlas = Atlas(teacher.classes, teacher.model.input_spec.size)
    with one_thread():
        for start in range(0, len(indices), batch_size):
            batch = indices[start:start + batch_size]
            _map_batch(pasm, atlas, [dataset[i] for i in batch], labels, synth, device)
            yield atlas, start + len(batch)


def _map_batch(pasm, atlas, samples, labels, synth, device):
    images = torch.stack([image for image, _ in samples]).to(device)
    targets = torch.tensor([labels[label] for _, label in samples], device=device) if labels is not None else None
    result = pasm.locate(images, targets).attack.to("cpu")
    pictures = [to_uint8(image) for image in images]
    points = [result.sample(i)["points"] for i in range(len(samples))]
    names, used = region_names(pictures, points, synth)
    atlas.add(pictures, result.labels.tolist(), result, names)
    atlas.layouts.update(used)

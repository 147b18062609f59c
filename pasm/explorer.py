"""One face explored: what the teacher (and a student) predicts, the teacher's point attack on it, and
PASM's erasing beside random and attention erasing of the same area on this face (the baselines take the
pixel count of PASM's region, see pasm.mining), as the app's Attack explorer shows it.

Everything returned is numpy, plain Python or JSON-ready, so the app can keep it in session state and
the tests can check it without a page.
"""
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import faces
from .attack import AttackConfig
from .erasing import SaliencyMap
from .mining import RegionConfig, probabilities
from .report import crops_to_tensor, face_reports, to_uint8
from .threads import one_thread

ERASINGS = ("pasm", "random", "attention")
# Face mesh needs more pixels than a model input has: regions are looked up on a crop this big.
REGION_CROP_SIZE = 256


@dataclass
class AttackSettings:
    """What a person sets for an attack: its budget and patch, and how the region is located and erased.

    ``max_points`` None (the default) attacks until the prediction flips, as the paper does, under the
    cap ``pasm.attack.flip_cap`` sets for the teacher's input size; a number is a fixed budget.
    """

    max_points: int | None = None
    patch: int = 1
    strategy: str = "densest"
    area: float = 0.1
    adaptive: bool = False
    fill: str = "mean"

    def attack_config(self):
        budget = None if self.max_points is None else int(self.max_points)
        return AttackConfig(max_points=budget, patch=int(self.patch))

    def region_config(self):
        return RegionConfig(strategy=self.strategy, area=float(self.area), adaptive=bool(self.adaptive), fill=self.fill)

    def to_dict(self):
        return asdict(self)


def predict(checkpoint, crop, device="cpu"):
    """``{class: probability}`` of one model on one face crop (HxWx3 uint8)."""
    with one_thread():
        images = crops_to_tensor([crop], checkpoint.model.input_spec, device)
        probs = probabilities(checkpoint.model, images)[0]
    return {name: float(p) for name, p in zip(checkpoint.classes, probs)}


def model_view(checkpoint, crop):
    """The crop as the model receives it (its size, and grey for a one-channel model), for display."""
    return to_uint8(crops_to_tensor([crop], checkpoint.model.input_spec)[0])


def face_region_map(photo, face):
    """A REGION_CROP_SIZE map of facial regions for the face (None: whole image), or None if no mesh fits.

    The crop is aligned exactly like the model's crop, only bigger, so a point in the model's crop maps
    to this map by a plain scale factor.
    """
    aligned = faces.align_face(photo, face, REGION_CROP_SIZE)
    landmarks = faces.face_landmarks(aligned.crop)
    return None if landmarks is None else faces.region_map(landmarks, REGION_CROP_SIZE)


def point_regions(region_map, points, size):
    """Region names under attack points given as pixel indices of a ``size`` crop; None without a map."""
    if region_map is None:
        return None
    if not len(points):
        return []
    scale = region_map.shape[0] / size
    centres = (np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5) * scale
    return faces.regions_of_points(region_map, centres)


def analyse_face(teacher, aligned, settings, student=None, region_map=None, device="cpu", seed=0):
    """Everything the explorer shows for one face, from one ``pasm.report.face_reports`` call: the masks
    shown are the ones the library located and erased."""
    start = time.perf_counter()
    with one_thread():
        reports, extras = face_reports(
            teacher.model, teacher.classes, [aligned], settings.attack_config(), settings.region_config(),
            student=student.model if student else None, student_classes=student.classes if student else None,
            device=device, seed=seed)
        report, images, located = reports[0], extras["images"], extras["located"]
        saliency = SaliencyMap(teacher.model).attribute(images, located["pasm"].attack.labels)
    return {
        "report": report,
        "settings": settings.to_dict(),
        "classes": list(teacher.classes),
        "student_classes": list(student.classes) if student else None,
        "crop": to_uint8(images[0]),
        "masks": {name: located[name].masks[0, 0].cpu().numpy() for name in ERASINGS},
        "erased": {name: to_uint8(extras["erased"][name][0]) for name in ERASINGS},
        "maps": {"Grad-CAM": located["attention"].cam[0, 0].cpu().numpy(), "saliency": saliency[0, 0].cpu().numpy()},
        "point_regions": point_regions(region_map, report["points_crop"], images.shape[-1]),
        "seconds": time.perf_counter() - start,
    }


def result_json(result, image_name, teacher_path, student_path=None):
    """The download: the report plus what produced it, so a result can be traced and redone."""
    document = {
        "image": image_name,
        "teacher": str(teacher_path),
        "student": str(student_path) if student_path else None,
        "settings": result["settings"],
        "classes": result["classes"],
        "point_regions": result["point_regions"],
        **result["report"],
    }
    return json.dumps(document, indent=2)


def erasing_rows(result):
    """One table row per erasing method: the share of the face it erased (the same for all three), and the
    teacher's (and student's) prediction after it and the confidence lost."""
    report = result["report"]
    rows = []
    for name in ERASINGS:
        entry = report["erasing"][name]
        row = {"erasing": name, "erased area": f"{entry['area']:.1%}",
               "teacher prediction": _label_with_confidence(entry["prediction"]),
               "teacher confidence drop": round(entry["confidence_drop"], 3)}
        if "student" in report:
            student_entry = report["student"]["erasing"][name]
            row["student prediction"] = _label_with_confidence(student_entry["prediction"])
            row["student confidence drop"] = round(student_entry["confidence_drop"], 3)
        rows.append(row)
    return rows


def _label_with_confidence(prediction):
    return f"{prediction['label']} ({prediction['probs'][prediction['label']]:.2f})"

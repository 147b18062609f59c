"""PASM on aligned face crops, reported per face in photo coordinates.

The CLI's ``attack`` command and the app both call ``face_reports``: faces are found and aligned
by pasm.faces, then the teacher attacks all crops in one batch, and every result is mapped back
onto the photo through each crop's affine matrix. "The photo" is the array pasm.images.read_image
returned: for a photo over its working size that is the reduced image, not the file's pixels.

A single face is attacked until its prediction flips, as in the paper, under a cap that grows with
the input (``pasm.attack.flip_cap``); pass an AttackConfig with ``max_points`` for a fixed budget.
"""
import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import rgb_to_grayscale

from .attack import AttackConfig
from .data.transforms import eval_transform
from .erasing import erase
from .mining import AttentionRegions, PasmRegions, RandomRegions, RegionConfig, probabilities


def crops_to_tensor(crops, input_spec, device="cpu"):
    transform = eval_transform(input_spec)
    return torch.stack([transform(Image.fromarray(np.asarray(c))) for c in crops]).to(device)


def _prediction(probs, classes):
    return {"label": classes[int(probs.argmax())], "probs": {c: round(float(p), 6) for c, p in zip(classes, probs)}}


def _erasing_entry(model, classes, clean_probs, erased_images):
    """The model's prediction after erasing, and how much the originally predicted class lost."""
    probs = probabilities(model, erased_images)
    predicted = clean_probs.argmax(1)
    drops = clean_probs.gather(1, predicted[:, None]) - probs.gather(1, predicted[:, None])
    return [{"prediction": _prediction(p, classes), "confidence_drop": round(float(d), 6)} for p, d in zip(probs, drops)]


def _crop_bounds_in_photo(aligned):
    """The analysed area as an axis-aligned box in the photo: every reported point lies inside it."""
    corners = np.asarray(_box_corners_to_photo(aligned, [0, 0, aligned.size, aligned.size]))
    return [round(float(v), 2) for v in (*corners.min(0), *corners.max(0))]


def _box_corners_to_photo(aligned, box):
    x0, y0, x1, y1 = [float(v) for v in box]
    corners = aligned.to_photo([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return [[round(float(x), 2), round(float(y), 2)] for x, y in corners]


def face_reports(teacher, classes, aligned_faces, attack_config=None, region_config=None, student=None,
                 student_classes=None, device="cpu", seed=0):
    """One report per aligned face: prediction, attack points, region and the three erasings."""
    region_config = region_config or RegionConfig()
    attack_config = attack_config or AttackConfig(max_points=None)
    images = crops_to_tensor([a.crop for a in aligned_faces], teacher.input_spec, device)
    clean = probabilities(teacher, images)
    labels = clean.argmax(1)
    generator = torch.Generator(device=device).manual_seed(seed)
    located = {"pasm": PasmRegions(teacher, attack_config, region_config).locate(images, labels),
               "random": RandomRegions(region_config, generator).locate(images, labels),
               "attention": AttentionRegions(teacher, region_config).locate(images, labels)}
    erased = {name: erase(images, found.masks, region_config.fill, generator=generator) for name, found in located.items()}
    pasm = located["pasm"]
    teacher_after = {k: _erasing_entry(teacher, classes, clean, v) for k, v in erased.items()}
    if student is not None:
        student_images = crops_to_tensor([a.crop for a in aligned_faces], student.input_spec, device)
        student_clean = probabilities(student, student_images)
        student_after = {k: _erasing_entry(student, student_classes, student_clean, _match(v, student))
                         for k, v in erased.items()}
    reports = []
    for i, aligned in enumerate(aligned_faces):
        sample = pasm.attack.sample(i)
        centres = np.asarray(sample["points"], dtype=np.float64).reshape(-1, 2) + 0.5
        report = {
            "face_box": _crop_bounds_in_photo(aligned),
            "detection": {"box": [round(float(v), 2) for v in aligned.face.box], "score": round(float(aligned.face.score), 4)}
            if aligned.face else None,
            "prediction": _prediction(clean[i], classes),
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in aligned.to_photo(centres)] if len(centres) else [],
            "points_crop": sample["points"],
            "point_scores": sample["scores"],
            "flipped": sample["flipped"],
            "points_to_flip": sample["points_to_flip"],
            "max_points": attack_config.budget(*images.shape[-2:]),
            "trajectory": sample["trajectory"],
            "crop_size": int(images.shape[-1]),
            "region": {"box": pasm.boxes[i].tolist(), "polygon": _box_corners_to_photo(aligned, pasm.boxes[i]),
                       "area": float(pasm.masks[i].float().mean())},
            "erasing": {k: v[i] for k, v in teacher_after.items()},
        }
        if student is not None:
            report["student"] = {"prediction": _prediction(student_clean[i], student_classes),
                                 "erasing": {k: v[i] for k, v in student_after.items()}}
        reports.append(report)
    return reports, {"images": images, "located": located, "erased": erased}


def _match(images, model):
    """Erased teacher crops, resized and recoloured for a student whose input differs."""
    spec = model.input_spec
    if images.shape[1] != spec.channels:
        images = rgb_to_grayscale(images) if spec.channels == 1 else images.expand(-1, spec.channels, -1, -1)
    if images.shape[-1] != spec.size:
        images = torch.nn.functional.interpolate(images, size=(spec.size, spec.size), mode="bilinear", antialias=True)
    return images

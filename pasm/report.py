"""PASM on aligned face crops, reported per face in photo coordinates.

The CLI's ``attack`` command and the app both call ``face_reports``: faces are found and aligned
by pasm.faces, then the teacher attacks all crops in one batch, and every result is mapped back
onto the photo through each crop's affine matrix. "The photo" is the array pasm.images.read_image
returned: for a photo over its working size that is the reduced image, not the file's pixels.

A single face is attacked until its prediction flips, as in the paper, under a cap that grows with
the input (``pasm.attack.flip_cap``); pass an AttackConfig with ``max_points`` for a fixed budget.

``compare_generations`` reports every generation of a run as the teacher on the same faces, for the
app's Generations page.
"""
import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import rgb_to_grayscale

from .attack import AttackConfig
from .data.transforms import eval_transform
from .erasing import erase
from .errors import PasmError
from .mining import AttentionRegions, PasmRegions, RandomRegions, RegionConfig, probabilities
from .regions import box_iou, mask_iou


def crops_to_tensor(crops, input_spec, device="cpu"):
    transform = eval_transform(input_spec)
    return torch.stack([transform(Image.fromarray(np.asarray(c))) for c in crops]).to(device)


def to_uint8(image):
    """Any picture a report holds (a torch CxHxW in [0, 1], numpy HxW / HxWx1 / HxWx3, float in [0, 1] or
    uint8) as an HxWx3 uint8 array: the one form pages, figures and exports take."""
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


def _prediction(probs, classes):
    return {"label": classes[int(probs.argmax())], "probs": {c: round(float(p), 6) for c, p in zip(classes, probs)}}


def _erasing_entry(model, classes, clean_probs, erased_images, masks):
    """The model's prediction after erasing, how much the originally predicted class lost, and the fraction of
    the crop erased (equal across the methods of one face: see pasm.mining, ``like``)."""
    probs = probabilities(model, erased_images)
    predicted = clean_probs.argmax(1)
    drops = clean_probs.gather(1, predicted[:, None]) - probs.gather(1, predicted[:, None])
    areas = masks.float().mean((1, 2, 3))
    return [{"prediction": _prediction(p, classes), "confidence_drop": round(float(d), 6), "area": float(a)}
            for p, d, a in zip(probs, drops, areas)]


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
    """One report per aligned face: prediction, attack points, region and the three erasings, the baselines
    erasing as many pixels as PASM's region on each face."""
    region_config = region_config or RegionConfig()
    attack_config = attack_config or AttackConfig(max_points=None)
    images = crops_to_tensor([a.crop for a in aligned_faces], teacher.input_spec, device)
    clean = probabilities(teacher, images)
    labels = clean.argmax(1)
    generator = torch.Generator(device=device).manual_seed(seed)
    pasm = PasmRegions(teacher, attack_config, region_config).locate(images, labels)
    located = {"pasm": pasm, "random": RandomRegions(region_config, generator).locate(images, labels, like=pasm),
               "attention": AttentionRegions(teacher, region_config).locate(images, labels, like=pasm)}
    erased = {name: erase(images, found.masks, region_config.fill, generator=generator) for name, found in located.items()}
    teacher_after = {k: _erasing_entry(teacher, classes, clean, v, located[k].masks) for k, v in erased.items()}
    if student is not None:
        student_images = crops_to_tensor([a.crop for a in aligned_faces], student.input_spec, device)
        student_clean = probabilities(student, student_images)
        student_after = {k: _erasing_entry(student, student_classes, student_clean, _match(v, student),
                                           located[k].masks) for k, v in erased.items()}
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


# Generations of one run on the same faces


def sample_indices(length, count):
    """``count`` indices spread evenly over a data set: class-sorted folders still give every class."""
    count = max(0, min(int(count), length))
    if count == 0:
        return []
    return sorted({int(i) for i in np.linspace(0, length - 1, count).round()})


def dataset_faces(spec, count, size, split="test"):
    """``count`` faces spread over a split of a data set, as whole-image crops of side ``size``, and their labels.

    Data set images already are face crops, so they are used whole (pasm.faces.align_face with no face).
    """
    from .data import open_dataset
    from .faces import align_face  # pasm.faces needs mediapipe, the app's extra: imported only when asked

    dataset = open_dataset(spec, split)
    indices = sample_indices(len(dataset), count)
    if not indices:
        raise PasmError(spec, f"the {split} split has no images")
    faces = [align_face(np.asarray(dataset.load_image(i).convert("RGB")), None, size) for i in indices]
    labels = [dataset.classes[dataset.samples[i][1]] for i in indices]
    return faces, labels


def compare_generations(checkpoints, aligned_faces, attack_config=None, region_config=None, device="cpu", indices=None):
    """Every generation as the teacher on the same faces (``face_reports``), plus how much the region each one
    locates overlaps the previous generation's (mask and box IoU, per face).

    Plain lists and arrays come back, so the result can sit in the app's session state between reruns.
    """
    results, previous = [], None
    indices = list(range(len(checkpoints))) if indices is None else list(indices)
    for index, checkpoint in zip(indices, checkpoints):
        reports, extras = face_reports(checkpoint.model, checkpoint.classes, aligned_faces, attack_config,
                                       region_config, device=device)
        mined = extras["located"]["pasm"]
        entry = {"index": index, "classes": list(checkpoint.classes), "reports": reports,
                 "crops": [to_uint8(image) for image in extras["images"]],
                 "masks": mined.masks.cpu(), "boxes": mined.boxes.cpu(), "mask_iou": None, "box_iou": None}
        if previous is not None and previous["masks"].shape == entry["masks"].shape:
            entry["mask_iou"] = [round(float(v), 4) for v in mask_iou(previous["masks"], entry["masks"])]
            entry["box_iou"] = [round(float(v), 4) for v in box_iou(previous["boxes"], entry["boxes"])]
        results.append(entry)
        previous = entry
    for entry in results:
        entry["masks"] = entry["masks"][:, 0].numpy()
        entry["boxes"] = entry["boxes"].tolist()
    return results

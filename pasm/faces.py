"""Find faces in a photo, cut out an upright face crop, and name the face region under any crop pixel.

The only module that imports mediapipe (0.10.21, legacy ``mp.solutions`` API). Everything else is
PIL and numpy, so the geometry can be read and tested without knowing mediapipe.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` (column, row) covers ``[i, i+1) x [j, j+1)``,
so its centre is ``(i + 0.5, j + 0.5)``. Mediapipe's normalised outputs times the image size and PIL's
affine transform both use this convention, which keeps the photo <-> crop round trip exact.
"""
import functools
import math
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import mediapipe as mp
import numpy as np
from PIL import Image, ImageDraw

from pasm.errors import ImageError, NoFaceError

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
REGIONS = ("background", "forehead", "brows", "eyes", "nose", "cheeks", "mouth", "jaw")

# Mediapipe graphs are not safe to call from two threads at once (Streamlit runs sessions in threads).
_MEDIAPIPE_LOCK = threading.Lock()
# A face that fills the whole frame (a FER data set crop) is missed by the detectors; with a grey
# border around it, it is found. Border width as a fraction of the longer side, on each side.
_PAD_FRACTION = 0.5
_PAD_GREY = 128
# Detections of the same face by the short- and full-range models overlap at least this much.
_SAME_FACE_IOU = 0.4
# Each detection is confirmed by the face mesh on a crop this big (the explorer's region-map size): the detectors
# alone take a coffee cup seen from above for a face at 0.5-0.78, and the mesh finds no face there.
MESH_CHECK_SIZE = 256
# The smallest image side that can hold a face. Measured on the sample portrait scaled down whole: at 24 px its
# face (about 20 px) is found and meshed, at 16 px the mesh finds none, and at 8 px the detector still reports a
# "face" (score 0.53).
MIN_FACE_SIDE = 24


@dataclass
class Face:
    """One detected face in photo pixels; ``right_eye`` is the subject's right (left in a frontal photo)."""

    box: tuple
    score: float
    keypoints: dict


@dataclass
class AlignedFace:
    """A square face crop plus the affine map that made it, so crop results can be drawn on the photo."""

    crop: np.ndarray
    matrix: np.ndarray
    size: int
    face: Face | None = None

    def to_photo(self, points):
        """Nx2 crop coordinates -> Nx2 photo coordinates."""
        return _apply(_invert(self.matrix), points)

    def to_crop(self, points):
        """Nx2 photo coordinates -> Nx2 crop coordinates."""
        return _apply(self.matrix, points)


@contextmanager
def _mediapipe_call():
    """One thread in mediapipe at a time, with its native start-up chatter on stderr silenced
    (it would otherwise break the CLI's one-line error contract)."""
    with _MEDIAPIPE_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


# Detection


@functools.lru_cache(maxsize=8)
def _detector(model_selection, min_score):
    return mp.solutions.face_detection.FaceDetection(model_selection=model_selection, min_detection_confidence=min_score)


@functools.lru_cache(maxsize=1)
def _face_mesh():
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)


def detect_faces(image, min_score=0.5):
    """All faces in an HxWx3 uint8 RGB image, best score first.

    Runs both mediapipe models: short-range (0) finds large, close faces best, full-range (1) finds
    small faces in group photos. When both see the same face the higher-scoring box is kept. A
    detection counts only where the face mesh finds a face in its crop (``_meshed``): the detectors
    fire on round things with two dark spots (a cup and its saucer), the mesh does not.
    """
    image = _rgb_uint8(image)
    faces = _detect_both_models(image, min_score)
    if not faces:
        padded, offset = _pad_grey(image)
        faces = [_shift_face(face, -offset) for face in _detect_both_models(padded, min_score)]
    return [face for face in _drop_duplicates(faces) if _meshed(image, face)]


def _meshed(image, face):
    """Whether the face mesh finds a face in the detection's aligned crop."""
    return face_landmarks(align_face(image, face, MESH_CHECK_SIZE).crop) is not None


def check_face_size(image, name="image"):
    """Refuse an image too small to hold a face (ImageError), before any detector guesses at its few pixels."""
    height, width = np.asarray(image).shape[:2]
    if min(height, width) < MIN_FACE_SIDE:
        raise ImageError(name, f"{width}x{height} pixels is too small to hold a face "
                               f"(at least {MIN_FACE_SIDE} pixels on each side)")


def _detect_both_models(image, min_score):
    height, width = image.shape[:2]
    faces = []
    for model_selection in (0, 1):
        with _mediapipe_call():
            detections = _detector(model_selection, float(min_score)).process(image).detections or []
        faces.extend(_face_from_detection(d, width, height) for d in detections)
    return faces


def _face_from_detection(detection, width, height):
    box = detection.location_data.relative_bounding_box
    x0, y0 = box.xmin * width, box.ymin * height
    keypoints = {
        name: (point.x * width, point.y * height)
        for name, point in zip(KEYPOINT_NAMES, detection.location_data.relative_keypoints)
    }
    return Face((x0, y0, x0 + box.width * width, y0 + box.height * height), float(detection.score[0]), keypoints)


def _shift_face(face, offset):
    dx, dy = offset
    x0, y0, x1, y1 = face.box
    keypoints = {name: (x + dx, y + dy) for name, (x, y) in face.keypoints.items()}
    return Face((x0 + dx, y0 + dy, x1 + dx, y1 + dy), face.score, keypoints)


def _drop_duplicates(faces):
    kept = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(_iou(face.box, other.box) < _SAME_FACE_IOU for other in kept):
            kept.append(face)
    return kept


def _iou(a, b):
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _pad_grey(image):
    """The image inside a grey border, and the border's (x, y) offset in padded pixels."""
    pad = max(1, round(_PAD_FRACTION * max(image.shape[:2])))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=_PAD_GREY)
    return padded, np.array([pad, pad], dtype=np.float64)


def _rgb_uint8(image):
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    return image


# Alignment


def align_face(image, face, size, margin=0.25):
    """Rotate the eyes level and crop a square of side ``(1 + 2 * margin) * longer box side`` around the face.

    ``face=None`` gives the centre square of the whole image: the path for photos where no face is
    found, or for data set images that already are face crops.
    """
    image = _rgb_uint8(image)
    height, width = image.shape[:2]
    if face is None:
        centre, side, angle = (width / 2, height / 2), min(width, height), 0.0
    else:
        x0, y0, x1, y1 = face.box
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        angle = _eye_line_angle(face)
    matrix = _crop_matrix(centre, side, angle, size)
    return AlignedFace(_warp(image, matrix, size), matrix, size, face)


def _eye_line_angle(face):
    (rx, ry), (lx, ly) = face.keypoints["right_eye"], face.keypoints["left_eye"]
    return math.atan2(ly - ry, lx - rx)


def _crop_matrix(centre, side, angle, size):
    """2x3 photo -> crop map: rotate by ``-angle`` about ``centre``, scale ``side`` to ``size``, centre it."""
    scale = size / side
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[cos, sin], [-sin, cos]])
    shift = np.array([size / 2, size / 2]) - linear @ np.asarray(centre, dtype=np.float64)
    return np.hstack([linear, shift[:, None]])


def _warp(image, matrix, size):
    """Sample the crop with PIL's bilinear affine transform, box-reducing the photo first when shrinking.

    Bilinear sampling alone aliases when one crop pixel spans several photo pixels (a 4000 px
    photo into a 112 px crop); an integer box reduction first keeps the remaining scale below 2.
    """
    photo = Image.fromarray(image)
    inverse = _invert(matrix)
    photo_pixels_per_crop_pixel = math.sqrt(abs(np.linalg.det(inverse[:, :2])))
    factor = max(1, int(photo_pixels_per_crop_pixel))
    if factor > 1:
        photo = photo.reduce(factor)
        inverse = inverse / factor
    crop = photo.transform((size, size), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR)
    return np.asarray(crop)


def _invert(matrix):
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inverse, -(linear_inverse @ matrix[:, 2])[:, None]])


def _apply(matrix, points):
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def find_and_align(image, size, index=0, margin=0.25, allow_whole_image=False, min_score=0.5, name="image"):
    """Detect faces and align the ``index``-th best; ``(aligned, faces)``.

    With no face found this raises NoFaceError unless ``allow_whole_image``, in which case the
    centre square of the whole image is used and ``faces`` is empty. An image too small to hold a face
    is refused either way (``check_face_size``).
    """
    check_face_size(image, name)
    faces = detect_faces(image, min_score)
    if not faces:
        if not allow_whole_image:
            raise NoFaceError(name, "no face found (the whole image can be analysed instead)")
        return align_face(image, None, size, margin), faces
    if not 0 <= index < len(faces):
        raise ImageError(name, f"face {index} requested but {len(faces)} found (numbered from 0)")
    return align_face(image, faces[index], size, margin), faces


# Landmarks and regions


def face_landmarks(crop):
    """The 468 face-mesh points of the face in ``crop`` as (468, 2) crop pixels, or None if no mesh fits."""
    crop = _rgb_uint8(crop)
    points = _mesh_points(crop)
    if points is None:
        padded, offset = _pad_grey(crop)
        points = _mesh_points(padded)
        if points is not None:
            points = points - offset
    return points


def _mesh_points(image):
    height, width = image.shape[:2]
    with _mediapipe_call():
        found = _face_mesh().process(image).multi_face_landmarks
    if not found:
        return None
    return np.array([(p.x * width, p.y * height) for p in found[0].landmark], dtype=np.float64)


def _indices(connections):
    return sorted({i for edge in connections for i in edge})


def _part_indices():
    """Landmark index sets of each face part, taken from mediapipe's own contour definitions."""
    c = mp.solutions.face_mesh_connections
    return {
        "oval": _indices(c.FACEMESH_FACE_OVAL),
        "brows": [_indices(c.FACEMESH_LEFT_EYEBROW), _indices(c.FACEMESH_RIGHT_EYEBROW)],
        "eyes": [_indices(c.FACEMESH_LEFT_EYE), _indices(c.FACEMESH_RIGHT_EYE)],
        "nose": _indices(c.FACEMESH_NOSE),
        "mouth": _indices(c.FACEMESH_LIPS),
    }


def region_map(landmarks, size):
    """SxS uint8 map of region ids (indices into REGIONS) drawn from face-mesh landmarks in crop pixels.

    Forehead and jaw are the parts of the face oval above the brows and below the mouth, measured
    along the face's own vertical axis so a tilted head still gets a tilted forehead line. Eyes,
    brows and mouth are grown a little so a point just beside a brow still counts as brow.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    parts = _part_indices()
    eye_centres = [landmarks[eye].mean(axis=0) for eye in parts["eyes"]]
    brow_centre = landmarks[parts["brows"][0] + parts["brows"][1]].mean(axis=0)
    mouth_centre = landmarks[parts["mouth"]].mean(axis=0)
    down = _face_down_axis(eye_centres, mouth_centre)
    eye_distance = np.linalg.norm(eye_centres[0] - eye_centres[1])

    oval = _polygon_mask(_hull(landmarks[parts["oval"]]), size)
    above_brows, below_mouth = _half_planes(size, down, brow_centre, mouth_centre)
    ids = np.zeros((size, size), dtype=np.uint8)
    ids[oval] = REGIONS.index("cheeks")
    ids[oval & above_brows] = REGIONS.index("forehead")
    ids[oval & below_mouth] = REGIONS.index("jaw")

    canvas = Image.fromarray(ids)
    draw = ImageDraw.Draw(canvas)
    _draw_part(draw, landmarks[parts["nose"]], REGIONS.index("nose"), 0)
    _draw_part(draw, landmarks[parts["mouth"]], REGIONS.index("mouth"), 0.04 * eye_distance)
    for brow in parts["brows"]:
        _draw_part(draw, landmarks[brow], REGIONS.index("brows"), 0.08 * eye_distance)
    for eye in parts["eyes"]:  # the eye opening plus its lids
        _draw_part(draw, landmarks[eye], REGIONS.index("eyes"), 0.12 * eye_distance)
    return np.asarray(canvas).copy()


def regions_of_points(region_map, points):
    """Region names under Nx2 crop points; points outside the map are background."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = region_map.shape
    names = []
    for x, y in points:
        column, row = math.floor(x), math.floor(y)
        inside = 0 <= column < width and 0 <= row < height
        names.append(REGIONS[region_map[row, column]] if inside else "background")
    return names


def _face_down_axis(eye_centres, mouth_centre):
    """Unit vector perpendicular to the eye line, pointing from the eyes towards the mouth."""
    across = eye_centres[1] - eye_centres[0]
    down = np.array([-across[1], across[0]]) / np.linalg.norm(across)
    if down @ (mouth_centre - (eye_centres[0] + eye_centres[1]) / 2) < 0:
        down = -down
    return down


def _half_planes(size, down, brow_centre, mouth_centre):
    centres = np.arange(size) + 0.5
    xs, ys = np.meshgrid(centres, centres)
    depth = xs * down[0] + ys * down[1]
    return depth < down @ brow_centre, depth > down @ mouth_centre


def _polygon_mask(polygon, size):
    mask = Image.new("1", (size, size), 0)
    ImageDraw.Draw(mask).polygon(_pil_points(polygon), fill=1)
    return np.asarray(mask, dtype=bool)


def _draw_part(draw, points, region_id, grow):
    """Fill the convex hull of ``points``; trace its outline with a thick pen to grow it by ``grow`` px."""
    polygon = _pil_points(_hull(points))
    draw.polygon(polygon, fill=region_id)
    width = round(2 * grow)
    if width >= 1:
        draw.line(polygon + polygon[:1], fill=region_id, width=width, joint="curve")


def _pil_points(polygon):
    """ImageDraw puts pixel centres on integers; our coordinates put them on half-integers."""
    return [(float(x) - 0.5, float(y) - 0.5) for x, y in polygon]


def _hull(points):
    """Convex hull (Andrew's monotone chain), counter-clockwise, no repeated end point."""
    ordered = sorted(set(map(tuple, np.asarray(points, dtype=np.float64))))
    if len(ordered) < 3:
        return ordered

    def half(sequence):
        chain = []
        for p in sequence:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return half(ordered) + half(reversed(ordered))


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

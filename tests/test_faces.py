import math
from pathlib import Path

import numpy as np
import pytest
from mediapipe.python.solutions import face_mesh_connections as mesh
from PIL import Image, ImageDraw, ImageFilter

from pasm import faces as faces_module

from pasm.errors import ImageError, NoFaceError
from pasm.faces import (
    MIN_FACE_SIDE,
    REGIONS,
    Face,
    align_face,
    detect_faces,
    face_landmarks,
    find_and_align,
    region_map,
    regions_of_points,
)
from pasm.images import read_image

HOPPER = Path(__file__).resolve().parents[1] / "pasm" / "assets" / "grace_hopper.jpg"


def indices(connections):
    return sorted({i for edge in connections for i in edge})


LIPS = indices(mesh.FACEMESH_LIPS)
EYES = indices(mesh.FACEMESH_LEFT_EYE) + indices(mesh.FACEMESH_RIGHT_EYE)


@pytest.fixture(scope="module")
def photo():
    return read_image(HOPPER)


@pytest.fixture(scope="module")
def aligned(photo):
    return find_and_align(photo, 224)[0]


@pytest.fixture(scope="module")
def landmarks(aligned):
    return face_landmarks(aligned.crop)


def eye_centres(points):
    return points[indices(mesh.FACEMESH_RIGHT_EYE)].mean(axis=0), points[indices(mesh.FACEMESH_LEFT_EYE)].mean(axis=0)


def box_centre(face):
    x0, y0, x1, y1 = face.box
    return (x0 + x1) / 2, (y0 + y1) / 2


# Detection


def test_one_face_with_plausible_box(photo):
    faces = detect_faces(photo)
    assert len(faces) == 1
    face = faces[0]
    height, width = photo.shape[:2]
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert 0.2 * width < x1 - x0 < 0.6 * width
    assert 0.5 < face.score <= 1
    points = face.keypoints
    assert set(points) == {"right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear"}
    assert points["right_eye"][0] < points["nose_tip"][0] < points["left_eye"][0]  # subject's right is image left
    assert points["left_eye"][1] < points["nose_tip"][1] < points["mouth_center"][1]
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in (points["nose_tip"], points["mouth_center"]))


def test_two_faces_side_by_side(photo):
    faces = detect_faces(np.concatenate([photo, photo], axis=1))
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    width = photo.shape[1]
    assert sorted(box_centre(face)[0] > width for face in faces) == [False, True]


def test_face_filling_the_frame_is_found(photo):
    """A tight, small grey face crop, as in FER data sets."""
    cx, cy = box_centre(detect_faces(photo)[0])
    half = 80
    tight = Image.fromarray(photo[round(cy) - half : round(cy) + half, round(cx) - half : round(cx) + half])
    small = np.asarray(tight.convert("L").resize((48, 48), Image.Resampling.BILINEAR).convert("RGB"))
    faces = detect_faces(small)
    assert len(faces) == 1
    x, y = box_centre(faces[0])
    assert 12 < x < 36 and 12 < y < 36


def test_blank_image_has_no_face():
    blank = np.full((240, 320, 3), 200, dtype=np.uint8)
    assert detect_faces(blank) == []
    assert face_landmarks(blank) is None
    with pytest.raises(NoFaceError) as info:
        find_and_align(blank, 64, name="blank.png")
    assert "blank.png" in str(info.value) and "no face" in str(info.value)


def coffee_cup():
    """A cup of coffee on its saucer seen from above, with milk foam: mediapipe's face detectors call it a face
    (0.78 once the grey border is added), as they did a photo of a cup on a table."""
    cup = Image.new("RGB", (200, 200), (118, 118, 118))
    draw = ImageDraw.Draw(cup)
    draw.ellipse([34, 5, 204, 141], fill=(4, 177, 221))  # saucer
    draw.ellipse([55, 9, 183, 137], fill=(240, 240, 235))  # cup
    draw.ellipse([72, 26, 166, 120], fill=(94, 40, 20))  # coffee
    for x, y, r, colour in ((140, 106, 10, (169, 220, 195)), (98, 127, 11, (22, 86, 73)), (129, 127, 5, (65, 116, 247))):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)  # foam
    draw.rectangle([183, 65, 203, 81], fill=(240, 240, 235))  # handle
    return np.asarray(cup.filter(ImageFilter.GaussianBlur(1.104)))


def test_a_coffee_cup_the_detectors_take_for_a_face_is_refused_by_the_mesh(monkeypatch):
    cup = coffee_cup()
    assert detect_faces(cup) == []
    with pytest.raises(NoFaceError) as info:
        find_and_align(cup, 64, name="cup.png")
    assert "cup.png" in str(info.value) and "no face" in str(info.value)
    monkeypatch.setattr(faces_module, "_meshed", lambda image, face: True)
    assert [face.score > 0.5 for face in detect_faces(cup)] == [True], "the detectors alone took it for a face"


@pytest.mark.parametrize("side", [8, 16])
def test_an_image_too_small_to_hold_a_face_is_refused_with_its_size(photo, side):
    tiny = np.asarray(Image.fromarray(photo).resize((side, side), Image.Resampling.BILINEAR))
    for allow_whole_image in (False, True):
        with pytest.raises(ImageError) as info:
            find_and_align(tiny, 64, allow_whole_image=allow_whole_image, name="tiny.png")
        assert not isinstance(info.value, NoFaceError)
        assert str(info.value) == (f"tiny.png: {side}x{side} pixels is too small to hold a face "
                                   f"(at least {MIN_FACE_SIDE} pixels on each side)")
    assert detect_faces(tiny) == [], "nor does the detector find one (at 8 px it reported 0.53 before the mesh check)"


def test_the_portrait_scaled_to_the_smallest_side_still_holds_its_face(photo):
    small = np.asarray(Image.fromarray(photo).resize((MIN_FACE_SIDE, MIN_FACE_SIDE), Image.Resampling.BILINEAR))
    aligned, found = find_and_align(small, 48)
    assert len(found) == 1 and aligned.face is found[0]


def test_whole_image_fallback_is_the_centre_square():
    height, width = 60, 100
    gradient = np.tile(np.linspace(0, 255, width).astype(np.uint8)[None, :, None], (height, 1, 3))
    aligned, faces = find_and_align(gradient, 30, allow_whole_image=True)
    assert faces == [] and aligned.face is None
    assert aligned.crop.shape == (30, 30, 3) and aligned.crop.dtype == np.uint8
    np.testing.assert_allclose(aligned.to_photo([[0, 0], [30, 30]]), [[20, 0], [80, 60]], atol=1e-9)
    expected_columns = np.asarray(Image.fromarray(gradient[:, 20:80]).resize((30, 30), Image.Resampling.BILINEAR))
    assert np.abs(aligned.crop.astype(int) - expected_columns.astype(int)).max() <= 3


def test_face_index_out_of_range(photo):
    with pytest.raises(ImageError) as info:
        find_and_align(photo, 64, index=1, name="hopper.jpg")
    assert "hopper.jpg" in str(info.value) and "1 found" in str(info.value)


# Alignment geometry


def tilted_face(centre, box_side, degrees):
    """A Face whose eyes lie on a line tilted by ``degrees``, as if a detector had found it."""
    cx, cy = centre
    dx, dy = 0.2 * box_side * math.cos(math.radians(degrees)), 0.2 * box_side * math.sin(math.radians(degrees))
    half = box_side / 2
    keypoints = {"right_eye": (cx - dx, cy - dy), "left_eye": (cx + dx, cy + dy)}
    return Face((cx - half, cy - half, cx + half, cy + half), 0.9, keypoints)


@pytest.mark.parametrize(
    "photo_side, box_side, crop_size, dot_radius",
    [(200, 80, 64, 1), (2000, 1000, 32, 20)],  # the second shrinks 47x: box-reduced before sampling
)
def test_crop_pixels_land_where_the_matrix_says(photo_side, box_side, crop_size, dot_radius):
    image = np.zeros((photo_side, photo_side, 3), dtype=np.uint8)
    dot = np.array([0.55 * photo_side, 0.45 * photo_side])
    column, row = dot.astype(int)
    image[row - dot_radius : row + dot_radius + 1, column - dot_radius : column + dot_radius + 1] = 255
    face = tilted_face((photo_side / 2, photo_side / 2), box_side, degrees=25)
    aligned = align_face(image, face, crop_size, margin=0.25)
    assert aligned.crop.shape == (crop_size, crop_size, 3) and aligned.crop.dtype == np.uint8
    brightness = aligned.crop[:, :, 0].astype(float)
    ys, xs = np.mgrid[:crop_size, :crop_size] + 0.5
    seen = np.array([(xs * brightness).sum(), (ys * brightness).sum()]) / brightness.sum()
    np.testing.assert_allclose(seen, aligned.to_crop([dot + 0.5])[0], atol=1.0)


def test_matrix_round_trip_and_scale():
    face = tilted_face((150, 120), 100, degrees=-30)
    aligned = align_face(np.zeros((240, 300, 3), dtype=np.uint8), face, 50, margin=0.25)
    points = np.random.default_rng(0).uniform(-50, 350, (20, 2))
    np.testing.assert_allclose(aligned.to_photo(aligned.to_crop(points)), points, atol=1e-9)
    corners = aligned.to_photo([[0, 0], [50, 0], [50, 50]])
    assert np.linalg.norm(corners[1] - corners[0]) == pytest.approx(150)  # (1 + 2 * 0.25) * box side
    np.testing.assert_allclose(aligned.to_crop([face.keypoints["right_eye"], face.keypoints["left_eye"]])[:, 1], [25, 25])


def test_alignment_levels_the_eyes_of_a_tilted_photo(photo):
    tilted = np.asarray(Image.fromarray(photo).rotate(20, expand=True, fillcolor=(255, 255, 255)))
    aligned, faces = find_and_align(tilted, 160)
    assert len(faces) == 1 and aligned.crop.shape == (160, 160, 3)
    right, left = eye_centres(face_landmarks(aligned.crop))
    assert right[0] < left[0]
    assert abs(left[1] - right[1]) < 0.03 * 160
    photo_right, photo_left = eye_centres(aligned.to_photo(face_landmarks(aligned.crop)))
    tilt = math.degrees(math.atan2(photo_left[1] - photo_right[1], photo_left[0] - photo_right[0]))
    assert -35 < tilt < -15  # PIL rotates counter-clockwise: the right-hand eye rises by about 20 degrees


# Landmarks and regions


def test_landmarks_inside_the_crop(landmarks):
    assert landmarks.shape == (468, 2)
    assert landmarks.min() > 0 and landmarks.max() < 224


def test_region_map_names_every_pixel(landmarks):
    regions = region_map(landmarks, 224)
    assert regions.shape == (224, 224) and regions.dtype == np.uint8
    assert set(np.unique(regions)) == set(range(len(REGIONS)))


def test_landmark_parts_fall_in_their_regions(landmarks):
    regions = region_map(landmarks, 224)
    assert set(regions_of_points(regions, landmarks[LIPS])) == {"mouth"}
    assert set(regions_of_points(regions, landmarks[EYES])) == {"eyes"}
    brows = indices(mesh.FACEMESH_LEFT_EYEBROW) + indices(mesh.FACEMESH_RIGHT_EYEBROW)
    assert set(regions_of_points(regions, landmarks[brows])) == {"brows"}
    nose_centre = landmarks[indices(mesh.FACEMESH_NOSE)].mean(axis=0)
    oval = landmarks[indices(mesh.FACEMESH_FACE_OVAL)]
    top, chin = oval[oval[:, 1].argmin()], oval[oval[:, 1].argmax()]
    brow_centre, mouth_centre = landmarks[brows].mean(axis=0), landmarks[LIPS].mean(axis=0)
    right_eye, _ = eye_centres(landmarks)
    cheek = (right_eye + landmarks[LIPS][landmarks[LIPS][:, 0].argmin()]) / 2 + [-10, 0]
    named = regions_of_points(
        regions, [nose_centre, (top + brow_centre) / 2, (chin + mouth_centre) / 2, cheek, (2, 2), (221, 221)]
    )
    assert named == ["nose", "forehead", "jaw", "cheeks", "background", "background"]


def test_points_outside_the_map_are_background():
    regions = np.full((10, 10), REGIONS.index("nose"), dtype=np.uint8)
    assert regions_of_points(regions, [(5, 5), (-1, 5), (5, 10), (9.99, 0)]) == ["nose", "background", "background", "nose"]

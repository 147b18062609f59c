"""Each reader against a tiny copy of its data set, written in the layout the distributors ship."""
import numpy as np
import pytest
from PIL import Image

from pasm.data.readers import READERS, AffectNet, AffectNet8, FER2013, FERPlus, ImageFolderFER, RafDB
from pasm.errors import DataError


def save_image(path, size=(40, 30), mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    Image.fromarray(np.full((size[1], size[0]) + channels, value, np.uint8)).save(path)
    return path


def test_readers_table_names_each_reader_by_its_kind():
    assert set(READERS) == {"rafdb", "fer2013", "ferplus", "affectnet", "affectnet8", "folder"}
    for kind, reader in READERS.items():
        assert reader.kind == kind


# RAF-DB ---------------------------------------------------------------------------------------

RAF_LINES = ["train_00001.jpg 5", "train_00002.jpg 1", "train_00003.jpg 7", "test_0001.jpg 4", "test_0002.jpg 2"]


def make_rafdb(root, lines=RAF_LINES):
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0].removesuffix(".jpg")
        save_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(100, 100))
    return root


def test_rafdb_reads_splits_labels_and_aligned_images(tmp_path):
    root = make_rafdb(tmp_path / "basic")
    assert RafDB.splits(root) == ["train", "test"]
    train = RafDB(root, "train")
    assert train.classes == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert train.targets == [4, 0, 6]
    assert train.samples[0][0].endswith("Image/aligned/train_00001_aligned.jpg")
    test = RafDB(root, "test")
    assert test.class_counts()["happiness"] == 1 and test.class_counts()["fear"] == 1 and len(test) == 2
    image = test.load_image(0)
    assert image.mode == "RGB" and image.size == (100, 100)


def test_rafdb_applies_the_transform(tmp_path):
    data = RafDB(make_rafdb(tmp_path / "basic"), "train", transform=lambda image: image.size)
    assert data[2] == ((100, 100), 6)


@pytest.mark.parametrize(
    "bad_line, reason",
    [("train_00009.jpg", "IMAGE LABEL"), ("train_00009.jpg 8", "outside 1..7"), ("val_0001.jpg 3", "train_"),
     ("train_00009.jpg x", "not an integer")],
)
def test_rafdb_rejects_a_malformed_label_line_naming_it(tmp_path, bad_line, reason):
    root = make_rafdb(tmp_path / "basic", RAF_LINES[:2])
    with open(root / "EmoLabel" / "list_patition_label.txt", "a") as file:
        file.write(bad_line + "\n")
    with pytest.raises(DataError, match=reason) as caught:
        RafDB(root, "train")
    assert caught.value.what.endswith("list_patition_label.txt:3")


def test_rafdb_errors_for_missing_files_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match="file not found") as caught:
        RafDB.splits(tmp_path)
    assert "list_patition_label.txt" in caught.value.what
    root = make_rafdb(tmp_path / "basic")
    with pytest.raises(DataError, match="no split 'val'.*train, test"):
        RafDB(root, "val")
    data = RafDB(root, "train")
    (root / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(DataError, match="not found") as caught:
        data.load_image(1)
    assert caught.value.what.endswith("train_00002_aligned.jpg")
    (root / "Image" / "aligned" / "train_00003_aligned.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="not a readable image") as caught:
        data.load_image(2)
    assert caught.value.what.endswith("train_00003_aligned.jpg")


# FER2013 --------------------------------------------------------------------------------------

def face_pixels(seed):
    return np.random.default_rng(seed).integers(0, 256, size=(48, 48), dtype=np.uint8)


def pixel_text(pixels):
    return " ".join(str(value) for value in pixels.ravel())


FER_ROWS = [
    (0, "Training"), (3, "Training"), (6, "Training"), (5, "PublicTest"), (1, "PrivateTest"), (4, "PrivateTest"),
]


def make_fer2013(path, rows=FER_ROWS):
    lines = ["emotion,pixels,Usage"]
    lines += [f'{emotion},"{pixel_text(face_pixels(i))}",{usage}' for i, (emotion, usage) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fer2013_maps_usage_to_splits_and_decodes_pixels(tmp_path):
    path = make_fer2013(tmp_path / "fer2013.csv")
    assert FER2013.splits(path) == ["train", "val", "test"]
    train = FER2013(path, "train")
    assert train.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert train.targets == [0, 3, 6]
    assert train.faces.shape == (3, 48, 48) and train.faces.dtype == np.uint8
    image = train.load_image(1)
    assert image.mode == "L" and image.size == (48, 48)
    assert np.array_equal(np.asarray(image), face_pixels(1))
    test = FER2013(path, "test")
    assert test.targets == [1, 4]
    assert np.array_equal(np.asarray(test.load_image(1)), face_pixels(5))
    assert FER2013(path, "val").class_counts()["surprise"] == 1


def test_fer2013_reads_the_icml_face_data_variant(tmp_path):
    lines = ["emotion, Usage, pixels", f'2,Training,"{pixel_text(face_pixels(7))}"']
    (tmp_path / "icml_face_data.csv").write_text("\n".join(lines) + "\n")
    data = FER2013(tmp_path / "icml_face_data.csv", "train")
    assert data.targets == [2]
    assert np.array_equal(np.asarray(data.load_image(0)), face_pixels(7))


def test_fer2013_lists_only_the_splits_present(tmp_path):
    path = make_fer2013(tmp_path / "fer2013.csv", FER_ROWS[:4])
    assert FER2013.splits(path) == ["train", "val"]
    with pytest.raises(DataError, match="no split 'test'.*train, val"):
        FER2013(path, "test")
    with pytest.raises(DataError, match="no split 'all'"):
        FER2013(path, "all")


@pytest.mark.parametrize(
    "row, reason",
    [
        ('0,"1 2 3",Training', "2304"),
        (f'0,"{"7 " * 2303}x",Training', "2304"),
        (f'0,"{"7 " * 2303}256",Training', "0..255"),
        (f'7,"{"7 " * 2304}",Training', "outside 0..6"),
        (f'0,"{"7 " * 2304}",Validation', "Usage"),
        ("0,Training", "fields"),
    ],
)
def test_fer2013_rejects_a_malformed_row_naming_its_line(tmp_path, row, reason):
    path = make_fer2013(tmp_path / "fer2013.csv", FER_ROWS[:1])
    with open(path, "a") as file:
        file.write(row + "\n")
    with pytest.raises(DataError, match=reason) as caught:
        FER2013(path, "train")
    assert caught.value.what == f"{path}:3"


def test_fer2013_errors_for_a_missing_file_or_column(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        FER2013.splits(tmp_path / "fer2013.csv")
    (tmp_path / "train.csv").write_text(f'emotion,pixels\n0,"{"1 " * 2304}"\n')
    with pytest.raises(DataError, match="missing column.*Usage"):
        FER2013(tmp_path / "train.csv", "train")


# FER+ -----------------------------------------------------------------------------------------

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
FERPLUS_ROWS = [
    ("Training", "fer0000000.png", "4,0,0,1,3,2,0,0,0,0"),  # neutral
    ("Training", "fer0000001.png", "0,10,0,0,0,0,0,0,0,0"),  # happiness
    ("Training", "", "0,0,0,0,0,0,0,0,0,10"),  # not a face: no image name
    ("Training", "fer0000003.png", "4,0,0,4,1,0,0,0,1,0"),  # tie neutral/sadness
    ("Training", "fer0000004.png", "1,0,0,0,0,0,0,0,6,3"),  # unknown wins
    ("Training", "fer0000005.png", "0,0,0,0,0,0,0,2,0,8"),  # NF wins
    ("PublicTest", "fer0000006.png", "0,0,1,0,0,0,0,9,0,0"),  # contempt
    ("PrivateTest", "fer0000007.png", "0,0,3,0,0,0,7,0,0,0"),  # fear
]


def make_ferplus(root, rows=FERPLUS_ROWS, pixel_usages=None):
    root.mkdir(parents=True, exist_ok=True)
    pixel_usages = pixel_usages or [usage for usage, _, _ in rows]
    make_fer2013(root / "fer2013.csv", [(0, usage) for usage in pixel_usages])
    lines = [FERPLUS_HEADER] + [f"{usage},{name},{votes}" for usage, name, votes in rows]
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    return root


def test_ferplus_labels_by_majority_and_drops_the_rest(tmp_path):
    root = make_ferplus(tmp_path / "ferplus")
    assert FERPlus.splits(root) == ["train", "val", "test"]
    train = FERPlus(root, "train")
    assert train.classes == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    assert train.samples == [("fer0000000.png", 0), ("fer0000001.png", 1)]
    assert train.dropped == {"no image name": 1, "tie": 1, "unknown": 1, "NF": 1}
    image = train.load_image(1)
    assert image.mode == "L" and image.size == (48, 48)
    assert np.array_equal(np.asarray(image), face_pixels(1))
    val, test = FERPlus(root, "val"), FERPlus(root, "test")
    assert val.targets == [7] and test.targets == [6]
    assert np.array_equal(np.asarray(test.load_image(0)), face_pixels(7))


@pytest.mark.parametrize(
    "votes, expected",
    [([0, 0, 5, 0, 0, 0, 0, 0, 4, 1], (2, None)), ([3, 3, 0, 0, 0, 0, 0, 0, 0, 0], (None, "tie")),
     ([0, 0, 0, 0, 0, 0, 0, 4, 4, 2], (None, "tie")), ([0] * 10, (None, "no votes")),
     ([2, 0, 0, 0, 0, 0, 0, 0, 1, 7], (None, "NF"))],
)
def test_ferplus_majority_rule(votes, expected):
    assert FERPlus.majority(votes) == expected


def test_ferplus_requires_row_aligned_files(tmp_path):
    shorter = make_ferplus(tmp_path / "short", pixel_usages=[usage for usage, _, _ in FERPLUS_ROWS[:-1]])
    with pytest.raises(DataError, match="fewer rows.*row-aligned") as caught:
        FERPlus(shorter, "train")
    assert caught.value.what.endswith("fer2013.csv")
    swapped = [usage for usage, _, _ in FERPLUS_ROWS]
    swapped[6], swapped[7] = swapped[7], swapped[6]
    with pytest.raises(DataError, match="not row-aligned") as caught:
        FERPlus(make_ferplus(tmp_path / "swapped", pixel_usages=swapped), "train")
    assert caught.value.what.endswith("fer2013new.csv:8")


def test_ferplus_errors_for_missing_files_bad_votes_and_unknown_split(tmp_path):
    root = make_ferplus(tmp_path / "ferplus")
    with pytest.raises(DataError, match="no split 'all'"):
        FERPlus(root, "all")
    (root / "fer2013.csv").unlink()
    with pytest.raises(DataError, match="file not found") as caught:
        FERPlus.splits(root)
    assert caught.value.what.endswith("fer2013.csv")
    bad = make_ferplus(tmp_path / "bad", FERPLUS_ROWS[:1] + [("Training", "fer0000001.png", "x,0,0,0,0,0,0,0,0,0")])
    with pytest.raises(DataError, match="neutral 'x' is not an integer") as caught:
        FERPlus(bad, "train")
    assert caught.value.what.endswith("fer2013new.csv:3")


# AffectNet ------------------------------------------------------------------------------------

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def affectnet_row(name, expression, box=("10", "5", "20", "30")):
    return f'{name},{",".join(box)},"1.0;2.0;3.0;4.0",{expression},0.5,-0.25'


def make_affectnet_image(root, name, size=(60, 50), box=(10, 5, 20, 30)):
    """Black image with the face box white, so a crop shows exactly what it took."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    x, y, w, h = box
    pixels[y:y + h, x:x + w] = 255
    path = root / "Manually_Annotated_Images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_affectnet(root, train_codes=(0, 1, 6, 7, 8, 9, 10), val_header=False):
    root.mkdir(parents=True)
    train = [affectnet_row(f"1/train{i}.png", code) for i, code in enumerate(train_codes)]
    (root / "training.csv").write_text("\n".join([AFFECTNET_HEADER] + train) + "\n")
    val = [affectnet_row("2/val0.png", 3), affectnet_row("2/val1.png", 7)]
    (root / "validation.csv").write_text("\n".join(([AFFECTNET_HEADER] if val_header else []) + val) + "\n")
    for name in [f"1/train{i}.png" for i in range(len(train_codes))] + ["2/val0.png", "2/val1.png"]:
        make_affectnet_image(root, name)
    return root


def test_affectnet_drops_non_emotion_codes_and_contempt_for_seven_classes(tmp_path):
    root = make_affectnet(tmp_path / "affectnet")
    assert AffectNet.splits(root) == ["train", "val"]
    train = AffectNet(root, "train")
    assert train.classes == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    assert train.targets == [0, 1, 6]
    assert train.dropped == {"contempt": 1, "none": 1, "uncertain": 1, "no-face": 1}
    assert AffectNet(root, "val").targets == [3]


def test_affectnet8_keeps_contempt(tmp_path):
    root = make_affectnet(tmp_path / "affectnet", val_header=True)
    train = AffectNet8(root, "train")
    assert train.classes[-1] == "contempt" and len(train.classes) == 8
    assert train.targets == [0, 1, 6, 7]
    assert train.dropped == {"none": 1, "uncertain": 1, "no-face": 1}
    assert AffectNet8(root, "val").targets == [3, 7]


def test_affectnet_crops_the_face_box(tmp_path):
    root = make_affectnet(tmp_path / "affectnet")
    image = AffectNet(root, "train").load_image(0)
    assert image.mode == "RGB" and image.size == (20, 30)
    assert np.asarray(image).min() == 255


def test_affectnet_clips_an_overhanging_box_and_uses_the_whole_image_without_one(tmp_path):
    root = make_affectnet(tmp_path / "affectnet", train_codes=())
    rows = [affectnet_row("1/a.png", 0, ("50", "40", "30", "30")), affectnet_row("1/b.png", 1, ("", "", "", ""))]
    (root / "training.csv").write_text("\n".join([AFFECTNET_HEADER] + rows) + "\n")
    make_affectnet_image(root, "1/a.png")
    make_affectnet_image(root, "1/b.png")
    data = AffectNet(root, "train")
    assert data.load_image(0).size == (10, 10)
    assert data.load_image(1).size == (60, 50)


@pytest.mark.parametrize(
    "row, reason",
    [(affectnet_row("1/x.png", "x"), "not an integer"), (affectnet_row("1/x.png", 11), "outside 0..10"),
     (affectnet_row("1/x.png", 0, ("a", "0", "5", "5")), "not numeric"),
     (affectnet_row("1/x.png", 0, ("0", "0", "0", "5")), "empty"), ("1/x.png,0", "fields")],
)
def test_affectnet_rejects_a_malformed_row_naming_its_line(tmp_path, row, reason):
    root = make_affectnet(tmp_path / "affectnet", train_codes=(0,))
    with open(root / "training.csv", "a") as file:
        file.write(row + "\n")
    with pytest.raises(DataError, match=reason) as caught:
        AffectNet(root, "train")
    assert caught.value.what.endswith("training.csv:3")


def test_affectnet_errors_for_missing_files_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match="training.csv"):
        AffectNet.splits(tmp_path)
    root = make_affectnet(tmp_path / "affectnet")
    with pytest.raises(DataError, match="no split 'test'.*train, val"):
        AffectNet(root, "test")
    (root / "Manually_Annotated_Images" / "1" / "train1.png").unlink()
    with pytest.raises(DataError, match="not found") as caught:
        AffectNet(root, "train").load_image(1)
    assert caught.value.what.endswith("train1.png")


# Image folders --------------------------------------------------------------------------------

def test_folder_with_splits_shares_classes_across_splits(tmp_path):
    for split, name in [("train", "angry/a.png"), ("train", "angry/b.jpg"), ("train", "happy/c.png"),
                        ("validation", "happy/d.png"), ("test", "sad/e.png"), ("test", "angry/f.png")]:
        save_image(tmp_path / split / name)
    (tmp_path / "train" / "angry" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    assert ImageFolderFER.splits(tmp_path) == ["train", "val", "test"]
    train, val, test = (ImageFolderFER(tmp_path, split) for split in ("train", "val", "test"))
    assert train.classes == val.classes == test.classes == ["angry", "happy", "sad"]
    assert train.targets == [0, 0, 1]
    assert val.targets == [1]
    assert sorted(test.targets) == [0, 2]
    assert test.class_counts() == {"angry": 1, "happy": 0, "sad": 1}


def test_folder_without_splits_is_one_split_and_keeps_grayscale(tmp_path):
    save_image(tmp_path / "fear" / "a.png", size=(48, 48), mode="L")
    save_image(tmp_path / "joy" / "b.png", mode="RGBA")
    assert ImageFolderFER.splits(tmp_path) == ["all"]
    data = ImageFolderFER(tmp_path, "all")
    assert data.classes == ["fear", "joy"] and data.targets == [0, 1]
    gray, colour = data.load_image(0), data.load_image(1)
    assert gray.mode == "L" and gray.size == (48, 48)
    assert colour.mode == "RGB" and colour.size == (40, 30)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        ImageFolderFER.splits(tmp_path / "missing")
    save_image(tmp_path / "train" / "angry" / "a.png")
    with pytest.raises(DataError, match="no split 'test'"):
        ImageFolderFER(tmp_path, "test")
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no class folders") as caught:
        ImageFolderFER(tmp_path, "train")
    assert caught.value.what.endswith("test")
    (tmp_path / "test" / "angry").mkdir()
    with pytest.raises(DataError, match="no image files"):
        ImageFolderFER(tmp_path, "test")
    (tmp_path / "val" / "angry").mkdir(parents=True)
    (tmp_path / "valid").mkdir()
    with pytest.raises(DataError, match="val split"):
        ImageFolderFER.splits(tmp_path)


def test_folder_reports_a_corrupt_image_by_name(tmp_path):
    bad = tmp_path / "angry" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match="not a readable image") as caught:
        ImageFolderFER(tmp_path, "all").load_image(0)
    assert caught.value.what == str(bad)

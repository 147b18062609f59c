"""Readers for the public FER data sets, each in the layout its distributors ship.

Every reader takes the path a person downloaded and unpacked, unchanged: no conversion step,
no cache. Label files are parsed when a split is opened; image files are opened only in
``load_image``, so a missing or corrupt image is reported (as a ``DataError`` naming it) when
it is first read, not by a scan of every file up front.
"""
import csv
import itertools
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import DataError
from .base import FERDataset


def _check_split(spec, split, available):
    if split not in available:
        raise DataError(spec, f"no split {split!r} (this copy has {', '.join(available) or 'none'})")


def _open_text(path):
    try:
        return open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None


def _open_image(path, mode):
    """Decode now, inside the ``with``, so a truncated file fails here with its name."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode or _plain_mode(image))
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except OSError as error:
        raise DataError(path, f"not a readable image ({error})") from None


def _plain_mode(image):
    """Keep grayscale as grayscale; everything else (palette, alpha, CMYK) becomes RGB."""
    return image.mode if image.mode in ("L", "RGB") else "RGB"


def _parse_int(text, where, what):
    try:
        return int(text)
    except ValueError:
        raise DataError(where, f"{what} {text!r} is not an integer") from None


def _csv_rows(path, required):
    """``(line number, row dict)`` with header names stripped: icml_face_data.csv writes ``emotion, Usage, pixels``."""
    with _open_text(path) as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)} (header: {','.join(header) or 'empty'})")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{reader.line_num}", f"expected {len(header)} fields, found {len(row)}")
            yield reader.line_num, dict(zip(header, row))


class RafDB(FERDataset):
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (the distributed spelling) and ``Image/aligned``.

    Label lines are ``train_00001.jpg 5`` with codes 1..7; the split is the file name's prefix and
    the aligned face of ``train_00001.jpg`` is ``Image/aligned/train_00001_aligned.jpg``.
    """

    kind = "rafdb"
    CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    SPLITS = ("train", "test")

    def __init__(self, path, split, transform=None):
        root = Path(path)
        entries = self._read_labels(root)
        _check_split(f"{self.kind}:{path}", split, self._splits_in(entries))
        image_dir = root / "Image" / "aligned"
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found (RAF-DB basic keeps the aligned faces there)")
        samples = [
            (str(image_dir / f"{Path(name).stem}_aligned.jpg"), label)
            for entry_split, name, label in entries
            if entry_split == split
        ]
        super().__init__(f"{self.kind}:{path}", self.CLASSES, samples, transform)
        self.split = split

    @classmethod
    def splits(cls, path):
        return cls._splits_in(cls._read_labels(Path(path)))

    @classmethod
    def _splits_in(cls, entries):
        found = {entry_split for entry_split, _, _ in entries}
        return [split for split in cls.SPLITS if split in found]

    @classmethod
    def _read_labels(cls, root):
        label_file = root / "EmoLabel" / "list_patition_label.txt"
        entries = []
        with _open_text(label_file) as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    entries.append(cls._parse_line(line, f"{label_file}:{number}"))
        return entries

    @classmethod
    def _parse_line(cls, line, where):
        fields = line.split()
        if len(fields) != 2:
            raise DataError(where, f"expected 'IMAGE LABEL', found {line.strip()!r}")
        name, code = fields
        split = name.partition("_")[0]
        if split not in cls.SPLITS:
            raise DataError(where, f"image name {name!r} starts with neither train_ nor test_")
        code = _parse_int(code, where, "label")
        if not 1 <= code <= len(cls.CLASSES):
            raise DataError(where, f"label {code} is outside 1..{len(cls.CLASSES)}")
        return split, name, code - 1

    def load_image(self, index):
        return _open_image(self.samples[index][0], "RGB")


FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER2013_SPLITS = tuple(FER2013_USAGE.values())
FER2013_SIZE = 48


def _usage_split(usage, where):
    if usage.strip() not in FER2013_USAGE:
        raise DataError(where, f"Usage {usage!r} is not one of {', '.join(FER2013_USAGE)}")
    return FER2013_USAGE[usage.strip()]


def _parse_pixels(text, where):
    """np.fromstring is several times faster than splitting into Python ints, which matters at 35k rows.

    It reads int32 so out-of-range values are seen rather than wrapped; a non-numeric token
    makes NumPy 1.x warn (caught as an error by the caller's ``warnings`` filter) and NumPy 2 raise.
    """
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")
    except (ValueError, DeprecationWarning):
        values = None
    size = FER2013_SIZE * FER2013_SIZE
    if values is None or values.size != size or values.min() < 0 or values.max() > 255:
        raise DataError(where, f"pixels must be {size} space-separated integers 0..255")
    return values.astype(np.uint8).reshape(FER2013_SIZE, FER2013_SIZE)


def _stack_faces(faces):
    return np.stack(faces) if faces else np.zeros((0, FER2013_SIZE, FER2013_SIZE), np.uint8)


class FER2013(FERDataset):
    """The Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``) or its twin ``icml_face_data.csv``.

    Usage Training / PublicTest / PrivateTest become splits train / val / test, the usual protocol.
    torchvision.datasets.FER2013 reads the same files but not as distributed here: it wants them
    under ``root/fer2013/``, checks an MD5 of the whole file, folds PublicTest and PrivateTest into
    one test split, and builds a tensor per row from Python ints; so the CSV is parsed here, once
    per opened split, into one ``uint8`` array of 48x48 faces.
    """

    kind = "fer2013"
    CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    COLUMNS = ("emotion", "pixels", "Usage")

    def __init__(self, path, split, transform=None):
        _check_split(f"{self.kind}:{path}", split, FER2013_SPLITS)
        samples, faces, found = [], [], set()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            for line, row in _csv_rows(path, self.COLUMNS):
                where = f"{path}:{line}"
                row_split = _usage_split(row["Usage"], where)
                found.add(row_split)
                if row_split != split:
                    continue
                label = _parse_int(row["emotion"], where, "emotion")
                if not 0 <= label < len(self.CLASSES):
                    raise DataError(where, f"emotion {label} is outside 0..{len(self.CLASSES) - 1}")
                faces.append(_parse_pixels(row["pixels"], where))
                samples.append((where, label))
        _check_split(f"{self.kind}:{path}", split, [s for s in FER2013_SPLITS if s in found])
        super().__init__(f"{self.kind}:{path}", self.CLASSES, samples, transform)
        self.split = split
        self.faces = _stack_faces(faces)

    @classmethod
    def splits(cls, path):
        found = {_usage_split(row["Usage"], f"{path}:{line}") for line, row in _csv_rows(path, cls.COLUMNS)}
        return [split for split in FER2013_SPLITS if split in found]

    def load_image(self, index):
        return Image.fromarray(self.faces[index])


VOTES_CSV, PIXELS_CSV = "fer2013new.csv", "fer2013.csv"


class FERPlus(FERDataset):
    """Microsoft FER+: ten crowd votes per FER2013 face in ``fer2013new.csv``, pixels from ``fer2013.csv``.

    The two files are row-aligned (same rows, same order), which is checked through their Usage
    columns. The label is the emotion with the most votes. A row is dropped when its image name
    is empty (FER+ marks non-faces that way), when ``unknown`` or ``NF`` gets the most votes, or
    when the top count is tied: a tie has no majority, and breaking it by column order would bias
    the labels towards ``neutral``. Counts of dropped rows are kept in ``dropped``.
    (FER+'s own "majority" mode differs: it first discards single votes and needs over half.)
    """

    kind = "ferplus"
    CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    VOTES = CLASSES + ("unknown", "NF")
    COLUMNS = ("Usage", "Image name") + VOTES

    def __init__(self, path, split, transform=None):
        root = Path(path)
        _check_split(f"{self.kind}:{path}", split, FER2013_SPLITS)
        samples, faces, found, self.dropped = [], [], set(), Counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            for (line, votes), (pixel_line, pixels) in self._aligned_rows(root):
                where, pixels_where = f"{root / VOTES_CSV}:{line}", f"{root / PIXELS_CSV}:{pixel_line}"
                row_split = _usage_split(votes["Usage"], where)
                if row_split != _usage_split(pixels["Usage"], pixels_where):
                    raise DataError(where, f"Usage differs from {pixels_where}: the two files are not row-aligned")
                found.add(row_split)
                if row_split != split:
                    continue
                name = votes["Image name"].strip()
                if name:
                    label, reason = self.majority([_parse_int(votes[column], where, column) for column in self.VOTES])
                else:
                    label, reason = None, "no image name"
                if reason:
                    self.dropped[reason] += 1
                    continue
                faces.append(_parse_pixels(pixels["pixels"], pixels_where))
                samples.append((name, label))
        _check_split(f"{self.kind}:{path}", split, [s for s in FER2013_SPLITS if s in found])
        super().__init__(f"{self.kind}:{path}", self.CLASSES, samples, transform)
        self.split = split
        self.faces = _stack_faces(faces)

    @classmethod
    def majority(cls, votes):
        """``(label, None)`` for a clear winner among the emotions, else ``(None, why it is dropped)``."""
        top = max(votes)
        winners = [i for i, count in enumerate(votes) if count == top]
        if top <= 0:
            return None, "no votes"
        if len(winners) > 1:
            return None, "tie"
        if winners[0] >= len(cls.CLASSES):
            return None, cls.VOTES[winners[0]]
        return winners[0], None

    @classmethod
    def _aligned_rows(cls, root):
        votes_rows = _csv_rows(root / VOTES_CSV, cls.COLUMNS)
        pixel_rows = _csv_rows(root / PIXELS_CSV, ("pixels", "Usage"))
        for votes, pixels in itertools.zip_longest(votes_rows, pixel_rows):
            if votes is None or pixels is None:
                shorter = VOTES_CSV if votes is None else PIXELS_CSV
                raise DataError(root / shorter, "fewer rows than in the other csv; FER+ needs them row-aligned")
            yield votes, pixels

    @classmethod
    def splits(cls, path):
        root = Path(path)
        if not (root / PIXELS_CSV).is_file():
            raise DataError(root / PIXELS_CSV, "file not found (FER+ takes its pixels from the original FER2013 csv)")
        rows = _csv_rows(root / VOTES_CSV, cls.COLUMNS)
        found = {_usage_split(row["Usage"], f"{root / VOTES_CSV}:{line}") for line, row in rows}
        return [split for split in FER2013_SPLITS if split in found]

    def load_image(self, index):
        return Image.fromarray(self.faces[index])


class AffectNet(FERDataset):
    """AffectNet, manually annotated part: ``training.csv`` / ``validation.csv`` and ``Manually_Annotated_Images``.

    Expression codes 0..7 are the emotions; 8 none, 9 uncertain and 10 no-face are dropped, and so
    is 7 (contempt) in this 7-class variant, as in most papers. The face box in the CSV is cropped
    (clipped to the image). A csv without a header row is read in the documented column order,
    so copies whose validation.csv lost its header still load. Counts of dropped rows are kept in ``dropped``.
    """

    kind = "affectnet"
    CODES = (
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt", "none", "uncertain", "no-face",
    )
    CLASSES = CODES[:7]
    COLUMNS = (
        "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
        "facial_landmarks", "expression", "valence", "arousal",
    )
    BOX = ("face_x", "face_y", "face_width", "face_height")
    SPLIT_FILES = {"train": "training.csv", "val": "validation.csv"}

    def __init__(self, path, split, transform=None):
        root = Path(path)
        _check_split(f"{self.kind}:{path}", split, self.splits(root))
        image_dir = root / "Manually_Annotated_Images"
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found")
        samples, self.boxes, self.dropped = [], [], Counter()
        for where, row in self._rows(root / self.SPLIT_FILES[split]):
            code = _parse_int(row["expression"], where, "expression")
            if not 0 <= code < len(self.CODES):
                raise DataError(where, f"expression {code} is outside 0..{len(self.CODES) - 1}")
            if code >= len(self.CLASSES):
                self.dropped[self.CODES[code]] += 1
                continue
            samples.append((str(image_dir / row["subDirectory_filePath"]), code))
            self.boxes.append(self._face_box(row, where))
        super().__init__(f"{self.kind}:{path}", self.CLASSES, samples, transform)
        self.split = split

    @classmethod
    def splits(cls, path):
        root = Path(path)
        found = [split for split, name in cls.SPLIT_FILES.items() if (root / name).is_file()]
        if not found:
            raise DataError(root, "neither training.csv nor validation.csv found")
        return found

    @classmethod
    def _rows(cls, csv_file):
        with _open_text(csv_file) as file:
            reader = csv.reader(file)
            first = next(reader, None)
            if first is None:
                raise DataError(csv_file, "file is empty")
            has_header = first[0].strip() == cls.COLUMNS[0]
            header = [name.strip() for name in first] if has_header else list(cls.COLUMNS)
            missing = [name for name in cls.COLUMNS if name not in header]
            if missing:
                raise DataError(csv_file, f"missing column(s) {', '.join(missing)}")
            for row in reader if has_header else itertools.chain([first], reader):
                where = f"{csv_file}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(where, f"expected {len(header)} fields, found {len(row)}")
                yield where, dict(zip(header, row))

    @classmethod
    def _face_box(cls, row, where):
        """``(left, top, right, bottom)``, or None when the row gives no box."""
        fields = [row[name].strip() for name in cls.BOX]
        if not all(fields):
            return None
        try:
            x, y, width, height = (round(float(field)) for field in fields)
        except ValueError:
            raise DataError(where, f"face box {','.join(fields)} is not numeric") from None
        if width <= 0 or height <= 0:
            raise DataError(where, f"face box {width}x{height} is empty")
        return x, y, x + width, y + height

    def load_image(self, index):
        path = self.samples[index][0]
        image = _open_image(path, "RGB")
        box = self.boxes[index]
        if box is None:
            return image
        left, top = max(box[0], 0), max(box[1], 0)
        right, bottom = min(box[2], image.width), min(box[3], image.height)
        if right <= left or bottom <= top:
            raise DataError(path, f"face box {box} lies outside the {image.width}x{image.height} image")
        return image.crop((left, top, right, bottom))


class AffectNet8(AffectNet):
    """AffectNet with contempt kept: the 8-class protocol."""

    kind = "affectnet8"
    CLASSES = AffectNet.CODES[:8]


SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


class ImageFolderFER(FERDataset):
    """``DIR/<split>/<class>/*.jpg`` or, without split folders, ``DIR/<class>/*.jpg`` as split ``all``.

    Split folder names are normalised (training -> train, valid/validation -> val, testing -> test)
    so a run can ask for the same split names on every data set. Classes are the sorted union of
    class folders over all splits, so a label means the same class in train and test even when a
    split lacks a class. Hidden folders (``.ipynb_checkpoints``, ``.git``) are not classes.
    """

    kind = "folder"

    def __init__(self, path, split, transform=None):
        folders = self._split_folders(Path(path))
        _check_split(f"{self.kind}:{path}", split, list(folders))
        classes = self._classes(folders)
        class_to_idx = {name: i for i, name in enumerate(classes)}
        samples = make_dataset(folders[split], class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise DataError(folders[split], f"no image files ({', '.join(IMG_EXTENSIONS)}) in its class folders")
        super().__init__(f"{self.kind}:{path}", classes, samples, transform)
        self.split = split

    @classmethod
    def splits(cls, path):
        return list(cls._split_folders(Path(path)))

    @classmethod
    def _split_folders(cls, root):
        if not root.is_dir():
            raise DataError(root, "not a folder")
        folders = {}
        for entry in sorted(root.iterdir()):
            split = SPLIT_FOLDERS.get(entry.name.lower())
            if split is None or not entry.is_dir():
                continue
            if split in folders:
                raise DataError(root, f"both {folders[split].name}/ and {entry.name}/ look like the {split} split")
            folders[split] = entry
        return {split: folders[split] for split in ("train", "val", "test") if split in folders} or {"all": root}

    @classmethod
    def _classes(cls, folders):
        names = set()
        for folder in folders.values():
            try:
                found = [name for name in find_classes(folder)[0] if not name.startswith(".")]
            except FileNotFoundError:  # find_classes' way of saying "no sub-folders"
                found = []
            if not found:
                raise DataError(folder, "has no class folders")
            names.update(found)
        return sorted(names)

    def load_image(self, index):
        return _open_image(self.samples[index][0], None)


READERS = {
    "rafdb": RafDB,
    "fer2013": FER2013,
    "ferplus": FERPlus,
    "affectnet": AffectNet,
    "affectnet8": AffectNet8,
    "folder": ImageFolderFER,
}

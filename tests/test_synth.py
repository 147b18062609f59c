import itertools
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torchvision

from pasm.cli import main
from pasm.data.synth import (CLASSES, CUE_DESIGNS, EXPRESSIONS, OCCLUDERS, REDUNDANT, REDUNDANT_INTENSITY, REGIONS,
                             SPLITS, SynthFER, SynthFERMemory, _cue_regions, label_of, occluded_region, render_sample,
                             write_synth)
from pasm.errors import DataError


def first_sample(split, predicate, size=64, seed=0, cues="redundant"):
    """The first sample of a split that satisfies ``predicate``; the search is deterministic."""
    for index in range(500):
        sample = render_sample(seed, split, index, size, cues)
        if predicate(sample):
            return sample
    raise AssertionError("no sample matched")


def class_is(name):
    return lambda sample: CLASSES[sample.label] == name


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    calls = []
    manifest = write_synth(out, train=14, test=7, size=32, seed=5, progress=lambda done, total: calls.append(done))
    return out, manifest, calls


def test_class_order_is_raf_db():
    assert CLASSES == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert set(EXPRESSIONS) == set(CLASSES)


@pytest.mark.parametrize("cues", CUE_DESIGNS)
def test_same_seed_gives_identical_pixels_and_masks(cues):
    for split in SPLITS:
        a, b = render_sample(3, split, 11, cues=cues), render_sample(3, split, 11, cues=cues)
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert np.array_equal(a.cue_mask, b.cue_mask)
        assert np.array_equal(a.occluder_mask, b.occluder_mask)
        assert (a.label, a.cues, a.intensity, a.occluder, a.occluded_region) == \
            (b.label, b.cues, b.intensity, b.occluder, b.occluded_region)


def test_different_seed_or_index_gives_different_images():
    base = np.asarray(render_sample(0, "train", 4).image)
    assert not np.array_equal(base, np.asarray(render_sample(1, "train", 4).image))
    assert not np.array_equal(base, np.asarray(render_sample(0, "train", 5).image))
    assert not np.array_equal(base, np.asarray(render_sample(0, "test", 4).image))


def test_sample_shape_and_types():
    sample = render_sample(0, "test_wild", 2, size=48)
    assert sample.image.mode == "RGB" and sample.image.size == (48, 48)
    for mask in (sample.cue_mask, sample.occluder_mask):
        assert mask.shape == (48, 48) and mask.dtype == np.bool_
    assert set(sample.cues) == set(sample.intensity) == set(sample.region_masks) == set(REGIONS)
    assert 0 <= sample.label < len(CLASSES)


def test_every_class_appears_equally_often():
    for split in SPLITS:
        labels = [label_of(2, split, i) for i in range(70)]
        assert np.bincount(labels, minlength=7).tolist() == [10] * 7
        assert labels != [i % 7 for i in range(70)]


def test_exclusive_cues_and_intensity_come_from_the_table():
    for index in range(28):
        sample = render_sample(0, "train", index, size=32, cues="exclusive")
        table = EXPRESSIONS[CLASSES[sample.label]]
        assert all(sample.cues[region] in table[region] for region in REGIONS)
        shown = {sample.intensity[region] for region in REGIONS if sample.cues[region] != "neutral"}
        assert len(shown) <= 1 and all(0.2 <= t <= 1.0 for t in shown)  # one intensity for the face
        assert all(sample.intensity[region] == 0.0 for region in REGIONS if sample.cues[region] == "neutral")


def test_redundant_cues_follow_the_prototypes_with_their_own_intensities():
    low, high = REDUNDANT_INTENSITY
    intensities = set()
    for index in range(56):
        sample = render_sample(0, "train", index, size=16)
        table = REDUNDANT[CLASSES[sample.label]]
        shown = {region for region in REGIONS if sample.cues[region] != "neutral"}
        assert shown <= set(table) and (len(shown) >= 1 or not table)  # evidence for every label but neutral
        assert all(sample.cues[region] in table[region][0] for region in shown)
        assert all(low <= sample.intensity[region] <= high for region in shown)
        assert all(sample.intensity[region] == 0.0 for region in set(REGIONS) - shown)
        intensities |= {sample.intensity[region] for region in shown}
    assert len(intensities) > 100  # drawn per region, not per face
    assert all(2 <= len(table) <= 4 for name, table in REDUNDANT.items() if name != "neutral")


def survivors(cues, name, n=50):
    """Share of ``n`` faces of class ``name`` that still show a cue whichever single region is removed."""
    indices = [i for i in range(20 * n) if CLASSES[label_of(0, "train", i)] == name][:n]
    regions = [_cue_regions(render_sample(0, "train", i, 16, cues).cues) for i in indices]
    return np.mean([len(shown) >= 2 for shown in regions])


def test_redundant_evidence_survives_the_loss_of_one_region():
    for name in CLASSES[:-1]:
        assert survivors("redundant", name) >= 0.7, name
    assert survivors("exclusive", "happiness") < 0.7  # the smile is often its only cue


def test_classes_sharing_a_cue_really_share_it():
    surprise, fear = EXPRESSIONS["surprise"], EXPRESSIONS["fear"]
    assert "raised" in surprise["brows"] and "raised" in fear["brows"]
    assert surprise["eyes"] == fear["eyes"] == ("wide",)
    assert not set(surprise["mouth"]) & set(fear["mouth"])
    assert "inner_raised" in fear["brows"] and "inner_raised" in EXPRESSIONS["sadness"]["brows"]
    # No region decides the class alone: in each one some expression cue is shown by two classes or more.
    for region in REGIONS:
        shown_by = {}
        for name in CLASSES:
            for cue in EXPRESSIONS[name][region]:
                shown_by.setdefault(cue, set()).add(name)
        assert any(len(names) > 1 for cue, names in shown_by.items() if cue != "neutral"), region


def test_the_label_is_a_function_of_the_cues():
    seen = {}
    for name in CLASSES:
        table = EXPRESSIONS[name]
        for combination in itertools.product(*(table[region] for region in REGIONS)):
            assert seen.setdefault(combination, name) == name, combination


def test_surprise_and_fear_samples_share_raised_brows_but_not_the_mouth():
    surprise = first_sample("train", class_is("surprise"), cues="exclusive")
    fear = first_sample("train", lambda s: class_is("fear")(s) and s.cues["brows"] == "raised", cues="exclusive")
    assert surprise.cues["brows"] == fear.cues["brows"] == "raised"
    assert surprise.cues["mouth"] != fear.cues["mouth"]


@pytest.mark.parametrize("cues", CUE_DESIGNS)
def test_cue_mask_is_a_small_non_empty_part_of_the_image(cues):
    for index in range(21):
        mask = render_sample(0, "test", index, cues=cues).cue_mask
        assert 0 < mask.mean() < 0.25


@pytest.mark.parametrize("cues", CUE_DESIGNS)
def test_every_drawn_cue_is_in_the_mask_in_its_region(cues):
    for index in range(28):
        sample = render_sample(0, "test", index, size=48, cues=cues)
        shown = [region for region in REGIONS if region in _cue_regions(sample.cues)]
        for region in REGIONS:
            mask = sample.region_masks[region]
            assert mask.any() == (region in shown), (index, region)
            assert not (mask & ~sample.cue_mask).any()
        assert np.array_equal(np.logical_or.reduce(list(sample.region_masks.values())), sample.cue_mask)
        heights = [np.nonzero(sample.region_masks[region])[0].mean() for region in shown]
        assert heights == sorted(heights), (index, shown)  # brows above eyes above nose above mouth


def test_happiness_mask_lies_on_the_mouth_and_surprise_mask_spans_the_face():
    happy = first_sample("test", lambda s: class_is("happiness")(s) and s.cues["eyes"] == "neutral",
                         cues="exclusive")
    rows = np.nonzero(happy.cue_mask.any(axis=1))[0]
    assert rows.min() > 64 // 2
    surprised = first_sample("test", class_is("surprise"), cues="exclusive")
    rows = np.nonzero(surprised.cue_mask.any(axis=1))[0]
    assert rows.min() < 64 // 2 < rows.max()


def test_neutral_mask_covers_brows_eyes_and_mouth():
    neutral = first_sample("test", class_is("neutral"))
    rows = np.nonzero(neutral.cue_mask.any(axis=1))[0]
    assert rows.min() < 64 // 2 < rows.max()


def test_occluder_only_in_the_wild():
    for index in range(12):
        plain, wild = render_sample(0, "test", index), render_sample(0, "test_wild", index)
        assert plain.occluder is None and not plain.occluder_mask.any()
        assert wild.occluder is not None and wild.occluder_mask.any()
        assert not render_sample(0, "train", index).occluder_mask.any()


def test_wild_split_is_balanced_over_the_occluded_regions():
    for n in (21, 40, 43):
        counts = Counter(occluded_region(2, i) for i in range(n))
        assert set(counts) == set(REGIONS) and max(counts.values()) - min(counts.values()) <= 1, counts
    assert [occluded_region(0, i) for i in range(12)] != [occluded_region(1, i) for i in range(12)]
    assert [occluded_region(0, i) for i in range(4)] != [occluded_region(0, i) for i in range(4, 8)]


def test_the_occluder_hides_most_of_its_regions_cue():
    hidden = {region: [] for region in REGIONS}
    for index in range(48):
        wild = render_sample(0, "test_wild", index, size=48)
        assert wild.occluded_region == occluded_region(0, index) and wild.occluder in OCCLUDERS
        cue = wild.region_masks[wild.occluded_region]
        if cue.any():
            hidden[wild.occluded_region].append((cue & wild.occluder_mask).sum() / cue.sum())
    assert all(len(shares) >= 1 and min(shares) > 0.5 for shares in hidden.values()), hidden


def test_wild_sample_is_the_test_sample_plus_an_occluder():
    for index in range(6):
        plain, wild = render_sample(0, "test", index), render_sample(0, "test_wild", index)
        assert (plain.label, plain.cues, plain.intensity) == (wild.label, wild.cues, wild.intensity)
        assert np.array_equal(plain.cue_mask, wild.cue_mask)
        change = np.abs(np.asarray(plain.image, float) - np.asarray(wild.image, float)).mean(axis=2)
        assert change[wild.occluder_mask].mean() > 4 * change[~wild.occluder_mask].mean()


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(DataError, match="size"):
        render_sample(0, "train", 0, size=8)
    with pytest.raises(DataError, match="seed"):
        SynthFERMemory(3, seed=-1)
    with pytest.raises(DataError, match="counts"):
        write_synth(tmp_path, train=-1, test=0)


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="unknown split"):
        render_sample(0, "validation", 0)
    with pytest.raises(DataError, match="unknown split"):
        SynthFERMemory(3, split="val")


def test_unknown_cue_design_is_refused(tmp_path):
    with pytest.raises(DataError, match="unknown cue design"):
        render_sample(0, "train", 0, cues="shared")
    with pytest.raises(DataError, match="unknown cue design"):
        SynthFERMemory(3, cues="shared")
    with pytest.raises(DataError, match="unknown cue design"):
        write_synth(tmp_path, train=7, test=0, cues="shared")


def test_memory_dataset_matches_render_sample():
    data = SynthFERMemory(9, split="test_wild", size=32, seed=4, transform=torchvision.transforms.ToTensor())
    assert len(data) == 9 and data.classes == CLASSES
    image, label = data[7]
    expected = render_sample(4, "test_wild", 7, size=32)
    assert label == expected.label and tuple(image.shape) == (3, 32, 32)
    assert np.array_equal(np.asarray(data.load_image(7)), np.asarray(expected.image))
    assert np.array_equal(data.cue_mask(7), expected.cue_mask)
    assert np.array_equal(data.occluder_mask(7), expected.occluder_mask)
    assert data.cue_design == "redundant" and data.occluded_region(7) == expected.occluded_region


def test_memory_dataset_renders_the_cue_design_it_is_given():
    data = SynthFERMemory(9, split="test", size=32, seed=4, cues="exclusive")
    expected = render_sample(4, "test", 5, size=32, cues="exclusive")
    assert data.cue_design == "exclusive" and data.sample(5).cues == expected.cues
    assert np.array_equal(np.asarray(data.load_image(5)), np.asarray(expected.image))
    assert data.occluded_region(5) is None


def test_write_synth_manifest(written):
    out, manifest, calls = written
    assert manifest["format"] == "pasm-synthfer" and manifest["version"] == 1
    assert manifest["seed"] == 5 and manifest["size"] == 32 and manifest["classes"] == CLASSES
    assert {split: manifest["splits"][split]["count"] for split in SPLITS} == {"train": 14, "test": 7,
                                                                               "test_wild": 7}
    assert manifest["splits"]["train"]["class_counts"] == {name: 2 for name in CLASSES}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert calls == list(range(1, 29))
    assert manifest["cue_design"] == "redundant" and set(manifest["expressions"]) == set(CLASSES)
    assert manifest["expressions"]["happiness"]["mouth"] == {"cues": ["smile"], "probability": 0.9}
    record = manifest["splits"]["test_wild"]["images"][3]
    assert set(record) == {"file", "label", "cues", "intensity", "occluder", "occluded_region"}
    assert record["occluder"] is not None and record["occluded_region"] == occluded_region(5, 3)
    assert manifest["splits"]["test"]["images"][3]["occluded_region"] is None


def test_round_trip_through_disk(written):
    out, _, _ = written
    assert SynthFER.splits(out) == list(SPLITS)
    for split, count in (("train", 14), ("test_wild", 7)):
        data = SynthFER(out, split)
        assert len(data) == count and data.classes == CLASSES
        for index in (0, count - 1):
            expected = render_sample(5, split, index, size=32)
            image, label = data[index]
            assert label == expected.label
            assert np.array_equal(np.asarray(image), np.asarray(expected.image))
            assert np.array_equal(data.cue_mask(index), expected.cue_mask)
            assert np.array_equal(data.occluder_mask(index), expected.occluder_mask)
            assert data.cue_design == "redundant" and data.occluded_region(index) == expected.occluded_region


def test_exclusive_design_round_trips_and_older_directories_read_as_exclusive(tmp_path):
    write_synth(tmp_path, train=7, test=4, size=24, cues="exclusive")
    data = SynthFER(tmp_path, "train")
    assert data.cue_design == "exclusive"
    assert np.array_equal(np.asarray(data[3][0]), np.asarray(render_sample(0, "train", 3, 24, "exclusive").image))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["expressions"]["happiness"]["mouth"] == ["smile"]
    del manifest["cue_design"]  # as written before the cue designs
    for record in manifest["splits"]["test_wild"]["images"]:
        del record["occluded_region"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert SynthFER(tmp_path, "train").cue_design == "exclusive"
    assert SynthFER(tmp_path, "test_wild").occluded_region(0) is None
    manifest["cue_design"] = "shared"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="unknown cue design"):
        SynthFER(tmp_path, "train")


def test_synth_command_writes_the_chosen_design(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "redundant" in capsys.readouterr().out
    for cues in CUE_DESIGNS:
        assert main(["synth", str(tmp_path / cues), "--train", "7", "--test", "0", "--size", "16",
                     "--cues", cues]) == 0
        assert SynthFER(tmp_path / cues, "train").cue_design == cues
    assert main(["synth", str(tmp_path / "default"), "--train", "7", "--test", "0", "--size", "16"]) == 0
    assert SynthFER(tmp_path / "default", "train").cue_design == "redundant"


def test_imagefolder_reads_a_split(written):
    out, _, _ = written
    folder = torchvision.datasets.ImageFolder(out / "train")
    ours = SynthFER(out, "train")
    assert len(folder) == len(ours) and sorted(folder.classes) == sorted(CLASSES)
    by_file = {str(path): label for path, label in ours.samples}
    for path, folder_label in folder.samples:
        assert folder.classes[folder_label] == CLASSES[by_file[path]]


def test_directory_without_manifest_is_refused(written, tmp_path):
    with pytest.raises(DataError, match="not a SynthFER directory"):
        SynthFER(tmp_path, "train")
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(DataError, match="not a SynthFER manifest"):
        SynthFER(tmp_path, "train")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable manifest"):
        SynthFER(tmp_path, "train")


def test_missing_split_or_file_is_named(tmp_path):
    write_synth(tmp_path, train=7, test=0, size=24)
    assert SynthFER.splits(tmp_path) == ["train"]
    with pytest.raises(DataError, match="no split 'val'"):
        SynthFER(tmp_path, "val")
    data = SynthFER(tmp_path, "train")
    image_file = data.samples[2][0]
    image_file.unlink()
    with pytest.raises(DataError) as error:
        data[2]
    assert str(image_file) in str(error.value)
    mask_file = tmp_path / "masks" / "train" / image_file.parent.name / (image_file.stem + "_cue.png")
    mask_file.unlink()
    with pytest.raises(DataError, match="mask file is missing"):
        data.cue_mask(2)
    shutil.rmtree(tmp_path / "train")
    with pytest.raises(DataError, match="split directory is missing"):
        SynthFER(tmp_path, "train")


def test_rewriting_replaces_the_old_data_set(tmp_path):
    write_synth(tmp_path, train=14, test=7, size=24)
    write_synth(tmp_path, train=7, test=0, size=24)
    assert len(torchvision.datasets.ImageFolder(tmp_path / "train")) == 7
    assert not (tmp_path / "test").exists()


def test_write_synth_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a SynthFER directory"):
        write_synth(tmp_path, train=7, test=0)
    assert (tmp_path / "notes.txt").exists()

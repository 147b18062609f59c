import json

import numpy as np
import pytest
import torch
from PIL import Image

from pasm.checkpoints import make_meta, save_checkpoint
from pasm.cli import main
from pasm.data import open_dataset
from pasm.data.occlusion import EYES_Y, OCCLUDERS, OccludedDataset, occlude, occluder_kind
from pasm.data.synth import CLASSES, render_sample, write_synth
from pasm.data.transforms import eval_transform
from pasm.evaluate import EvalSets, evaluate
from pasm.models import InputSpec, build_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synth"
    write_synth(path, train=7, test=21, size=32, seed=1)
    return f"synth:{path}"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, model, make_meta(model, CLASSES))
    return path, model.eval()


def test_occluders_are_deterministic_per_index_and_cover_part_of_the_face():
    face = render_sample(0, "test", 0, 64).image
    kinds = set()
    for index in range(60):
        occluded, mask, kind = occlude(face, index, seed=3)
        again, mask_again, _ = occlude(face, index, seed=3)
        assert np.array_equal(np.asarray(occluded), np.asarray(again)) and np.array_equal(mask, mask_again)
        assert kind == occluder_kind(index, seed=3)
        assert mask.shape == (64, 64) and 0.02 < mask.mean() < 0.5
        changed = (np.asarray(occluded, np.int16) - np.asarray(face, np.int16)).any(axis=2)
        assert not changed[~mask].mean() > 0.05  # outside the mask only antialiased edges change
        rows = np.nonzero(mask.any(axis=1))[0] / 64
        if kind == "sunglasses":
            assert abs(rows.mean() - EYES_Y) < 0.1
        if kind in ("mask", "scarf"):
            assert rows.mean() > 0.6
        kinds.add(kind)
    assert kinds == set(OCCLUDERS)
    assert [occluder_kind(i, 0) for i in range(20)] != [occluder_kind(i, 1) for i in range(20)]


def test_occluders_keep_the_image_mode():
    gray = render_sample(0, "test", 1, 48).image.convert("L")
    occluded, mask, _ = occlude(gray, 5)
    assert occluded.mode == "L" and occluded.size == (48, 48) and mask.any()


def test_eval_sets_match_the_plain_evaluation(synth, checkpoint):
    _, model = checkpoint
    sets = EvalSets(synth, model.input_spec)
    metrics = sets.evaluate(model)
    plain = evaluate(model, open_dataset(synth, "test", eval_transform(model.input_spec)))
    assert metrics["accuracy"] == pytest.approx(plain["accuracy"]) and metrics["confusion"] == plain["confusion"]
    occluded = OccludedDataset(open_dataset(synth, "test"), seed=0, transform=eval_transform(model.input_spec))
    assert metrics["occluded_accuracy"] == pytest.approx(evaluate(model, occluded)["accuracy"])
    wild = evaluate(model, open_dataset(synth, "test_wild", eval_transform(model.input_spec)))
    assert metrics["wild_accuracy"] == pytest.approx(wild["accuracy"])
    assert set(metrics["occluded_accuracy_by_kind"]) <= set(OCCLUDERS)


def test_eval_cli_writes_the_metrics(synth, checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(path), "--data", synth, "--json", str(out), "--device", "cpu"]) == 0
    table = capsys.readouterr().out.splitlines()
    metrics = json.loads(out.read_text())
    assert len(table) <= 40, "a table read at a glance; every number is in --json"
    assert table[0] == f"{path} on {synth} (test, 21 images)"
    assert table[2].split() == ["clean", f"{metrics['accuracy']:.4f}", f"{metrics['mean_class_accuracy']:.4f}"]
    assert any(line.split()[:2] == ["test_wild", f"{metrics['wild_accuracy']:.4f}"] for line in table)
    rows = {line.split()[0]: line.split()[3:] for line in table if line.split()[:1] and line.split()[0] in CLASSES}
    assert [[int(n) for n in rows[name]] for name in CLASSES] == metrics["confusion"], "one confusion row per class"
    assert metrics["classes"] == CLASSES
    for key in ("accuracy", "mean_class_accuracy", "confusion", "per_class_accuracy", "occluded_accuracy",
                "occluded_mean_class_accuracy", "wild_accuracy"):
        assert key in metrics, key
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (7, 7) and confusion.sum() == metrics["count"] == 21
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / 21)
    assert metrics["split"] == "test" and metrics["data"] == synth


def test_eval_table_of_many_classes_leaves_the_matrix_to_the_json():
    from pasm.evaluate import TABLE_CLASSES, format_metrics

    classes = [f"class_{i}" for i in range(TABLE_CLASSES + 1)]
    metrics = {"checkpoint": "c.pt", "data": "folder:x", "split": "val", "count": 30, "classes": classes,
               "accuracy": 0.5, "mean_class_accuracy": 0.5, "occluded_accuracy": 0.25, "occluded_mean_class_accuracy": 0.2,
               "per_class_accuracy": {c: 0.5 for c in classes}, "occluded_per_class_accuracy": {c: 0.2 for c in classes},
               "confusion": [[1] * len(classes)] * len(classes), "occluded_accuracy_by_kind": {"hand": 0.25},
               "class_mapping": {"description": "identical"}}
    table = format_metrics(metrics).splitlines()
    assert len(table) <= 40 and any("confusion matrix are in --json" in line for line in table)


def test_eval_on_a_folder_data_set_uses_val_and_the_generic_occluders(tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path / "sorted.safetensors"
    save_checkpoint(path, model, make_meta(model, sorted(CLASSES)))  # folder classes come sorted
    for split in ("train", "val"):
        for name in CLASSES:
            (tmp_path / "faces" / split / name).mkdir(parents=True)
            render_sample(0, "test", CLASSES.index(name), 40).image.save(tmp_path / "faces" / split / name / "a.png")
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(path), "--data", f"folder:{tmp_path / 'faces'}", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "val" and metrics["count"] == 7
    assert "occluded_accuracy" in metrics and "wild_accuracy" not in metrics


def test_eval_refuses_a_checkpoint_with_other_classes(synth, tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path / "other.safetensors"
    save_checkpoint(path, model, make_meta(model, [f"c{i}" for i in range(7)]))
    assert main(["eval", "--checkpoint", str(path), "--data", synth]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "have no match among the checkpoint's" in err
    assert len(err.strip().splitlines()) == 1


def test_occluded_dataset_keeps_labels_and_order(synth):
    base = open_dataset(synth, "test")
    occluded = OccludedDataset(base, seed=0)
    assert occluded.classes == base.classes and occluded.targets == base.targets
    image = occluded.load_image(2)
    assert isinstance(image, Image.Image) and image.size == base.load_image(2).size
    assert occluded.occluder_mask(2).any() and occluded.occluder(2) in OCCLUDERS


def test_wild_accuracy_by_region_matches_a_hand_count(synth, checkpoint):
    """Each test_wild image counted under the region its manifest record says was occluded."""
    from collections import Counter
    from pathlib import Path

    from pasm.data.synth import REGIONS
    from pasm.data.transforms import decode_all, uint8_transform

    _, model = checkpoint
    metrics = EvalSets(synth, model.input_spec).evaluate(model)
    images, labels = decode_all(open_dataset(synth, "test_wild", uint8_transform(model.input_spec)))
    with torch.no_grad():
        correct = (model(images.float() / 255).argmax(1) == labels).tolist()
    manifest = json.loads((Path(synth.removeprefix("synth:")) / "manifest.json").read_text())
    hits, counts = Counter(), Counter()
    for record, right in zip(manifest["splits"]["test_wild"]["images"], correct):
        counts[record["occluded_region"]] += 1
        hits[record["occluded_region"]] += right
    assert sorted(counts.values()) == [5, 5, 5, 6]  # 21 images over 4 regions
    assert metrics["wild_accuracy_by_region"] == pytest.approx({r: hits[r] / counts[r] for r in REGIONS})
    assert metrics["wild_accuracy"] == pytest.approx(sum(hits.values()) / 21)


def test_wild_accuracy_by_region_is_left_out_without_recorded_regions(tmp_path, checkpoint):
    _, model = checkpoint
    write_synth(tmp_path, train=0, test=7, size=32, seed=1, cues="exclusive")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for record in manifest["splits"]["test_wild"]["images"]:
        del record["occluded_region"]  # as written before regions were recorded
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    metrics = EvalSets(f"synth:{tmp_path}", model.input_spec).evaluate(model)
    assert "wild_accuracy" in metrics and "wild_accuracy_by_region" not in metrics


# Checkpoints whose classes are named or ordered unlike the data set's (pasm.emotions)

FER_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # FER2013's names and order
RAF_NAME = {"angry": "anger", "happy": "happiness", "sad": "sadness"}  # the rest are spelled alike


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory):
    """A RAF-DB basic copy in the distributed layout: 14 test faces (SynthFER renderings), codes 1..7 twice."""
    root = tmp_path_factory.mktemp("raf") / "basic"
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for i in range(14):
        render_sample(3, "test", i, 48).image.save(root / "Image" / "aligned" / f"test_{i:04d}_aligned.jpg")
        lines.append(f"test_{i:04d}.jpg {i % 7 + 1}")
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return f"rafdb:{root}"


@pytest.fixture(scope="module")
def fer_checkpoint(tmp_path_factory):
    """A small CNN named like the FER2013 teacher that only ever says angry or fear (both placed elsewhere in RAF-DB)."""
    torch.manual_seed(0)
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    with torch.no_grad():
        model.backbone.fc.bias.copy_(torch.tensor([5.0, -5, 5.01, -5, -5, -5, -5]))
    path = tmp_path_factory.mktemp("fer") / "fer.safetensors"
    save_checkpoint(path, model, make_meta(model, FER_NAMES))
    return path, model.eval()


def by_hand(model, spec):
    """Predictions in RAF-DB's order, mapped name by name from the model's FER-ordered outputs, and the labels."""
    from pasm.data.readers import RafDB
    from pasm.data.transforms import decode_all, uint8_transform

    images, labels = decode_all(open_dataset(spec, "test", uint8_transform(model.input_spec)))
    with torch.no_grad():
        fer = model(images.float() / 255).argmax(1)
    to_raf = torch.tensor([RafDB.CLASSES.index(RAF_NAME.get(name, name)) for name in FER_NAMES])
    return to_raf[fer], fer, labels


def test_eval_maps_fer_names_onto_rafdb_and_scores_like_the_hand_permutation(rafdb, fer_checkpoint, tmp_path, capsys):
    path, model = fer_checkpoint
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(path), "--data", rafdb, "--json", str(out), "--device", "cpu"]) == 0
    line = capsys.readouterr().out
    assert "accuracy" in line and "angry->anger" in line and "happy->happiness" in line
    metrics = json.loads(out.read_text())
    assert metrics["class_mapping"]["classes"] == {"surprise": "surprise", "fear": "fear", "disgust": "disgust",
                                                   "happiness": "happy", "sadness": "sad", "anger": "angry",
                                                   "neutral": "neutral"}
    predicted, unmapped, labels = by_hand(model, rafdb)
    assert metrics["count"] == 14
    assert metrics["accuracy"] == pytest.approx(float((predicted == labels).float().mean()))
    expected = torch.zeros(7, 7, dtype=torch.long).index_put_((labels, predicted), torch.tensor(1), accumulate=True)
    assert metrics["confusion"] == expected.tolist()
    naive = torch.zeros(7, 7, dtype=torch.long).index_put_((labels, unmapped), torch.tensor(1), accumulate=True)
    assert naive.tolist() != expected.tolist()  # reading the outputs in FER order would score differently


def test_eval_drops_an_extra_checkpoint_class(rafdb, fer_checkpoint, tmp_path, capsys):
    """An 8-class checkpoint (contempt) on 7-class data: scored over the data's classes with the kept logits."""
    _, seven = fer_checkpoint
    torch.manual_seed(1)
    model = build_model("small_cnn", 8, InputSpec(32, 3))
    state = {k: v for k, v in seven.backbone.state_dict().items()}
    state["fc.weight"] = torch.cat([state["fc.weight"], torch.zeros(1, state["fc.weight"].shape[1])])
    state["fc.bias"] = torch.cat([state["fc.bias"], torch.tensor([9.0])])  # contempt would win everywhere
    model.backbone.load_state_dict(state)
    path = tmp_path / "eight.safetensors"
    save_checkpoint(path, model, make_meta(model, FER_NAMES + ["contempt"]))
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(path), "--data", rafdb, "--device", "cpu", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["class_mapping"]["unused"] == ["contempt"]
    predicted, _, labels = by_hand(seven, rafdb)
    assert metrics["accuracy"] == pytest.approx(float((predicted == labels).float().mean()))


def test_eval_names_the_data_classes_the_checkpoint_lacks(rafdb, tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path / "pain.safetensors"
    save_checkpoint(path, model, make_meta(model, FER_NAMES[:6] + ["pain"]))
    assert main(["eval", "--checkpoint", str(path), "--data", rafdb]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {rafdb}: classes 'neutral' of the data set have no match")
    assert len(err.strip().splitlines()) == 1

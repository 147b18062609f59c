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
    assert "accuracy" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    for key in ("accuracy", "mean_class_accuracy", "confusion", "per_class_accuracy", "occluded_accuracy",
                "occluded_mean_class_accuracy", "wild_accuracy"):
        assert key in metrics, key
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (7, 7) and confusion.sum() == metrics["count"] == 21
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / 21)
    assert metrics["split"] == "test" and metrics["data"] == synth


def test_eval_on_a_folder_data_set_uses_val_and_the_generic_occluders(tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path / "sorted.safetensors"
    save_checkpoint(path, model, make_meta(model, sorted(CLASSES)))  # folder classes come sorted
    for split in ("train", "val"):
        for name in CLASSES:
            (tmp_path / "faces" / split / name).mkdir(parents=True)
            render_sample(0, "test", CLASSES.index(name), 40).image.save(tmp_path / "faces" / split / name / "a.png")
    assert main(["eval", "--checkpoint", str(path), "--data", f"folder:{tmp_path / 'faces'}"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "val" and metrics["count"] == 7
    assert "occluded_accuracy" in metrics and "wild_accuracy" not in metrics


def test_eval_refuses_a_checkpoint_with_other_classes(synth, tmp_path, capsys):
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    path = tmp_path / "other.safetensors"
    save_checkpoint(path, model, make_meta(model, [f"c{i}" for i in range(7)]))
    assert main(["eval", "--checkpoint", str(path), "--data", synth]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "differ" in err and len(err.strip().splitlines()) == 1


def test_occluded_dataset_keeps_labels_and_order(synth):
    base = open_dataset(synth, "test")
    occluded = OccludedDataset(base, seed=0)
    assert occluded.classes == base.classes and occluded.targets == base.targets
    image = occluded.load_image(2)
    assert isinstance(image, Image.Image) and image.size == base.load_image(2).size
    assert occluded.occluder_mask(2).any() and occluded.occluder(2) in OCCLUDERS

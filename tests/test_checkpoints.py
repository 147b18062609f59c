import json
import os
import pickle

import pytest
import torch

from pasm.checkpoints import describe, file_sha256, load_checkpoint, load_state_dict_into, make_meta, save_checkpoint
from pasm.errors import CheckpointError
from pasm.models import InputSpec, build_model

CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


def tiny_model(arch="small_cnn", classes=7, channels=3, size=32):
    torch.manual_seed(0)
    return build_model(arch, classes, InputSpec(size, channels)).eval()


def same_outputs(a, b, channels=3, size=32):
    """Compares backbones: a foreign checkpoint gets its architecture's default normalisation."""
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a.backbone(x), b.backbone(x), atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_keeps_weights_and_metadata(tmp_path, suffix):
    model = tiny_model(channels=1)
    parent = "ab" * 32
    meta = make_meta(model, CLASSES, generation=2, parent_hash=parent, train_config={"lr": 0.1}, metrics={"acc": 0.5})
    path = tmp_path / f"m{suffix}"
    digest = save_checkpoint(path, model, meta)
    assert digest == file_sha256(path)
    ckpt = load_checkpoint(path)
    assert ckpt.classes == CLASSES
    assert ckpt.meta["generation"] == 2 and ckpt.meta["parent_hash"] == parent
    assert ckpt.meta["input"]["channels"] == 1 and ckpt.meta["input"]["size"] == 32
    assert ckpt.meta["train_config"] == {"lr": 0.1} and ckpt.meta["metrics"] == {"acc": 0.5}
    assert ckpt.sha256 == digest
    assert same_outputs(model, ckpt.model, channels=1)
    assert not list(tmp_path.glob(".*tmp")), "atomic write left a temporary file"


def test_make_meta_refuses_wrong_class_count():
    with pytest.raises(ValueError):
        make_meta(tiny_model(), CLASSES[:3])


@pytest.mark.parametrize(
    "layout",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {}},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model", "ddp"],
)
def test_foreign_layouts_load_with_arch(tmp_path, layout):
    model = tiny_model("resnet18", classes=8, size=32)
    path = tmp_path / "foreign.pth"
    torch.save(layout(model.backbone.state_dict()), path)
    ckpt = load_checkpoint(path, arch="resnet18", input_size=32)
    assert ckpt.classes == [f"class_{i}" for i in range(8)]
    assert ckpt.meta["provenance"]["foreign"] is True
    assert same_outputs(model, ckpt.model)
    named = load_checkpoint(path, arch="resnet18", classes=list("abcdefgh"), input_size=32)
    assert named.classes == list("abcdefgh")


def test_foreign_grayscale_channel_count_comes_from_first_conv(tmp_path):
    model = tiny_model("mobilenet_v3_small", classes=7, channels=1, size=32)
    path = tmp_path / "gray.pt"
    torch.save(model.backbone.state_dict(), path)
    ckpt = load_checkpoint(path, arch="mobilenet_v3_small", input_size=32)
    assert ckpt.meta["input"]["channels"] == 1
    assert same_outputs(model, ckpt.model, channels=1)


def test_foreign_without_arch_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save(tiny_model().backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match="name its architecture"):
        load_checkpoint(path)


def test_class_count_mismatch_names_the_layer(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save(tiny_model("resnet18", classes=8).backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"fc\.weight has 8 outputs but 7 class names"):
        load_checkpoint(path, arch="resnet18", classes=CLASSES)


def test_wrong_architecture_names_the_layer(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save(tiny_model("resnet18").backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match="layer .* is missing"):
        load_checkpoint(path, arch="small_cnn")


def test_shape_mismatch_inside_names_the_layer(tmp_path):
    sd = tiny_model().backbone.state_dict()
    sd["features.1.0.weight"] = torch.zeros(5, 5, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"layer features\.1\.0\.weight has shape \[5, 5, 3, 3\]"):
        load_checkpoint(path, arch="small_cnn")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    "write",
    [
        lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2)),
        lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=4)),
        lambda obj, path: torch.save(obj, path),
    ],
    ids=["pickle2", "pickle4", "torch-zip"],
)
def test_code_running_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch, write):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    write({"state_dict": RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"refused: the file is a pickle that would run code \((posix|os)\.system"):
        load_checkpoint(path, arch="small_cnn")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "content,reason",
    [(b"", "empty file"), (b"hello, not a checkpoint", "not a PyTorch checkpoint"), (b"\x00" * 64, "not a PyTorch")],
)
def test_non_checkpoints_get_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_checkpoint(path, arch="small_cnn")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    save_checkpoint(path, tiny_model(), make_meta(tiny_model(), CLASSES))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_describe_reports_identity_and_metadata(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, make_meta(model, CLASSES, generation=1))
    info = describe(path)
    assert info["sha256"] == file_sha256(path) and info["generation"] == 1 and info["arch"] == "small_cnn"
    json.dumps(info)


def test_weights_from_a_file_load_into_a_built_model(tmp_path):
    source = build_model("small_cnn", 7)
    save_checkpoint(tmp_path / "init.pt", source, make_meta(source, list("abcdefg")))
    fresh = build_model("small_cnn", 7)
    load_state_dict_into(fresh, tmp_path / "init.pt")
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[key], value)


def test_weights_that_do_not_fit_are_refused_by_layer(tmp_path):
    source = build_model("small_cnn", 5)
    save_checkpoint(tmp_path / "five.pt", source, make_meta(source, list("abcde")))
    with pytest.raises(CheckpointError, match="layer fc.weight has shape"):
        load_state_dict_into(build_model("small_cnn", 7), tmp_path / "five.pt")

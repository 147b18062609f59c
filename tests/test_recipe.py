"""The RAF-DB recipe and pretrained initialisation, on a tiny fixture in RAF-DB's layout."""
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pasm.checkpoints import load_checkpoint, load_pretrained
from pasm.cli import main
from pasm.errors import CheckpointError
from pasm.models import InputSpec, build_model
from pasm.options import RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")


def make_rafdb(root, per_split=8):
    """RAF-DB basic's layout: EmoLabel/list_patition_label.txt and Image/aligned/<name>_aligned.jpg (labels 1-7)."""
    rng = np.random.default_rng(0)
    lines = []
    for split, count in (("train", per_split), ("test", per_split // 2)):
        for i in range(count):
            name = f"{split}_{i + 1:05d}"
            lines.append(f"{name}.jpg {i % 7 + 1}")
            path = root / "Image" / "aligned" / f"{name}_aligned.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(path)
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def imagenet_like_resnet18(path):
    """torchvision's resnet18 layout with 1000 ImageNet classes, as torchvision's weight files hold it."""
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    return path


def test_pretrained_weights_fill_every_layer_but_a_differing_classifier(tmp_path):
    weights = imagenet_like_resnet18(tmp_path / "resnet18.pth")
    model = build_model("resnet18", 7, InputSpec(32, 3))
    fresh = load_pretrained(model, weights)
    assert fresh == ["fc.bias", "fc.weight"]
    source = torch.load(weights, weights_only=True)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    with pytest.raises(CheckpointError, match="not pretrained weights for this architecture"):
        load_pretrained(build_model("small_cnn", 7, InputSpec(32, 3)), weights)


def test_rafdb_recipe_runs_from_pretrained_weights(tmp_path, capsys):
    data = make_rafdb(tmp_path / "basic")
    weights = imagenet_like_resnet18(tmp_path / "resnet18.pth")
    out = tmp_path / "run"
    assert main(["train", "--recipe", "rafdb-resnet18", "--data", f"rafdb:{data}", "--out", str(out), "--init",
                 str(weights), "--size", "32", "--epochs", "1", "--batch", "4", "--generations", "1",
                 "--max-points", "3", "--device", "cpu", "--workers", "0"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    recipe = RECIPES["rafdb-resnet18"]
    for key in ("arch", "optimizer", "lr", "weight_decay", "warmup"):
        assert config[key] == recipe[key]
    assert config["size"] == 32 and config["epochs"] == 1, "options given on the command line win"
    assert config["init"] == str(weights.resolve()) and config["init_from"] == "teacher"
    teacher = load_checkpoint(out / "gen0.safetensors")
    assert teacher.classes == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert (out / "gen1.safetensors").is_file()


def test_the_recipe_needs_pretrained_weights(tmp_path, capsys):
    assert main(["train", "--recipe", "rafdb-resnet18", "--data", f"rafdb:{make_rafdb(tmp_path / 'b')}",
                 "--out", str(tmp_path / "run")]) == 2
    assert "add --init imagenet" in capsys.readouterr().err


# torchvision's weights by name (--init imagenet): nothing here may touch the network


RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name in ResNet18_Weights.IMAGENET1K_V1's url


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch.hub cache, and a network that fails as it does offline (the test fails if anything downloads)."""
    from urllib.error import URLError

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch"


@pytest.mark.parametrize("name", ["imagenet", "torchvision:ResNet18_Weights.IMAGENET1K_V1"])
def test_imagenet_weights_by_name_load_from_torch_hubs_cache(torch_home, name):
    cached = imagenet_like_resnet18(mkdirs(torch_home / "hub" / "checkpoints") / RESNET18_FILE)
    model = build_model("resnet18", 7, InputSpec(32, 3))
    assert load_pretrained(model, name) == ["fc.bias", "fc.weight"]
    source = torch.load(cached, weights_only=True)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])


def test_imagenet_weights_offline_say_what_to_download_and_where(torch_home):
    with pytest.raises(CheckpointError) as info:
        load_pretrained(build_model("resnet18", 7, InputSpec(32, 3)), "imagenet")
    message = str(info.value)
    assert message.startswith("--init imagenet: cannot download https://download.pytorch.org/models/" + RESNET18_FILE)
    assert message.endswith(f"put it at {torch_home / 'hub' / 'checkpoints' / RESNET18_FILE}")
    assert "\n" not in message


@pytest.mark.parametrize("arch, name, reason", [
    ("small_cnn", "imagenet", "no ImageNet weights for small_cnn"),
    ("resnet18", "torchvision:ResNet18_Weights.NOPE", "no such weights"),
    ("resnet18", "torchvision:resnet18", "no such weights"),
    ("resnet18", "torchvision:MobileNet_V3_Small_Weights.IMAGENET1K_V1", "not pretrained weights for this architecture"),
])
def test_unknown_or_foreign_weights_names_are_refused(torch_home, arch, name, reason):
    if "MobileNet" in name:
        mobilenet = torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict()
        torch.save(mobilenet, mkdirs(torch_home / "hub" / "checkpoints") / "mobilenet_v3_small-047dcff4.pth")
    with pytest.raises(CheckpointError, match=reason):
        load_pretrained(build_model(arch, 7, InputSpec(32, 3)), name)


def mkdirs(path):
    path.mkdir(parents=True, exist_ok=True)
    return path

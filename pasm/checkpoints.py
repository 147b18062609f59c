"""Checkpoints are data, never code.

A pasm checkpoint is one file: the backbone's weights plus a JSON metadata block (architecture,
class names in order, input spec, generation, parent hash, training config, metrics,
provenance). It is written as safetensors (``.safetensors``) or as a ``torch.save`` of plain
tensors and JSON values (``.pt``/``.pth``), atomically. Every load goes through safetensors or
``torch.load(weights_only=True)``, so a pickle that would run code is refused before it runs.

Checkpoints made elsewhere (a bare state_dict, ``{"state_dict": ...}``, ``{"model": ...}``,
DDP's ``module.`` prefixes) load too once the user names the architecture.
"""
import hashlib
import json
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import torch

from . import fileio
from .errors import CheckpointError, first_line
from .models import InputSpec, architecture, build_model, check_state_dict, default_input_spec

FORMAT = "pasm-checkpoint"
VERSION = 1
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
SAFE_PICKLE_MODULES = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set")
# ``--init`` names for torchvision's pretrained weights (``is_weights_name``).
IMAGENET = "imagenet"
TORCHVISION_PREFIX = "torchvision:"


@dataclass
class Checkpoint:
    model: torch.nn.Module
    meta: dict
    path: Path
    sha256: str

    @property
    def classes(self):
        return self.meta["classes"]


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_meta(model, classes, generation=0, parent_hash=None, train_config=None, metrics=None, provenance=None):
    """The metadata block; every value is JSON so it survives both file formats unchanged."""
    if len(classes) != model.num_classes:
        raise ValueError(f"{len(classes)} class names for a model with {model.num_classes} outputs")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "classes": list(classes),
        "input": model.input_spec.to_dict(),
        "generation": int(generation),
        "parent_hash": parent_hash,
        "train_config": train_config or {},
        "metrics": metrics or {},
        "provenance": provenance or {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return json.loads(json.dumps(meta))


def save_checkpoint(path, model, meta):
    """Write weights and metadata in one atomic step; the format follows the file's suffix."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
    with fileio.atomic_path(path) as tmp:
        if path.suffix in SAFETENSORS_SUFFIXES:
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata={"pasm": json.dumps(meta)})
        else:
            torch.save({"pasm": meta, "state_dict": tensors}, tmp)
    return file_sha256(path)


def load_checkpoint(path, arch=None, classes=None, input_size=None, device="cpu"):
    """Load any supported checkpoint into an eval-mode ``FERNet``.

    ``arch``, ``classes`` and ``input_size`` are only needed (and only used) for checkpoints
    without pasm metadata.
    """
    path = Path(path)
    meta, state_dict = read_checkpoint(path)
    if meta is None:
        meta = foreign_meta(path, state_dict, arch, classes, input_size)
    model = model_from_meta(meta, path)
    check_state_dict(model, state_dict, path)
    model.backbone.load_state_dict(state_dict)
    model.to(device).eval()
    return Checkpoint(model=model, meta=meta, path=path, sha256=file_sha256(path))


def read_metadata(path):
    """The metadata alone, or None for a foreign checkpoint; used by ``pasm info`` and the app's picker."""
    return read_checkpoint(Path(path))[0]


def read_checkpoint(path):
    """(meta or None, state_dict with plain names) from a file, refusing anything but data."""
    if not path.is_file():
        raise CheckpointError(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file")
    if _looks_like_safetensors(path):
        return _read_safetensors(path)
    return _read_torch(path)


def _looks_like_safetensors(path):
    if path.suffix in SAFETENSORS_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"not a readable safetensors file ({first_line(e)})") from None
    meta = json.loads(header["pasm"]) if "pasm" in header else None
    return meta, _strip_prefixes(state_dict)


def _read_torch(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign bytes; all mean "not loadable"
        raise CheckpointError(path, _load_failure(path, e)) from None
    meta = obj.get("pasm") if isinstance(obj, dict) and isinstance(obj.get("pasm"), dict) else None
    return meta, _strip_prefixes(_unwrap(obj, path))


def _load_failure(path, error):
    """Tell a pickle that wants code apart from bytes that are no checkpoint at all."""
    imports = _pickle_imports(path)
    unsafe = [name for name in imports or [] if not name.startswith(SAFE_PICKLE_MODULES)]
    if unsafe:
        return f"refused: the file is a pickle that would run code ({', '.join(unsafe[:3])}); only weights are loaded"
    if imports is not None and isinstance(error, pickle.UnpicklingError):
        return "refused: the pickle holds objects other than tensors; only weights are loaded"
    return f"not a PyTorch checkpoint or safetensors file ({first_line(error)})"


def _pickle_imports(path):
    """The ``module.name`` globals a pickle would import, read with pickletools (which runs nothing).

    None when the bytes are not a pickle (nor a torch zip archive holding one).
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            data = Path(path).read_bytes()
        imports, strings = [], []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                imports.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                imports.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return imports
    except Exception:  # any failure to parse means "not a pickle"
        return None


def _unwrap(obj, path):
    """Find the tensors in the layouts researchers actually have on disk."""
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(path, "no weights found (expected a state_dict, or a dict with 'state_dict' or 'model')")


def _strip_prefixes(state_dict):
    """DDP saves ``module.x``; torch.compile saves ``_orig_mod.x``; pasm's wrapper is ``backbone.x``."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod.", "backbone."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def foreign_meta(path, state_dict, arch, classes, input_size):
    """Metadata for a checkpoint made elsewhere, from the user's word and the weights' shapes."""
    if arch is None:
        raise CheckpointError(path, "not a pasm checkpoint; name its architecture (--arch)")
    spec = architecture(arch)
    for key in (spec.classifier_key, spec.first_conv_key):
        if key not in state_dict:
            raise CheckpointError(path, f"layer {key} is missing, so this is not a {arch} checkpoint")
    num_classes = state_dict[spec.classifier_key].shape[0]
    if classes is None:
        classes = [f"class_{i}" for i in range(num_classes)]
    elif len(classes) != num_classes:
        raise CheckpointError(
            path, f"layer {spec.classifier_key} has {num_classes} outputs but {len(classes)} class names were given"
        )
    channels = state_dict[spec.first_conv_key].shape[1]
    input_spec = default_input_spec(arch, size=input_size, channels=channels)
    model = build_model(arch, num_classes, input_spec)
    meta = make_meta(model, classes, provenance={"source": str(path), "foreign": True})
    return meta


def model_from_meta(meta, path):
    try:
        spec = InputSpec(**meta["input"])
        return build_model(meta["arch"], len(meta["classes"]), spec)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(path, f"metadata is incomplete or invalid ({e})") from None


def load_state_dict_into(model, path):
    """Weights from any supported checkpoint file into a model built here (its architecture and class count),
    checked layer by layer so a misfit is named rather than half loaded."""
    _, state_dict = read_checkpoint(Path(path))
    check_state_dict(model, state_dict, path)
    model.backbone.load_state_dict(state_dict)


def load_pretrained(model, source):
    """Pretrained weights as a starting point: a file (ImageNet, a face model: any supported file), or torchvision's
    weights by name (``is_weights_name``). Every layer whose name and shape match is loaded, and the classifier
    stays freshly initialised when the class count differs. Weights that fit only the classifier, or too little of
    the network, are refused, naming them: they are not this architecture's. Returns the names of the layers left
    as they were."""
    state_dict = torchvision_state_dict(source, model.arch) if is_weights_name(source) else read_checkpoint(Path(source))[1]
    own = model.backbone.state_dict()
    fitting = {name: value for name, value in state_dict.items() if name in own and own[name].shape == value.shape}
    head = architecture(model.arch).classifier(model.backbone)
    classifier = {f"{name}.{kind}" for name, module in model.backbone.named_modules() if module is head
                  for kind in ("weight", "bias")}
    if len(set(fitting) - classifier) < len(set(own) - classifier) / 2:
        raise CheckpointError(source, f"only {len(fitting)} of {model.arch}'s {len(own)} tensors match by name and "
                                      "shape: not pretrained weights for this architecture")
    model.backbone.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def is_weights_name(init):
    """Whether ``--init`` names torchvision's weights rather than a file: ``imagenet`` (the architecture's default
    ImageNet weights) or ``torchvision:<Weights>.<NAME>``, e.g. ``torchvision:ResNet18_Weights.IMAGENET1K_V1``."""
    return str(init) == IMAGENET or str(init).startswith(TORCHVISION_PREFIX)


def torchvision_weights(name, arch):
    """The torchvision weights (a ``WeightsEnum`` member) that ``name`` stands for, for architecture ``arch``."""
    from torchvision.models import get_model_weights, get_weight

    if name == IMAGENET:
        try:
            return get_model_weights(arch).DEFAULT
        except ValueError:
            raise CheckpointError(f"--init {name}", f"torchvision has no ImageNet weights for {arch}; pass a weights "
                                                    "file, or use resnet18, resnet50 or mobilenet_v3_small") from None
    try:
        return get_weight(name[len(TORCHVISION_PREFIX):])
    except (ValueError, KeyError):
        raise CheckpointError(f"--init {name}", "torchvision has no such weights (the form is torchvision:"
                                                "<Weights>.<NAME>, e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1)") from None


def torchvision_state_dict(name, arch):
    """Torchvision's pretrained weights by name, through its weights API: read from torch.hub's cache
    (``$TORCH_HOME/hub/checkpoints``) when there, with the same refusals as any file; else downloaded into it once
    (``WeightsEnum.get_state_dict``). Offline, the error says which file to fetch and where to put it."""
    weights = torchvision_weights(name, arch)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if cached.is_file():
        return read_checkpoint(cached)[1]
    try:
        return _strip_prefixes(weights.get_state_dict(progress=False, weights_only=True))
    except OSError as e:  # URLError, HTTPError, a timeout: no network, or no such file on the server
        raise CheckpointError(f"--init {name}", f"cannot download {weights.url} ({first_line(e)}); fetch it where "
                                                f"there is a network and put it at {cached}") from None


def describe(path, arch=None, classes=None):
    """What ``pasm info`` prints: the metadata (derived, for a foreign file) plus the file's identity."""
    path = Path(path)
    meta = read_metadata(path) or load_checkpoint(path, arch, classes).meta
    return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size, **meta}

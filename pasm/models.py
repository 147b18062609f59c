"""Architectures for FER, behind one registry.

Every model pasm builds is a ``FERNet``: the input normalisation lives inside the network, so
the attack, the erasing and the app all work in plain pixel space ([0, 1]) and "push a pixel
to the extreme of the valid range" means 0 or 1. The backbone keeps torchvision's own layer
names, so weights trained elsewhere load without renaming.
"""
from dataclasses import asdict, dataclass, field

import torch
import torchvision
from torch import nn

from .errors import CheckpointError, PasmError
from .mini_xception import MiniXception

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class InputSpec:
    """What a model expects: a square ``size``×``size`` image of ``channels`` channels in [0, 1]."""

    size: int = 64
    channels: int = 3
    mean: list = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list = field(default_factory=lambda: [0.5, 0.5, 0.5])

    def __post_init__(self):
        self.size = int(self.size)
        self.channels = int(self.channels)
        self.mean = _per_channel(self.mean, self.channels)
        self.std = _per_channel(self.std, self.channels)

    def to_dict(self):
        return asdict(self)


def _per_channel(values, channels):
    """ImageNet statistics are given for RGB; a grayscale model takes their average."""
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    if channels == 1:
        return [sum(values) / len(values)]
    if len(values) == 1:
        return values * channels
    raise ValueError(f"{len(values)} normalisation values for {channels} channels")


class FERNet(nn.Module):
    """A backbone with its input normalisation, taking images in [0, 1]."""

    def __init__(self, arch, backbone, input_spec):
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.input_spec = input_spec
        shape = (1, input_spec.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(input_spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(input_spec.std).view(shape), persistent=False)

    def forward(self, x):
        return self.backbone((x - self.mean) / self.std)

    @property
    def num_classes(self):
        return architecture(self.arch).classifier(self.backbone).out_features

    @property
    def cam_layer(self):
        """The last convolutional block, where Grad-CAM looks (as in adversarial erasing)."""
        return architecture(self.arch).cam_layer(self.backbone)


class SmallCNN(nn.Module):
    """A plain VGG-style net that trains on SynthFER in about a minute on two CPU cores.

    Four conv-BN-ReLU-pool blocks; Grad-CAM looks at the last one (a 4×4 map at 64 px, the same
    resolution as ResNet's layer4 at 112 px).
    """

    def __init__(self, num_classes=7, in_channels=3, width=16):
        super().__init__()
        widths = [width, width * 2, width * 4, width * 4]
        blocks, c_in = [], in_channels
        for c_out in widths:
            blocks.append(_conv_block(c_in, c_out))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def _conv_block(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)
    )


def _resnet(factory, zero_init_residual=False):
    def build(num_classes, in_channels):
        net = factory(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net

    return build


# torchvision's MobileNetV3 updates its batch-norm running statistics with momentum 0.01, made for ImageNet's
# long schedule: after the few hundred steps of a FER fine-tuning they still hold mostly their initial values,
# and the network classifies at chance in eval mode while it learns in train mode. PyTorch's default follows
# the statistics of a short run.
MOBILENET_BN_MOMENTUM = 0.1


def _mobilenet_v3_small(num_classes, in_channels):
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = net.features[0][0]
        net.features[0][0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = MOBILENET_BN_MOMENTUM
    return net


@dataclass(frozen=True)
class Architecture:
    """How to build a backbone and where its classifier, first convolution and Grad-CAM layer are.

    ``classifier_key`` and ``first_conv_key`` name state-dict entries, which is all a foreign
    checkpoint needs to reveal its class count and channel count.
    """

    build: callable
    classifier: callable
    cam_layer: callable
    classifier_key: str
    first_conv_key: str
    default_input: InputSpec


# How to build each architecture that pasm.options.ARCHITECTURES names (the torch-free list the CLI offers).
BUILDERS = {
    "small_cnn": Architecture(
        build=lambda n, c: SmallCNN(n, c),
        classifier=lambda m: m.fc,
        cam_layer=lambda m: m.features[-1],
        classifier_key="fc.weight",
        first_conv_key="features.0.0.weight",
        default_input=InputSpec(64, 3),
    ),
    "resnet18": Architecture(
        build=_resnet(torchvision.models.resnet18),
        classifier=lambda m: m.fc,
        cam_layer=lambda m: m.layer4,
        classifier_key="fc.weight",
        first_conv_key="conv1.weight",
        default_input=InputSpec(112, 3, IMAGENET_MEAN, IMAGENET_STD),
    ),
    # From scratch on a few hundred faces ResNet-50 stays near chance with torchvision's initialisation (10 epochs on
    # 600 SynthFER faces: test accuracy 0.16). Starting each bottleneck's last batch norm at zero makes every residual
    # block begin as the identity (Goyal et al., 2017, "Accurate, Large Minibatch SGD", section 5.1), and the same
    # run reaches 0.26 (2 seeds). ResNet-18 learns less with it (0.24 against 0.38), so it keeps the default.
    "resnet50": Architecture(
        build=_resnet(torchvision.models.resnet50, zero_init_residual=True),
        classifier=lambda m: m.fc,
        cam_layer=lambda m: m.layer4,
        classifier_key="fc.weight",
        first_conv_key="conv1.weight",
        default_input=InputSpec(112, 3, IMAGENET_MEAN, IMAGENET_STD),
    ),
    "mobilenet_v3_small": Architecture(
        build=_mobilenet_v3_small,
        classifier=lambda m: m.classifier[-1],
        cam_layer=lambda m: m.features[-1],
        classifier_key="classifier.3.weight",
        first_conv_key="features.0.0.weight",
        default_input=InputSpec(112, 3, IMAGENET_MEAN, IMAGENET_STD),
    ),
    # fer's FER2013 model: its input is x / 255 * 2 - 1, i.e. (x - 0.5) / 0.5 on [0, 1] pixels.
    "mini_xception": Architecture(
        build=lambda n, c: MiniXception(n, c),
        classifier=lambda m: m.classifier,
        cam_layer=lambda m: m.blocks[-1],
        classifier_key="classifier.weight",
        first_conv_key="conv1.weight",
        default_input=InputSpec(64, 1, mean=[0.5], std=[0.5]),
    ),
}


def architecture(name):
    if name not in BUILDERS:
        raise PasmError(f"architecture {name!r}", f"unknown; choose one of {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name]


def default_input_spec(arch, size=None, channels=None):
    base = architecture(arch).default_input
    return InputSpec(size or base.size, channels or base.channels, base.mean, base.std)


def build_model(arch, num_classes, input_spec=None):
    """A freshly initialised ``FERNet``; weights from a file go in with pasm.checkpoints.load_state_dict_into."""
    spec = input_spec or default_input_spec(arch)
    return FERNet(arch, architecture(arch).build(num_classes, spec.channels), spec)


def check_state_dict(model, state_dict, source):
    """Refuse weights that do not fit, naming the first layer that differs."""
    expected = model.backbone.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise CheckpointError(source, f"layer {key} is missing (is this a {model.arch} checkpoint?)")
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                source,
                f"layer {key} has shape {list(state_dict[key].shape)} but {model.arch} "
                f"with {model.num_classes} classes expects {list(tensor.shape)}",
            )
    unexpected = sorted(set(state_dict) - set(expected))
    if unexpected:
        raise CheckpointError(source, f"unexpected layer {unexpected[0]} (is this a {model.arch} checkpoint?)")

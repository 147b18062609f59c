import pytest
import torch

from pasm.errors import PasmError
from pasm.models import BUILDERS, InputSpec, build_model


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("channels,size", [(3, 64), (1, 48)])
def test_every_architecture_takes_any_channels_and_size(arch, channels, size):
    model = build_model(arch, 5, InputSpec(size, channels)).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, channels, size, size))
    assert logits.shape == (2, 5)
    assert model.num_classes == 5
    assert model.cam_layer is not None


def test_normalisation_is_inside_the_model():
    model = build_model("small_cnn", 3, InputSpec(16, 3, mean=[0.2, 0.4, 0.6], std=[0.5, 0.5, 0.5]))
    x = torch.rand(1, 3, 16, 16)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    model.eval()(x)
    expected = (x - torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)) / 0.5
    assert torch.allclose(seen["x"], expected)


def test_grayscale_takes_mean_of_imagenet_stats():
    spec = InputSpec(32, 1, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert spec.mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(PasmError, match="unknown; choose one of"):
        build_model("vgg99", 7)


def test_the_torch_free_names_match_the_registry():
    from pasm import models, options

    assert tuple(models.BUILDERS) == options.ARCHITECTURES


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_batch_norm_statistics_follow_a_short_training(arch):
    """Eval mode uses the running statistics, so after a short training they must be the trained ones: twenty
    training-mode passes over one batch take every batch norm's running mean at least 80 % of the way from its
    start to the mean of what it sees. torchvision's MobileNetV3 momentum (0.01) would take it a fifth of the
    way, and leave the network at chance in evaluation."""
    torch.manual_seed(0)
    model = build_model(arch, 7, InputSpec(32, 3)).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    start = [m.running_mean.clone() for m in norms]
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, inputs: seen.__setitem__(m, inputs[0].mean((0, 2, 3))))
             for m in norms]
    with torch.no_grad():
        for _ in range(20):
            model(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    for hook in hooks:
        hook.remove()
    for begin, norm in zip(start, norms):
        assert (norm.running_mean - seen[norm]).norm() <= 0.2 * (begin - seen[norm]).norm() + 1e-6


def test_only_resnet50_starts_its_residual_blocks_as_the_identity():
    """ResNet-50's defaults learn from scratch only with each block's last batch norm starting at zero (see
    pasm.models); ResNet-18 learns better without it."""
    deep = build_model("resnet50", 7, InputSpec(32, 3)).backbone
    shallow = build_model("resnet18", 7, InputSpec(32, 3)).backbone
    assert all(torch.count_nonzero(block.bn3.weight) == 0 for block in residual_blocks(deep))
    assert all(torch.count_nonzero(block.bn2.weight) == block.bn2.weight.numel() for block in residual_blocks(shallow))


def residual_blocks(resnet):
    return [block for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4) for block in layer]

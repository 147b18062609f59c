import pytest
import torch
from torch import nn

from pasm.erasing import FILLS, GradCAM, SaliencyMap, erase, random_boxes
from pasm.errors import PasmError
from pasm.mining import AttentionRegions, RandomRegions, RegionConfig
from pasm.models import InputSpec, build_model
from pasm.regions import box_masks, locate_regions, window_side

SIZE = 32


def textured_images(batch=4, channels=3, size=SIZE, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=g, dtype=dtype)


def some_masks(batch=4, size=SIZE):
    boxes = torch.tensor([[2, 3, 12, 9], [0, 0, 5, 5], [20, 10, 32, 32], [0, 0, 0, 0]])[:batch]
    return box_masks(boxes, size)


class BrightnessNet(nn.Module):
    """FERNet-like: class 1 scores brightness, class 0 darkness, through a pooled conv layer.

    Grad-CAM of class 1 is then the (pooled) brightness map, so it peaks on a bright square.
    """

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]).view(2, 3, 1, 1) / 3)
            conv.bias.copy_(torch.tensor([0.0, 1.0]))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4), nn.Dropout(0.5))
        self.cam_layer = self.features

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3)).flip(1)


def images_with_bright_squares(corners, side=6):
    g = torch.Generator().manual_seed(1)
    images = 0.3 * torch.rand(len(corners), 3, SIZE, SIZE, generator=g)
    for i, (x, y) in enumerate(corners):
        images[i, :, y : y + side, x : x + side] = 1.0
    return images


@pytest.mark.parametrize("fill", FILLS)
def test_every_fill_changes_only_masked_pixels(fill):
    images = textured_images()
    masks = some_masks()
    erased = erase(images, masks, fill, generator=torch.Generator().manual_seed(99))
    outside = ~masks.expand_as(images)
    assert erased.shape == images.shape and erased.dtype == images.dtype
    assert torch.equal(erased[outside], images[outside])
    assert not torch.equal(erased[~outside], images[~outside])
    assert erased.min() >= 0 and erased.max() <= 1


def test_zeros_and_mean_fills():
    images = textured_images(dtype=torch.float64)
    masks = some_masks()
    inside = masks.expand_as(images)
    assert (erase(images, masks, "zeros")[inside] == 0).all()
    mean = [0.2, 0.4, 0.6]
    erased = erase(images, masks, "mean", mean=mean)
    assert erased.dtype == torch.float64
    for c, value in enumerate(mean):
        assert (erased[:, c][masks[:, 0]] == value).all()
    assert (erase(images, masks, "mean")[inside] == 0.5).all()
    gray = erase(textured_images(channels=1), masks, "mean", mean=torch.tensor([0.3]))
    assert (gray[masks] == 0.3).all()


def test_noise_is_reproducible_with_a_seeded_generator():
    images, masks = textured_images(), some_masks()
    first = erase(images, masks, "noise", generator=torch.Generator().manual_seed(7))
    again = erase(images, masks, "noise", generator=torch.Generator().manual_seed(7))
    other = erase(images, masks, "noise", generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_blur_keeps_coarse_colour_but_removes_detail():
    images, masks = textured_images(), some_masks()
    erased = erase(images, masks, "blur")
    inside = masks.expand_as(images)
    assert not torch.allclose(erased[inside], images[inside])
    assert erased[inside].std() < 0.5 * images[inside].std()  # uniform noise loses its texture
    flat = torch.full_like(images, 0.25)
    assert torch.allclose(erase(flat, masks, "blur"), flat)  # a blur of a flat image is the image


def test_erase_refuses_bad_input():
    images, masks = textured_images(), some_masks()
    with pytest.raises(PasmError, match="erasing fill 'paint'"):
        erase(images, masks, "paint")
    with pytest.raises(PasmError, match="needs 1 or 3 values"):
        erase(images, masks, "mean", mean=[0.1, 0.2])
    with pytest.raises(PasmError, match="erasing masks"):
        erase(images, masks.float())
    with pytest.raises(PasmError, match="erasing masks"):
        erase(images, masks[:2])
    with pytest.raises(PasmError, match="must be float"):
        erase((images * 255).to(torch.uint8), masks)


def test_random_boxes_are_inside_reproducible_and_vary():
    area = 0.1
    side = window_side(SIZE, area)
    boxes = random_boxes(64, SIZE, area, generator=torch.Generator().manual_seed(3))
    assert boxes.shape == (64, 4) and boxes.dtype == torch.long
    assert (boxes[:, 2] - boxes[:, 0] == side).all() and (boxes[:, 3] - boxes[:, 1] == side).all()
    assert (boxes >= 0).all() and (boxes <= SIZE).all()
    assert len(set(map(tuple, boxes.tolist()))) > 1
    assert torch.equal(boxes, random_boxes(64, SIZE, area, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(boxes, random_boxes(64, SIZE, area, generator=torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("area", [0.05, 0.1, 0.25])
def test_random_erasing_erases_exactly_the_pasm_area(area):
    images = textured_images(batch=6)
    points = torch.randint(0, SIZE, (6, 5, 2), generator=torch.Generator().manual_seed(0))
    pasm = locate_regions(points, torch.full((6,), 5), SIZE, "densest", area).masks
    masks = RandomRegions(RegionConfig(area=area), torch.Generator().manual_seed(1)).locate(images).masks
    assert torch.equal(masks.sum(dim=(1, 2, 3)), pasm.sum(dim=(1, 2, 3)))


def test_gradcam_and_saliency_on_small_cnn_leave_the_model_alone():
    model = build_model("small_cnn", 4, InputSpec(SIZE, 3)).eval()
    images = textured_images(batch=3)
    for method in (GradCAM(model), SaliencyMap(model)):
        maps = method.attribute(images, torch.tensor([0, 1, 3]))
        assert maps.shape == (3, 1, SIZE, SIZE)
        assert maps.min() >= 0 and maps.max() <= 1
        peaks = maps.flatten(1).amax(dim=1)
        # normalised per image; on an untrained net Grad-CAM's ReLU may leave a map all zero
        assert (((peaks - 1).abs() < 1e-5) | (peaks == 0)).all()
        if isinstance(method, SaliencyMap):
            assert torch.allclose(peaks, torch.ones(3))
        assert not maps.requires_grad
        assert not model.training
        assert all(p.grad is None for p in model.parameters())
    assert not images.requires_grad


def test_attribution_runs_in_eval_mode_and_restores_train_mode():
    model = BrightnessNet().train()
    images = images_with_bright_squares([(4, 4), (20, 12)])
    with torch.no_grad():  # works even where the caller turned gradients off
        first = GradCAM(model).attribute(images, 1)
        second = GradCAM(model).attribute(images, 1)
    assert torch.equal(first, second)  # dropout was off while attributing
    assert model.training and model.features[-1].training


def test_gradcam_works_on_a_frozen_teacher():
    model = BrightnessNet().eval().requires_grad_(False)
    cam = GradCAM(model).attribute(images_with_bright_squares([(8, 8)]), None)
    assert cam.max() == 1


@pytest.mark.parametrize("target", [torch.tensor([0, 1, 3]), 2, None])
def test_gradcam_is_captums_layer_gradcam(target):
    """Written out for thread safety (see GradCAM), it computes what captum's LayerGradCam does."""
    from captum.attr import LayerAttribution, LayerGradCam

    model = build_model("small_cnn", 4, InputSpec(SIZE, 3)).eval()
    images = textured_images(batch=3)
    classes = model(images).argmax(1) if target is None else target
    reference = LayerGradCam(model, model.cam_layer).attribute(images.clone().requires_grad_(True), target=classes,
                                                               relu_attributions=True)
    reference = LayerAttribution.interpolate(reference.detach(), (SIZE, SIZE), "bilinear")
    peak = reference.flatten(1).amax(1).view(-1, 1, 1, 1).clamp(min=torch.finfo(reference.dtype).tiny)
    torch.testing.assert_close(GradCAM(model).attribute(images, target), reference / peak)


def test_gradcam_records_only_its_own_threads_forward_passes():
    """Another thread's forward pass through the shared layer, while an attribution's hook is on it, is not taken
    for the attribution's activation."""
    import threading

    from pasm.erasing import _layer_output

    model = BrightnessNet().eval()
    with _layer_output(model.cam_layer) as outputs:
        other = threading.Thread(target=model, args=(textured_images(batch=2),))
        other.start()
        other.join()
        assert outputs == []
        model(textured_images(batch=1))
    assert len(outputs) == 1 and outputs[0].shape[0] == 1
    assert not model.cam_layer._forward_hooks, "the hook is removed after the call"


def test_attention_box_lands_on_the_planted_hot_spot():
    corners = [(2, 2), (24, 3), (13, 22)]
    images = images_with_bright_squares(corners)
    model = BrightnessNet().eval()
    boxes = AttentionRegions(model, RegionConfig(area=0.1)).locate(images, torch.ones(3, dtype=torch.long)).boxes
    square = box_masks(torch.tensor([[x, y, x + 6, y + 6] for x, y in corners]), SIZE)
    overlap = (box_masks(boxes, SIZE) & square).sum(dim=(1, 2, 3))
    assert (overlap == 36).all()  # the 10x10 window holds the whole 6x6 square


def test_attention_erasing_erases_exactly_the_pasm_area_on_the_hot_spot():
    images = images_with_bright_squares([(2, 2), (24, 3)])
    model = BrightnessNet().eval()
    masks = AttentionRegions(model, RegionConfig(area=0.1)).locate(images, torch.ones(2, dtype=torch.long)).masks
    erased = erase(images, masks, "zeros")
    assert (masks.sum(dim=(1, 2, 3)) == window_side(SIZE, 0.1) ** 2).all()
    assert (erased[:, :, 2:8, 2:8][0] == 0).all() and (erased[:, :, 3:9, 24:30][1] == 0).all()
    assert all(p.grad is None for p in model.parameters())


def test_saliency_follows_the_input_gradient():
    model = BrightnessNet().eval()
    images = images_with_bright_squares([(4, 4)])
    saliency = SaliencyMap(model).attribute(images, 1)
    # class 1 is the mean of relu(brightness): every pixel with positive brightness counts the same
    assert torch.allclose(saliency, torch.ones_like(saliency))

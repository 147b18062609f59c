"""Erasing a region of a batch, and what the two baselines PASM is compared with draw on:
random windows, and the teacher's Grad-CAM for attention (adversarial) erasing. pasm.mining turns
them into same-area regions (``regions.window_side``), so at a given area every method erases
exactly as many pixels. Images are in [0, 1] (models normalise inside, see pasm.models);
everything runs batched on the images' device.
"""
import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from captum.attr import Saliency
from torchvision.transforms.v2 import functional as TF

from .errors import PasmError
from .options import FILLS
from .regions import window_side


# Sigma of the "blur" fill as a fraction of the image side: at 112 px it is 11 px, enough to wipe
# expression detail (wrinkles, teeth, eye shape) while keeping the face's coarse shading.
BLUR_SIGMA = 0.1


def erase(images, masks, fill="mean", mean=None, generator=None):
    """``images`` with the pixels under ``masks`` replaced by ``fill``; the rest is untouched.

    ``mean`` is the data set's per-channel mean (default 0.5 per channel). ``noise`` is uniform in
    [0, 1], drawn from ``generator`` (on its own device) for reproducible runs. ``blur`` pastes a
    strongly blurred copy of the image, so the region keeps its colour but loses its detail.
    """
    if fill not in FILLS:
        raise PasmError(f"erasing fill {fill!r}", f"unknown; choose one of {', '.join(FILLS)}")
    _check_images(images)
    if masks.dtype != torch.bool or masks.shape != (images.shape[0], 1, *images.shape[2:]):
        raise PasmError(
            f"erasing masks of shape {list(masks.shape)} and type {masks.dtype}",
            f"must be bool of shape {[images.shape[0], 1, *images.shape[2:]]}",
        )
    return torch.where(masks.to(images.device), _fill_values(images, fill, mean, generator), images)


def _check_images(images):
    if images.dim() != 4 or not images.is_floating_point():
        raise PasmError(f"images of shape {list(images.shape)} and type {images.dtype}", "must be float (B, C, H, W)")


def _fill_values(images, fill, mean, generator):
    if fill == "zeros":
        return torch.zeros_like(images)
    if fill == "mean":
        return _channel_mean(mean, images).expand_as(images)
    if fill == "noise":
        device = generator.device if generator is not None else images.device
        noise = torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype)
        return noise.to(images.device)
    sigma = BLUR_SIGMA * max(images.shape[-2:])
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * min(images.shape[-2:]) - 1)
    return TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def _channel_mean(mean, images):
    channels = images.shape[1]
    values = torch.as_tensor(0.5 if mean is None else mean, dtype=images.dtype, device=images.device).flatten()
    if values.numel() not in (1, channels):
        raise PasmError(f"erasing mean {values.tolist()}", f"needs 1 or {channels} values, one per channel")
    return values.expand(channels).view(1, channels, 1, 1)


def random_boxes(batch, size, area, generator=None, device=None):
    """Square windows of ``window_side(size, area)`` at uniformly random places, fully inside.

    The positions are drawn on the generator's device (CPU by default) and then moved, so a seed
    gives the same boxes on any device.
    """
    side = window_side(size, area)
    draw_on = generator.device if generator is not None else torch.device("cpu")
    corners = torch.randint(0, size - side + 1, (batch, 2), generator=generator, device=draw_on)
    boxes = torch.cat([corners, corners + side], dim=1)
    return boxes.to(device) if device is not None else boxes


def random_windows(sides, size, generator=None):
    """Square windows of per-image ``sides`` (B,) at uniformly random places, fully inside; a side of 0 gives the
    empty box. What "a random window of the same area" means for a region that is not the nominal window.

    Like ``random_boxes``, the places are drawn on the generator's device (CPU by default) and then moved."""
    draw_on = generator.device if generator is not None else torch.device("cpu")
    drawn_sides = sides.to(draw_on).long()
    room = (size - drawn_sides + 1).clamp(min=1)
    corners = (torch.rand((len(sides), 2), generator=generator, device=draw_on) * room[:, None]).long()
    boxes = torch.cat([corners, corners + drawn_sides[:, None]], dim=1) * (drawn_sides > 0)[:, None]
    return boxes.to(sides.device)


@contextlib.contextmanager
def eval_mode(model):
    """Run in eval mode (no dropout, fixed batch-norm statistics), then restore every module's mode.

    A model already in eval mode is not touched at all: the app's sessions share one cached teacher, and
    a call must not write state that another session's call is reading."""
    modes = [(module, module.training) for module in model.modules()]
    if not any(training for _, training in modes):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _layer_output(layer):
    """The outputs ``layer`` gives during this thread's forward passes, while the block runs.

    The hook sits on a module that other threads may run at the same time (app sessions sharing a
    cached model): their passes fire it too, and must neither overwrite this call's activation nor be
    recorded by it. (captum's layer attributions keep one activation per device, which concurrent
    calls on one model overwrite.)"""
    caller, outputs = threading.get_ident(), []

    def record(module, inputs, output):
        if threading.get_ident() == caller:
            outputs.append(output)

    handle = layer.register_forward_hook(record)
    try:
        yield outputs
    finally:
        handle.remove()


def _targets(model, inputs, target):
    """Captum's target argument; ``None`` means the predicted class."""
    if target is None:
        with torch.no_grad():
            return model(inputs).argmax(dim=1)
    if isinstance(target, torch.Tensor):
        return target.to(inputs.device)
    return target


def _normalise(maps):
    """Scale each map to [0, 1] by its maximum; an all-zero map stays zero."""
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return maps / peak.clamp(min=torch.finfo(maps.dtype).tiny)


class GradCAM:
    """Grad-CAM at ``model.cam_layer``, upsampled to the image: (B, 1, H, W) in [0, 1].

    Written out rather than captum's ``LayerGradCam``, whose layer hook keeps one activation per device, so
    that concurrent calls on one model (the app's sessions share a cached teacher) cannot see each other's
    forward passes (``_layer_output``). The same formula: the class score's gradient at the layer, averaged
    over space, weighs the layer's channels; ReLU. Gradients come from ``torch.autograd.grad``, so the
    model's parameter ``.grad`` is never written; only a detached copy of the input requires grad, which also
    makes frozen teachers work.
    """

    def __init__(self, model):
        self.model = model

    def attribute(self, images, target=None):
        """``target``: a class index, one per image, or None for the predicted class."""
        _check_images(images)
        with eval_mode(self.model), torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            with _layer_output(self.model.cam_layer) as outputs:
                logits = self.model(inputs)
            (activation,) = outputs
            classes = logits.argmax(1) if target is None else torch.as_tensor(target, device=logits.device)
            score = logits.gather(1, classes.expand(len(logits)).view(-1, 1)).sum()
            (gradients,) = torch.autograd.grad(score, activation)
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = (weights * activation.detach()).sum(dim=1, keepdim=True).relu()
        return _normalise(F.interpolate(cam, size=tuple(images.shape[-2:]), mode="bilinear"))


class SaliencyMap:
    """Vanilla gradient saliency: |d logit / d pixel|, max over channels, (B, 1, H, W) in [0, 1]."""

    def __init__(self, model):
        self.model = model
        self.method = Saliency(model)

    def attribute(self, images, target=None):
        _check_images(images)
        with eval_mode(self.model), torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            target = _targets(self.model, inputs, target)
            gradients = self.method.attribute(inputs, target=target, abs=True)
        return _normalise(gradients.detach().amax(dim=1, keepdim=True))

"""Every architecture learns with its own training defaults (pasm.options.ARCH_DEFAULTS, as TrainConfig
resolves them): a few dozen steps on a tiny SynthFER sample bring its training loss clearly down. A recipe
that leaves a net at chance (deep nets with SGD at 0.05 from scratch, say) fails here in seconds, long
before a real run would show it. Memorising 64 faces is a low bar: it catches a recipe that does not
train at all, not one that trains slowly.
"""
import math

import pytest
import torch
from torch import nn

from pasm.data.synth import SynthFERMemory
from pasm.data.transforms import eval_transform
from pasm.models import InputSpec, build_model, default_input_spec
from pasm.options import ARCHITECTURES
from pasm.train import TrainConfig, make_optimizer, warmup_cosine

SIZE, IMAGES, BATCH, EPOCHS = 32, 64, 16, 8  # 4 steps an epoch, 32 steps in all
STEPS_PER_EPOCH = IMAGES // BATCH

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces():
    """64 SynthFER training faces at 32 px, RGB in [0, 1], and their labels."""
    data = SynthFERMemory(IMAGES, "train", size=SIZE, seed=3, transform=eval_transform(InputSpec(SIZE, 3)))
    images, labels = zip(*(data[i] for i in range(IMAGES)))
    return torch.stack(images), torch.tensor(labels)


def optimizer_and_schedule(model, config):
    """As the trainer builds them: ``make_optimizer``, then ``warmup_cosine`` over the run with ``config.warmup``
    epochs of linear warm-up."""
    optimizer = make_optimizer(model.parameters(), config.optimizer, config.lr, config.weight_decay)
    return optimizer, warmup_cosine(optimizer, config.epochs * STEPS_PER_EPOCH, config.warmup * STEPS_PER_EPOCH)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_learns_with_its_defaults(arch, faces, tmp_path):
    config = TrainConfig(data=f"synth:{tmp_path}", arch=arch, size=SIZE, epochs=EPOCHS, batch=BATCH)
    spec = default_input_spec(arch, SIZE)
    images, labels = faces
    if spec.channels == 1:
        images = (images * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.manual_seed(0)
    model = build_model(arch, 7, spec).train()
    optimizer, scheduler = optimizer_and_schedule(model, config)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(EPOCHS):
        for batch in torch.randperm(IMAGES).view(STEPS_PER_EPOCH, BATCH):
            loss = criterion(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    # Clearly below where it started, and below chance's loss (ln 7): a recipe whose first steps blow the loss
    # up (resnets with SGD at 0.05) must not pass by falling back from there.
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * min(first, math.log(7)), (
        f"{arch} with {config.optimizer} lr {config.lr} wd {config.weight_decay} warm-up {config.warmup}: "
        f"loss {first:.3f} -> {last:.3f} ({[round(x, 2) for x in losses]})")

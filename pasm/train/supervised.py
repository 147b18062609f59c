"""The plain supervised loop (a teacher without a run directory) and the optimizer and schedule every pasm
training uses."""
import torch
from torch import nn
from torch.utils.data import DataLoader


def train_one_epoch(model, loader, optimizer, scheduler=None, device="cpu", label_smoothing=0.0):
    """One pass of supervised cross-entropy training; returns the mean loss."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    total, count = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / max(count, 1)


def fit_supervised(model, dataset, epochs=10, batch_size=64, lr=0.05, weight_decay=5e-4, device="cpu", workers=0, log=None):
    """A teacher trained with SGD and a per-step cosine schedule, without a run directory; the loss per epoch is returned."""
    model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=len(dataset) > batch_size)
    optimizer = make_optimizer(model.parameters(), "sgd", lr, weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * len(loader)))
    losses = []
    for epoch in range(epochs):
        losses.append(train_one_epoch(model, loader, optimizer, scheduler, device))
        if log:
            log(f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}")
    return losses


def make_optimizer(parameters, name, lr, weight_decay):
    """Every optimizer pasm trains with: ``name`` "sgd" (Nesterov, momentum 0.9) or "adamw"."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def warmup_cosine(optimizer, total_steps, warmup_steps):
    """A per-step cosine decay from the peak learning rate, after a linear warm-up of ``warmup_steps``
    (kept shorter than the run), which lets AdamW's first, noisy moment estimates settle before full steps."""
    warmup_steps = min(warmup_steps, total_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps))
    if warmup_steps <= 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])

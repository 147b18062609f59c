"""Attack benchmark: continuous batching vs one image at a time, distance to the fwd+bwd bound, mining memory, peers.

    python -m bench.attack [--device cpu|cuda] [--arch small_cnn] [--size 64] [--batch 64] [--autocast] [--json OUT]

Every figure is a ratio of times measured in this one run, on the same teacher and the same images.
The timed calls are interleaved and each keeps its least time over ``--repeats``: load from other
processes only ever adds time, so the least-disturbed call is the fairest. Without ``--checkpoint`` a
teacher is trained for a few seconds on SynthFER so that the attack has predictions worth flipping;
the labels are the teacher's own predictions, as when mining. The teacher is frozen, as the trainer's.

The figures (B = ``--batch``; N = ``--stream-batches`` x B images; M = ``--mining-batches`` x B):

- ``speedup``: images/s of ``PointAttack.stream(capacity=B)`` over the N images (continuous batching)
  against each of them attacked alone (``one_by_one``). ``single_batch_speedup`` is the older figure:
  one batch of B images attacked at once against the same B images one by one.
- ``fwd_bwd_batching_speedup``: B x (one image's forward + backward) / (the batch's forward + backward),
  what batching buys the network itself; ``speedup_share_of_fwd_bwd`` = speedup / that (target >= 0.8).
  Each pass time is that of a run of as many passes as the attack makes (one image: sum over the N
  images of points used + 1; the batch: that sum over the M mined images / B), so that a bound and
  what it bounds last about as long and meet the same load.
- ``mining_overhead_vs_points_used``: wall time of ``pasm.mining.locate_all`` (attack + regions) on the
  M images against ``bound_s`` = sum over those images of (points used + 1) x fwd_bwd_batch_s / B:
  every image pays for its points plus the forward that sees its flip (or its budget's end), each at
  its share of a full batch's forward + backward (target <= 1.15). M is larger than N because mining
  is a data set's affair: once the source runs dry the batch drains, and its half-empty steps cost
  more than their images' share. ``mining_profile`` times every step of one mining run:
  ``full_step_over_fwd_bwd`` is the loop's own cost per full step, ``drain_share`` the drain's.
- memory (``--memory-images K``): resident memory of a fresh interpreter mining K and 4K synthetic
  images through ``locate_all`` (boxes), made batch by batch so the data set is never held whole.
- peers: a plain per-image loop (the same greedy attack in a dozen lines, no batching bookkeeping) and
  torchattacks' JSMA when installed.
"""
import argparse
import concurrent.futures
import gc
import multiprocessing
import os
import resource
import threading
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from bench.common import device_and_threads, machine, median, now, sync, timed_together, write_report
from pasm.attack import AttackConfig, PointAttack
from pasm.checkpoints import load_checkpoint
from pasm.data.synth import SynthFERMemory
from pasm.data.transforms import eval_transform
from pasm.errors import PasmError
from pasm.mining import PasmRegions, locate_all
from pasm.models import build_model, default_input_spec
from pasm.train import fit_supervised

SPEEDUP_SHARE_TARGET = 0.8
MINING_OVERHEAD_TARGET = 1.15


def synth_tensors(n, split, spec, seed):
    data = SynthFERMemory(n, split, size=spec.size, seed=seed, transform=eval_transform(spec))
    images, labels = zip(*(data[i] for i in range(n)))
    return torch.stack(images), torch.tensor(labels)


def quick_teacher(arch, spec, train_images, epochs, device):
    torch.manual_seed(0)
    images, labels = synth_tensors(train_images, "train", spec, seed=0)
    model = build_model(arch, 7, spec)
    fit_supervised(model, TensorDataset(images, labels), epochs=epochs, batch_size=64, device=device)
    return model


def teacher(args, device):
    """The frozen teacher in eval mode, as the trainer mines with it (no parameter needs a gradient)."""
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, device=device).model
    else:
        spec = default_input_spec(args.arch, size=args.size)
        model = quick_teacher(args.arch, spec, args.train_images, args.epochs, device)
    return model.to(device).eval().requires_grad_(False)


def forward_backward(model, images, labels, autocast):
    """One pass of the bound, in the attack's own layout and precision, so the ratios measure the attack's bookkeeping."""
    x = images.clone().requires_grad_(True)
    with torch.autocast(images.device.type, enabled=autocast):
        logits = model(x.contiguous(memory_format=torch.channels_last))
    torch.autograd.grad(F.cross_entropy(logits.float(), labels, reduction="sum"), x)


class OneByOne:
    """Each image attacked alone by ``attack``; keeps every call's per-image times, so that the time of any
    first k images is known (the single-batch figure compares the first batch with its own images)."""

    def __init__(self, attack, images, labels, device):
        self.attack, self.images, self.labels, self.device = attack, images, labels, device
        self.calls = []

    def __call__(self):
        times = []
        for i in range(len(self.images)):
            sync(self.device)
            start = time.perf_counter()
            self.attack(self.images[i: i + 1], self.labels[i: i + 1])
            sync(self.device)
            times.append(time.perf_counter() - start)
        self.calls.append(times)

    def warm(self):
        for i in range(min(2, len(self.images))):
            self.attack(self.images[i: i + 1], self.labels[i: i + 1])

    def seconds(self, count=None):
        """Sum over the first ``count`` images of each image's least time over the calls (see timed_together)."""
        return sum(min(call[i] for call in self.calls) for i in range(count or len(self.images)))


def fwd_bwd_run(model, images, labels, passes, autocast):
    """``passes`` forward + backward passes back to back: a bound timed as long as what it bounds, so that load from
    other processes weighs on both alike (single passes, timed alone, could dodge it where a long run cannot)."""
    def run():
        for _ in range(passes):
            forward_backward(model, images, labels, autocast)
    return run


def plain_loop(model, image, label, budget, autocast):
    """The same greedy L1 point attack on one image, written plainly: the peer without any batching bookkeeping."""
    x, taken = image.clone(), torch.zeros(image.shape[-2] * image.shape[-1], dtype=torch.bool, device=image.device)
    for step in range(budget + 1):
        x.requires_grad_(True)
        with torch.autocast(x.device.type, enabled=autocast):
            logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        if step == budget or logits.argmax(1).item() != label.item():
            return x.detach()
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, label, reduction="sum"), x)
        where = grad.abs().sum(1).flatten().masked_fill(taken, float("-inf")).argmax()
        taken[where] = True
        x = x.detach()
        y, col = divmod(int(where), x.shape[-1])
        x[0, :, y, col] = torch.where(grad[0, :, y, col] > 0, 1.0, torch.where(grad[0, :, y, col] < 0, 0.0, x[0, :, y, col]))


def stream_schedule(steps, capacity):
    """Loop steps continuous batching makes for images needing ``steps`` forward passes each (in source order),
    and its mean occupancy: the bound assumes every step full, while the drain at the end is not."""
    pending, in_play, loop_steps, occupied = list(steps)[::-1], [], 0, 0
    while pending or in_play:
        while pending and len(in_play) < capacity:
            in_play.append(pending.pop())
        loop_steps += 1
        occupied += len(in_play)
        in_play = [s - 1 for s in in_play if s > 1]
    return loop_steps, occupied / (loop_steps * capacity)


def step_profile(attack, chunks, capacity, device):
    """Batch size and wall time of every step of one streamed run (a forward pre-hook marks each step's start):
    the median full step measures the loop's own cost per step, the rest is the drain once the source is dry."""
    marks = []
    hook = attack.model.register_forward_pre_hook(lambda module, inputs: marks.append((len(inputs[0]), time.perf_counter())))
    try:
        sync(device)
        start = time.perf_counter()
        attack.stream(chunks(), capacity=capacity)
        sync(device)
        end = time.perf_counter()
    finally:
        hook.remove()
    starts = [t for _, t in marks] + [end]
    steps = [(size, starts[i + 1] - starts[i]) for i, (size, _) in enumerate(marks)]
    full = [seconds for size, seconds in steps if size == capacity]
    return {"steps": len(steps), "full_steps": len(full), "full_step_s": median(full) if full else None,
            "drain_s": sum(seconds for size, seconds in steps if size < capacity), "total_s": end - start}


def attack_figures(model, args, device):
    """Continuous batching, one batch, one by one, a plain loop, mining and the network's own fwd+bwd, timed
    together. The per-image paths run on the first N images; mining runs on more (``--mining-batches``), as
    a data set is mined, so that the drain at its end weighs as little as it does in training."""
    batch = args.batch
    images, _ = synth_tensors(max(args.stream_batches, args.mining_batches) * batch, "test", model.input_spec, seed=1)
    images = images.to(device)
    with torch.no_grad():
        labels = torch.cat([model(images[i: i + batch]).argmax(1) for i in range(0, len(images), batch)])
    config = AttackConfig(max_points=args.max_points, autocast=args.autocast)
    attack, method = PointAttack(model, config), PasmRegions(model, config)
    n, m = args.stream_batches * batch, args.mining_batches * batch

    def chunks(count):
        return [(images[i: min(i + batch, count)], labels[i: min(i + batch, count)]) for i in range(0, count, batch)]

    def plain(count=n):
        for i in range(count):
            plain_loop(model, images[i: i + 1], labels[i: i + 1], args.max_points, args.autocast)

    streamed, mined = attack.stream(chunks(n), capacity=batch), locate_all(method, chunks(m), batch)[1]  # also warm-ups
    one_passes, batch_passes = int((streamed.num_points + 1).sum()), round(float((mined.num_points + 1).sum()) / batch)
    one_by_one = OneByOne(attack, images[:n], labels[:n], device)
    seconds = timed_together({
        "stream": lambda: attack.stream(chunks(n), capacity=batch),
        "mining": lambda: locate_all(method, chunks(m), batch),
        "single_batch": lambda: attack(images[:batch], labels[:batch]),
        "one_by_one": one_by_one,
        "plain_loop": plain,
        "fwd_bwd_batch": fwd_bwd_run(model, images[:batch], labels[:batch], batch_passes, args.autocast),
        "fwd_bwd_one": fwd_bwd_run(model, images[:1], labels[:1], one_passes, args.autocast),
    }, device, args.repeats, warmups={"one_by_one": one_by_one.warm, "plain_loop": lambda: plain(2),
                                      "stream": lambda: None, "mining": lambda: None})
    seconds.update(one_by_one=one_by_one.seconds(), fwd_bwd_batch=seconds["fwd_bwd_batch"] / batch_passes,
                   fwd_bwd_one=seconds["fwd_bwd_one"] / one_passes)
    report = ratios(seconds, one_by_one.seconds(batch), streamed, mined, batch)
    return {**report, **drain_figures(step_profile(attack, lambda: chunks(m), batch, device), seconds["fwd_bwd_batch"])}


def drain_figures(profile, fwd_bwd_batch_s):
    """Where mining's time over the bound goes: a full step's own cost (median), and the drain at the end."""
    full = profile["full_step_s"]
    return {"mining_profile": profile,
            "full_step_over_fwd_bwd": full / fwd_bwd_batch_s if full else None,
            "drain_share": profile["drain_s"] / profile["total_s"]}


def ratios(seconds, one_by_one_first_batch_s, streamed, mined, batch):
    """The report's figures from the measured times and the results (points used per image)."""
    n, fwd_bwd_share = len(streamed), seconds["fwd_bwd_batch"] / batch
    fwd_bwd_speedup = batch * seconds["fwd_bwd_one"] / seconds["fwd_bwd_batch"]
    speedup = seconds["one_by_one"] / seconds["stream"]
    image_steps = mined.num_points + 1  # points used, plus the forward that saw the flip or the budget's end
    bound_s = float(image_steps.sum()) * fwd_bwd_share
    loop_steps, occupancy = stream_schedule(image_steps.tolist(), batch)
    flipped = streamed.flipped
    return {
        "images": n, "stream_capacity": batch,
        "stream_images_per_s": n / seconds["stream"],
        "one_by_one_images_per_s": n / seconds["one_by_one"],
        "speedup": speedup,
        "single_batch_images_per_s": batch / seconds["single_batch"],
        "single_batch_speedup": one_by_one_first_batch_s / seconds["single_batch"],
        "fwd_bwd_batching_speedup": fwd_bwd_speedup,
        "speedup_share_of_fwd_bwd": speedup / fwd_bwd_speedup,
        "speedup_share_target": SPEEDUP_SHARE_TARGET,
        "stream_overhead_vs_points_used": seconds["stream"] / (float((streamed.num_points + 1).sum()) * fwd_bwd_share),
        "mining_images": len(mined),
        "bound": "sum over the mined images of (points used + 1) x fwd_bwd_batch_s / stream_capacity",
        "bound_s": bound_s,
        "mining_s": seconds["mining"],
        "mining_overhead_vs_points_used": seconds["mining"] / bound_s,
        "mining_overhead_target": MINING_OVERHEAD_TARGET,
        "mining_steps": loop_steps,
        "ideal_steps": float(image_steps.sum()) / batch,
        "mining_mean_occupancy": occupancy,
        "fwd_bwd_batch_s": seconds["fwd_bwd_batch"],
        "fwd_bwd_one_image_s": seconds["fwd_bwd_one"],
        "mean_points_used": float(streamed.num_points.float().mean()),
        "flip_rate": float(flipped.float().mean()),
        "mean_points_to_flip": float(streamed.points_to_flip[flipped].float().mean()) if flipped.any() else None,
        "plain_loop_images_per_s": n / seconds["plain_loop"],
        "speedup_vs_plain_loop": seconds["plain_loop"] / seconds["stream"],
        "one_by_one_vs_plain_loop": seconds["one_by_one"] / seconds["plain_loop"],
    }


def changed_locations(adversarial, images):
    return (adversarial != images).any(1).flatten(1).sum(1)


def run_peer(model, images, labels, config_points):
    """torchattacks' JSMA, targeted at each image's runner-up class (its easiest flip), one image at a time."""
    try:
        import torchattacks
    except ImportError:  # not a requirement: its pins (requests~=2.25) clash with streamlit's
        return {"skipped": "torchattacks is not installed; pip install --no-deps torchattacks==3.5.1"}

    with torch.no_grad():
        runner_up = model(images).topk(2, dim=1).indices[:, 1]
    height, width = images.shape[-2:]
    gamma = min(1.0, 2.0 * config_points / (images.shape[1] * height * width))  # the same budget in changed features
    attack = torchattacks.JSMA(model, theta=1.0, gamma=max(gamma, 1e-6))
    attack.set_mode_targeted_by_function(lambda _images, _labels: runner_up)
    start = time.perf_counter()
    adversarial = attack(images, labels)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        success = model(adversarial).argmax(1) != labels
    points = changed_locations(adversarial, images).float()
    return {
        "name": "torchattacks.JSMA (targeted at the runner-up class)",
        "images": len(images),
        "images_per_s": len(images) / seconds,
        "success_rate": float(success.float().mean()),
        "mean_points": float(points[success].mean()) if success.any() else None,
        "gamma": gamma,
    }


def peer_figures(model, args, device):
    """JSMA and PASM on the same few images (JSMA is far too slow for the stream's N)."""
    images, _ = synth_tensors(args.peer_images, "test", model.input_spec, seed=1)
    images = images.to(device)
    with torch.no_grad():
        labels = model(images).argmax(1)
    attack = PointAttack(model, AttackConfig(max_points=args.max_points, autocast=args.autocast))
    result = attack(images, labels)
    seconds = timed_together({"pasm": lambda: attack(images, labels)}, device, args.repeats)["pasm"]
    peer = run_peer(model, images, labels, args.max_points)
    peer["pasm_on_same_images"] = {
        "images_per_s": len(images) / seconds,
        "success_rate": float(result.flipped.float().mean()),
        "mean_points": float(result.points_to_flip[result.flipped].float().mean()) if result.flipped.any() else None,
    }
    return peer


# -------------------------------------------------------------------------------------------- memory


def synthetic_batches(count, batch, size, device, seed=0):
    """``count`` random uint8 images in batches, made one batch at a time: the data set never exists whole."""
    for start in range(0, count, batch):
        generator = torch.Generator().manual_seed(seed + start)
        images = torch.randint(0, 256, (min(batch, count - start), 3, size, size), dtype=torch.uint8, generator=generator)
        yield images.to(device).float().div_(255), None


def rss_mb():
    """Resident memory now (/proc/self/statm), which unlike ru_maxrss can go down."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples the resident memory every few milliseconds while the block runs. ru_maxrss cannot serve: it is
    the process's peak since it started, and importing torch alone (its CUDA libraries) peaks higher than mining."""

    def __init__(self, every_s=0.005):
        self.every_s, self.peak, self.done = every_s, 0.0, threading.Event()

    def __enter__(self):
        self.peak = rss_mb()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    def _sample(self):
        while not self.done.wait(self.every_s):
            self.peak = max(self.peak, rss_mb())


def tiny_model(size):
    """An untrained net of a few thousand weights: what mining holds in memory is the loop's bookkeeping and the
    results, which do not depend on the network, while a real network's time would only slow the check down."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(8 * (size // 4) ** 2, 7))


def mining_memory(images, batch, size, max_points, device_name):
    """Mine ``images`` synthetic images with a tiny untrained model in this (fresh) process; its memory figures.
    One thread: memory does not depend on it, and on a shared 2-core machine a second thread made the
    tiny model's many small operations about 10x slower."""
    torch.set_num_threads(1)
    device = torch.device(device_name)
    torch.manual_seed(0)
    model = tiny_model(size).to(device).eval().requires_grad_(False)
    method = PasmRegions(model, AttackConfig(max_points=max_points))
    locate_all(method, synthetic_batches(2 * batch, batch, size, device, seed=-10**6), batch)  # warm-up: allocators, kernels
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    with PeakRss() as peak:
        regions, result = locate_all(method, synthetic_batches(images, batch, size, device), batch)
    seconds = time.perf_counter() - start
    kept = [t for t in vars(result).values() if isinstance(t, torch.Tensor)]
    return {
        "images": images, "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak.peak,
        "rss_growth_mb": peak.peak - before,
        "rss_after_mb": rss_mb(),
        "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "regions_bytes": regions.nelement() * regions.element_size(),
        "attack_result_bytes": sum(t.nelement() * t.element_size() for t in kept),
        "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "mean_points_used": float(result.num_points.float().mean()),
    }


def in_fresh_process(fn, *args):
    """Run ``fn`` in a new interpreter (spawn), so its peak RSS is its own, not this process's history."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def count_name(n):
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def memory_figures(args):
    """Peak RSS of mining M and 4M images, each in its own fresh process: mining should not grow with the data set."""
    runs = [in_fresh_process(mining_memory, n, args.memory_batch, args.memory_size, args.memory_points, args.device)
            for n in (args.memory_images, 4 * args.memory_images)]
    small, large = runs
    figures = {}
    for run in runs:
        name = count_name(run["images"])
        figures.update({f"rss_mining_{name}_mb": run["rss_peak_mb"], f"rss_growth_{name}_mb": run["rss_growth_mb"],
                        f"regions_bytes_{name}": run["regions_bytes"], f"attack_result_bytes_{name}": run["attack_result_bytes"]})
    figures["rss_mining_peak_ratio"] = large["rss_peak_mb"] / small["rss_peak_mb"]
    figures["memory"] = {"what": "a fresh interpreter per size mines synthetic uint8 images (made batch by batch) "
                                 "with a tiny untrained net through pasm.mining.locate_all (boxes)",
                         "size": args.memory_size, "capacity": args.memory_batch, "max_points": args.memory_points,
                         "runs": runs}
    return figures


# -------------------------------------------------------------------------------------------- command


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.attack", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="the batch, and the stream's capacity")
    parser.add_argument("--stream-batches", type=int, default=4, help="N = this many batches' worth of images, for the speed-up")
    parser.add_argument("--mining-batches", type=int, default=16, help="mining (the bound's figure) mines this many batches' worth")
    parser.add_argument("--max-points", type=int, default=20)
    parser.add_argument("--checkpoint", help="use this teacher instead of a quickly trained one")
    parser.add_argument("--train-images", type=int, default=1400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-images", type=int, default=2, help="JSMA is slow (a pairwise saliency map per step): it runs on this many images (0: skip)")
    parser.add_argument("--memory-images", type=int, default=10000, help="mine this many and 4x as many synthetic images for the memory figures (0: skip)")
    parser.add_argument("--memory-size", type=int, default=32)
    parser.add_argument("--memory-batch", type=int, default=256)
    parser.add_argument("--memory-points", type=int, default=3)
    parser.add_argument("--autocast", action="store_true", help="bf16/fp16 autocast, as AttackConfig(autocast=True)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    for option in ("batch", "stream_batches", "mining_batches", "max_points", "repeats", "size", "memory_batch", "memory_size",
                   "memory_points", "threads"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    for option in ("peer_images", "memory_images", "train_images", "epochs"):
        if getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')} must be 0 or more")
    return args


def main(argv=None):
    args = parse(argv)
    device = device_and_threads(args.device, args.threads)
    try:
        model = teacher(args, device)
        report = {"date": now(), "machine": machine(device), "device": str(device), "arch": model.arch,
                  "size": model.input_spec.size, "batch": args.batch, "max_points": args.max_points,
                  "autocast": args.autocast, "repeats": args.repeats}
        report.update(attack_figures(model, args, device))
        if args.peer_images:
            report["peer"] = peer_figures(model, args, device)
        if args.memory_images:
            report.update(memory_figures(args))
    except PasmError as e:
        raise SystemExit(f"error: {e}") from None
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()

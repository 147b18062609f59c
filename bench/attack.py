"""Attack benchmark: batched vs one image at a time, distance to the fwd+bwd bound, and a peer L0 attack.

    python -m pasm bench attack [--device cpu|cuda] [--arch small_cnn] [--size 64] [--batch 64] [--json OUT]

Everything is measured in one run on the same model and images, so the ratios are comparable
even on a busy machine. Without ``--checkpoint`` a teacher is trained for a few seconds on
SynthFER so that the attack has predictions worth flipping.
"""
import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import torch
from torch.utils.data import TensorDataset

from pasm.attack import AttackConfig, PointAttack
from pasm.checkpoints import load_checkpoint
from pasm.data.synth import SynthFERMemory
from pasm.data.transforms import eval_transform
from pasm.models import build_model, default_input_spec
from pasm.train import fit_supervised


def synth_tensors(n, split, spec, seed):
    data = SynthFERMemory(n, split, size=spec.size, seed=seed, transform=eval_transform(spec))
    images, labels = zip(*(data[i] for i in range(n)))
    return torch.stack(images), torch.tensor(labels)


def quick_teacher(arch, spec, train_images, epochs, device):
    torch.manual_seed(0)
    images, labels = synth_tensors(train_images, "train", spec, seed=0)
    model = build_model(arch, 7, spec)
    fit_supervised(model, TensorDataset(images, labels), epochs=epochs, batch_size=64, device=device)
    return model.eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def forward_backward(model, images, labels):
    """One pass of the bound, in the attack's own layout, so the ratio measures the attack's bookkeeping."""
    x = images.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), labels, reduction="sum")
    torch.autograd.grad(loss, x)


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pasm bench attack", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-points", type=int, default=20)
    parser.add_argument("--checkpoint", help="use this teacher instead of a quickly trained one")
    parser.add_argument("--train-images", type=int, default=1400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-images", type=int, default=2, help="JSMA is slow (a pairwise saliency map per step): it runs on this many images (0: skip)")
    parser.add_argument("--autocast", action="store_true")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    spec = default_input_spec(args.arch, size=args.size)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, device=device).model
        spec = model.input_spec
    else:
        model = quick_teacher(args.arch, spec, args.train_images, args.epochs, device)
    model.to(device).eval()
    images, _ = synth_tensors(args.batch, "test", spec, seed=1)
    images = images.to(device)
    with torch.no_grad():
        labels = model(images).argmax(1)  # attack the teacher's own predictions, as on unlabelled faces
    attack = PointAttack(model, AttackConfig(max_points=args.max_points, autocast=args.autocast))

    batched_s = timed(lambda: attack(images, labels), device, args.repeats)
    result = attack(images, labels)
    one_by_one_s = timed(lambda: [attack(images[i: i + 1], labels[i: i + 1]) for i in range(len(images))], device, args.repeats)
    fwd_bwd_s = timed(lambda: forward_backward(model, images, labels), device, max(args.repeats, 5))
    fwd_bwd_one_s = timed(lambda: forward_backward(model, images[:1], labels[:1]), device, max(args.repeats, 5))
    steps = int(result.num_points.max())  # passes the batched loop made with gradients
    image_steps = float(result.num_points.float().mean())  # passes each image needed, on average
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        "device": str(device), "arch": args.arch, "size": spec.size, "batch": len(images), "max_points": args.max_points,
        "batched_images_per_s": len(images) / batched_s,
        "per_sample_images_per_s": len(images) / one_by_one_s,
        "speedup": one_by_one_s / batched_s,
        # what batching buys the network itself: one image's forward + backward against its share of the batch's
        "fwd_bwd_batching_speedup": len(images) * fwd_bwd_one_s / fwd_bwd_s,
        "fwd_bwd_batch_s": fwd_bwd_s,
        "fwd_bwd_one_image_s": fwd_bwd_one_s,
        "attack_steps": steps,
        "overhead_vs_fwd_bwd": batched_s / (steps * fwd_bwd_s),
        # the tighter bound: each image pays only for the points it used (images leave once they flip)
        "mean_points_used": image_steps,
        "overhead_vs_points_used": batched_s / (image_steps * fwd_bwd_s),
        "flip_rate": float(result.flipped.float().mean()),
        "mean_points_to_flip": float(result.points_to_flip[result.flipped].float().mean()) if result.flipped.any() else None,
    }
    if args.peer_images:
        n = min(args.peer_images, len(images))
        pasm_peer = attack(images[:n], labels[:n])
        pasm_s = timed(lambda: attack(images[:n], labels[:n]), device, args.repeats)
        report["peer"] = run_peer(model, images[:n], labels[:n], args.max_points)
        report["peer"]["pasm_on_same_images"] = {
            "images_per_s": n / pasm_s,
            "success_rate": float(pasm_peer.flipped.float().mean()),
            "mean_points": float(pasm_peer.points_to_flip[pasm_peer.flipped].float().mean()) if pasm_peer.flipped.any() else None,
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        from pasm.fileio import write_text

        write_text(args.json, text + "\n")
    return report


if __name__ == "__main__":
    main()

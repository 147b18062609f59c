"""How informative is each erased region? A deletion test, and (on SynthFER) a hit test.

For one teacher and one data set, PASM's region, a random window and the Grad-CAM window of
the same area are erased; a region that matters more hurts the teacher more (lower accuracy,
lower confidence in the true class). On SynthFER every image comes with the mask of the pixels
that carry its label's cues, so we can also count how much of each region, and how many attack
points, fall on the cues — against the cue mask's own share of the image, which is what a
region placed by chance would hit.

An image the teacher already gets wrong needs no point and has no PASM region, so every row is
computed over the images where the attack found points (the teacher's correct ones, with ground
truth labels): all methods are then compared on the same images, each image erased by as many
pixels as its PASM region (pasm.mining, ``like``: the same area per sample, also for adaptive
windows and disks). The clean accuracy over all images is reported beside it.
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from .erasing import erase
from .mining import AttentionRegions, PasmRegions, RandomRegions, RegionConfig, probabilities

METHODS = ("clean", "pasm", "random", "attention")


def _cue_masks(dataset, indices, size, device):
    masks = torch.stack([torch.as_tensor(dataset.cue_mask(int(i))) for i in indices]).float()[:, None]
    return F.interpolate(masks, size=(size, size), mode="nearest").bool().to(device)


def _points_on_mask(result, cue):
    """Share of the attack's points (all images together) that land on the cue mask."""
    valid = result.points[..., 0] >= 0
    xs, ys = result.points[..., 0].clamp(min=0), result.points[..., 1].clamp(min=0)
    batch = torch.arange(len(xs), device=xs.device)[:, None].expand_as(xs)
    on = cue[batch, 0, ys, xs] & valid
    return int(on.sum()), int(valid.sum())


def informativeness(teacher, dataset, limit=None, batch_size=64, attack_config=None, region_config=None,
                    device="cpu", seed=0, mean=None):
    """The table behind ``pasm compare``; ``dataset`` yields model-ready tensors."""
    region_config = region_config or RegionConfig()
    indices = torch.arange(len(dataset) if limit is None else min(limit, len(dataset)))
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=False)
    generator = torch.Generator(device=device).manual_seed(seed)
    methods = {"pasm": PasmRegions(teacher, attack_config, region_config),
               "random": RandomRegions(region_config, generator),
               "attention": AttentionRegions(teacher, region_config)}
    has_cues = hasattr(dataset, "cue_mask")
    totals = {m: {"correct": 0.0, "confidence": 0.0, "on_cue": 0.0, "area": 0.0} for m in METHODS}
    points_on, points_all, flipped, points_to_flip, cue_share, count, compared, clean_correct = 0, 0, 0, 0.0, 0.0, 0, 0, 0.0
    for batch_index, (images, labels) in enumerate(loader):
        images, labels = images.to(device), torch.as_tensor(labels).to(device)
        pasm = methods["pasm"].locate(images, labels)
        located = {"pasm": pasm, "random": methods["random"].locate(images, labels, like=pasm),
                   "attention": methods["attention"].locate(images, labels, like=pasm)}
        attack = pasm.attack
        erased = {"clean": (images, torch.zeros_like(pasm.masks))}
        erased.update({name: (erase(images, found.masks, region_config.fill, mean, generator), found.masks)
                       for name, found in located.items()})
        batch_indices = indices[batch_index * batch_size: batch_index * batch_size + len(labels)]
        cue = _cue_masks(dataset, batch_indices, images.shape[-1], device) if has_cues else None
        located = attack.num_points > 0
        for method, (x, masks) in erased.items():
            probs = probabilities(teacher, x)
            if method == "clean":
                clean_correct += float((probs.argmax(1) == labels).sum())
            probs, masks, y = probs[located], masks[located], labels[located]
            row = totals[method]
            row["correct"] += float((probs.argmax(1) == y).sum())
            row["confidence"] += float(probs.gather(1, y[:, None]).sum())
            row["area"] += float(masks.float().mean((1, 2, 3)).sum())
            if cue is not None and method != "clean":
                hit = (masks & cue[located]).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1)
                row["on_cue"] += float(hit.sum())
        if cue is not None:
            on, total = _points_on_mask(attack, cue)
            points_on, points_all = points_on + on, points_all + total
            cue_share += float(cue[located].float().mean((1, 2, 3)).sum())
        compared += int(located.sum())
        flipped_here = attack.flipped & located
        flipped += int(flipped_here.sum())
        points_to_flip += float(attack.points_to_flip[flipped_here].float().sum())
        count += len(labels)
    table = _table(totals, compared, points_on, points_all, cue_share if has_cues else None)
    table.update({"images": count, "clean_accuracy_all": clean_correct / max(count, 1)})
    table["attack"] = {"flip_rate": flipped / max(compared, 1), "mean_points_to_flip": points_to_flip / max(flipped, 1)}
    return table


def _table(totals, compared, points_on, points_all, cue_share):
    rows = {}
    for method, row in totals.items():
        rows[method] = {
            "accuracy": row["correct"] / max(compared, 1),
            "true_class_confidence": row["confidence"] / max(compared, 1),
            "erased_area": row["area"] / max(compared, 1),
        }
        if cue_share is not None and method != "clean":
            rows[method]["region_on_cue"] = row["on_cue"] / max(compared, 1)
    table = {"compared_images": compared, "methods": rows}
    if cue_share is not None:
        table["cue"] = {"chance_share": cue_share / max(compared, 1), "points_on_cue": points_on / max(points_all, 1)}
    return table


def format_table(table):
    """The table as aligned text, the way ``pasm compare`` prints it."""
    has_cue = "cue" in table
    header = f"{'method':<10} {'accuracy':>9} {'p(true)':>8} {'area':>6}" + (f" {'on cue':>7}" if has_cue else "")
    lines = [f"{table['images']} images, clean accuracy {table['clean_accuracy_all']:.3f}; rows below compare the "
             f"{table['compared_images']} images where the attack found points", header]
    for method, row in table["methods"].items():
        line = f"{method:<10} {row['accuracy']:>9.3f} {row['true_class_confidence']:>8.3f} {row['erased_area']:>6.3f}"
        if has_cue:
            line += f" {row['region_on_cue']:>7.3f}" if "region_on_cue" in row else f" {'-':>7}"
        lines.append(line)
    attack = table["attack"]
    lines.append(f"attack: {attack['flip_rate']:.1%} of those flipped within the budget, "
                 f"after {attack['mean_points_to_flip']:.1f} points on average")
    if has_cue:
        cue = table["cue"]
        lines.append(f"cue masks cover {cue['chance_share']:.1%} of the image (chance); "
                     f"{cue['points_on_cue']:.1%} of attack points fall on them")
    mapping = table.get("class_mapping", {}).get("description", "identical")
    if mapping != "identical":  # the teacher names or orders its classes unlike the data set (pasm.emotions)
        lines.append(f"classes mapped (checkpoint->data): {mapping}")
    return "\n".join(lines)

"""Which facial region does each erasing take away? On a SynthFER split, per method: how many faces have their
erased window cover each region's cue pixels the most (docs/results.md, "Why PASM loses here").

    python -m bench.erased_regions --checkpoint TEACHER.safetensors --data DIR [--split train] [--json OUT]

DIR is a directory ``python -m pasm synth`` wrote: its manifest names the seed, size and cue design, from which the
faces and their per-region cue masks are rendered again (the written set keeps one mask for all regions). Each
method (pasm, random, attention) locates its region with ``pasm.mining`` at the default settings (10 % of the face,
densest window of up to 20 points), with the data set's labels; a window is counted for the region whose cue pixels
it covers most, "no cue" when it covers none, "no region" when the method located none.
"""
import argparse
import collections
from pathlib import Path

import torch

from bench.common import now, write_report
from pasm.checkpoints import load_checkpoint
from pasm.data.synth import REGIONS, SynthFERMemory, read_manifest
from pasm.data.transforms import eval_transform
from pasm.errors import DataError
from pasm.mining import RegionConfig, region_method

METHODS = ("pasm", "random", "attention")


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.erased_regions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="a SynthFER directory (python -m pasm synth)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0, help="random erasing's generator")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    try:
        args.manifest = read_manifest(args.data)
    except DataError as e:
        parser.error(str(e))
    if args.split not in args.manifest["splits"]:
        parser.error(f"--split {args.split}: {args.data} has {', '.join(args.manifest['splits'])}")
    return args


def faces(manifest, split, spec):
    """The split's faces as the model sees them, their labels, and each region's cue mask (N, S, S) bool."""
    data = SynthFERMemory(manifest["splits"][split]["count"], split, size=manifest["size"], seed=manifest["seed"],
                          transform=eval_transform(spec), cues=manifest.get("cue_design", "exclusive"))
    images, labels = zip(*(data[i] for i in range(len(data))))
    masks = {r: torch.stack([torch.as_tensor(data.sample(i).region_masks[r]).bool() for i in range(len(data))])
             for r in REGIONS}
    return torch.stack(images), torch.tensor(labels), masks


def covered_regions(located_masks, region_masks):
    """Per face, the region whose cue pixels its erased window covers most ("no cue", "no region")."""
    counts = collections.Counter()
    size = region_masks[REGIONS[0]].shape[-1]
    for i, window in enumerate(located_masks):
        window = window.reshape(size, size).bool()
        if not window.any():
            counts["no region"] += 1
            continue
        cover = {r: int((window & region_masks[r][i]).sum()) for r in REGIONS}
        best = max(cover, key=cover.get)
        counts[best if cover[best] else "no cue"] += 1
    return {key: counts[key] for key in (*REGIONS, "no cue", "no region")}


def main(argv=None):
    args = parse(argv)
    teacher = load_checkpoint(args.checkpoint).model.eval()
    images, labels, region_masks = faces(args.manifest, args.split, teacher.input_spec)
    report = {"date": now(), "checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split,
              "faces": len(labels)}
    for name in METHODS:
        method = region_method(name, teacher, region_config=RegionConfig(),
                               generator=torch.Generator().manual_seed(args.seed))
        report[name] = covered_regions(method.locate(images, labels).masks, region_masks)
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()

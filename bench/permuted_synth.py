"""SynthFER with its cue→label mapping permuted: the pretraining set of the transfer cell (docs/results.md).

A network pretrained on it has learnt to see faces, their regions and their cues, but every label it learnt names
another expression than in ordinary SynthFER, so what fine-tuning on ordinary SynthFER starts from is features, not
answers: the regime of the paper's face-pretrained ResNet-18. The permutation is a derangement (no expression keeps its
label), drawn from ``--permutation-seed``; the images are ``python -m pasm synth``'s, only the manifest's labels move.

    python -m bench.permuted_synth OUT --train 5000 --test 700 --size 48 --seed 11
"""
import argparse
from pathlib import Path

import numpy as np

from pasm import fileio
from pasm.data.synth import CLASSES, read_manifest, write_synth


def derangement(count, seed):
    """A permutation of ``range(count)`` that moves every element, the first such draw from ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(count)
        if not (order == np.arange(count)).any():
            return [int(i) for i in order]


def permute_labels(root, order):
    """Relabel every image of every split: label i becomes ``order[i]``; counts and the order are recorded."""
    manifest = read_manifest(root)
    for split in manifest["splits"].values():
        for record in split["images"]:
            record["label"] = order[record["label"]]
        split["class_counts"] = {c: sum(r["label"] == i for r in split["images"]) for i, c in enumerate(CLASSES)}
    manifest["label_permutation"] = order
    fileio.write_json(root / "manifest.json", manifest)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=700)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--permutation-seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_synth(args.out, train=args.train, test=args.test, size=args.size, seed=args.seed, cues="redundant")
    order = derangement(len(CLASSES), args.permutation_seed)
    permute_labels(Path(args.out), order)
    print(f"wrote {args.out}: label i -> {order}")


if __name__ == "__main__":
    main()

"""``python -m pasm``: every library action as a command.

Bad input ends with one line, ``error: <what>: <why>``, on stderr and exit code 2 — never a
traceback. Anything else escaping is a bug and keeps its traceback.
"""
import argparse
import json
import sys

from .errors import PasmError

EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse's own usage errors, in the same one-line form as ours."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def print_json(obj, out=None):
    text = json.dumps(obj, indent=2)
    if out:
        from .fileio import write_text

        write_text(out, text + "\n")
    else:
        print(text)


def cmd_synth(args):
    from .data.synth import write_synth

    def progress(done, total):
        print(f"\r{done}/{total} images", end="", file=sys.stderr, flush=True)

    manifest = write_synth(args.out, train=args.train, test=args.test, size=args.size, seed=args.seed, progress=progress)
    print(file=sys.stderr)
    counts = {split: info["count"] for split, info in manifest["splits"].items()}
    print(f"wrote SynthFER to {args.out}: {json.dumps(counts)}")


def cmd_data(args):
    from .data import describe

    print_json(describe(args.spec), args.json)


def cmd_info(args):
    from .checkpoints import describe

    classes = args.classes.split(",") if args.classes else None
    print_json(describe(args.checkpoint, arch=args.arch, classes=classes))


def add_foreign_options(parser):
    parser.add_argument("--arch", help="architecture of a checkpoint made outside pasm (e.g. resnet18)")
    parser.add_argument("--classes", help="comma-separated class names, in the order of its outputs")


def build_parser():
    parser = ArgumentParser(prog="python -m pasm", description="Point Adversarial Self Mining for FER.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("synth", help="write the SynthFER synthetic data set")
    p.add_argument("out", help="output directory")
    p.add_argument("--train", type=int, default=3500, help="training images (default 3500)")
    p.add_argument("--test", type=int, default=700, help="test images, and as many occluded ones (default 700)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("data", help="summarise a data set spec: classes and counts per split")
    p.add_argument("spec", help="KIND:PATH, e.g. synth:data/synth, rafdb:RAF-DB/basic, fer2013:fer2013.csv")
    p.add_argument("--json", metavar="OUT", help="also write the summary to this file")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("info", help="print a checkpoint's metadata as JSON")
    p.add_argument("checkpoint")
    add_foreign_options(p)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PasmError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0

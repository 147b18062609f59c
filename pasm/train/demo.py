"""The app's first run: a small SynthFER set and a small_cnn teacher plus one PASM student, in one call."""
from pathlib import Path

from ..data.synth import write_synth
from .config import TrainConfig, run_config
from .loop import train

# The app's one-click first run (docs/benchmarks.md, "The first-run demo"), and a seconds-long version. The recipe
# is the demo's own, measured: a small_cnn teacher for 24 epochs at 40 px, with Nesterov SGD at 0.1 after a one-epoch
# warm-up, on 2,400 faces. Over training seeds 0-3 and 1 or 2 threads (which change float sums as another machine
# does) it reaches 0.80-0.85 test accuracy; on 1,400 faces it ranged over 0.73-0.79, around the 0.75 it must pass.
# The small CNN's general default (AdamW, options.ARCH_DEFAULTS) was chosen on smaller sets.
DEMO = {"train": 2400, "test": 350, "size": 40, "epochs": 24, "optimizer": "sgd", "lr": 0.1, "warmup": 1}
DEMO_QUICK = {"train": 140, "test": 70, "size": 32, "epochs": 2}


def demo(out, quick=False, device="auto", workers=None, threads=None):
    """A small SynthFER set in ``out/data`` (written once), then a small_cnn teacher and one PASM generation in ``out``.

    The same call starts the demo or continues it from wherever a stopped, killed or crashed one got to
    (a set whose writing was cut short is written again), so ``demo --resume`` needs nothing more: a demo that
    was started continues with the config it started with. ``threads``: TrainConfig's.
    """
    data = Path(out) / "data"
    if not (data / "manifest.json").is_file():
        write_demo_data(data, quick)
    resume = (Path(out) / "config.json").exists()
    chosen = {} if threads is None else {"threads": threads}
    config = run_config(out, chosen, resume=True) if resume else demo_config(data, quick, **chosen)
    return train(config, out, resume=resume, device=device, workers=workers, keep=("data",))


def write_demo_data(data, quick=False):
    """The demo's SynthFER set (always seed 0), written into ``data``."""
    sizes = DEMO_QUICK if quick else DEMO
    write_synth(data, train=sizes["train"], test=sizes["test"], size=sizes["size"], seed=0)


def demo_config(data, quick=False, **changes):
    """The demo's TrainConfig on its data set in ``data``: a teacher and one PASM generation, unless ``changes``
    (TrainConfig fields) say otherwise."""
    sizes = DEMO_QUICK if quick else DEMO
    return TrainConfig(**{"data": f"synth:{data}", "arch": "small_cnn", "size": sizes["size"], "generations": 1,
                          "epochs": sizes["epochs"], "optimizer": sizes.get("optimizer"), "lr": sizes.get("lr"),
                          "warmup": sizes.get("warmup"), **changes})

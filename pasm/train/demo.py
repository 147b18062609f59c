"""The app's first run: a small SynthFER set and a small_cnn teacher plus one PASM student, in one call."""
from pathlib import Path

from ..data.synth import write_synth
from .config import TrainConfig, run_config
from .loop import train

# The app's one-click first run (about 2 minutes on 2 CPU cores: docs/benchmarks.md, "Bar L"), and a seconds-long
# version. The demo's teacher needs ~500 steps to pass 0.75 test accuracy on SynthFER: 24 epochs at 40 px with
# Nesterov SGD at 0.1 after a one-epoch warm-up (at 0.05 without warm-up it learns more slowly: 0.75 at 48 px and
# 0.73 at 32 px after 24 and 30 epochs, against 0.78 and 0.76 with these). The recipe is the demo's own, measured; the small
# CNN's general default (AdamW, options.ARCH_DEFAULTS) was chosen on smaller sets.
DEMO = {"train": 1400, "test": 350, "size": 40, "epochs": 24, "optimizer": "sgd", "lr": 0.1, "warmup": 1}
DEMO_QUICK = {"train": 140, "test": 70, "size": 32, "epochs": 2}


def demo(out, quick=False, device="auto", workers=None, threads=None):
    """A small SynthFER set in ``out/data`` (written once), then a small_cnn teacher and one PASM generation in ``out``.

    The same call starts the demo or continues it from wherever a stopped, killed or crashed one got to
    (a set whose writing was cut short is written again), so ``demo --resume`` needs nothing more: a demo that
    was started continues with the config it started with. ``threads``: TrainConfig's.
    """
    sizes = DEMO_QUICK if quick else DEMO
    data = Path(out) / "data"
    if not (data / "manifest.json").is_file():
        write_synth(data, train=sizes["train"], test=sizes["test"], size=sizes["size"], seed=0)
    resume = (Path(out) / "config.json").exists()
    chosen = {} if threads is None else {"threads": threads}
    if resume:
        config = run_config(out, chosen, resume=True)
    else:
        config = TrainConfig(data=f"synth:{data}", arch="small_cnn", size=sizes["size"], generations=1,
                             epochs=sizes["epochs"], optimizer=sizes.get("optimizer"), lr=sizes.get("lr"),
                             warmup=sizes.get("warmup"), **chosen)
    return train(config, out, resume=resume, device=device, workers=workers, keep=("data",))

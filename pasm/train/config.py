"""What a run computes: ``TrainConfig``, its checks and defaults, and the config of a resumed run."""
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..checkpoints import is_weights_name
from ..data import absolute_spec
from ..errors import PasmError
from ..models import default_input_spec
from ..options import (ACCUMULATE, ARCH_DEFAULTS, ARCHITECTURES, ERASED_CE, ERASING, FILLS, INIT_FROM, OPTIMIZERS,
                       STRATEGIES, TEACHER_VIEWS)
from ..runs import Run
from ..threads import default_threads, usable_cores


@dataclass
class TrainConfig:
    """Everything that decides what a run computes (device and workers do not, so they are not here).

    ``generations`` counts the students after the teacher: 2 gives generations 0, 1 and 2.
    ``teacher`` adopts an existing checkpoint as generation 0 instead of training one.
    ``split`` is the evaluation split (default: test, else val). ``None`` for ``size``, ``optimizer``,
    ``lr``, ``weight_decay`` and ``warmup`` means the architecture's defaults (``options.ARCH_DEFAULTS``;
    the optimizer's own for an optimizer the architecture does not default to), resolved when the
    config is made. Students fine-tune from their teacher by default, as in the paper.
    ``threads`` is torch's intra-op thread count (default: the usable cores but one, shared among torchrun's
    processes, pasm.threads). It is part of what a run computes: on the CPU it decides how each sum is split, so
    the same run on one thread and on two ends with different weights.
    """

    data: str
    arch: str = "small_cnn"
    size: int = None
    generations: int = 1
    epochs: int = 15
    batch: int = 64
    optimizer: str = None
    lr: float = None
    weight_decay: float = None
    warmup: int = None
    label_smoothing: float = 0.0
    erasing: str = "pasm"
    distill: bool = True
    lam: float = 1.0
    tau: float = 4.0
    p: float = 0.5
    init_from: str = "teacher"
    region: str = "densest"
    area: float = 0.1
    adaptive: bool = False
    fill: str = "mean"
    max_points: int = 20
    remine_every: int = 0
    teacher_view: str = "clean"
    erased_ce: str = "full"
    mix: float = 0.0
    accumulate: str = "none"
    seed: int = 0
    limit: int = None
    split: str = None
    teacher: str = None
    init: str = None
    threads: int = None

    def __post_init__(self):
        _choice("--arch", self.arch, ARCHITECTURES)
        arch_optimizer, arch_lr, arch_decay, arch_warmup = ARCH_DEFAULTS[self.arch]
        self.optimizer = self.optimizer or arch_optimizer
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--erasing", self.erasing, ERASING)
        _choice("--init-from", self.init_from, INIT_FROM)
        _choice("--region", self.region, STRATEGIES)
        _choice("--fill", self.fill, FILLS)
        self.data = absolute_spec(self.data)
        self.size = int(self.size or default_input_spec(self.arch).size)
        default_lr, default_decay = (arch_lr, arch_decay) if self.optimizer == arch_optimizer else OPTIMIZERS[self.optimizer]
        self.lr = float(default_lr if self.lr is None else self.lr)
        self.weight_decay = float(default_decay if self.weight_decay is None else self.weight_decay)
        self.warmup = arch_warmup if self.warmup is None else self.warmup
        self.threads = default_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if self.threads is None else self.threads
        _choice("--teacher-view", self.teacher_view, TEACHER_VIEWS)
        _choice("--erased-ce", self.erased_ce, ERASED_CE)
        _choice("--accumulate", self.accumulate, ACCUMULATE)
        if self.adaptive and self.region == "disks":
            raise PasmError("--adaptive", "adaptive sizing applies to the window strategies only, not disks")
        mined = self.erasing in ("pasm", "attention")
        for option, value, ok, why in [
            ("--mix", self.mix, self.mix == 0 or mined, "mixes in random windows with mined regions: needs --erasing pasm or attention"),
            ("--accumulate", self.accumulate, self.accumulate == "none" or mined, "accumulates mined regions: needs --erasing pasm or attention"),
            ("--accumulate", self.accumulate, self.accumulate == "none" or not self.remine_every,
             "accumulates each generation's teacher regions; it does not combine with --remine-every"),
        ]:
            if not ok:
                raise PasmError(f"{option} {value}", why)
        self.teacher = str(Path(self.teacher).expanduser().resolve()) if self.teacher else None
        if self.init and not is_weights_name(self.init):
            self.init = str(Path(self.init).expanduser().resolve())
            if not Path(self.init).is_file():
                raise PasmError(f"--init {self.init}", "no such file")
        for option, value, low in [("--size", self.size, 16), ("--generations", self.generations, 0),
                                   ("--epochs", self.epochs, 1), ("--warmup", self.warmup, 0), ("--batch", self.batch, 2),
                                   ("--max-points", self.max_points, 1), ("--remine-every", self.remine_every, 0),
                                   ("--seed", self.seed, 0), ("--limit", self.limit, 2), ("--threads", self.threads, 1)]:
            if value is not None and (int(value) != value or value < low):
                raise PasmError(f"{option} {value}", f"must be a whole number of at least {low}")
        for option, value, ok, why in [
            ("--lr", self.lr, self.lr > 0, "must be positive"),
            ("--weight-decay", self.weight_decay, self.weight_decay >= 0, "must be 0 or more"),
            ("--label-smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("--lam", self.lam, self.lam >= 0, "must be 0 or more"),
            ("--tau", self.tau, self.tau > 0, "must be positive"),
            ("--p", self.p, 0 <= self.p <= 1, "is a probability, in [0, 1]"),
            ("--mix", self.mix, 0 <= self.mix <= 1, "is a share of the erased faces, in [0, 1]"),
            ("--area", self.area, 0 < self.area <= 1, "must be a fraction of the image in (0, 1]"),
        ]:
            if not ok:
                raise PasmError(f"{option} {value}", why)

    def to_dict(self):
        return asdict(self)

    @property
    def trained_generations(self):
        return range(1 if self.teacher else 0, self.generations + 1)


def _choice(option, value, choices):
    if value not in choices:
        raise PasmError(f"{option} {value}", f"unknown; choose one of {', '.join(choices)}")


def run_config(out, options, resume):
    """The config of run ``out``: from ``options`` for a new run; for ``--resume``, the stored one
    with ``options`` laid over it (``train`` then refuses any that differ, naming the first)."""
    if not resume:
        if not options.get("data"):
            raise PasmError("--data", "a new run needs a data set spec (e.g. synth:data/synth)")
        return TrainConfig(**options)
    stored = Run(out).read_config()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(stored) - known)
    if unknown or "data" not in stored:
        raise PasmError(Run(out).config_path, f"not a config this version of pasm wrote (key {(unknown or ['data'])[0]!r})")
    return TrainConfig(**{**NEWER_FIELDS, **stored, **options})


# Fields added after runs were first written, with the value those runs trained with (torch's own thread count is
# the usable cores).
NEWER_FIELDS = {"warmup": 0, "adaptive": False, "init": None, "teacher_view": "clean", "erased_ce": "full", "mix": 0.0,
                "accumulate": "none", "threads": usable_cores()}

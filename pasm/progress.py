"""A training run's bookkeeping, kept out of the training step (torchvision's ``MetricLogger.log_every``):
status.json with progress and ETA a few times an epoch and at every batch of mining, a tqdm bar on a terminal,
and progress lines into train.log and stderr. Only the main process writes; the others' calls do nothing.
"""
import sys
import time

STATUS_UPDATES_PER_EPOCH = 4
MINING_LINES = 4  # progress lines per mining pass, besides the one that says it is done


class Progress:
    """Where run ``run`` stands: ``generations`` are the trained generations, each ``epochs`` epochs of
    ``steps_per_epoch`` steps, so any (generation, epoch, step) is a share of the whole run."""

    def __init__(self, run, is_main, generations, epochs, steps_per_epoch):
        self.run, self.is_main = run, is_main
        self.generations, self.epochs, self.steps_per_epoch = list(generations), epochs, steps_per_epoch
        self.total_steps = len(self.generations) * epochs * steps_per_epoch
        self.step_seconds, self.steps_timed = 0.0, 0
        self.tty = sys.stderr.isatty()

    def log_every(self, iterable, generation, epoch):
        """``iterable``'s items, one per training step: each step is timed (data loading included, for the ETA),
        the bar moves, and the status is written STATUS_UPDATES_PER_EPOCH times an epoch."""
        every = max(1, self.steps_per_epoch // STATUS_UPDATES_PER_EPOCH)
        self.status(phase="training", generation=generation, epoch=epoch, step=0, mining=None)
        bar = self._bar(generation, epoch)
        tick = time.monotonic()
        for step, item in enumerate(iterable):
            yield item
            now = time.monotonic()
            self.step_seconds, self.steps_timed, tick = self.step_seconds + now - tick, self.steps_timed + 1, now
            if bar is not None:
                bar.update(1)
            if (step + 1) % every == 0:
                self.status(phase="training", generation=generation, epoch=epoch, step=step + 1)
        if bar is not None:
            bar.close()

    def log_mining(self, batches, generation, epoch, total, in_flight, share=1):
        """``batches`` going into mining, passed on while status.json counts the images mined (``mining``: done and
        ``total``) with an ETA, and a line goes to the log about every quarter.

        The attack keeps ``in_flight`` images in play and asks for the next batch as images finish, so the images
        taken before a request, less those in play, are done. Under torchrun a rank sees only its ``share``-th part.
        The ETA adds the mining left, at its pace so far, to the training left; before any step was timed (a
        teacher adopted with --teacher) it is the mining left alone."""
        started, taken, told = time.monotonic(), 0, 0
        for images, labels in batches:
            done = min(total, max(0, taken - in_flight) * share)
            left = self._mining_left(done, total, time.monotonic() - started)
            self._mining_status(generation, epoch, done, total, left)
            if told + total / MINING_LINES <= done < total:
                told = done
                self.say(f"generation {generation}: mining {done}/{total} images ({done / total:.0%})"
                         + (f", about {left:.0f} s left" if left is not None else ""))
            yield images, labels
            taken += len(images)

    def mined(self, total):
        """Mining is over: all ``total`` images done."""
        self.status(mining={"done": total, "total": total})

    def _mining_left(self, done, total, seconds):
        return (total - done) * seconds / done if done else None

    def _mining_status(self, generation, epoch, done, total, left):
        if not self.is_main:
            return
        steps = self._steps_done(generation, epoch, 0)
        training = self._eta(steps)
        eta = None if left is None else round(left + (training or 0))
        self.run.write_status(phase="mining", generation=generation, epoch=epoch, step=0,
                              progress=round(steps / max(self.total_steps, 1), 4), eta_seconds=eta,
                              mining={"done": done, "total": total})

    def status(self, **fields):
        """status.json, with the run's progress and ETA when the fields place it (generation, epoch, step)."""
        if not self.is_main:
            return
        if "generation" in fields:
            done = self._steps_done(fields["generation"], fields.get("epoch", 0), fields.get("step", 0))
            fields["progress"] = round(done / max(self.total_steps, 1), 4)
            fields["eta_seconds"] = self._eta(done)
        self.run.write_status(**fields)

    def say(self, line):
        """A progress line: into train.log, and to stderr (through tqdm when a bar may be showing)."""
        if not self.is_main:
            return
        self.run.log(f"{time.strftime('%H:%M:%S')} {line}")
        if self.tty and _tqdm() is not None:
            _tqdm().write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _steps_done(self, generation, epoch, step):
        before = sum(1 for trained in self.generations if trained < generation)
        current = min(epoch, self.epochs) if generation in self.generations else 0
        return (before * self.epochs + current) * self.steps_per_epoch + step

    def _eta(self, done):
        """Remaining steps at this process's pace; None until a step was timed."""
        if not self.steps_timed:
            return None
        return round((self.total_steps - done) * self.step_seconds / self.steps_timed)

    def _bar(self, generation, epoch):
        tqdm = _tqdm() if self.tty and self.is_main else None
        if tqdm is None:
            return None
        return tqdm(total=self.steps_per_epoch, desc=f"gen {generation} epoch {epoch + 1}/{self.epochs}", leave=False,
                    file=sys.stderr)


def _tqdm():
    """tqdm for the terminal, if installed (the core does not require it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm

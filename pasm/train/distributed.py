"""The processes of a run: one, or a torchrun process group (data-parallel), and how a stop request reaches them all
at a step boundary."""
import contextlib
import os
import signal

import torch
import torch.distributed as torch_dist

from ..devices import resolve_device
from ..threads import usable_cores


class Distributed:
    """The process group under torchrun (detected from the environment it sets), or a single process."""

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            torch_dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch_dist.barrier()

    def any(self, flag):
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values):
        if self.world > 1:
            torch_dist.all_reduce(values)
        return values

    def gather_rows(self, rows):
        """Every rank's equally long ``rows``, concatenated in rank order (bool travels as uint8)."""
        if self.world == 1:
            return rows
        sent = rows.to(torch.uint8) if rows.dtype == torch.bool else rows
        parts = [torch.empty_like(sent) for _ in range(self.world)]
        torch_dist.all_gather(parts, sent)
        return torch.cat(parts).to(rows.dtype)

    def close(self):
        if self.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def default_workers():
    """Data-loading processes per training process: none on a 2-core machine, where they would
    compete with the model for the cores; up to 4 where cores are plentiful."""
    per_process = usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return 0 if per_process <= 2 else min(4, per_process // 2)


class RunStopped(Exception):
    """SIGTERM or SIGINT arrived; the run stopped at a step boundary and can be resumed."""

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class Stopper:
    """Turns SIGTERM/SIGINT into a flag checked at step boundaries; a second signal acts at once."""

    def __init__(self, dist):
        self.dist, self.signum = dist, None

    @contextlib.contextmanager
    def installed(self):
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signum = signum
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)

    def check(self):
        """Raise RunStopped on every rank once any rank was signalled (one collective per call under torchrun)."""
        if self.dist.any(self.signum is not None):
            raise RunStopped(self.signum or signal.SIGTERM)

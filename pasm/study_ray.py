"""A study's runs as Ray tasks (``python -m pasm study --launcher ray``; ``pip install ".[cluster]"``).

Ray is the engine beyond one machine: each run is a task that asks for its CPU threads and, on CUDA, one GPU, and Ray
places it where those are free. The task runs the run's ``python -m pasm train`` command, as side-by-side runs do
(pasm.study), so a run is an ordinary run directory; the study directory must be on a file system that every machine
of the cluster shares. ``ray.init()`` joins the cluster that RAY_ADDRESS names, else starts a local instance, unless
the caller has connected already. torchrun stays the engine for one data-parallel run.
"""
import signal
import subprocess

from .commands import train_command
from .errors import PasmError
from .train import RunStopped


def run_on_ray(tasks, device, workers):
    """Train ``tasks`` ((config, path, resume) each) as Ray tasks; wait for all, or stop them all on SIGINT."""
    ray = _ray()
    gpus = 1 if device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU")) else 0
    # Ray makes the task's GPU the only one it sees, so the run asks for "cuda" and finds it.
    run_device = "cuda" if gpus else device
    remote = ray.remote(max_retries=0)(train_process)
    refs = {remote.options(num_cpus=config.threads, num_gpus=gpus).remote(config, path, run_device, workers, resume): path
            for config, path, resume in tasks}
    try:
        codes = ray.get(list(refs))
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        raise RunStopped(signal.SIGINT) from None
    for path, code in zip(refs.values(), codes):
        if code != 0:
            raise PasmError(path, f"training failed on Ray (exit code {code}); its train.log says why")


def train_process(config, path, device, workers, resume):
    """A Ray task: run ``python -m pasm train`` for ``config`` (with this machine's Python) and return its exit code;
    a cancelled task stops its run (SIGTERM), which can be resumed."""
    command = train_command(config, path, device=device, workers=workers, resume=resume)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        return process.wait()


def _ray():
    try:
        import ray
    except ImportError:
        raise PasmError("--launcher ray", 'needs Ray, the optional extra: pip install ".[cluster]"') from None
    if not ray.is_initialized():
        ray.init()
    return ray

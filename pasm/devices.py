"""The device a command computes on, from the name a user gives (``--device``, the app's choice)."""
import torch

from .errors import PasmError


def resolve_device(name):
    """``auto`` is the GPU where there is one, else the CPU. A bad name or a GPU this machine lacks is refused
    here, in the user's words, rather than by torch in the middle of a run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PasmError(f"--device {name}", "not a device name (cpu, cuda, cuda:1 or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PasmError(f"--device {name}", "CUDA is not available on this machine")
    return device

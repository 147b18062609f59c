import shutil
import tempfile
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


XDG_FOLDERS = pytest.StashKey()


def pytest_configure(config):
    """Caches and config folders go to a temporary folder, never the home directory: XDG_CACHE_HOME moves pasm's
    cache (the fetched fer model, ``pasm.fer_teacher.default_cache_dir``) and matplotlib's font list, XDG_CONFIG_HOME
    matplotlib's config folder; subprocesses (the CLI, streamlit) inherit both. Set here rather than in a fixture:
    importing the test modules already imports captum, which imports matplotlib, which writes its cache."""
    folder = Path(tempfile.mkdtemp(prefix="pasm-tests-xdg-"))
    patch = pytest.MonkeyPatch()
    for variable, name in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config")):
        (folder / name).mkdir()
        patch.setenv(variable, str(folder / name))
    config.stash[XDG_FOLDERS] = folder, patch


def pytest_unconfigure(config):
    folder, patch = config.stash[XDG_FOLDERS]
    patch.undo()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def synth_set():
    """A small SynthFER sample as tensors (32 px), rendered once per session."""
    from pasm.data.synth import CLASSES, SynthFERMemory
    from pasm.data.transforms import eval_transform
    from pasm.models import InputSpec

    def tensors(n, split, seed):
        data = SynthFERMemory(n, split, size=32, seed=seed, transform=eval_transform(InputSpec(32, 3)))
        images, labels = zip(*(data[i] for i in range(n)))
        cues = torch.stack([torch.as_tensor(data.cue_mask(i)) for i in range(n)])
        return torch.stack(images), torch.tensor(labels), cues

    train = tensors(700, "train", 1)
    test = tensors(64, "test", 2)
    return {"classes": CLASSES, "train": train, "test": test}


@pytest.fixture(scope="session")
def trained_teacher(synth_set):
    """A small CNN trained for a few seconds: good enough for the attack to have something to flip."""
    from torch.utils.data import TensorDataset

    from pasm.models import InputSpec, build_model
    from pasm.train import fit_supervised

    torch.manual_seed(0)
    images, labels, _ = synth_set["train"]
    model = build_model("small_cnn", 7, InputSpec(32, 3))
    fit_supervised(model, TensorDataset(images, labels), epochs=8, batch_size=64, lr=0.05)
    return model.eval()


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty runs directory that the app and pasm.jobs use (PASM_RUNS); jobs a test left running are killed."""
    from pasm import jobs

    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("PASM_RUNS", str(root))
    yield root
    for job in jobs.list_jobs(root):
        jobs.kill(job)


@pytest.fixture(scope="module")
def one_thread():
    """Batches of 16 images of 32 px: one thread beats a pool's hand-offs, on a busy machine by far."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

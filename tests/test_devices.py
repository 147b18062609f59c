import pytest
import torch

from pasm.cli import main
from pasm.devices import resolve_device
from pasm.errors import PasmError


@pytest.fixture(params=[False, True], ids=["no-cuda", "cuda"])
def cuda(request, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: request.param)
    return request.param


def test_auto_is_the_gpu_where_there_is_one(cuda):
    assert resolve_device("auto") == torch.device("cuda" if cuda else "cpu")


@pytest.mark.parametrize("name, expected", [("cpu", torch.device("cpu")), ("cuda", torch.device("cuda")),
                                            ("cuda:1", torch.device("cuda", 1))])
def test_a_named_device_is_a_torch_device(name, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device = resolve_device(name)
    assert isinstance(device, torch.device) and device == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_a_bad_name_is_bad_input(name):
    with pytest.raises(PasmError) as error:
        resolve_device(name)
    assert (error.value.what, error.value.why) == (f"--device {name}", "not a device name (cpu, cuda, cuda:1 or auto)")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_bad_input(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PasmError) as error:
        resolve_device(name)
    assert (error.value.what, error.value.why) == (f"--device {name}", "CUDA is not available on this machine")


def test_the_cli_reports_a_bad_device_in_one_line(tmp_path, capsys):
    (tmp_path / "m.pt").write_bytes(b"")  # files that exist, so the device is the first thing wrong
    assert main(["eval", "--checkpoint", str(tmp_path / "m.pt"), "--data", f"synth:{tmp_path}", "--device", "gpu"]) == 2
    assert capsys.readouterr().err == "error: --device gpu: not a device name (cpu, cuda, cuda:1 or auto)\n"

"""A fresh install is reproducible: the locks pin the whole tree, agree with their inputs and with pyproject.

requirements.in and requirements-dev.in are the direct requirements; pip-compile turns them into requirements.txt and
requirements-dev.txt, the locks that README's commands install (see "Refreshing the lock" in README.md). Nothing here
runs pip: the files are parsed, and only installed metadata is read.
"""
import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"requirements.txt": "requirements.in", "requirements-dev.txt": "requirements-dev.in"}
STARLETTE_SAFE = (Version("0.52"), Version("1.8"))  # starlette 1.8-1.10 break st.download_button (streamlit 1.60)
README_COMMANDS = ("python -m pip install -r requirements.txt && streamlit run app.py",
                   "python -m pip install -r requirements-dev.txt && python -m pytest")


def requirement_lines(path):
    """The non-empty lines of a requirements file, comments stripped."""
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in (REPO / path).read_text().splitlines())
    return [line for line in lines if line]


def direct_requirements(path):
    """The requirements an .in file names, following its -r includes (its -c constraints are not requirements)."""
    requirements = []
    for line in requirement_lines(path):
        if line.startswith(("-r ", "--requirement ")):
            requirements += direct_requirements(line.split(maxsplit=1)[1])
        elif not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def pins(lock):
    """{canonical name: Version} of a lock; every line must be a plain `name==version`."""
    pinned = {}
    for line in requirement_lines(lock):
        assert not line.startswith("-"), f"{lock}: option line {line!r} (indexes, hosts and paths stay out of locks)"
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{lock}: {line!r} is not pinned with =="
        assert requirement.url is None and requirement.marker is None and not requirement.extras, f"{lock}: {line!r}"
        name = canonicalize_name(requirement.name)
        assert name not in pinned, f"{lock}: {name} pinned twice"
        pinned[name] = Version(specifiers[0].version)
    return pinned


@pytest.fixture(scope="module")
def pyproject():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_package_of_the_lock_is_pinned_and_no_local_path_or_host_is_in_it(lock):
    assert len(pins(lock)) > 50  # the whole tree, not only the direct requirements
    text = (REPO / lock).read_text()
    for leak in ("file:/", "/opt/", "/tmp/", "/work/", "/home/", "/root/", "http://", "https://", "--find-links",
                 "--index-url", "--extra-index-url", "--trusted-host"):
        assert leak not in text, f"{lock} mentions {leak!r}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_direct_requirement_is_in_the_lock_at_a_version_it_allows(lock):
    pinned = pins(lock)
    for requirement in direct_requirements(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{LOCKS[lock]} names {requirement.name}, {lock} does not pin it"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"{lock} pins {name}=={pinned[name]}, {LOCKS[lock]} asks for {requirement}"


def test_the_dev_lock_keeps_the_runtime_lock_versions():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_starlette_is_pinned_below_the_versions_that_break_download_buttons(lock):
    low, high = STARLETTE_SAFE
    assert low <= pins(lock)["starlette"] < high


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_every_dependency_of_what_it_pins(lock):
    """Closed under dependencies, extras included (torch's cuda-toolkit[cublas,...] and its nvidia-* wheels), read from
    the installed metadata of the pinned packages that are installed at their pinned version (README's commands
    install the lock before the tests)."""
    pinned = pins(lock)
    environment = default_environment()
    installed = {}
    for name, version in pinned.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Version(distribution.version) == version:
            installed[name] = [Requirement(line) for line in distribution.requires or []]
    if not installed:
        pytest.skip(f"none of {lock}'s packages is installed at its pinned version")
    todo = [(name, "") for name in installed]
    seen, missing = set(todo), []
    while todo:
        name, extra = todo.pop()
        for requirement in installed.get(name, []):
            if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": extra}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pinned or not requirement.specifier.contains(pinned[dependency], prereleases=True):
                missing.append(f"{name}{f'[{extra}]' if extra else ''}=={pinned[name]} needs {requirement}")
            for wanted in requirement.extras:
                if (dependency, wanted) not in seen:
                    seen.add((dependency, wanted))
                    todo.append((dependency, wanted))
    assert not missing, f"{lock} lacks: " + "; ".join(sorted(set(missing)))
    assert {"nvidia-cublas", "nvidia-cudnn-cu13", "triton"} <= set(pinned) or "torch" not in installed


def test_pyproject_ranges_allow_the_locked_versions(pyproject):
    project = pyproject["project"]
    pinned = pins("requirements.txt")
    declared = project["dependencies"] + project["optional-dependencies"]["app"]
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"pyproject needs {name}, requirements.txt does not pin it"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"pyproject asks for {requirement}, the lock pins {pinned[name]}"
    core = {canonicalize_name(Requirement(line).name) for line in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "captum", "safetensors", "pillow", "h5py", "tqdm"} <= core
    torch, torchvision = (next(Requirement(line) for line in project["dependencies"] if Requirement(line).name == name)
                          for name in ("torch", "torchvision"))
    assert torch.specifier.contains("2.11.0") and torchvision.specifier.contains("0.26.0")  # the GPU machines' pair


def test_pyproject_console_script_is_pasm_cli_main(pyproject):
    module, _, attribute = pyproject["project"]["scripts"]["pasm"].partition(":")
    assert (module, attribute) == ("pasm.cli", "main")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_pyproject_ships_every_package_and_the_assets(pyproject):
    setuptools = pyproject["tool"]["setuptools"]
    packages = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "pasm").rglob("__init__.py")}
    assert set(setuptools["packages"]) == packages
    assert "assets/*" in setuptools["package-data"]["pasm"]
    assert (REPO / "pasm" / "assets" / "grace_hopper.jpg").is_file()


def test_readme_commands_install_the_locks_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    for command in README_COMMANDS:
        assert f"\n{command}\n" in readme
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci[-1] == README_COMMANDS[1]
    for lock, source in LOCKS.items():
        assert "pip-compile" in readme and f"--output-file={lock} {source}" in readme


def test_tests_keep_the_fer_cache_out_of_the_home_directory(monkeypatch, tmp_path):
    """conftest points XDG_CACHE_HOME at a tmp dir; pasm's cache follows it, and falls back to ~/.cache/pasm."""
    from pasm.fer_teacher import default_cache_dir

    assert not default_cache_dir().is_relative_to(Path.home() / ".cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "pasm"
    for unset in ("", "relative/dir"):
        monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert default_cache_dir() == Path.home() / ".cache" / "pasm"

"""Where the app's code lives, checked on the source: the library (pasm/) does the work, the app (ui/, app_pages/)
only caches it, keeps the session and draws. A function the app needs from the library is imported, never
written again beside it."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = sorted((REPO / "pasm").rglob("*.py"))
APP = [REPO / "app.py", *sorted((REPO / "ui").glob("*.py")), *sorted((REPO / "app_pages").glob("*.py"))]
MAX_UI_LINES = 350
CACHES = ("st.cache_data", "st.cache_resource")


def relative(path):
    return path.relative_to(REPO).as_posix()


def definitions(path):
    """(name, decorators as source) of every function and class the file defines, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.name, [ast.unparse(d) for d in node.decorator_list]) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


@pytest.mark.parametrize("path", sorted((REPO / "ui").glob("*.py")), ids=relative)
def test_no_module_of_the_app_support_is_long(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_UI_LINES, f"{relative(path)} has {lines} lines: move its library work into pasm/"


def test_the_app_defines_no_function_the_library_defines():
    """Only a caching wrapper (st.cache_data, st.cache_resource) may take the name of the library call it caches."""
    library = {name: relative(path) for path in LIBRARY for name, _ in definitions(path)}
    twice = [f"{relative(path)}: {name} (also in {library[name]})" for path in APP
             for name, decorators in definitions(path)
             if name in library and not any(d.startswith(CACHES) for d in decorators)]
    assert twice == []


def test_the_library_never_imports_the_app_or_streamlit():
    found = [f"{relative(path)}: {module}" for path in LIBRARY for module in imported_modules(path)
             if module.split(".")[0] in ("streamlit", "ui")]
    assert found == []


def test_the_scan_sees_a_function_written_twice(tmp_path):
    """The checks above read real definitions: a copy of a library function in a page would be found."""
    copy = tmp_path / "page.py"
    copy.write_text("import streamlit as st\n\n\ndef read_json(path):\n    pass\n\n\n"
                    "@st.cache_data\ndef find_runs(root):\n    pass\n")
    library = {name for path in LIBRARY for name, _ in definitions(path)}
    assert [(name, not any(d.startswith(CACHES) for d in decorators)) for name, decorators in definitions(copy)
            if name in library] == [("read_json", True), ("find_runs", False)]

import os
import stat

import pytest

from pasm import fileio


def test_an_atomic_write_replaces_the_file_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "status.json"
    fileio.write_json(target, {"state": "running"})
    fileio.write_json(target, {"state": "done"})
    assert target.read_text() == '{\n  "state": "done"\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == fileio.NEW_FILE_MODE
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == fileio.NEW_FILE_MODE  # what open() gives a new file
    assert os.listdir(target.parent) == ["status.json"]  # no temporary file left beside it


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    fileio.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]

import pytest

from pasm.errors import first_line


@pytest.mark.parametrize("error, expected", [
    (ValueError("bad value"), "bad value"),
    (OSError("\n  first   line \nsecond line"), "first line"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (RuntimeError("x" * 500), "x" * 200),
    ("  a text\nand more", "a text"),
    ("", ""),
])
def test_first_line(error, expected):
    assert first_line(error) == expected


@pytest.mark.parametrize("error, expected", [
    (ValueError("lr must be positive\ntraceback"), "ValueError: lr must be positive"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    ("a text", "a text"),
])
def test_first_line_with_type(error, expected):
    assert first_line(error, with_type=True) == expected

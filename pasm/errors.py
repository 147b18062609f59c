"""One exception type for every input a user can get wrong.

The CLI turns a ``PasmError`` into a single ``error: <what>: <why>`` line and exit code 2;
the app shows it with ``st.error``. Anything else that escapes is a bug, not bad input.
"""


class PasmError(Exception):
    """Bad input, described for a person: ``what`` names the thing (a file, a spec), ``why`` says what is wrong."""

    def __init__(self, what, why):
        self.what = str(what)
        self.why = str(why)
        super().__init__(f"{self.what}: {self.why}")


class CheckpointError(PasmError):
    pass


class ImageError(PasmError):
    pass


class DataError(PasmError):
    pass


class NoFaceError(ImageError):
    pass


def first_line(error, with_type=False):
    """An exception's (or a text's) first non-blank line, cut at 200 characters, so that a report of it stays
    one line; an exception without a message is named by its type. ``with_type`` prefixes the type where the
    message alone would not say what went wrong (``ValueError: ...``)."""
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    text = lines[0][:200] if lines else ""
    name = type(error).__name__ if isinstance(error, BaseException) else ""
    if with_type and name and text:
        return f"{name}: {text}"
    return text or name

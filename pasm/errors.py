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

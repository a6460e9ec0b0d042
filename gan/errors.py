"""The project's one error type for bad input: the CLI prints it as one line and exits 2."""


class GanError(Exception):
    """Bad input or environment, said in one line (no traceback)."""

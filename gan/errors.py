"""The project's one error type for bad input, and the CLI's way of saying it: one line, exit 2."""
import functools


class GanError(Exception):
    """Bad input or environment, said in one line (no traceback)."""


def friendly(fn):
    """Wrap a typer command: GanError -> `error: ...` on stderr and exit 2."""
    import typer

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except GanError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
    return wrapper

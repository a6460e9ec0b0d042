"""The project's one error type for bad input, and the CLI's way of saying it: one line, exit 2."""
import functools


class GanError(Exception):
    """Bad input or environment, said in one line (no traceback); `exit_code` 2 (bad input), 1 for what the
    machine failed at (a full disk, see fileio.DiskFull)."""
    exit_code = 2


def friendly(fn):
    """Wrap a typer command: GanError -> `error: ...` on stderr and its exit code (2, or 1 for a full disk); an
    error from the user's own code (gan.usercode.UserCodeError) prints its traceback first."""
    import typer

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except GanError as e:
            if getattr(e, "traceback", None):
                typer.echo(e.traceback, err=True)
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
    return wrapper

"""The project's one error type for bad input, and the CLI's way of saying it: one line, exit 2."""
import difflib
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


def did_you_mean(word: str, options) -> str:
    """' (did you mean 'x'?)' for the nearest of `options` to a mistyped `word`, or ''."""
    near = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""

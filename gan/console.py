"""What a run says on the terminal: the console, the line that opens a run, the long-run note, the progress bar."""
from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from pathlib import Path

from rich.console import Console

# Piped or logged output gets wide lines instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
PLAIN_ROWS = 100  # a longer table is laid out as plain aligned text: rich measures every cell (≈ 1 s a 1,000 rows)


def plain_table(title: str, heads: list[str], rows: list[list], right=(), caption: str | None = None):
    """A table as aligned lines, one row a line (`show` prints them whole: a narrower terminal wraps them): a cell is
    a string, or (string, style) to colour it."""
    from rich.markup import escape
    from rich.text import Text

    heads = [h.replace("\n", " ") for h in heads]
    cells = [[c if isinstance(c, tuple) else (c, None) for c in r] for r in rows]
    width = [max([len(h)] + [len(r[i][0]) for r in cells]) for i, h in enumerate(heads)]

    def line(r: list) -> str:
        out = []
        for i, (text, style) in enumerate(r):
            shown, pad = escape(text), " " * (width[i] - len(text))
            shown = f"[{style}]{shown}[/]" if style else shown
            out.append(pad + shown if i in right else shown + pad)
        return " ".join(out).rstrip()

    lines = [f"[italic]{escape(title)}[/]", line([(h, "bold") for h in heads]), *map(line, cells)]
    return Text.from_markup("\n".join(lines + ([escape(caption)] if caption else [])))


def show(table) -> None:
    """Print a rich Table, or a plain_table's lines whole (never cropped to the terminal's width)."""
    from rich.text import Text

    console.print(table, soft_wrap=isinstance(table, Text))


def banner(run_dir: Path, c, g_params: int, d_params: int, where: str, steps: int, precision: str, data) -> str:
    """The line that opens a run: what trains (its parameter counts), how long, on what, from which data."""
    from gan.usercode import short

    return (f"run [bold]{run_dir}[/]: {short(c.model.arch)}{' conditional' if data.num_classes else ''} G "
            f"{g_params / 1e6:.2f}M D {d_params / 1e6:.2f}M, {short(c.loss.name)} loss, {steps} "
            f"steps on {where}, {precision}" + (f", DiffAugment {c.train.diffaug}" if c.train.diffaug else "")
            + (f", at most {c.train.minutes:g} min" if c.train.minutes else "") + f", data {data.source}")


def long_run_note(steps_left: int, first_step_seconds: float, minutes: float) -> str | None:
    """On a CPU, a run planned for many hours is sized for a GPU: what to say, and what to run instead."""
    hours = steps_left * first_step_seconds / 3600
    hours = min(hours, minutes / 60) if minutes else hours
    if hours <= 12:
        return None
    return (f"[yellow]this run is planned for about {hours / 24:.1f} days on this CPU ({first_step_seconds:.1f} s "
            "for its first step): it is sized for a GPU. On a CPU, `make train EXP=quick` gives the best samples in "
            "10 minutes.[/]")


@contextlib.contextmanager
def progress_bar(name: str, total: int, done: int, quiet: bool, status, budget_left=lambda: None, total_now=None):
    """A rich progress bar; yields a function of the step that updates it (`status()` gives its text). The ETA is
    the step plan's or, when sooner, the time budget's (`budget_left()`: wall seconds of train.minutes left, its
    evaluations included, or None); `total_now()`: the steps the run will end at, when a budget ends it first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                   TextColumn("{task.fields[status]}"), console=console, disable=quiet, transient=False)
    task = bar.add_task(name, total=total, completed=done, status="", rate="", eta="-")
    t0 = time.perf_counter()

    def update(step: int) -> None:
        end = total_now() if total_now is not None else total
        rate = (step - done) / max(time.perf_counter() - t0, 1e-9)
        left = [(end - step) / rate] if rate > 0 else []
        left += [b for b in [budget_left()] if b is not None]
        eta = str(dt.timedelta(seconds=round(max(0.0, min(left))))) if left else "-"
        bar.update(task, total=end, completed=step, rate=f"{rate:.2f} it/s", status=status(), eta=eta)

    with bar:
        yield update

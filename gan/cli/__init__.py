"""`gan`: the command line. Bad input is one line on stderr and exit 2, never a traceback.

The commands, by room: train.py (train, resume, validate, list, keys, export), runs.py (runs, compare, eval,
sample, neighbours, leaderboard, screenshot), features.py (the c10 extractor's train and check),
sweep.py (sweeps: grids × seeds, Optuna searches, their reports).
"""
from __future__ import annotations

import sys

import typer

# Plain help (rich_markup_mode=None): typer's rich panels print `<bool>` beside every flag, --help included, as if it
# took a value.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Train GANs on CIFAR-10 from experiment files (gan list) and compare them in TensorBoard.")

# each module adds its commands to `app`, in the order `gan --help` lists them
from gan.cli import train  # noqa: E402,F401,I001
from gan.cli import runs  # noqa: E402,F401
from gan.cli import features  # noqa: E402,F401
from gan.cli import sweep  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

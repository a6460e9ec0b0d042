"""`gan features`: train and check the c10 extractor behind the fid_c10/kid_c10/is_c10 numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gan.cli import app
from gan.errors import GanError, friendly
from gan.console import console

features_app = typer.Typer(no_args_is_help=True, help="Our CIFAR-10 feature extractor (c10) for offline metrics.")
app.add_typer(features_app, name="features")


@features_app.command("train")
@friendly
def features_train(
    data: str = typer.Option("../shared/data/cifar10", help="npz file, folder of train-*.npz or glob"),
    test: Optional[str] = typer.Option(None, help="held-out npz (e.g. test-00.npz); else 10% of the data"),
    epochs: int = typer.Option(24, min=1),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("c10-new.pt"), help="where to write the weights (never overwritten); "
                             "their record goes beside it as .json"),
) -> None:
    """Train the c10 classifier whose features give fid_c10/kid_c10/is_c10."""
    import shlex
    import sys

    from gan import c10_train, fileio

    record_path = out.with_suffix(".json")
    for p in (out, record_path):  # the packaged weights define every machine's numbers: never replaced by accident
        if p.exists():
            raise GanError(f"{p} exists; pick another --out (then replace the packaged c10.pt and c10.json "
                           "deliberately)")
    r = c10_train.train(data, test, epochs, seed, out, command=shlex.join(["gan", *sys.argv[1:]]), log=console.print)
    fileio.write_json(record_path, r)
    console.print(r)
    console.print(f"record: {record_path}")


@features_app.command("check")
@friendly
def features_check(data: str = typer.Option("../shared/data/cifar10", help="folder of c10's train-*.npz shards "
                                            "(else any npz file, folder or glob: distortions only)"),
                   n: int = typer.Option(2500, min=2, help="images per side")) -> None:
    """FID_c10 real vs real on images c10 trained on and images it never saw, and against distorted copies:
    it must grow with each distortion."""
    from gan import features

    features.check(data, n, log=console.print)

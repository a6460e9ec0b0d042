"""`gan features`: train and check the c10 extractor behind the fid_c10/kid_c10/is_c10 numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gan.cli import app
from gan.errors import GanError, friendly
from gan.tracking import console

features_app = typer.Typer(no_args_is_help=True, help="Our CIFAR-10 feature extractor (c10) for offline metrics.")
app.add_typer(features_app, name="features")


@features_app.command("train")
@friendly
def features_train(
    data: str = typer.Option("../shared/data/cifar10", help="npz file, folder of train-*.npz or glob"),
    test: Optional[str] = typer.Option(None, help="held-out npz (e.g. test-00.npz); else 10% of the data"),
    epochs: int = typer.Option(24, min=1),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("c10-new.pt"), help="where to write the weights (never overwritten)"),
) -> None:
    """Train the c10 classifier whose features give fid_c10/kid_c10/is_c10."""
    from gan import features

    if out.exists():  # the packaged weights define every machine's numbers: never replaced by accident
        raise GanError(f"--out {out} exists; pick another path (then replace the packaged file and c10.json "
                       "deliberately)")
    r = features.train(data, test, epochs, seed, out, log=console.print)
    console.print(r)


@features_app.command("check")
@friendly
def features_check(data: str = typer.Option("../shared/data/cifar10", help="npz file, folder or glob"),
                   n: int = typer.Option(2000, help="images per side")) -> None:
    """FID_c10 of real images against distorted copies: it must grow with each distortion."""
    import torch

    from gan import features
    from gan.data import load_npz

    x, _ = load_npz(data)
    if len(x) < 2 * n:
        raise GanError(f"--n {n}: needs {2 * n} images, '{data}' has {len(x)}")
    features.distortion_table(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), n, log=console.print)

"""`gan features`: train and check the c10 extractor behind the fid_c10/kid_c10/is_c10 numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gan.cli import app
from gan.errors import GanError, friendly
from gan.console import console

features_app = typer.Typer(no_args_is_help=True, help="Feature extractors: the standard Inception's weights (get, "
                                                       "where) and our CIFAR-10 extractor c10 (train, check).")
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
                   n: int = typer.Option(2500, min=2, help="images per side"),
                   published: bool = typer.Option(False, "--published", help="instead: FID of the 50,000 CIFAR-10 "
                                                  "training images vs the 10,000 test images with the standard "
                                                  "Inception (published ≈ 3.15)"),
                   inception_weights: str = typer.Option("", help="--published: the weights file (else env "
                                                         "GAN_INCEPTION_WEIGHTS or torch-fidelity's cache)"),
                   device: str = typer.Option("auto", help="auto, cpu or cuda")) -> None:
    """FID_c10 real vs real on images c10 trained on and images it never saw, and against distorted copies:
    it must grow with each distortion. --published: the standard Inception's train-vs-test sanity figure."""
    if published:
        from gan.config import Metrics
        from gan.device import pick
        from gan.metrics import published as pub

        pub.check(data, inception_weights, pick(device), Metrics(), log=console.print, console=console)
        return
    from gan import features

    features.check(data, n, log=console.print)


@features_app.command("get")
@friendly
def features_get(what: str = typer.Argument(..., help="inception: the standard pt_inception-2015-12-05 weights"),
                 url: Optional[str] = typer.Option(None, help="a mirror (default: env GAN_INCEPTION_URL, else "
                                                              "torch-fidelity's own URL)")) -> None:
    """Download the standard Inception weights into torch-fidelity's cache: sha256 verified in full, loaded with
    weights_only=True, then put in place atomically; nothing is left behind when anything fails."""
    from gan import fileio
    from gan.metrics import fetch

    if what != "inception":
        raise GanError(f"{what!r}: only 'inception' can be fetched (c10 is packaged)")
    dest = fetch.target()
    if dest.is_file():
        if fileio.sha256_file(dest) == fetch.EXPECTED_SHA256:
            console.print(f"already in place, sha256 verified: {dest}", soft_wrap=True)
            return
        fileio.set_aside(dest, "its sha256 is not the pinned one", console.print)
    path = fetch.fetch(url or fetch.url(), fetch.CLI_TIMEOUT, console)
    console.print(f"fetched {url or fetch.url()}: {path} ({path.stat().st_size:,} bytes, sha256 "
                  f"{fetch.EXPECTED_SHA256[:16]}… verified, loads with weights_only=True)", soft_wrap=True)


@features_app.command("where")
@friendly
def features_where(inception_weights: str = typer.Option("", help="as metrics.inception_weights would give it")) -> None:
    """Which weights each extractor would use now, and why."""
    from gan.metrics import extractors

    for line in extractors.where(inception_weights):
        console.print(line, markup=False, soft_wrap=True)

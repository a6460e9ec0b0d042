"""`gan`: the command line. Bad input is one line on stderr and exit 2, never a traceback."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from gan.errors import GanError, friendly
from gan.tracking import console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train GANs on CIFAR-10 from experiments/*.toml and compare them in TensorBoard.")
features_app = typer.Typer(no_args_is_help=True, help="Our CIFAR-10 feature extractor (c10) for offline metrics.")
app.add_typer(features_app, name="features")

EXIT = {"completed": 0, "interrupted": 130, "diverged": 3, "failed": 1}


def _finish(result, trainer) -> None:
    from gan.tracking import read_run

    console.print(f"[bold]{result.status}[/] at step {result.step}: {result.run_dir}")
    if result.metrics:
        step, last = result.metrics[-1]
        shown = ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in last.items() if k.startswith("metrics/"))
        console.print(f"final (step {step}): {shown}")
    if result.best:
        console.print(f"best {result.best['tag']}: {result.best['value']:.4g} at step {result.best['step']}")
    console.print("see it: tensorboard --logdir logs")
    code = EXIT.get(result.status, 1)
    if result.status == "interrupted" and getattr(trainer, "stop_signal", 0) == signal.SIGTERM:
        code = 143
    read_run(result.run_dir)  # noqa: B018 - run.json is already final
    raise typer.Exit(code)


@app.command()
@friendly
def train(
    exp: str = typer.Argument(..., help="experiment name under experiments/ or a path to a .toml"),
    set_: List[str] = typer.Option([], "--set", help="override a key: section.key=value (repeatable)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    name: Optional[str] = typer.Option(None, help="suffix of the run folder's name"),
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
    resume: Optional[Path] = typer.Option(None, help="continue this run folder instead of starting a new one"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="processes on this machine (DDP through torchrun "
                              "--standalone): one per GPU, or CPU processes with gloo; optim.batch_size stays the "
                              "global batch"),
) -> None:
    """Train an experiment; logs go to logs/<experiment>/<run-id>/."""
    from gan import config, dist

    if nproc > 1 and not dist.launched():
        if resume is None:  # bad input: one line here, before any process starts
            cfg = config.load(exp, set_)
            if cfg.optim.batch_size % nproc:
                raise GanError(f"optim.batch_size = {cfg.optim.batch_size}: not divisible by --nproc {nproc} "
                               "(optim.batch_size is the global batch; each process takes an equal share)")
        args = ["train", exp, *[a for s in set_ for a in ("--set", s)], "--device", device, "--logs", str(logs)]
        args += (["--name", name] if name else []) + (["--resume", str(resume)] if resume is not None else [])
        raise typer.Exit(dist.launch(nproc, args))
    from gan.engine import Trainer

    if resume is not None:
        return resume_cmd(resume, device, nproc=1)
    cfg = config.load(exp, set_)
    trainer = Trainer(cfg, device=device, name=name, logs=logs)
    _finish(trainer.run(), trainer)


@app.command("resume")
@friendly
def resume_cmd(run_dir: Path = typer.Argument(..., help="a run folder under logs/"),
               device: str = typer.Option("auto", help="auto, cpu or cuda"),
               nproc: int = typer.Option(1, "--nproc", min=1, help="processes (DDP through torchrun); a run "
                                                                   "resumes on any number of them")) -> None:
    """Continue a run from its checkpoints/last.pt, in the same folder and TensorBoard run."""
    from gan import config, dist
    from gan.engine import Trainer

    if nproc > 1 and not dist.launched():
        raise typer.Exit(dist.launch(nproc, ["resume", str(run_dir), "--device", device]))

    cfg_path = run_dir / "config.toml"
    if not (run_dir / "run.json").is_file() or not cfg_path.is_file():
        raise GanError(f"'{run_dir}' is not a run folder (no run.json/config.toml)")
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise GanError(f"'{run_dir}' has no checkpoints/last.pt to resume from")
    cfg = config.load(str(cfg_path))
    trainer = Trainer(cfg, device=device, resume=run_dir)
    if trainer.step >= trainer.steps:
        raise GanError(f"'{run_dir}' is already complete ({trainer.step}/{trainer.steps} steps)")
    console.print(f"resuming {run_dir} at step {trainer.step}/{trainer.steps}")
    _finish(trainer.run(), trainer)


@app.command("list")
@friendly
def list_cmd(models: bool = typer.Option(False, "--models", help="list model families instead")) -> None:
    """The experiments, one line each (name, model, loss, steps, description)."""
    from gan import config

    if models:
        from gan.models import ARCHES

        for n, a in sorted(ARCHES.items()):
            console.print(f"{n:16} {'/'.join(map(str, a.sizes)):6} {a.doc}")
        return
    for p in sorted(config.EXPERIMENTS_DIR.glob("*.toml")):
        try:
            c = config.load(str(p))
            length = f"{c.train.epochs:g} epochs" if c.train.epochs else f"{c.train.steps} steps"
            typer.echo(f"{p.stem:15} {c.model.arch:15} {c.loss.name:6} {length:12} {c.experiment.description}")
        except GanError as e:
            typer.echo(f"{p.stem:15} invalid: {e}")


@app.command()
@friendly
def validate(exp: str = typer.Argument(..., help="experiment name or .toml path"),
             set_: List[str] = typer.Option([], "--set", help="override a key: section.key=value")) -> None:
    """Parse and validate an experiment; print the resolved config (exit 0) or the error (exit 2)."""
    from gan import config

    cfg = config.load(exp, set_)
    typer.echo(config.to_toml(cfg))


@app.command()
def keys() -> None:
    """Every config key with its default and meaning."""
    from gan import config

    t = Table("key", "default", "meaning", box=None)
    for k, d, doc in config.keys_doc():
        t.add_row(k, d, doc)
    console.print(t)


@app.command()
@friendly
def export(run_dir: Path = typer.Argument(..., help="a run folder"),
           checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best")) -> None:
    """Write netG.pth / netD.pth (plain state_dicts) from a run's checkpoint."""
    from gan import checkpoint
    from gan.engine import export as do_export

    p = run_dir / "checkpoints" / f"{checkpoint_name}.pt"
    if not p.is_file():
        raise GanError(f"'{p}' does not exist")
    for out in do_export(run_dir, checkpoint.load(p)):
        console.print(str(out))


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


from gan import runs as _runs  # noqa: E402 - the run-management commands

_runs.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Commands that start or continue training, and the experiment files behind them."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from gan.cli import app
from gan.errors import GanError, friendly
from gan.console import console

RUN_HELP = "run folder, <experiment>/<run-id> or run id (under --logs)"
SET_HELP = "override a key: section.key=value (repeatable; TOML values; a key given twice: the last wins)"


def _finish(result) -> None:
    console.print(f"[bold]{result.status}[/] at step {result.step}: {result.run_dir}")
    if result.metrics:
        step, last = result.metrics[-1]
        shown = ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in last.items() if k.startswith("metrics/"))
        console.print(f"final (step {step}): {shown}")
    if result.best:
        console.print(f"best {result.best['tag']}: {result.best['value']:.4g} at step {result.best['step']}")
    console.print(f"see it: {see_it(result.run_dir)}", soft_wrap=True)
    raise typer.Exit(result.exit_code)


def see_it(run_dir: Path) -> str:
    """How to open the logs folder this run is in: `make tensorboard` only in a checkout whose logs/ it is."""
    import shutil
    import sys

    from gan.runs import logs_root

    logs = logs_root(run_dir)
    tb = Path(sys.executable).parent / "tensorboard"
    tb = str(tb) if tb.is_file() else shutil.which("tensorboard") or f"{sys.executable} -m tensorboard.main"
    here = Path.cwd()
    shown = str(logs)  # as the run was given it: relative to where it was started, or absolute
    cmd = f"{tb} --logdir {shown}"
    if shown == "logs" and (here / "Makefile").is_file() and "tensorboard:" in (here / "Makefile").read_text():
        return f"make tensorboard  (or: {cmd})"
    return cmd


def _run(make_trainer) -> None:
    """Build the trainer and run it with Ctrl-C/SIGTERM handled (see gan/stop.py). A full disk ends the run as
    `failed` (exit 1) with one line; its last checkpoint stays as it was."""
    from gan import dist
    from gan.engine import EXIT
    from gan.fileio import DiskFull
    from gan.stop import Interrupted, Stop

    from gan.rundir import resume_line

    ddp = dist.env_world() > 1
    stop = Stop(debounce=2.0 if ddp else 0.0, droppable=not ddp, log=console.print).install()
    trainer = None
    try:
        try:
            trainer = make_trainer(stop)
        except Interrupted:  # during data loading: no step was made, no run folder was left
            console.print("interrupted before training started")
            raise typer.Exit(stop.exit_code) from None
        _finish(trainer.run())
    except DiskFull as e:  # the line names what to run once there is room: this run's resume, when it has one
        typer.echo(f"error: {e.line(resume_line(trainer.run_dir)) if trainer else e}", err=True)
        raise typer.Exit(EXIT["failed"]) from None
    except Exception as e:  # raised in the user's own model or loss: their traceback, one line (usercode)
        from gan.usercode import UserCodeError, blame

        ref = None if isinstance(e, GanError) else blame(e)
        if ref is None:
            raise
        when = f"at step {trainer.step + 1} of {trainer.run_dir}" if trainer is not None else "before the first step"
        raise UserCodeError(ref, when, e, exit_code=EXIT["failed"]) from None
    finally:
        stop.uninstall()


@app.command()
@friendly
def train(
    exp: str = typer.Argument(..., help="experiment name (./experiments/NAME.toml, else a shipped one: gan "
                                         "list) or a path to a .toml"),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    name: Optional[str] = typer.Option(None, help="suffix of the run folder's name (letters, digits, . _ - ...)"),
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
    resume: Optional[Path] = typer.Option(None, help="continue this run folder instead (the same as `gan resume "
                                                     "RUN`; EXP must be the run's experiment)"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="processes on this machine (DDP through torchrun "
                              "--standalone): one per GPU, or CPU processes with gloo; optim.batch_size stays the "
                              "global batch"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="an exact new folder for the run instead of "
                                           "logs/<experiment>/<run-id> (what gan sweep uses)"),
) -> None:
    """Train an experiment; logs go to logs/<experiment>/<run-id>/."""
    from gan import config, dist, rundir

    if resume is not None:  # exactly `gan resume RUN` with these flags, or refused: nothing is dropped silently
        if name is not None or logs != Path("logs") or run_dir is not None:
            raise GanError("--resume continues the run in its own folder: --name, --logs and --run-dir do not apply")
        _same_experiment(exp, resume, set_)
        return resume_cmd(str(resume), set_, device, nproc, False, Path("logs"))
    if name is not None:
        rundir.check_name(name, "--name")
    if run_dir is not None and (name is not None or logs != Path("logs")):
        raise GanError("--run-dir names the run's folder itself: --name and --logs do not apply")
    cfg = config.load(exp, set_)
    if nproc > 1 and not dist.launched():
        if cfg.optim.batch_size % nproc:  # bad input: one line here, before any process starts
            raise GanError(f"optim.batch_size = {cfg.optim.batch_size}: not divisible by --nproc {nproc} "
                           "(optim.batch_size is the global batch; each process takes an equal share)")
        args = ["train", exp, *[a for s in set_ for a in ("--set", s)], "--device", device]
        args += ["--run-dir", str(run_dir)] if run_dir else ["--logs", str(logs)] + (["--name", name] if name else [])
        raise typer.Exit(dist.launch(nproc, args))
    from gan.engine import Trainer

    _run(lambda stop: Trainer(cfg, device=device, name=name, logs=logs, stop=stop, run_dir=run_dir))


def _same_experiment(exp: str, run: Path, set_: list[str]) -> None:
    """`gan train EXP --resume RUN` continues RUN with the run's own config: EXP (with the same --set) must be
    that config, else its differences would be dropped; the first one is named."""
    from gan import config, tomlfile

    if not (run / "config.toml").is_file():
        return  # resume_cmd says what is wrong with the folder
    config.check_resume_overrides(set_)
    ran, asked = config.load(str(run / "config.toml"), set_).to_dict(), config.load(exp, set_).to_dict()
    for sec, vals in asked.items():
        for k, v in vals.items():
            if ran[sec][k] != v:
                hint = (f"`gan resume {run} --set {sec}.{k}={tomlfile.value(v)}`"
                        if not config.resume_locked(sec, k) else "a new run (`gan train`)")
                raise GanError(f"--resume {run}: {exp} has {sec}.{k} = {tomlfile.value(v)}, the run "
                               f"{tomlfile.value(ran[sec][k])}; use {hint}")


@app.command("resume")
@friendly
def resume_cmd(run: str = typer.Argument(..., help=RUN_HELP),
               set_: List[str] = typer.Option([], "--set", help="change a key for the rest of the run, e.g. "
                                              "train.steps=N or train.minutes=M to extend it; keys that would "
                                              "change its model, data, loss or metrics are refused"),
               device: str = typer.Option("auto", help="auto, cpu or cuda"),
               nproc: int = typer.Option(1, "--nproc", min=1, help="processes (DDP through torchrun); a run "
                                                                   "resumes on any number of them"),
               allow_code_change: bool = typer.Option(False, "--allow-code-change", help="go on although the "
                                                      "user's model/loss files differ from those the run started "
                                                      "with (recorded in run.json; refused otherwise)"),
               logs: Path = typer.Option(Path("logs"), help="root folder of the runs (for a run id)")) -> None:
    """Continue a run from its checkpoints/last.pt, in the same folder and TensorBoard run."""
    from gan import checkpoint, coderecord, config, dist
    from gan.runs import resolve_run

    run_dir = Path(run) if (Path(run) / "run.json").is_file() or Path(run).is_dir() else resolve_run(run, logs)
    if not (run_dir / "run.json").is_file() or not (run_dir / "config.toml").is_file():
        raise GanError(f"'{run_dir}' is not a run folder (no run.json/config.toml)")
    if checkpoint.resumable(run_dir) is None:
        raise GanError(f"'{run_dir}' has no checkpoints/last.pt to resume from")
    config.check_resume_overrides(set_)
    coderecord.check_resume(run_dir, allow_code_change)  # the run's own code, or --allow-code-change
    cfg = config.load(str(run_dir / "config.toml"), set_)
    if nproc > 1 and not dist.launched():
        raise typer.Exit(dist.launch(nproc, ["resume", str(run_dir), "--device", device,
                                             *[a for s in set_ for a in ("--set", s)]]
                                     + (["--allow-code-change"] if allow_code_change else [])))
    from gan.engine import Trainer

    def make(stop):
        tr = Trainer(cfg, device=device, resume=run_dir, stop=stop, resume_set=config.last_wins(set_))
        if (tr.step >= tr.steps or tr._out_of_time()) and _status(run_dir) == "completed":
            tr.release()  # nothing to write: the run's lock goes back at once
            if tr.step >= tr.steps:
                raise GanError(f"'{run_dir}' is already complete ({tr.step}/{tr.steps} steps); extend it with "
                               f"--set train.steps=N (N > {tr.step}; train.minutes alone does not lengthen it)")
            raise GanError(f"'{run_dir}' is already complete ({tr.train_seconds / 60:.2f} of train.minutes = "
                           f"{cfg.train.minutes:g}); extend it with --set train.minutes=M")
        console.print(f"resuming {run_dir} at step {tr.step}/{tr.steps}" + (f" with {', '.join(set_)}" if set_ else ""))
        return tr

    _run(make)


def _status(run_dir: Path) -> str | None:
    from gan import fileio

    try:
        info = fileio.read_json(run_dir / "run.json", default={})
    except GanError:
        return None  # damaged: the run moves it aside when it starts
    return info.get("status") if isinstance(info, dict) else None


@app.command("list")
@friendly
def list_cmd(models: bool = typer.Option(False, "--models", help="list model families instead")) -> None:
    """The experiments, one line each (name, model, loss, length, description)."""
    from gan import config

    if models:
        from gan.models import ARCHES

        for n, a in sorted(ARCHES.items()):
            console.print(f"{n:16} {'/'.join(map(str, a.sizes)):6} {'conditional' if a.conditional else '':12}"
                          f"{a.doc}")
        console.print('or your own: model.arch = "path/to/file.py:build", a callable returning (G, D) (README: Your '
                      'own GAN; examples/)', soft_wrap=True)
        return
    from gan import lookup, usercode

    for name, p, where in lookup.listing():  # ./experiments/ first, then the shipped ones (gan/lookup.py)
        mark = "" if where == "shipped" else f"  ({where}: {usercode.display(str(p))})"
        try:
            c = config.load(str(p))
            length = f"{c.train.epochs:g} epochs" if c.train.epochs else f"{c.train.steps} steps"
            length = f"{c.train.minutes:g} minutes" if c.train.minutes else length
            typer.echo(f"{name:15} {usercode.short(c.model.arch):15} {usercode.short(c.loss.name):6} {length:18} "
                       f"{c.experiment.description}{mark}")
        except GanError as e:
            typer.echo(f"{name:15} invalid: {e}{mark}")


@app.command()
@friendly
def validate(exp: str = typer.Argument(..., help="experiment name or .toml path"),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """Parse and validate an experiment; print the resolved config (exit 0) or the error (exit 2)."""
    from gan import config

    typer.echo(config.to_toml(config.load(exp, set_)))


@app.command()
@friendly
def keys(exp: Optional[str] = typer.Argument(None, help="also this experiment's own arguments: its model's "
                                             "[model.args] and loss's [loss.args], with their values or defaults")
         ) -> None:
    """Every config key with its default and meaning."""
    from rich.markup import escape

    from gan import config

    t = Table("key", "default", "meaning", box=None)
    for k, d, doc in config.keys_doc():
        t.add_row(k, escape(d), escape(doc))
    console.print(t)
    if exp is not None:
        rows = config.own_keys(config.load(exp))
        t = Table("key", "value", "meaning", box=None, title=f"{exp}: its own model's and loss's arguments")
        for k, v, doc in rows:
            t.add_row(k, escape(v), escape(doc))
        console.print(t if rows else f"{exp}: built-in model and loss: no arguments of their own")


@app.command()
@friendly
def export(run: str = typer.Argument(..., help=RUN_HELP),
           checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
           logs: Path = typer.Option(Path("logs"), help="root folder of the runs (for a run id)")) -> None:
    """Write netG.pth / netD.pth (plain state_dicts) from a run's checkpoint, into the run's folder."""
    from gan import checkpoint
    from gan.runs import resolve_run

    if checkpoint_name not in ("last", "best"):
        raise GanError(f"--checkpoint {checkpoint_name!r}: expected last or best")
    run_dir = resolve_run(run, logs)
    p = run_dir / "checkpoints" / f"{checkpoint_name}.pt"
    if not p.is_file():
        raise GanError(f"'{p}' does not exist")
    for out in checkpoint.export(run_dir, checkpoint.load(p)):
        console.print(str(out))

"""`gan sweep`: many runs of one experiment (a grid × seeds, or an Optuna search), resumed, reported."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gan.cli import app
from gan.errors import GanError, friendly
from gan.console import console


def _params(items: list[str]) -> dict:
    """--submitit KEY=VALUE items as executor parameters (values read as TOML, like --set)."""
    import tomllib

    out = {}
    for item in items:
        k, eq, raw = item.partition("=")
        if not eq or not k.strip().isidentifier():
            raise GanError(f"--submitit {item!r}: expected KEY=VALUE, e.g. slurm_partition=gpu or timeout_min=600")
        try:
            out[k.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = raw
    return out


def _slots(kind: str, jobs: int | None, device: str, params: dict, n_runs: int):
    from gan.sweep.jobs import Slot, make_slots

    if kind == "slurm":  # each job has its own allocation: its threads are its cpus_per_task
        cpus = params.get("cpus_per_task", 0)
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 0:
            raise GanError(f"--submitit cpus_per_task={cpus!r}: expected a whole number of CPUs")
        return [Slot(i, cpus) for i in range(jobs or n_runs)]
    return make_slots(jobs, device)


def _report(man, csv_path: Path | None) -> None:
    from gan.sweep import report

    rep = report.collect(man)
    console.print(report.table(man, rep))
    from gan.cli.runs import say_rebuilt

    say_rebuilt()
    console.print(f"primary metric: {rep.tag or 'none'} ({rep.why})")
    console.print(f"[bold]verdict[/]: {rep.verdict}")
    if rep.cores:
        console.print(rep.cores)
    if man.data.get("search"):
        from gan.sweep.search import importances

        imp, what = importances(man)
        console.print(what + (": " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()) if imp else ""))
    again = report.rerun_command(man, rep)
    if again:
        console.print(f"next: the best trials beside the experiment as it is, 3 seeds each (one seed per trial "
                      f"cannot tell a setting from a lucky seed):\n{again}", soft_wrap=True)
    agg = report.aggregates(man, rep)
    if agg:
        console.print(f"TensorBoard: {len(agg)} aggregate runs (mean, mean ± std, min/max over seeds) under "
                      f"{man.folder / 'mean'}")
    if csv_path is not None:
        console.print(f"csv: {report.write_csv(man, rep, csv_path)}")


def _run(man, kind: str, params: dict, array: bool, jobs: int | None, csv_path: Path | None) -> None:
    from gan.sweep import launchers, manifest, precision
    from gan.sweep.jobs import Scheduler

    with manifest.lock(man.folder):
        search = None
        if man.data.get("search"):
            from gan.sweep.search import Search

            search = Search(man)
        slots = _slots(kind, jobs, man.data["device"], params, len(man.runs) or 1)
        precision.decide(man, str(man.folder / man.data["base"]), man.data.get("set", []),
                         man.runs[0]["overrides"] if man.runs else [], man.data["device"],
                         slots[0].threads if slots else 0, kind, console.print)
        for line in launchers.env_changes(man.data.get("env", {})):  # its runs get the recorded value
            console.print(line)
        launcher = launchers.make(kind, man.folder, params, array, len(slots))
        man.update(man.data, launcher={"kind": kind, "params": params, "array": array}, jobs=len(slots))
        code = Scheduler(man, launcher, slots, man.data["device"], search, rounds=bool(man.data.get("rounds"))).run()
    if code not in (130, 143):
        _report(man, csv_path)
    raise typer.Exit(code)


@app.command("sweep")
@friendly
def sweep_cmd(
    exp: Optional[str] = typer.Argument(None, help="experiment name or .toml (not with --resume/--report)"),
    grid_: List[str] = typer.Option([], "--grid", help="KEY=V1,V2,... swept values (repeatable: the cartesian "
                                    "product); each is validated as --set is"),
    setting_: List[str] = typer.Option([], "--setting", help="'NAME: KEY=V KEY=V' or 'NAME: base': one whole "
                                       "setting (repeatable), instead of a grid: e.g. a study's best beside the "
                                       "default, each × --seeds"),
    set_: List[str] = typer.Option([], "--set", help="KEY=VALUE for every run of the sweep (repeatable; a key "
                                   "given twice: the last wins)"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="seeds 0..N-1 per setting"),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="runs at once (CPU: cores are split, torch "
                                       "threads = cores // J; default one per visible GPU, else 1; --resume: the "
                                       "sweep's own)"),
    rounds: bool = typer.Option(False, "--rounds", help="start runs in rounds of --jobs, each round when the last "
                                "has ended: runs go seed by seed, so with --jobs = the number of settings every "
                                "setting shares the cores with every other equally (equal-time comparisons)"),
    name: Optional[str] = typer.Option(None, help="suffix of the sweep folder's name"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the runs and make nothing"),
    device: str = typer.Option("auto", help="auto, cpu or cuda (each run's --device)"),
    logs: Path = typer.Option(Path("logs"), help="root folder: the sweep goes to <logs>/<experiment>/sweep-<id>/"),
    trials: int = typer.Option(0, "--trials", min=0, help="an Optuna search of T trials over --sample "
                               "distributions instead of a grid"),
    sample: List[str] = typer.Option([], "--sample", help="KEY=loguniform:LO:HI, uniform:LO:HI, int:LO:HI or "
                                     "choice:V1,V2 (with --trials)"),
    patience: int = typer.Option(2, "--patience", help="prune a trial only after this many metric points without "
                                 "improving, when it is also worse than the median (-1 = never prune)"),
    prune_after: int = typer.Option(3, "--prune-after", min=1, help="completed trials before any pruning"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna RDB URL (default: sqlite in the sweep "
                                          "folder)"),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="local (default), slurm (through submitit) "
                                           "or submitit-local (submitit's local executor)"),
    submitit_: List[str] = typer.Option([], "--submitit", help="KEY=VALUE submitit executor parameter, e.g. "
                                        "slurm_partition=gpu, timeout_min=600, gpus_per_node=1 (repeatable)"),
    array: bool = typer.Option(False, "--array", help="submit every run at once as a job array (Slurm runs "
                               "--jobs of them at a time)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish this sweep: completed runs kept, "
                                          "stopped ones resumed from their checkpoints, the rest started"),
    report: Optional[Path] = typer.Option(None, "--report", help="rank this sweep's settings and stop"),
    csv_: Optional[Path] = typer.Option(None, "--csv", help="also write the ranking as CSV"),
) -> None:
    """Run a grid (or an Optuna search) of runs × seeds, J at once; rank the settings by best FID over seeds."""
    from gan import config, rundir
    from gan.sweep import grid, launchers, precision, search as gsearch
    from gan.sweep.manifest import Manifest

    kind, params = _launcher(launcher, submitit_, array)
    if report is not None or resume is not None:
        if exp is not None or grid_ or setting_ or set_ or sample or trials or name or dry_run:
            raise GanError("--resume/--report take a sweep folder only: the sweep's own settings are in its "
                           "sweep.json")
        man = Manifest.load(report if report is not None else resume)
        if report is not None:
            return _report(man, csv_)
        stored = man.data.get("launcher", {})
        return _run(man, launcher or stored.get("kind", "local"), params or stored.get("params", {}),
                    array or stored.get("array", False), jobs or man.data.get("jobs"), csv_)
    if exp is None:
        raise GanError("give an experiment (gan sweep EXP --grid KEY=V1,V2 ...), or --resume/--report SWEEP")
    if name is not None:
        rundir.check_name(name, "--name")
    dists = gsearch.parse(sample)
    if setting_ and (grid_ or trials):
        raise GanError("--setting names whole settings: give them instead of --grid or --trials")
    if trials:
        if grid_ or not dists or seeds != 1:
            raise GanError("--trials searches --sample distributions, one run per trial (seeded by its number): "
                           "give --sample, no --grid and no --seeds (re-run the best with --grid ... --seeds N)")
        if array:
            raise GanError("--array submits every run at once: a search asks for trials one by one")
    elif dists:
        raise GanError("--sample needs --trials T")
    settings = grid.parse_settings(setting_)
    axes = grid.axes_of(settings) if settings else grid.parse_grid(grid_)
    sets = grid.check_sets(set_, set(axes) | set(dists))
    runs = grid.plan_settings(settings, seeds) if settings else grid.plan(axes, 0 if trials else seeds)
    base = grid.validate(exp, sets, axes, runs, "--setting" if settings else "--grid")
    gsearch.validate(exp, sets, dists)
    first, why = gsearch.base_point(exp, sets, dists) if trials else (None, "")
    precision.check(config.load(exp, sets).train.precision, axes, kind)
    slots = _slots(kind, jobs, device, params, len(runs) or trials)
    if dry_run:
        _dry_run(runs, slots, dists, trials, base)
        if trials:
            _first_trial(first, why)
        return None
    folder = rundir.new_run_dir(logs, base.experiment.name, name, prefix="sweep-")
    fields = {"experiment": base.experiment.name, "id": folder.name, "env": launchers.recorded_env(), "base": grid.write_base(exp, folder).name,
              "grid": axes, "seeds": seeds, **({"settings": [{"name": n, "overrides": o} for n, o in settings]}
                                                   if settings else {}),
              "set": sets, "device": device, "command": " ".join(["gan", *sys.argv[1:]]), "rounds": rounds,
              "created": rundir.now(), "runs": [r.entry() for r in runs]}
    if trials:
        fields["search"] = gsearch.manifest_fields(dists, trials, patience, prune_after, storage, folder, folder.name,
                                                   base=first)
    man = Manifest.create(folder, **fields)
    console.print(f"sweep [bold]{folder}[/]: {trials or len(runs)} runs, {len(slots)} at once")
    if trials:
        _first_trial(first, why)
    _run(man, kind, params, array, jobs, csv_)


def _launcher(launcher: str | None, submitit_: list[str], array: bool) -> tuple[str, dict]:
    """The launcher kind and its submitit parameters, every combination checked before anything starts."""
    from gan.sweep.launchers import KINDS

    kind = launcher or "local"
    if kind not in KINDS:
        raise GanError(f"--launcher {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "local" and submitit_:
        raise GanError("--submitit is for --launcher slurm or submitit-local")
    if array and kind != "slurm":
        raise GanError("--array is for --launcher slurm (job arrays are Slurm's; a local executor would start "
                       "every run at once)")
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise GanError("--launcher slurm: no sbatch on this machine (run the sweep on a Slurm login node)")
    return kind, _params(submitit_)


def _first_trial(first: dict | None, why: str) -> None:
    if first:
        console.print("trial 0: the experiment as it is (" + ", ".join(f"{k}={v}" for k, v in first.items())
                      + "), the yardstick the sampled trials rank against")
    else:
        console.print(f"no trial of the experiment as it is: {why} (widen the distribution to measure it)")


def _dry_run(runs, slots, dists, trials: int, base) -> None:
    import math

    from rich.table import Table

    exp, minutes = base.experiment.name, base.train.minutes
    threads = slots[0].threads if slots else 0
    if trials:
        t = Table("key", "distribution", box=None, title=f"{exp}: an Optuna search of {trials} trials")
        for d in dists.values():
            t.add_row(d.key, d.text())
    else:
        t = Table("#", "folder", "setting", "seed", "overrides", box=None, title=f"{exp}: {len(runs)} runs")
        for i, r in enumerate(runs, 1):
            t.add_row(str(i), r.folder, r.setting, str(r.seed), " ".join(r.overrides))
    console.print(t)
    gpus = sorted({s.gpu for s in slots if s.gpu is not None})
    console.print(f"{len(slots)} at once" + (f", {threads} torch threads each" if threads else "")
                  + (f", GPUs {','.join(gpus)}" if gpus else "") + "; dry run: nothing was made")
    if minutes and slots:  # a time-limited run's length is known before it starts: say what the sweep will take
        rounds = math.ceil((trials or len(runs)) / len(slots))
        console.print(f"each run trains {minutes:g} min (train.minutes; evaluations not counted): at least "
                      f"{rounds} round(s) × {minutes:g} min = {rounds * minutes / 60:.1f} h of wall time, plus "
                      f"each run's evaluations every {base.metrics.every} steps and at its end"
                      + (" (fewer where trials are pruned)" if trials else ""))

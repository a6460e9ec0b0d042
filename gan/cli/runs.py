"""Commands about runs that exist: list, compare, leaderboard, evaluate, sample, neighbours, screenshot."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gan import summary  # the rest where a command needs it: `gan --help` and `gan runs` answer at once
from gan.cli import app
from gan.errors import GanError, friendly
from gan.metrics.protocol import EXTRACTOR_SUFFIX
from gan.runs import disk_table, find_runs, logs_root, resolve_run, runs_table, setting_of
from gan.console import console, show

RUN_HELP = "run folder, <experiment>/<run-id> or run id"
LOGS = typer.Option(Path("logs"), help="root folder of the runs")


def gather(runs: list[str], exps: list[str], logs: Path) -> list[Path]:
    """Run folders named one by one, then every run of each experiment."""
    dirs = [resolve_run(r, logs) for r in runs or []]
    for e in exps:
        found = find_runs(logs, e)
        if not found:
            raise GanError(f"experiment '{e}' has no runs under '{logs}'")
        dirs += found
    return dirs


@app.command("runs")
@friendly
def runs_cmd(exp: Optional[str] = typer.Argument(None, help="only this experiment"), logs: Path = LOGS,
             disk: bool = typer.Option(False, "--disk", help="each run's bytes by kind (events, checkpoints, PNGs, "
                                                            "samples/exports, other) and a total")) -> None:
    """Table of the runs under logs/ at any depth (a sweep's too, named in a column): status (`dead` when run.json
    says running but no process holds the run), steps, precision, best and last FID (the extractor named), wall time."""
    t, rows = disk_table(logs, exp)[:2] if disk else runs_table(logs, exp)
    if not rows:
        console.print(f"no runs under {logs / exp if exp else logs}")
        return
    show(t)
    say_rebuilt()


def say_rebuilt() -> None:
    """The one line about run summaries rebuilt from event files (gan/summary.py), when some were."""
    line = summary.note()
    if line:
        console.print(line, soft_wrap=True)


@app.command("compare")
@friendly
def compare_cmd(
    runs: Optional[List[str]] = typer.Argument(None, help="run folders, <experiment>/<run-id> or run ids"),
    exp: List[str] = typer.Option([], "--exp", help="every run of this experiment (repeatable)"),
    sweep: Optional[Path] = typer.Option(None, help="a sweep folder (sweep.json): one band per setting"),
    metric: str = typer.Option("fid", help="fid, kid, is, precision, recall, class_acc or class_entropy"),
    extractor: str = typer.Option("auto", help="auto (the primary metric's extractor, protocol.primary), "
                                               "inception or c10"),
    x: str = typer.Option("step", "--x", help="x axis: step, time (training seconds, evaluations excluded) or "
                                              "images (images seen)"),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="draw numbers of different protocols on one "
                                                                   "chart (the chart and table name the difference)"),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: <logs>/compare-<metric>.png, the logs "
                                                  "folder of the first run; with --grids: grids-step<S>.png in the "
                                                  "first run's folder; a taken name gets -1, -2, ...)"),
    csv_: Optional[Path] = typer.Option(None, "--csv", help="also write every point as CSV"),
    grids: bool = typer.Option(False, "--grids", help="instead of curves: the runs' fixed-latent grids side by side "
                                                      "at one step, each labelled with its primary metric, one PNG"),
    step: Optional[int] = typer.Option(None, help="--grids: the step; each run shows its logged grid nearest to it "
                                                  "(default: the latest step every run reached)"),
    per_class: bool = typer.Option(False, "--per-class", help="--grids: the per-class grids of conditional runs"),
    logs: Path = LOGS,
) -> None:
    """Compare runs by a metric: table at shared steps, best per run, PNG (vs --x and vs wall-clock); or, with
    --grids, their sample grids side by side at one step."""
    if (step is not None or per_class) and not grids:
        raise GanError("--step and --per-class go with --grids")
    if grids and (metric, extractor, x, allow_mixed, csv_) != ("fid", "auto", "step", False, None):
        raise GanError("--grids labels each grid with the run's primary metric: drop --metric, --extractor, --x, "
                       "--allow-mixed and --csv")
    from gan import compare as cmp

    dirs = gather(runs, exp, logs)
    groups: list = [setting_of(d) for d in dirs]  # a sweep's runs band by their setting, not their experiment
    if sweep is not None:
        found, settings, notes = cmp.sweep_runs(sweep)
        for n in notes:
            console.print(f"sweep: {n}")
        dirs, groups = dirs + found, groups + settings
    if grids:
        from gan.dashboard import sheet

        console.print(str(sheet.write(list(dict.fromkeys(dirs)), step, "images/fake_per_class" if per_class
                                      else "images/fake", out)))
        return
    c = cmp.compare(dirs, metric, extractor, x, allow_mixed, groups)
    console.print(cmp.compare_table(c))
    say_rebuilt()
    png = cmp.plot(c, out or logs_root(c.runs[0]) / f"compare-{metric}.png")  # never into the current folder
    if csv_ is not None:
        console.print(f"csv: {cmp.write_csv(c, csv_)}")
    console.print(str(png))


@app.command("leaderboard")
@friendly
def leaderboard_cmd(
    runs: Optional[List[str]] = typer.Argument(None, help="run folders, <experiment>/<run-id> or run ids "
                                                          "(default: every run under --logs)"),
    exp: List[str] = typer.Option([], "--exp", help="every run of this experiment (repeatable)"),
    at: List[str] = typer.Option([], "--at", help="METRIC=V1,V2,...: training time and images to first reach "
                                                  "each value, e.g. fid_c10=20,10,5 (repeatable)"),
    csv_: Optional[Path] = typer.Option(None, "--csv", help="also write the table (full precision) as CSV"),
    published: bool = typer.Option(False, "--published", help="also the literature's CIFAR-10 figures, beside the "
                                                              "runs measured under the same protocol (gan eval "
                                                              "--protocol)"),
    logs: Path = LOGS,
) -> None:
    """Runs ranked by the primary metric: model, device, img/s, best of each metric, time to thresholds."""
    from gan import leaderboard as lb

    thresholds = lb.parse_at(at)
    dirs = gather(runs, exp, logs) if runs or exp else find_runs(logs)
    b = lb.leaderboard(dirs, thresholds)
    show(lb.table(b))
    say_rebuilt()
    if published:
        tables, lines = lb.published(b)
        for t in tables:
            console.print(t)
        for line in lines:
            console.print(line, soft_wrap=True)
    if csv_ is not None:
        console.print(f"csv: {lb.write_csv(b, csv_)}")


@app.command("eval")
@friendly
def eval_cmd(
    run: str = typer.Argument(..., help=RUN_HELP),
    checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
    samples: Optional[int] = typer.Option(None, help="generated samples (default: the run's metrics.num_samples)"),
    metrics: str = typer.Option("fid,kid,is", help="comma list out of fid, kid, is"),
    extractor: Optional[str] = typer.Option(None, help="auto, inception or c10 (default: the run's)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    protocol: Optional[str] = typer.Option(None, help="a published protocol: published (50k samples vs the 50k "
                                                      "CIFAR-10 training images) or diffaug (10k vs the 10k test "
                                                      "images), standard Inception"),
    data: Optional[str] = typer.Option(None, help="--protocol: folder with CIFAR-10's train-*.npz/test-*.npz or "
                                                  "cifar-10-batches-py (default: the run's data folder)"),
    logs: Path = LOGS,
) -> None:
    """Evaluate a checkpoint on the training data (or under a published --protocol); appends to
    <run>/metrics.json and TensorBoard eval/*."""
    if extractor is not None and extractor not in ("auto", *EXTRACTOR_SUFFIX):
        raise GanError(f"--extractor {extractor!r}: expected auto, inception or c10")
    if data is not None and protocol is None:
        raise GanError("--data goes with --protocol (without it, the run's own data is the reference)")
    rd = resolve_run(run, logs)  # a wrong name is said before torch loads
    from gan import evaluate as ev

    rec = ev.evaluate(rd, checkpoint_name, samples, metrics, device, [extractor] if extractor else None,
                      preset=protocol, data=data)
    console.print(f"{rd} {checkpoint_name}.pt (step {rec['step']}), {rec['samples']} samples: {ev.describe(rec)}")
    console.print(str(rd / "metrics.json"))


@app.command("sample")
@friendly
def sample_cmd(
    run: str = typer.Argument(..., help=RUN_HELP),
    n: int = typer.Option(64, "--n", help="number of samples"),
    out: Optional[Path] = typer.Option(None, help="grid PNG (default: <run>/samples-<ckpt>-step<S>-seed<seed>"
                                                  "-n<N>[-class<K>-<name>].png)"),
    folder: Optional[Path] = typer.Option(None, help="write N single PNGs here instead of a grid"),
    seed: int = typer.Option(0, help="latent seed"),
    klass: Optional[str] = typer.Option(None, "--class", help="conditional runs: only this class (name or index; "
                                                               "default: the classes in turn)"),
    checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    logs: Path = LOGS,
) -> None:
    """Samples from a checkpoint (EMA generator when there is one): a PNG grid or a folder of PNGs."""
    from gan import evaluate as ev

    paths = ev.sample(resolve_run(run, logs), n, out, folder, seed, checkpoint_name, device, klass)
    console.print(str(paths[0]) if folder is None else f"{len(paths)} images in {folder}")


@app.command("neighbours")
@friendly
def neighbours_cmd(
    run: str = typer.Argument(..., help=RUN_HELP),
    n: int = typer.Option(64, "--n", help="generated samples the copy rate counts"),
    show: int = typer.Option(64, help="samples drawn in the grid, the closest to a training image first"),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: <run>/neighbours-<ckpt>-step<S>-seed<seed>"
                                                  "-n<N>.png, or the first free -1, -2, ...)"),
    heldout: Optional[str] = typer.Option(None, help="real images the run never trained on (npz file, folder or "
                                                     "glob; default: the images data.limit/fraction left out, else "
                                                     "the test split beside the data)"),
    seed: int = typer.Option(0, help="latent seed (the samples of `gan sample --seed`)"),
    extractor: Optional[str] = typer.Option(None, help="auto, inception or c10 (default: the run's)"),
    checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    logs: Path = LOGS,
) -> None:
    """What the generator copied: samples beside their nearest training images (features and pixels) as a PNG and
    in TensorBoard, and the copy rate against held-out real images (appended to <run>/metrics.json)."""
    if extractor is not None and extractor not in ("auto", *EXTRACTOR_SUFFIX):
        raise GanError(f"--extractor {extractor!r}: expected auto, inception or c10")
    rd = resolve_run(run, logs)
    from gan import neighbours as nb

    rep, png = nb.neighbours(rd, n, show, out, heldout, seed, checkpoint_name, device, extractor)
    console.print(f"{rd} {checkpoint_name}.pt (step {rep.step}), {n} samples; held out: {rep.protocol['heldout']}")
    console.print(rep.copies.line())
    console.print(rep.copies.alone())
    console.print(str(png))


@app.command("screenshot")
@friendly
def screenshot_cmd(
    logs: Path = LOGS,
    out: Path = typer.Option(Path("tb.png"), help="PNG to write"),
    port: int = typer.Option(0, help="loopback port for TensorBoard (0 = a free one)"),
    page: str = typer.Option("timeseries", help="TensorBoard page: timeseries, scalars, custom_scalars, ..."),
) -> None:
    """Screenshot TensorBoard (headless chromium) for the runs under logs/."""
    from gan import board

    console.print(str(board.screenshot(logs, out, port, page)))

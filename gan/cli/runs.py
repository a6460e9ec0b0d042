"""Commands about runs that exist: list, compare, evaluate, sample, screenshot."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gan.cli import app
from gan.errors import GanError, friendly
from gan.runs import (EXTRACTOR_SUFFIX, compare, compare_table, evaluate, find_runs, plot, resolve_run, runs_table,
                      sample, screenshot, write_csv)
from gan.tracking import console

@app.command("runs")
@friendly
def runs_cmd(exp: Optional[str] = typer.Argument(None, help="only this experiment"),
             logs: Path = typer.Option(Path("logs"), help="root folder of the runs")) -> None:
    """Table of the runs under logs/: status, steps, best and last FID, wall time."""
    t, rows = runs_table(logs, exp)
    if not rows:
        console.print(f"no runs under {logs / exp if exp else logs}")
        return
    console.print(t)

@app.command("compare")
@friendly
def compare_cmd(
    runs: Optional[List[str]] = typer.Argument(None, help="run folders, <experiment>/<run-id> or run ids"),
    exp: List[str] = typer.Option([], "--exp", help="every run of this experiment (repeatable)"),
    metric: str = typer.Option("fid", help="fid, kid or is"),
    extractor: str = typer.Option("auto", help="auto (Inception when every run has it, else c10), "
                                               "inception or c10"),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: compare-<metric>.png)"),
    csv_: Optional[Path] = typer.Option(None, "--csv", help="also write every point as CSV"),
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
) -> None:
    """Compare runs by a metric: table at shared steps, best per run, PNG (vs step and vs wall-clock)."""
    dirs = [resolve_run(r, logs) for r in runs or []]
    for e in exp:
        found = find_runs(logs, e)
        if not found:
            raise GanError(f"experiment '{e}' has no runs under '{logs}'")
        dirs += found
    c = compare(dirs, metric, extractor)
    console.print(compare_table(c))
    png = plot(c, out or Path(f"compare-{metric}.png"))
    if csv_ is not None:
        console.print(f"csv: {write_csv(c, csv_)}")
    console.print(str(png))

@app.command("eval")
@friendly
def eval_cmd(
    run: str = typer.Argument(..., help="run folder, <experiment>/<run-id> or run id"),
    checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
    samples: Optional[int] = typer.Option(None, help="generated samples (default: the run's metrics.num_samples)"),
    metrics: str = typer.Option("fid,kid,is", help="comma list out of fid, kid, is"),
    extractor: Optional[str] = typer.Option(None, help="auto, inception or c10 (default: the run's)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
) -> None:
    """Evaluate a checkpoint on the training data; appends to <run>/metrics.json and TensorBoard eval/*."""
    if extractor is not None and extractor not in ("auto", *EXTRACTOR_SUFFIX):
        raise GanError(f"--extractor {extractor!r}: expected auto, inception or c10")
    rd = resolve_run(run, logs)
    rec = evaluate(rd, checkpoint_name, samples, metrics, device, [extractor] if extractor else None)
    shown = ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in rec["values"].items())
    console.print(f"{rd} {checkpoint_name}.pt (step {rec['step']}), {rec['samples']} samples: {shown}")
    console.print(str(rd / "metrics.json"))

@app.command("sample")
@friendly
def sample_cmd(
    run: str = typer.Argument(..., help="run folder, <experiment>/<run-id> or run id"),
    n: int = typer.Option(64, "--n", help="number of samples"),
    out: Optional[Path] = typer.Option(None, help="grid PNG (default: <run>/samples-<ckpt>-step<S>-seed<seed>"
                                                  "-n<N>.png)"),
    folder: Optional[Path] = typer.Option(None, help="write N single PNGs here instead of a grid"),
    seed: int = typer.Option(0, help="latent seed"),
    checkpoint_name: str = typer.Option("last", "--checkpoint", help="last or best"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
) -> None:
    """Samples from a checkpoint (EMA generator when there is one): a PNG grid or a folder of PNGs."""
    paths = sample(resolve_run(run, logs), n, out, folder, seed, checkpoint_name, device)
    console.print(str(paths[0]) if folder is None else f"{len(paths)} images in {folder}")

@app.command("screenshot")
@friendly
def screenshot_cmd(
    logs: Path = typer.Option(Path("logs"), help="root folder of the runs"),
    out: Path = typer.Option(Path("tb.png"), help="PNG to write"),
    port: int = typer.Option(0, help="loopback port for TensorBoard (0 = a free one)"),
    page: str = typer.Option("timeseries", help="TensorBoard page: timeseries, scalars, custom_scalars, ..."),
) -> None:
    """Screenshot TensorBoard (headless chromium) for the runs under logs/."""
    console.print(str(screenshot(logs, out, port, page)))

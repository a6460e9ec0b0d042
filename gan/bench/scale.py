"""Scale: `gan runs` and `gan leaderboard` over many long runs, each measured as a user runs it (a subprocess,
`python -m gan runs --logs DIR`, start-up included) in three states:
- warm: every run's summary (gan/summary.py) is there and current: what every listing after the first costs;
- cold: no summary yet (runs written by an older gan): the command rebuilds each from its event files, says so in
  one line and saves it; (cold - warm) / runs is the rebuild's cost per run;
- before: `GAN_INDEX=events`, every run read with TensorBoard's EventAccumulator as gan did before the index; at the
  smallest counts only (10 runs of 100k steps take minutes): larger counts are extrapolated, and marked so.

The runs are synthetic, written at `best`'s cadence by the project's own recorder (gan/bench/synthetic.py): one
template run, then per run a folder of its own (run.json, config.toml, its summary once a command made it) whose event
files are the template's, hard-linked, so a thousand runs of 100k steps cost a few MB beyond the template. The import
time of the command line (`python -c "import gan.cli"`) is measured apart: the part of every figure that the
command's start-up costs, whatever the runs.
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gan import disk, eventfile, grids, summary
from gan.bench import synthetic
from gan.bench.context import Context

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = ("runs", "leaderboard")


def _env(index: str | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("GAN_INDEX", None)
    return env | ({"GAN_INDEX": index} if index else {})


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(args: list[str], index: str | None = None, inproc: bool = False) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, output) of `python -m gan ARGS` as a subprocess (its CPU: user + system, what a
    machine busy with other work inflates least); `inproc` (the tiny profile): what the command does, in this
    process (its table made and printed, its line about rebuilt summaries)."""
    t0, c0 = time.perf_counter(), (time.process_time() if inproc else _child_cpu())
    if inproc:
        old = os.environ.pop("GAN_INDEX", None)
        if index:
            os.environ["GAN_INDEX"] = index
        try:
            code, out = 0, _inproc(args[0], Path(args[-1]))
        finally:
            os.environ.pop("GAN_INDEX", None)
            if old is not None:
                os.environ["GAN_INDEX"] = old
    else:
        p = subprocess.run([sys.executable, "-m", "gan", *args], cwd=ROOT, env=_env(index), capture_output=True,
                           text=True, timeout=7200, stdin=subprocess.DEVNULL)
        code, out = p.returncode, p.stdout + p.stderr
    secs, cpu = time.perf_counter() - t0, (time.process_time() if inproc else _child_cpu()) - c0
    if code != 0:
        raise RuntimeError(f"`gan {' '.join(args)}` exited {code}: {out[-800:]}")
    return secs, cpu, out


def _inproc(cmd: str, logs: Path) -> str:
    import io

    from rich.console import Console

    from gan import leaderboard, runs

    table = runs.runs_table(logs)[0] if cmd == "runs" else leaderboard.table(leaderboard.leaderboard(
        runs.find_runs(logs)))
    con = Console(file=io.StringIO(), width=140)
    con.print(table, soft_wrap=True)
    return con.file.getvalue() + (summary.note() or "")


def import_seconds(rounds: int) -> list[tuple[float, float]]:
    """(wall, CPU) of `python -c "import gan.cli"`: the start-up every command pays before it reads a run."""
    out = []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), _child_cpu()
        subprocess.run([sys.executable, "-c", "import gan.cli"], cwd=ROOT, env=_env(None), check=True,
                       capture_output=True, timeout=600)
        out.append((time.perf_counter() - t0, _child_cpu() - c0))
    return out


def forget(logs: Path) -> None:
    """Every summary under logs/ removed: the runs as an older gan left them."""
    for p in logs.rglob(summary.FILE):
        p.unlink()


def make_runs(template: Path, logs: Path, n: int) -> Path:
    for i in range(n):
        synthetic.copy_run(template, logs / "best" / f"run-{i:04d}", i)
    return logs


def _fmt(v: float) -> str:
    return f"{v:.2f} s" if v < 100 else f"{v:,.0f} s"


def _cell(wall: float | None, cpu: float | None, extrapolated: bool = False) -> str:
    if wall is None:
        return "—"
    if extrapolated:
        return f"≈ {wall:,.0f} s ({cpu:,.0f} s cpu), extrapolated"
    return f"{_fmt(wall)} ({_fmt(cpu)} cpu)"


def run(ctx: Context) -> None:
    p, rep = ctx.profile, ctx.report
    inproc = p.name == "tiny"  # seconds for the test suite: the commands in this process, timings meaningless
    pictures = synthetic.images(ctx.data_ov, 2 * grids.GRID + 16)
    t0 = time.perf_counter()
    template = synthetic.write_run(ctx.tmp / "scale-template" / "best", "best", p.scale_steps, pictures,
                                   ("c10", "inception"), ctx.profile.shrink)
    write_s = time.perf_counter() - t0
    sizes = disk.usage(template)
    events = [f for f in template.iterdir() if "tfevents" in f.name]
    t = synthetic.config.load("best").train
    rep.md(f"template: a synthetic `best` run of {p.scale_steps:,} steps at its cadence (scalars every "
           f"{t.log_every} steps, grids every {t.image_every:,} with the per-class grid, c10 + Inception metrics "
           f"every 5,000 and at the end), written by rundir.Recorder in {write_s:.1f} s: "
           f"{disk.fmt_bytes(sizes['events'])} of events in {len(events)} file(s), a "
           f"{disk.fmt_bytes((template / summary.FILE).stat().st_size)} summary; each run below hard-links its event "
           "files and has its own run.json and config.toml.", "")
    t0 = time.perf_counter()
    eventfile.scan(template)
    scan_s = time.perf_counter() - t0
    imports = [] if inproc else import_seconds(p.scale_rounds)
    imp = (statistics.median(w for w, _ in imports), statistics.median(c for _, c in imports)) if imports else None
    (ctx.tmp / "scale-none").mkdir()
    empty = [] if inproc else [timed(["runs", "--logs", str(ctx.tmp / "scale-none")])[:2]
                               for _ in range(p.scale_rounds)]  # the whole command, over no runs
    none = (statistics.median(w for w, _ in empty), statistics.median(c for _, c in empty)) if empty else None
    helps = [] if inproc else [timed(["--help"])[:2] for _ in range(p.scale_rounds)]  # what a user types first
    rows, data = [], {"steps": p.scale_steps, "event_bytes": sizes["events"], "template_write_s": write_s,
                      "scan_one_s": scan_s, "import_s": imports, "no_runs_s": empty, "help_s": helps,
                      "counts": {}}
    for n in p.scale_counts:
        logs = make_runs(template, ctx.tmp / f"scale-{n}", n)
        d = data["counts"][n] = {}
        for cmd in COMMANDS:
            forget(logs)
            cold, cold_cpu, out = timed([cmd, "--logs", str(logs)], inproc=inproc)
            if f"rebuilt the index of {n} run" not in out:
                raise RuntimeError(f"cold `gan {cmd}` over {n} runs did not say it rebuilt them: {out[-600:]}")
            warm, warm_cpu = [], []
            for _ in range(p.scale_rounds):
                with rep.steady.window():
                    secs, cpu, out = timed([cmd, "--logs", str(logs)], inproc=inproc)
                if "rebuilt" in out:
                    raise RuntimeError(f"warm `gan {cmd}` rebuilt summaries: {out[-600:]}")
                warm.append(secs)
                warm_cpu.append(cpu)
            before = timed([cmd, "--logs", str(logs)], index="events", inproc=inproc)[:2] \
                if n in p.scale_old else (None, None)
            d[cmd] = {"warm": warm, "warm_cpu": warm_cpu, "cold": cold, "cold_cpu": cold_cpu, "before": before[0],
                      "before_cpu": before[1]}
        shutil.rmtree(logs)
    # before the index, each run costs what it costs at the smallest count measured: extrapolated from there
    old_n = min((n for n in p.scale_counts if n in p.scale_old), default=None)
    for n in p.scale_counts:
        d, cells = data["counts"][n], [f"{n:,}"]
        for cmd in COMMANDS:
            c = d[cmd]
            w, wc = statistics.median(c["warm"]), statistics.median(c["warm_cpu"])
            if c["before"] is None and old_n is not None:
                b0 = data["counts"][old_n][cmd]
                base, base_cpu = imp or (0.0, 0.0)
                c["before_extrapolated"] = base + (b0["before"] - base) / old_n * n
                c["before_cpu_extrapolated"] = base_cpu + (b0["before_cpu"] - base_cpu) / old_n * n
            ext = c["before"] is None
            before_cpu = c["before_cpu_extrapolated" if ext else "before_cpu"] if old_n is not None else None
            c["per_run_cold_ms"] = 1000 * (c["cold"] - w) / n
            c["per_run_cold_cpu_ms"] = 1000 * (c["cold_cpu"] - wc) / n
            cells += [_cell(w, wc), _cell(c["cold"], c["cold_cpu"]),
                      _cell(c.get("before_extrapolated") if ext else c["before"], before_cpu, ext),
                      f"{before_cpu / wc:,.0f}×" if before_cpu else "—"]
        rows.append(cells)
    head = ["runs"] + [f"{cmd} {what}" for cmd in COMMANDS for what in ("warm", "cold", "before", "before ÷ warm, cpu")]
    rep.md("Each cell is the whole command as a subprocess, start-up included: wall seconds (its CPU seconds, user + "
           f"system, which a machine busy with other work inflates least); warm: the median of {p.scale_rounds} "
           "rounds; cold: the first command after the summaries were removed (it rebuilds and saves them); before: "
           "`GAN_INDEX=events`, TensorBoard's reader over every run (measured at "
           f"{', '.join(f'{n:,}' for n in p.scale_old)} runs, extrapolated beyond, linear in the runs).", "")
    rep.table(head, rows)
    big = max(p.scale_counts)
    cb = data["counts"][big]
    per_run = statistics.median(cb[c]["per_run_cold_ms"] for c in COMMANDS)
    per_run_cpu = statistics.median(cb[c]["per_run_cold_cpu_ms"] for c in COMMANDS)
    rep.md(f"- start-up: `python -c \"import gan.cli\"` {_cell(*imp)}, `gan runs` over no runs {_cell(*none)} (medians "
           f"of {len(imports)}): in every figure above, whatever the runs; beyond the latter, warm at {big:,} runs "
           + ", ".join(f"`gan {c}` used {statistics.median(cb[c]['warm_cpu']) - none[1]:.2f} s cpu" for c in COMMANDS)
           if imp else "- start-up: not measured (tiny profile: in-process)",
           f"- the cold rebuild: {per_run:,.0f} ms per run ({per_run_cpu:,.0f} ms cpu) at {big:,} runs (one run's "
           f"event files read by gan/eventfile.py alone: {scan_s * 1000:,.0f} ms; by TensorBoard's "
           "EventAccumulator: the before column)", "")
    data["per_run_cold_ms"], data["per_run_cold_cpu_ms"] = per_run, per_run_cpu
    if helps:  # no torch on its path (tests/test_startup.py): what is left is Python, typer and rich
        rep.measure("cli_help", statistics.median(w for w, _ in helps), f"`python -m gan --help`, cpu "
                    f"{statistics.median(c for _, c in helps):.2f} s", samples=[w for w, _ in helps])
    else:
        rep.measure("cli_help", None, "tiny profile: in-process")
    rep.data(scale=data)
    for cmd in COMMANDS:
        key = f"scale_{cmd}_warm"
        if big >= 1000:
            c = cb[cmd]
            work = f"; start-up (import gan.cli) {_cell(*imp)} of it" if imp else ""
            rep.measure(key, statistics.median(c["warm"]), f"{big:,} runs of {p.scale_steps:,} steps, cpu "
                        f"{statistics.median(c['warm_cpu']):.2f} s{work}", samples=c["warm"])
        else:
            rep.measure(key, None, f"the profile lists at most {big:,} runs")

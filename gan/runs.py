"""Working with finished (or running) runs: list them, compare their metrics, re-evaluate a checkpoint, draw
samples, and screenshot TensorBoard. `register(app)` adds the commands `runs`, `compare`, `eval`, `sample` and
`screenshot` to the CLI; everything else here is plain functions that raise GanError on bad input."""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gan.errors import GanError
from gan.tracking import console, now

from gan.metrics import protocol
from gan.metrics.protocol import EXTRACTOR_SUFFIX

METRICS = {"fid": "fid", "kid": "kid", "is": "is"}


# ---- finding runs --------------------------------------------------------------------------------------------
def is_run(p: Path) -> bool:
    return p.is_dir() and (p / "run.json").is_file()


def find_runs(logs: Path, exp: str | None = None) -> list[Path]:
    """Run folders (those holding run.json) under logs/<experiment>/<run-id>/, sorted by experiment then id."""
    logs = Path(logs)
    if not logs.is_dir():
        raise GanError(f"logs folder '{logs}' does not exist")
    if exp is not None and not (logs / exp).is_dir():
        known = ", ".join(sorted(p.name for p in logs.iterdir() if p.is_dir())) or "none"
        raise GanError(f"no experiment '{exp}' under '{logs}' (known: {known})")
    pattern = f"{exp}/*/run.json" if exp is not None else "*/*/run.json"
    return sorted(p.parent for p in logs.glob(pattern))


def resolve_run(spec: str | Path, logs: Path = Path("logs")) -> Path:
    """A run given as a folder path, as <experiment>/<run-id> under logs, or as a bare run id."""
    p = Path(spec)
    if is_run(p):
        return p
    if p.is_dir():
        raise GanError(f"'{spec}' is not a run folder (no run.json)")
    if is_run(Path(logs) / spec):
        return Path(logs) / spec
    if Path(logs).is_dir() and "/" not in str(spec):
        hits = [p.parent for p in Path(logs).glob(f"*/{spec}/run.json")]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise GanError(f"run id '{spec}' is ambiguous: " + ", ".join(str(h) for h in hits))
    raise GanError(f"no run '{spec}' (neither a run folder nor under '{logs}')")


def read_json(p: Path) -> dict:
    try:
        return json.loads(Path(p).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_config(run: Path) -> dict:
    try:
        return tomllib.loads((run / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def experiment_of(run: Path) -> str:
    return read_json(run / "run.json").get("experiment") or run_config(run).get("experiment", {}).get("name") \
        or run.parent.name


def seed_of(run: Path):
    return run_config(run).get("experiment", {}).get("seed", read_json(run / "run.json").get("seed"))


# ---- scalars from the event files ----------------------------------------------------------------------------
@dataclass
class Series:
    steps: list = field(default_factory=list)
    minutes: list = field(default_factory=list)  # wall-clock minutes since the run's first event
    values: list = field(default_factory=list)


def load_scalars(run: Path) -> dict[str, Series]:
    """Every scalar tag of a run, read with TensorBoard's EventAccumulator (restarts purged as TensorBoard does)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1,
                                                   "audio": 1, "compressedHistograms": 1})
    ea.Reload()
    tags = ea.Tags().get("scalars", [])
    if not tags:
        return {}
    t0 = ea.FirstEventTimestamp()
    out = {}
    for tag in tags:
        by_step = {}
        for e in ea.Scalars(tag):
            by_step[e.step] = e  # a step logged twice: the later write wins
        s = Series()
        for step in sorted(by_step):
            e = by_step[step]
            s.steps.append(int(step))
            s.minutes.append((e.wall_time - t0) / 60.0)
            s.values.append(float(e.value))
        out[tag] = s
    return out


def fid_tag(scalars: dict) -> str | None:
    """The FID a run is judged by (protocol.primary: the one rule)."""
    return protocol.primary(scalars).tag


def pick_tag(metric: str, extractor: str, runs: list[Path], scalars: list[dict]) -> str:
    """The one tag every compared run has for `metric`; a clear error naming the run that lacks it."""
    if metric not in METRICS:
        raise GanError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    if extractor not in ("auto", *EXTRACTOR_SUFFIX):
        raise GanError(f"--extractor {extractor!r}: expected auto, inception or c10")
    for run, sc in zip(runs, scalars):
        if not any(t.startswith("metrics/") for t in sc):
            raise GanError(f"run '{run}' has no metrics yet (no metrics/* scalars in its events)")
    names = list(EXTRACTOR_SUFFIX) if extractor == "auto" else [extractor]
    cands = [f"metrics/{METRICS[metric]}{EXTRACTOR_SUFFIX[n]}" for n in names]
    for tag in cands:
        if all(tag in sc for sc in scalars):
            return tag
    tag = next((t for t in cands if any(t in sc for sc in scalars)), cands[0])
    lacking = next(r for r, sc in zip(runs, scalars) if tag not in sc)
    has = sorted(t for t in scalars[runs.index(lacking)] if t.startswith("metrics/"))
    raise GanError(f"run '{lacking}' has no {tag} (it has {', '.join(has)}); try another --metric/--extractor")


def best_point(s: Series, tag: str) -> tuple[int, float]:
    vals = s.values
    i = max(range(len(vals)), key=vals.__getitem__) if protocol.higher_is_better(tag) \
        else min(range(len(vals)), key=vals.__getitem__)
    return s.steps[i], vals[i]


# ---- `gan runs` ------------------------------------------------------------------------------------------------
def _parse_time(s):
    try:
        return dt.datetime.fromisoformat(s) if s else None
    except (TypeError, ValueError):
        return None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def run_summary(run: Path) -> dict:
    """One row of `gan runs`: status and steps from run.json, FIDs from the events."""
    info = read_json(run / "run.json")
    sc = load_scalars(run) if any(run.glob("events.out.tfevents.*")) else {}
    tag = fid_tag(sc)
    row = {"run": run.name, "path": str(run), "experiment": info.get("experiment") or run.parent.name,
           "status": info.get("status", "?"), "step": info.get("step", 0), "steps_planned": info.get("steps_planned"),
           "fid_tag": tag, "best": None, "last": None, "wall_seconds": None}
    if tag:
        s = sc[tag]
        row["best"] = best_point(s, tag)
        row["last"] = (s.steps[-1], s.values[-1])
        row["step"] = max(row["step"] or 0, s.steps[-1])
    elif info.get("best"):
        b = info["best"]
        row["fid_tag"], row["best"] = b.get("tag"), (b.get("step"), b.get("value"))
    start, end = _parse_time(info.get("started")), _parse_time(info.get("ended"))
    if start is not None:
        if end is None:  # still running (or its process died): up to its last event
            last_event = max((p.stat().st_mtime for p in run.glob("events.out.tfevents.*")), default=None)
            end = dt.datetime.fromtimestamp(last_event).astimezone() if last_event else None
        if end is not None:
            row["wall_seconds"] = (end - start).total_seconds()
    return row


STATUS_STYLE = {"completed": "green", "running": "cyan", "interrupted": "yellow", "failed": "red",
                "diverged": "red"}


def runs_table(logs: Path, exp: str | None = None):
    from rich.table import Table

    rows = [run_summary(r) for r in find_runs(logs, exp)]
    tags = {r["fid_tag"] for r in rows if r["fid_tag"]}
    one = next(iter(tags)) if len(tags) == 1 else None  # every run judged by the same extractor's FID
    fid_name = f"FID {protocol.extractor_label(protocol.split(one)[1])}" if one else "FID (extractor per row)"
    t = Table(box=None, title=f"runs under {logs}" + (f"/{exp}" if exp else ""))
    t.add_column("run", no_wrap=True, min_width=max([len(r["run"]) for r in rows] + [3]))
    t.add_column("experiment", overflow="fold")
    t.add_column("status", no_wrap=True)
    for h in ("steps", f"best {fid_name} (step)", f"last {fid_name}", "wall time"):
        t.add_column(h, justify="right")
    for r in rows:
        mark = "" if one or not r["fid_tag"] else f" {protocol.extractor_label(protocol.split(r['fid_tag'])[1])}"
        best = f"{r['best'][1]:.4g} ({r['best'][0]}){mark}" if r["best"] and r["best"][1] is not None else "-"
        last = f"{r['last'][1]:.4g}{mark}" if r["last"] else "-"
        planned = r["steps_planned"] if r["steps_planned"] is not None else "?"
        st = r["status"]
        t.add_row(r["run"], r["experiment"], f"[{STATUS_STYLE.get(st, 'white')}]{st}[/]", f"{r['step']}/{planned}",
                  best, last, fmt_duration(r["wall_seconds"]))
    return t, rows


# ---- `gan compare` ---------------------------------------------------------------------------------------------
@dataclass
class Compared:
    tag: str
    runs: list  # Path
    labels: list
    experiments: list
    seeds: list
    series: list  # Series of `tag`, per run
    shared_steps: list
    best: list  # (step, value) per run


def compare(runs: list[Path], metric: str = "fid", extractor: str = "auto") -> Compared:
    if not runs:
        raise GanError("nothing to compare: give run folders or --exp NAME")
    runs = list({Path(r).resolve(): Path(r) for r in reversed(runs)}.values())[::-1]  # drop repeats, keep order
    scalars = []
    for r in runs:
        if not any(r.glob("events.out.tfevents.*")):
            raise GanError(f"run '{r}' has no metrics yet (no event files)")
        scalars.append(load_scalars(r))
    tag = pick_tag(metric, extractor, runs, scalars)
    series = [sc[tag] for sc in scalars]
    exps = [experiment_of(r) for r in runs]
    labels = [r.name if len(set(exps)) == 1 else f"{e}/{r.name}" for r, e in zip(runs, exps)]
    if len(set(labels)) < len(labels):
        labels = [str(r) for r in runs]
    shared = sorted(set.intersection(*(set(s.steps) for s in series)))
    return Compared(tag, runs, labels, exps, [seed_of(r) for r in runs], series, shared,
                    [best_point(s, tag) for s in series])


def compare_table(c: Compared):
    from rich.table import Table

    t = Table("step", *[f"{lab}\n(seed {sd})" for lab, sd in zip(c.labels, c.seeds)], box=None,
              title=f"{c.tag} ({'higher' if c.tag.split('/')[1].startswith('is') else 'lower'} is better)")
    for step in c.shared_steps:
        t.add_row(str(step), *[f"{s.values[s.steps.index(step)]:.4g}" for s in c.series])
    t.add_row("[bold]best[/]", *[f"[bold]{v:.4g}[/] @ {st}" for st, v in c.best])
    return t


def seed_groups(c: Compared) -> list[list[int]]:
    """Indices of runs drawn together: one experiment run with two or more different seeds; else alone."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(c.experiments):
        groups.setdefault(e, []).append(i)
    out = []
    for idx in groups.values():
        if len(idx) >= 2 and len({str(c.seeds[i]) for i in idx}) >= 2:
            out.append(idx)
        else:
            out += [[i] for i in idx]
    return sorted(out)


def band(c: Compared, idx: list[int]):
    """(steps, mean minutes, mean, std) over the runs `idx` at the steps they all have (std with ddof=1)."""
    import numpy as np

    steps = sorted(set.intersection(*(set(c.series[i].steps) for i in idx)))
    vals = np.array([[c.series[i].values[c.series[i].steps.index(s)] for s in steps] for i in idx])
    mins = np.array([[c.series[i].minutes[c.series[i].steps.index(s)] for s in steps] for i in idx])
    std = vals.std(axis=0, ddof=1) if len(idx) > 1 else np.zeros(len(steps))
    return np.array(steps), mins.mean(axis=0), vals.mean(axis=0), std


def plot(c: Compared, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, idx in enumerate(seed_groups(c)):
        color = colors[k % len(colors)]
        if len(idx) == 1:
            i = idx[0]
            s = c.series[i]
            label = f"{c.labels[i]} (seed {c.seeds[i]})"
            ax_s.plot(s.steps, s.values, marker="o", ms=3, color=color, label=label)
            ax_t.plot(s.minutes, s.values, marker="o", ms=3, color=color, label=label)
            continue
        for i in idx:  # the seeds themselves, faintly
            ax_s.plot(c.series[i].steps, c.series[i].values, color=color, alpha=0.35, lw=0.8, ls="--")
            ax_t.plot(c.series[i].minutes, c.series[i].values, color=color, alpha=0.35, lw=0.8, ls="--")
        steps, mins, mean, std = band(c, idx)
        label = f"{c.experiments[idx[0]]}: mean ± std of {len(idx)} seeds"
        for ax, x in ((ax_s, steps), (ax_t, mins)):
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.25, linewidth=0)
            ax.plot(x, mean, marker="o", ms=3, color=color, label=label)
    ax_s.set_xlabel("generator step")
    ax_t.set_xlabel("wall-clock minutes")
    for ax in (ax_s, ax_t):
        ax.set_ylabel(c.tag)
        ax.grid(alpha=0.3)
    ax_s.legend(fontsize=8)
    fig.suptitle(f"{c.tag} per run")
    fig.tight_layout()
    from gan import fileio

    try:
        return fileio.write_atomic(out, lambda f: fig.savefig(f, format=Path(out).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)


def write_csv(c: Compared, out: Path) -> Path:
    """Every point of every compared run: run, experiment, step, wall_minutes, value (full float precision)."""
    import io

    from gan import fileio

    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["run", "experiment", "step", "wall_minutes", "value"])
    for r, e, s in zip(c.runs, c.experiments, c.series):
        for step, m, v in zip(s.steps, s.minutes, s.values):
            w.writerow([r.name, e, step, f"{m:.6f}", repr(v)])
    return fileio.write_atomic(out, text.getvalue())


# ---- loading a generator -------------------------------------------------------------------------------------
def load_generator(run: Path, which: str, device):
    """(config, G in eval mode on `device`, checkpoint step): G_ema when the checkpoint has one, else G."""
    from gan import checkpoint, config
    from gan.models import build

    if which not in ("last", "best"):
        raise GanError(f"--checkpoint {which!r}: expected last or best")
    if not (run / "config.toml").is_file():
        raise GanError(f"'{run}' has no config.toml")
    p = run / "checkpoints" / f"{which}.pt"
    if not p.is_file():
        why = " (no metric has been evaluated yet?)" if which == "best" else ""
        raise GanError(f"'{run}' has no checkpoints/{which}.pt{why}")
    cfg = config.load(str(run / "config.toml"))
    state = checkpoint.load(p, lambda m: console.print(m))
    G, _ = build(cfg.model, cfg.data.image_size, int(state.get("num_classes", 0)))
    sd = state["G_ema"] if state.get("G_ema") is not None else state["G"]
    try:
        G.load_state_dict(sd)
    except (RuntimeError, KeyError) as e:
        raise GanError(f"{p}: does not fit model {cfg.model.arch!r} of {run / 'config.toml'} "
                       f"({str(e).splitlines()[0][:160]})") from None
    return cfg, G.to(device).eval().requires_grad_(False), int(state["step"])


# ---- `gan eval` ------------------------------------------------------------------------------------------------
def evaluate(run: Path, which: str = "last", samples: int | None = None, metrics: str = "fid,kid,is",
             device: str = "auto", extractors: list[str] | None = None, log=console.print) -> dict:
    """Metrics of a checkpoint, appended to <run>/metrics.json and written to TensorBoard as eval/<tag>."""
    from gan.data import load_images, to_tensor
    from gan.device import pick as pick_device
    from gan.metrics.evaluator import build

    want = [m.strip() for m in metrics.split(",") if m.strip()]
    bad = [m for m in want if m not in METRICS]
    if bad or not want:
        raise GanError(f"--metrics {metrics!r}: expected a comma list out of fid, kid, is")
    if samples is not None and samples < 2:
        raise GanError(f"--samples {samples}: expected at least 2")
    dev = pick_device(device)
    cfg, G, step = load_generator(run, which, dev)
    m = dataclasses.replace(cfg.metrics, fid="fid" in want, kid="kid" in want, is_="is" in want, enabled=True,
                            num_samples=samples or cfg.metrics.num_samples,
                            extractors=extractors or cfg.metrics.extractors)
    images, _ = load_images(cfg.data)
    ref = to_tensor(images, cfg.data.image_size, dev)
    del images
    ev, notes = build(m, ref, dev, cfg.model.z_dim, log, getattr(G, "num_classes", 0))
    if ev is None:
        raise GanError("no feature extractor can run: " + "; ".join(notes))
    values = ev(G, m.num_samples).values
    record = {"at": now(), "checkpoint": which, "step": step, "samples": m.num_samples,
              "protocol": ev.protocol(), "values": values}
    path = run / "metrics.json"
    prev = read_json(path) if path.is_file() else []
    records = prev if isinstance(prev, list) else []
    records.append(record)
    from gan import fileio

    fileio.write_json(path, records)
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(run), filename_suffix=f".eval-{which}-{step}")
    try:
        for tag, v in values.items():
            if math.isfinite(v):
                w.add_scalar(f"eval/{tag.split('/', 1)[1]}", v, step)
    finally:
        w.close()
    return record


# ---- `gan sample` ----------------------------------------------------------------------------------------------
def sample(run: Path, n: int = 64, out: Path | None = None, folder: Path | None = None, seed: int = 0,
           which: str = "last", device: str = "auto") -> list[Path]:
    """n samples from a checkpoint as one PNG grid (8 per row) or, with `folder`, n PNG files. Never overwrites."""
    import torch
    from torchvision.utils import save_image

    from gan.data import to_uint8
    from gan.device import pick as pick_device

    if n < 1:
        raise GanError(f"--n {n}: expected at least 1")
    if out is not None and folder is not None:
        raise GanError("give --out or --folder, not both")
    dev = pick_device(device)
    cfg, G, step = load_generator(run, which, dev)
    if folder is not None:
        targets = [Path(folder) / f"{i:06d}.png" for i in range(n)]
    else:
        targets = [Path(out) if out is not None else run / f"samples-{which}-step{step}-seed{seed}-n{n}.png"]
    clash = next((p for p in targets if p.exists()), None)
    if clash is not None:
        raise GanError(f"'{clash}' already exists: not overwriting it (choose another --out/--folder)")
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same images for a seed on any device
    z = torch.randn(n, cfg.model.z_dim, generator=gen)
    with torch.inference_mode():
        x = torch.cat([to_uint8(G(c.to(dev))).cpu() for c in z.split(256)])
    from gan import fileio

    if folder is None:
        fileio.write_atomic(targets[0], lambda f: save_image(x.float() / 255, f, nrow=8, format="png"),
                            exclusive=True)
    else:
        from PIL import Image

        for img, p in zip(x.permute(0, 2, 3, 1).numpy(), targets):
            fileio.write_atomic(p, lambda f: Image.fromarray(img).save(f, format="PNG"), exclusive=True)
    return targets


# ---- TensorBoard -------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class TensorBoard:
    """A TensorBoard process on 127.0.0.1 for `logs`; always stopped on exit (its whole process group)."""

    def __init__(self, logs: Path, port: int = 0, reload_interval: float = 1.0):
        self.logs, self.port = Path(logs), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reload_interval = reload_interval
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.log_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logs), "--host", "127.0.0.1",
             "--port", str(self.port), "--reload_interval", str(self.reload_interval)],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        return self

    def wait(self, timeout: float = 90, until=lambda runs: True) -> list:
        """Poll /data/runs until TensorBoard answers and `until(runs)` holds; returns the runs."""
        deadline, last_err = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GanError(f"tensorboard exited with {self.proc.returncode}: {self.output()[-300:]!r}")
            try:
                runs = http_json(self.url + "/data/runs", timeout=5)
                if until(runs):
                    return runs
            except OSError as e:
                last_err = e
            time.sleep(0.5)
        raise GanError(f"tensorboard on {self.url} not ready after {timeout:.0f}s ({last_err})")

    def output(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(p.pid, sig)  # the group we started: tensorboard and its data server
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(self, *exc):
        self.stop()
        self.log_file.close()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise GanError("no chromium found for the screenshot (Debian: apt-get install -y chromium)")
    return exe


def screenshot(logs: Path = Path("logs"), out_png: Path = Path("tb.png"), port: int = 0,
               page: str = "timeseries", width: int = 1400, height: int = 1000) -> Path:
    """Start TensorBoard on a free loopback port, wait until it lists the runs, screenshot `#page` with headless
    chromium, and always stop TensorBoard."""
    logs, out_png = Path(logs), Path(out_png).resolve()
    if not logs.is_dir():
        raise GanError(f"logs folder '{logs}' does not exist")
    exe = chromium()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with TensorBoard(logs, port) as tb, tempfile.TemporaryDirectory(prefix="gan-chromium-") as profile:
        want_runs = bool(list(logs.rglob("events.out.tfevents.*")))
        tb.wait(until=lambda runs: bool(runs) or not want_runs)
        time.sleep(2 * tb.reload_interval)  # let the first load reach the scalars
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--virtual-time-budget=15000", f"--screenshot={out_png}", f"{tb.url}/#{page}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise GanError("chromium did not finish the screenshot in 180s") from None
        if r.returncode != 0 or not out_png.is_file():
            tail = (r.stderr.strip().splitlines() or [""])[-1][:200]
            raise GanError(f"chromium failed (exit {r.returncode}): {tail}")
    return out_png

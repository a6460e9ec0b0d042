"""`gan compare`: one metric of several runs, at the steps they share, each run's best, a PNG and a CSV. The
curves come from the runs' summaries (gan/summary.py).

Runs of one experiment with different seeds (or of one sweep setting, `--sweep DIR`) are drawn as one band,
mean ± std over the seeds. The x axis is the generator step, the training seconds (evaluations excluded) or the
images seen, both as the engine logged them at each metric point (`--x step|time|images`); the second panel is
wall-clock minutes. Numbers measured under different protocols (other extractor weights, sample count or
reference set: `protocol.differences`) are refused on one chart unless `allow_mixed`, and then the chart and
the table name the difference.
"""
from __future__ import annotations

import csv
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from gan import fileio, summary
from gan.errors import GanError
from gan.events import IMAGES_SEEN, TRAIN_SECONDS, Series, best_point, has_events
from gan.metrics import protocol
from gan.metrics.protocol import EXTRACTOR_SUFFIX
from gan.runs import is_run, protocol_of, seed_of, short_labels

AXES = {"step": "generator step", "time": "training seconds (evaluations excluded)", "images": "images seen"}
LOGGED = {"time": TRAIN_SECONDS, "images": IMAGES_SEEN}


def axis(s: Series, x: str) -> list:
    """The x values of `s` on axis `x` (step, time, images, minutes)."""
    return {"step": s.steps, "time": s.train_seconds, "images": s.images, "minutes": s.minutes}[x]


def pick_tag(metric: str, extractor: str, runs: list[Path], scalars: list[dict]) -> str:
    """The one tag every compared run has for `metric`; a clear error naming the run that lacks it."""
    if metric not in protocol.METRICS:
        raise GanError(f"--metric {metric!r}: expected one of {', '.join(protocol.METRICS)}")
    if extractor not in ("auto", *EXTRACTOR_SUFFIX):
        raise GanError(f"--extractor {extractor!r}: expected auto, inception or c10")
    for run, sc in zip(runs, scalars):
        if not any(t.startswith("metrics/") for t in sc):
            raise GanError(f"run '{run}' has no metrics yet (no metrics/* scalars in its events)")
    if extractor == "auto":  # the one rule, over the tags every run has; else the first extractor some run has
        shared = set.intersection(*(set(sc) for sc in scalars))
        best = protocol.primary(shared, metric).tag
        if best:
            return best
    names = list(EXTRACTOR_SUFFIX) if extractor == "auto" else [extractor]
    cands = [protocol.tag(metric, EXTRACTOR_SUFFIX[n]) for n in names]
    tag = next((t for t in cands if all(t in sc for sc in scalars)), None)
    if tag is not None:
        return tag
    tag = next((t for t in cands if any(t in sc for sc in scalars)), cands[0])
    lacking = next(r for r, sc in zip(runs, scalars) if tag not in sc)
    has = sorted(t for t in scalars[runs.index(lacking)] if t.startswith("metrics/"))
    raise GanError(f"run '{lacking}' has no {tag} (it has {', '.join(has)}); try another --metric/--extractor")


# ---- sweeps --------------------------------------------------------------------------------------------------
def sweep_runs(sweep: Path) -> tuple[list[Path], list[str], list[str]]:
    """(run folders, their settings, notes) of a sweep folder, from its sweep.json (written by `gan sweep`).
    Runs that left no run folder or no events yet are skipped, each named in a note."""
    sweep = Path(sweep)
    manifest = fileio.read_json(sweep / "sweep.json")
    if manifest is None:
        raise GanError(f"--sweep '{sweep}': no sweep.json (not a sweep folder)")
    entries = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("folder") for e in entries):
        raise GanError(f"'{sweep / 'sweep.json'}': expected an object with a list 'runs' of {{setting, folder, ...}}")
    runs, settings, notes = [], [], []
    for e in entries:
        d = sweep / str(e["folder"])
        if Path(str(e["folder"])).name != str(e["folder"]):
            raise GanError(f"'{sweep / 'sweep.json'}': run folder {e['folder']!r} is not a plain folder name")
        if not is_run(d) or not has_events(d):
            notes.append(f"{e['folder']} ({e.get('status', '?')}): no run folder with events yet, left out")
            continue
        runs.append(d)
        settings.append(str(e.get("setting") or ", ".join(map(str, e.get("overrides", []))) or e["folder"]))
    if not runs:
        raise GanError(f"--sweep '{sweep}': none of its {len(entries)} runs has events yet")
    return runs, settings, notes


# ---- the comparison ------------------------------------------------------------------------------------------
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
    groups: list = field(default_factory=list)  # band key per run: the experiment, or the sweep setting
    x: str = "step"
    mixed: list = field(default_factory=list)  # protocol differences, when allowed on one chart


def compare(runs: list[Path], metric: str = "fid", extractor: str = "auto", x: str = "step",
            allow_mixed: bool = False, groups: list | None = None) -> Compared:
    """`groups`: a band key per run (a sweep's setting), None for a run's experiment."""
    if not runs:
        raise GanError("nothing to compare: give run folders, --exp NAME or --sweep DIR")
    if x not in AXES:
        raise GanError(f"--x {x!r}: expected one of {', '.join(AXES)}")
    groups = list(groups) if groups is not None else [None] * len(runs)
    seen, keep = set(), []
    for r, g in zip(runs, groups):  # drop repeats, keep order
        if Path(r).resolve() not in seen:
            seen.add(Path(r).resolve())
            keep.append((Path(r), g))
    runs, groups = [r for r, _ in keep], [g for _, g in keep]
    sums = []
    for r in runs:
        if not has_events(r):
            raise GanError(f"run '{r}' has no metrics yet (no event files)")
        sums.append(summary.load(r))  # the curves from each run's summary: one tag's points read
    tag = pick_tag(metric, extractor, runs, [set(s.tags) for s in sums])
    series = [s.series(tag) for s in sums]
    if x in LOGGED:
        lacking = next((r for r, s in zip(runs, series) if None in axis(s, x)), None)
        if lacking is not None:
            raise GanError(f"run '{lacking}' has no {LOGGED[x]} at its {tag} points (written before the engine "
                           "logged it): use --x step")
    exps, labels = short_labels(runs)
    mixed = protocol.differences({lab: protocol_of(r) for lab, r in zip(labels, runs)}, tag)
    if mixed and not allow_mixed:
        raise GanError(f"{tag} of these runs was measured under different protocols: {'; '.join(mixed)} "
                       "(--allow-mixed draws them on one chart, the difference named)")
    shared = sorted(set.intersection(*(set(s.steps) for s in series)))
    return Compared(tag, runs, labels, exps, [seed_of(r) for r in runs], series, shared,
                    [best_point(s, tag) for s in series], [g or e for g, e in zip(groups, exps)], x, mixed)


def _fmt_x(v, x: str) -> str:
    return f"{v:.1f}s" if x == "time" else f"{int(v):,} img"


def compare_table(c: Compared):
    from rich.table import Table

    better = "higher" if protocol.higher_is_better(c.tag) else "lower"
    title = f"{c.tag} ({better} is better)" + "".join(f"\n[red]mixed protocols: {m}[/]" for m in c.mixed)
    wide = min(max((len(m) + 20 for m in c.mixed), default=0), 140)  # the difference readable, not wrapped thin
    t = Table("step", *[f"{lab}\n(seed {sd})" for lab, sd in zip(c.labels, c.seeds)], box=None, title=title,
              min_width=wide or None)
    for step in c.shared_steps:
        cells = []
        for s in c.series:
            i = s.steps.index(step)
            extra = f" ({_fmt_x(axis(s, c.x)[i], c.x)})" if c.x != "step" else ""
            cells.append(f"{s.values[i]:.4g}{extra}")
        t.add_row(str(step), *cells)
    t.add_row("[bold]best[/]", *[f"[bold]{v:.4g}[/] @ {st}" for st, v in c.best])
    return t


def seed_groups(c: Compared) -> list[list[int]]:
    """Indices of runs drawn together: one experiment (or sweep setting) run with two or more different seeds;
    else alone."""
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(c.groups or c.experiments):
        groups.setdefault(g, []).append(i)
    out = []
    for idx in groups.values():
        if len(idx) >= 2 and len({str(c.seeds[i]) for i in idx}) >= 2:
            out.append(idx)
        else:
            out += [[i] for i in idx]
    return sorted(out)


def band(c: Compared, idx: list[int], x: str = "minutes"):
    """(steps, x, mean, std) over the runs `idx` (std with ddof=1). On the step axis: at the steps they all have.
    On a continuous axis (time, images, minutes): from the latest first point to the end of the shortest run, at
    every run's points there, each run's curve interpolated linearly between its own points; so seeds that stop
    at a time limit (at different steps) keep their ends, up to where the shortest one ends. `steps` is then the
    mean step at each x."""
    import numpy as np

    if x == "step":
        steps = sorted(set.intersection(*(set(c.series[i].steps) for i in idx)))
        vals = np.array([[c.series[i].at(s) for s in steps] for i in idx])
        xs, steps = np.array(steps, dtype=float), np.array(steps)
    else:
        per = [np.array(axis(c.series[i], x), dtype=float) for i in idx]
        lo, hi = max(a[0] for a in per), min(a[-1] for a in per)
        xs = np.unique(np.concatenate([a[(a >= lo) & (a <= hi)] for a in per]))
        vals = np.array([np.interp(xs, a, c.series[i].values) for a, i in zip(per, idx)])
        steps = np.mean([np.interp(xs, a, c.series[i].steps) for a, i in zip(per, idx)], axis=0)
    std = vals.std(axis=0, ddof=1) if len(idx) > 1 else np.zeros(len(xs))
    return steps, xs, vals.mean(axis=0), std


def plot(c: Compared, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_x, ax_t) = plt.subplots(1, 2, figsize=(13, 4.8 + 0.3 * len(c.mixed)), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, idx in enumerate(seed_groups(c)):
        color = colors[k % len(colors)]
        if len(idx) == 1:
            i = idx[0]
            s = c.series[i]
            label = f"{c.labels[i]} (seed {c.seeds[i]})"
            ax_x.plot(axis(s, c.x), s.values, marker="o", ms=3, color=color, label=label)
            ax_t.plot(s.minutes, s.values, marker="o", ms=3, color=color, label=label)
            continue
        for i in idx:  # the seeds themselves, faintly
            for ax, a in ((ax_x, c.x), (ax_t, "minutes")):
                ax.plot(axis(c.series[i], a), c.series[i].values, color=color, alpha=0.35, lw=0.8, ls="--")
        label = f"{c.groups[idx[0]]}: mean ± std of {len(idx)} seeds"
        for ax, a in ((ax_x, c.x), (ax_t, "minutes")):
            _, xs, mean, std = band(c, idx, a)
            ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.25, linewidth=0)
            ax.plot(xs, mean, marker="o", ms=3, color=color, label=label)
    ax_x.set_xlabel(AXES[c.x])
    ax_t.set_xlabel("wall-clock minutes")
    for ax in (ax_x, ax_t):
        ax.set_ylabel(c.tag)
        ax.grid(alpha=0.3)
    ax_x.legend(fontsize=8)
    title = f"{c.tag} per run"
    if c.mixed:  # said on the chart itself, so the PNG never travels without it
        title += "\nMIXED PROTOCOLS, not comparable as they stand: " + "\n".join(
            textwrap.fill(m, 150) for m in c.mixed)
    fig.suptitle(title, color="darkred" if c.mixed else "black", fontsize=10 if c.mixed else 12)
    fig.tight_layout()
    try:
        return write_new(out, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def write_new(out: Path, fill) -> Path:
    """Write `out`, never over an existing file: when the name is taken, the first free `<stem>-N<suffix>`
    (compare-fid-1.png, -2, ...). The path written is returned (and printed by the command)."""
    out, n = Path(out), 0
    while True:
        path = out.with_name(f"{out.stem}-{n}{out.suffix}") if n else out
        if not path.exists():
            try:
                return fileio.write_atomic(path, fill, exclusive=True)
            except GanError as e:  # taken between the look and the write: the next number
                if "already exists" not in str(e):
                    raise
        n += 1


CSV_COLUMNS = ["run", "experiment", "group", "step", "wall_minutes", "train_seconds", "images_seen", "value"]


def write_csv(c: Compared, out: Path) -> Path:
    """Every point of every compared run (full float precision); train_seconds/images_seen as logged at each
    metric point (empty where the run logged none); group = experiment or sweep setting."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r, e, g, s in zip(c.runs, c.experiments, c.groups, c.series):
        for i, step in enumerate(s.steps):
            w.writerow([r.name, e, g, step, f"{s.minutes[i]:.6f}", _full(s.train_seconds[i]), _full(s.images[i]),
                        repr(s.values[i])])
    return write_new(out, buf.getvalue())


def _full(v) -> str:
    return "" if v is None else repr(v)

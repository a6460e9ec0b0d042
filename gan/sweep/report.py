"""Which setting is better, and is the difference beyond seed noise?

Settings are ranked by their completed runs' best primary FID (gan.metrics.protocol.primary: the one rule for
which FID counts), read from each run's summary (gan/summary.py), mean ± std (ddof 1) over seeds, with the training time to
reach it (progress/train_seconds at that step: evaluations excluded). Each setting gets Welch's t-test
(two-sided, unequal variances) of its per-seed best FIDs against the top setting's; the verdict says whether the
best setting beats the runner-up at p < 0.05. The best is picked from the same numbers it is tested on, so with
many settings this is optimistic: re-run the top two with fresh seeds before believing a small p.

TensorBoard cannot average runs, so each setting also gets an aggregate run under <sweep>/mean/<setting label>/:
every scalar its completed seeds share as their mean under the seeds' own tag (so the mean is drawn on the seeds'
chart), each metric also as <tag>/mean+std, <tag>/mean-std (std with ddof 1, as the report) and <tag>/min,
<tag>/max beside it, in the metric's own tag family, and a Custom Scalars band (Margin chart) per metric.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gan import fileio, summary, writer
from gan.metrics import protocol
from gan.events import Series, has_events, load_scalars
from gan.runs import fmt_duration
from gan.sweep import sharing
from gan.sweep.grid import safe_name
from gan.sweep.manifest import Manifest, run_info

ALPHA = 0.05


@dataclass
class RunResult:
    entry: dict
    best: float | None = None
    step: int | None = None
    seconds: float | None = None  # training seconds when the best was reached


@dataclass
class Row:
    setting: str
    runs: list = field(default_factory=list)  # RunResult
    p: float | None = None  # Welch's t-test against the top setting

    @property
    def done(self) -> list[RunResult]:
        """The runs the numbers are over: completed ones (a pruned or unfinished run's best is a shorter run's)."""
        return [r for r in self.runs if r.best is not None and r.entry.get("status") == "completed"]

    @property
    def bests(self) -> list[float]:
        return [r.best for r in self.done]

    @property
    def n(self) -> int:
        return len(self.bests)

    @property
    def mean(self) -> float | None:
        return sum(self.bests) / self.n if self.n else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((b - m) ** 2 for b in self.bests) / (self.n - 1))

    def mean_of(self, what: str) -> float | None:
        vals = [getattr(r, what) for r in self.done if getattr(r, what) is not None]
        return sum(vals) / len(vals) if vals else None


@dataclass
class Report:
    tag: str | None
    why: str
    rows: list  # Row, ranked
    verdict: str
    cores: str = ""  # who shared the machine with whom (gan/sweep/sharing.py): an equal-time comparison's confound


def collect(man: Manifest) -> Report:
    sums = {e["folder"]: summary.load(man.run_dir(e)) for e in man.runs if has_events(man.run_dir(e))}
    with_metrics = [set(s.metric_tags()) for s in sums.values() if s.metric_tags()]
    prim = protocol.primary(set.intersection(*with_metrics) if with_metrics else set())
    rows = {s: Row(s) for s in man.settings()}
    for e in man.runs:
        r = RunResult(e)
        s = sums.get(e["folder"])
        if s is not None and prim.tag in s.tags:
            r.step, r.best, r.seconds = s.best_point(prim.tag)[:3]  # seconds: progress/train_seconds at that step
        rows[e["setting"]].runs.append(r)
    lower = not (prim.tag and protocol.higher_is_better(prim.tag))
    ranked = sorted(rows.values(), key=lambda r: (r.mean is None, (r.mean if lower else -r.mean) if r.n else 0))
    shared = sharing.verdict(*sharing.matrix([(e["setting"], run_info(man.run_dir(e))) for e in man.runs]))
    return Report(prim.tag, prim.why, ranked, verdict(ranked), shared)


def welch(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None when it cannot be had (fewer than 2 seeds, no spread at all)."""
    if len(a) < 2 or len(b) < 2:
        return None
    import warnings

    from scipy import stats

    with warnings.catch_warnings():  # identical values: scipy warns and gives nan, said as "no spread" instead
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def verdict(rows: list[Row]) -> str:
    have = [r for r in rows if r.n]
    for r in have[1:]:
        r.p = welch(have[0].bests, r.bests)
    if len(have) < 2:
        return "fewer than two settings with results: nothing to rank"
    best, second = have[0], have[1]
    if best.n < 2 or second.n < 2:
        return (f"cannot tell whether {best.setting} beats {second.setting} beyond seed noise: it needs ≥ 2 seeds "
                "per setting (re-run the top settings with --seeds 3: --grid, or --setting for whole settings)")
    if second.p is None:
        return f"cannot tell: the seeds of {best.setting} and {second.setting} show no spread at all"
    beyond = second.p < ALPHA
    return (f"{best.setting} {'beats' if beyond else 'does not beat'} the runner-up {second.setting} beyond seed "
            f"noise: Welch's t-test on the per-seed best values, p = {second.p:.3g} "
            f"({'<' if beyond else '≥'} {ALPHA}; n = {best.n} and {second.n} seeds)")


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def table(man: Manifest, rep: Report):
    from rich.table import Table

    name = rep.tag.split("/", 1)[1] if rep.tag else "FID"
    order = "higher" if rep.tag and protocol.higher_is_better(rep.tag) else "lower"
    t = Table("rank", "setting", "seeds", f"best {name} mean ± std", "per seed", "step", "time to best", "p vs #1",
              "runs", box=None, title=f"sweep {man.folder}: ranked by best {rep.tag} ({order} is better)"
              if rep.tag else f"sweep {man.folder}: no FID logged, nothing to rank")
    for i, r in enumerate(rep.rows, 1):
        statuses = [x.entry.get("status", "?") for x in r.runs]
        shown = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
        ms = f"{_fmt(r.mean)} ± {_fmt(r.std)}" if r.n else "-"
        t.add_row(str(i) if r.n else "-", r.setting, str(r.n), ms, " ".join(_fmt(b) for b in r.bests) or "-",
                  _fmt(r.mean_of("step"), ".0f"), fmt_duration(r.mean_of("seconds")), _fmt(r.p, ".3g"), shown)
    return t


def rerun_command(man: Manifest, rep: Report, top: int = 2, seeds: int = 3) -> str | None:
    """A search's next step as a command: its best `top` trials beside the experiment as it is, `seeds` fresh seeds
    each (one seed per trial cannot tell a setting from a lucky seed). None for a grid or an empty ranking."""
    import shlex

    if not man.data.get("search"):
        return None
    best = [r for r in rep.rows if r.n and r.setting != "base"][:top]  # the base trial is the last --setting
    if not best:
        return None
    parts = ["gan", "sweep", man.data["experiment"]]
    for r in best:
        e = r.runs[0].entry
        over = [o for o in e["overrides"] if not o.startswith("experiment.seed=")]
        parts += ["--setting", f"{e['folder'].split('-', 1)[0]}: {' '.join(over)}"]
    parts += ["--setting", f"{man.data['experiment']}: base", "--seeds", str(seeds)]
    for o in man.data.get("set", []):
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)


def write_csv(man: Manifest, rep: Report, path: Path) -> Path:
    keys = list(man.data.get("grid") or {}) or sorted({o.split("=", 1)[0] for e in man.runs for o in e["overrides"]
                                                        if not o.startswith("experiment.seed=")})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "setting", *keys, "metric", "seeds", "mean_best", "std_best", "best_per_seed",
                "mean_step_to_best", "mean_train_seconds_to_best", "welch_p_vs_rank1", "statuses"])
    for i, r in enumerate(rep.rows, 1):
        vals = dict(o.split("=", 1) for o in r.runs[0].entry["overrides"]) if r.runs else {}
        w.writerow([i if r.n else "", r.setting, *[vals.get(k, "") for k in keys], rep.tag or "", r.n,
                    repr(r.mean) if r.n else "", repr(r.std) if r.std is not None else "",
                    ";".join(repr(b) for b in r.bests), r.mean_of("step") or "", r.mean_of("seconds") or "",
                    repr(r.p) if r.p is not None else "", ";".join(x.entry.get("status", "?") for x in r.runs)])
    return fileio.write_atomic(path, buf.getvalue())


# ---- TensorBoard ---------------------------------------------------------------------------------------------
def band_tags(tag: str) -> dict[str, str]:
    """The aggregate run's tags of metric `tag` besides its mean (kept under `tag`): one tag family, the metric's."""
    return {k: f"{tag}/{k}" for k in ("mean+std", "mean-std", "min", "max")}


def aggregates(man: Manifest, rep: Report) -> list[Path]:
    """<sweep>/mean/<setting label>/: per setting with ≥ 2 completed seeds, every scalar they share (at the steps
    they share) as the mean, metrics/* also as mean ± std and min/max (band_tags), and a Custom Scalars band per
    metric. Rewritten whole each time (a new folder swapped in), since it is derived from the runs' own events."""
    out = []
    for row in rep.rows:
        if len(row.done) < 2:  # one seed: its own run already shows it
            continue
        series = [load_scalars(man.run_dir(r.entry)) for r in row.done]  # every scalar: the runs' event files
        final = man.folder / "mean" / safe_name(row.setting)
        new = final.with_name(f".new-{final.name}")
        shutil.rmtree(new, ignore_errors=True)
        tb = writer.Tracker(new)
        bands = {}
        shared = set.intersection(*(set(sc) for sc in series))
        for tag in sorted(t for t in shared if not t.startswith(writer.SUMMARY)):  # HParams numbers: not curves
            per = [sc[tag] for sc in series]
            steps = sorted(set.intersection(*(set(s.steps) for s in per)))
            for step in steps:
                vals = [s.values[s.steps.index(step)] for s in per]
                mean = sum(vals) / len(vals)
                point = {tag: mean}
                if tag.startswith("metrics/"):
                    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                    bt = band_tags(tag)
                    point |= {bt["mean+std"]: mean + std, bt["mean-std"]: mean - std, bt["min"]: min(vals),
                              bt["max"]: max(vals)}
                tb.scalars(point, step)
            if tag.startswith("metrics/"):
                bt = band_tags(tag)
                bands[f"{tag.split('/', 1)[1]}: mean ± std over seeds"] = ["Margin", [tag, bt["mean-std"],
                                                                                      bt["mean+std"]]]
        tb.custom_scalars({f"sweep {man.folder.name}: bands over seeds": bands})
        tb.text("sweep", f"mean over {len(series)} seeds of setting `{row.setting}` in sweep `{man.folder}`: "
                         + ", ".join(r.entry["folder"] for r in row.done))
        tb.close()
        old = final.with_name(f".old-{final.name}")
        if final.exists():
            os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
        out.append(final)
    return out


def hparams_row(run_dir: Path) -> None:
    """An HParams row for a run that did not complete (a pruned one): the engine writes it only at a completed
    run's end, and the parallel-coordinates view should show every run of a sweep."""
    try:
        flat = writer.flatten(tomllib.loads((Path(run_dir) / "config.toml").read_text()))
    except (OSError, tomllib.TOMLDecodeError):
        return
    sm = summary.refresh(run_dir, locked=True)  # the caller holds the run's lock; its events as they are now
    history = by_step({t: sm.series(t) for t in sm.metric_tags()})
    suffixes = [p.get("suffix", "") for p in run_info(run_dir).get("metrics_protocol", [])]
    tb = writer.Tracker(run_dir)
    tb.hparams(flat, writer.hparam_metrics(history, suffixes), max((s for s, _ in history), default=0))
    tb.close()
    summary.refresh(run_dir, locked=True)  # the HParams row is in the events now: the summary follows them


def by_step(sc: dict[str, Series]) -> list[tuple[int, dict]]:
    steps: dict[int, dict] = {}
    for tag, s in sc.items():
        for step, v in zip(s.steps, s.values):
            steps.setdefault(step, {})[tag] = v
    return sorted(steps.items())

"""Disk a user can plan for: the bytes a `baseline` and a `best` run write, by kind, per 10,000 steps.

Events: synthetic runs of each experiment at its own cadence (gan/bench/synthetic.py: the project's recorder and
writer, grids of real images at the experiment's size, the metrics this machine logs), 10k and 20k steps long (the
profile's `disk_steps` and twice that): the difference is what each further 10k steps add, the rest (config text,
the first grids, the HParams row) is written once. Checkpoints: the engine's own state (`Trainer.state()`: G, its EMA, D, both Adams after a first step,
RNG, data order, history) of the experiment's real model, saved through checkpoint.save; a run keeps four
(last.pt and best.pt, each with the .prev it falls back to), whatever its length. PNGs: the grids `train.save_png` adds under results/.
"""
from __future__ import annotations

from gan import checkpoint, disk
from gan.bench import synthetic
from gan.bench.context import Context

EXPS = ("baseline", "best")
KEPT = 4  # last.pt, last.pt.prev, best.pt, best.pt.prev


def events_bytes(ctx: Context, exp: str, steps: int, pictures, png: bool) -> dict:
    d = synthetic.write_run(ctx.tmp / "diskplan" / f"{exp}-{steps}{'-png' if png else ''}", exp, steps, pictures,
                            overrides=(*ctx.profile.shrink, f"train.save_png={'true' if png else 'false'}"))
    return disk.usage(d)


def checkpoint_bytes(ctx: Context, exp: str) -> int:
    """One checkpoint of the experiment's real model (the profile's shrink aside), after one training step."""
    tr = ctx.trainer(exp, ("data.limit=256", 'train.precision="fp32"'))  # weights are fp32 in every precision
    tr.train_step()
    path = ctx.tmp / "diskplan" / f"{exp}-last.pt"
    checkpoint.save(tr.state(), path)
    return path.stat().st_size


def run(ctx: Context) -> None:
    rep, f = ctx.report, disk.fmt_bytes
    rows, data = [], {}
    for exp in EXPS:
        cfg = ctx.cfg(exp)
        pictures = synthetic.images(ctx.data_ov, 2 * 64 + 16, cfg.data.image_size)
        n = ctx.profile.disk_steps
        e1, e2 = (events_bytes(ctx, exp, k, pictures, False)["events"] for k in (n, 2 * n))
        png = events_bytes(ctx, exp, n, pictures, True)["pngs"] * 10_000 // n
        ck = checkpoint_bytes(ctx, exp)
        per, once = (e2 - e1) * 10_000 // n, 2 * e1 - e2
        t = cfg.train
        total = {n: once + per * n // 10_000 + KEPT * ck for n in (10_000, t.steps)}
        data[exp] = {"events_per_10k": per, "events_once": once, "checkpoint": ck, "pngs_per_10k": png,
                     "cadence": {"log_every": t.log_every, "image_every": t.image_every,
                                 "metrics_every": cfg.metrics.every}, "run_total": total}
        rows.append([f"`{exp}`", f"every {t.log_every} / {t.image_every:,} / {cfg.metrics.every:,}", f(per), f(once),
                     f"{f(ck)} × {KEPT} = {f(KEPT * ck)}", f(png), f"{f(total[t.steps])} ({t.steps:,} steps)"])
    rep.md(f"Synthetic runs of {ctx.profile.disk_steps:,} and {2 * ctx.profile.disk_steps:,} steps. "
           "Events at each experiment's cadence (scalars / grids / metrics every N steps) by the project's own "
           "writer with real-image grids (c10 metrics: what this machine logs); a checkpoint of its real model "
           "(`Trainer.state()` after one step: G, EMA G, D, both Adams); a run keeps four of them.", "")
    rep.table(["experiment", "cadence", "events per 10k steps", "events once", "checkpoints (last, best, each with its .prev)",
               "PNGs per 10k steps if train.save_png", "a whole run"], rows)
    rep.data(disk=data)

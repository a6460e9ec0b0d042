"""The quality race: each contender (default dcgan vs sngan) trains for the same wall-clock training time
(`train.minutes`: evaluations excluded; the run stops with a checkpoint and a final evaluation), not the same
number of G steps (sngan's n_dis 5 would get five times dcgan's D compute). FID/KID and the images seen are
printed at the end of each; the runs are ordinary runs under logs/ (`gan compare DIR DIR` plots them against
wall-clock time too).

    python -m gan.bench.quality [--minutes 5] [--exps dcgan,sngan] [--samples 2000] [--points 3] [--logs logs]

(the same as `python -m gan.bench --sections quality ...`; `make bench-quality ARGS=...`).
"""
from __future__ import annotations

import sys

from gan.bench.context import Context
from gan.metrics import protocol


def overrides(minutes: float, samples: int, every: int) -> list[str]:
    return [f"train.minutes={minutes}", "train.steps=1000000000", f"metrics.every={every}",
            f"metrics.num_samples={samples}", "train.save_png=false", "train.export=false",
            "train.checkpoint_every=1000000000"]


def cadence(ctx: Context, exp: str, minutes: float, points: int) -> tuple[int, float]:
    """metrics.every that gives about `points` evaluations in `minutes` of training (from two timed steps)."""
    from gan.bench.speed import EngineLoop, time_steps

    e = EngineLoop("calibrate", ctx, exp, ["data.limit=2048"])
    time_steps(e, 1)
    step_s = time_steps(e, 2) / 2
    e.close()
    return max(1, int(minutes * 60 / step_s) // max(1, points)), step_s


def run(ctx: Context) -> None:
    from gan.engine import Trainer

    a, rep = ctx.args, ctx.report
    rows, data = [], {}
    for exp in a.exps.split(","):
        every, step_s = cadence(ctx, exp, a.minutes, a.points)
        cfg = ctx.cfg(exp, overrides(a.minutes, a.samples, every))
        ctx.say(f"{exp}: training {a.minutes:g} min (≈{step_s:.2f} s/step measured, metrics every {every} steps on "
                f"{a.samples:,} samples) ...")
        tr = Trainer(cfg, device=str(ctx.device), logs=a.logs, name="race", quiet=True)
        r = tr.run()
        last = r.metrics[-1][1] if r.metrics else {}
        fid = tr.primary.tag
        kid = protocol.tag("kid", protocol.split(fid)[1]) if fid else None
        seen = int(last.get("progress/images_seen", r.step * cfg.optim.batch_size * cfg.optim.n_dis))
        cells = {"status": r.status, "g_steps": r.step, "d_steps": r.step * cfg.optim.n_dis, "images_seen": seen,
                 "train_minutes": tr.train_seconds / 60, "evaluations": len(r.metrics), "fid_tag": fid,
                 "fid": last.get(fid), "kid": last.get(kid), "run_dir": str(r.run_dir)}
        data[exp] = cells
        ctx.say(f"{exp}: {r.status}, {r.step:,} G steps, {seen:,} images seen in {cells['train_minutes']:.1f} min "
                f"of training; {fid} {cells['fid'] if cells['fid'] is None else round(cells['fid'], 3)}, "
                f"{kid} {cells['kid'] if cells['kid'] is None else round(cells['kid'], 5)}; {r.run_dir}")
        f = lambda v, d: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
        rows.append([exp, cfg.model.arch, f"{r.step:,}", f"{cells['d_steps']:,}", f"{seen:,}",
                     f"{cells['train_minutes']:.2f}", f(cells["fid"], 3), f(cells["kid"], 5), f"`{r.run_dir}`"])
        rep.headline(f"quality race, {a.minutes:g} min of training each: {exp} {fid} {f(cells['fid'], 3)}, "
                     f"{r.step:,} G steps, {seen:,} images seen")
    rep.table(["contender", "arch", "G steps", "D steps", "images seen", "training min", "FID (primary)", "KID",
               "run"], rows)
    rep.md(f"Equal training time ({a.minutes:g} min each, evaluations excluded; a run stops after the step that "
           f"crosses it, so a slow step can add up to one step), final evaluation on "
           f"{a.samples:,} samples; compare the runs: `gan compare " + " ".join(d["run_dir"] for d in data.values())
           + "`", "")
    rep.data(**data)


def main(argv=None) -> int:
    from gan.bench.__main__ import main as bench_main

    return bench_main(["--sections", "quality", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

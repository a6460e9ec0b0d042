"""What metrics cost: seconds per evaluation at several N for each extractor, reference statistics on a fresh and
on a warm cache, what precision/recall + class consistency add, and the share of every shipped experiment's wall
time that goes to metrics at its default cadence.

Measured here: evaluations at N = profile.eval_ns (generate, features, scores), the reference statistics of
profile.ref_n images, the N = profile.prc_n check, generation per sample and one training step of every shipped
experiment. Extrapolated (and said so in the tables): evaluations at a shipped experiment's own N (per-sample cost ×
N + the scores' cost measured at the nearest larger N: FID is constant in N, KID's subsets stop growing at
N = 1,000), reference statistics of all its reference images (per-image cost × count). A step too slow to time
here is replaced by its batch-8 step, a lower bound, which makes that experiment's share an upper bound.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from gan import device as gdevice
from gan.bench.context import Context, cache_at
from gan.data import load_dataset, to_tensor
from gan.engine import total_steps
from gan.metrics import evaluator as gev, extractors, scores
from gan.data import CIFAR10_CLASSES
from gan.models import build

EXP = "dcgan"  # whose G is timed in the evaluations (generation per sample is timed per architecture below)


def evaluator(ctx: Context, images, names, ref_n: int, num_classes: int = 0, **metric_keys):
    cfg = ctx.cfg(EXP)
    m = dataclasses.replace(cfg.metrics, extractors=names, ref_samples=ref_n, **metric_keys)
    return gev.Evaluator(m, images, ctx.device, cfg.model.z_dim, lambda *a, **k: None, num_classes,
                         CIFAR10_CLASSES)  # the bench's images are CIFAR-10's (or stand for them)


def timed(fn, device):
    gdevice.sync(device)
    t = time.perf_counter()
    out = fn()
    gdevice.sync(device)
    return out, time.perf_counter() - t


def time_eval(ev, G, n: int, want: dict | None = None, extra: dict | None = None) -> dict:
    """One evaluation as `Evaluator.__call__` runs it, each part timed: generate, features, scores (of `want`,
    default the evaluator's); with `extra`, also the scoring time of those metrics on the same features."""
    (u8, y), gen = timed(lambda: ev.generate(G, n), ev.device)
    out = {"generate": gen, "features": 0.0, "scores": 0.0, "extra": 0.0}
    for e in ev.extractors:
        feats, t = timed(lambda e=e: e.features(u8, ev.cfg.batch_size), ev.device)
        out["features"] += t
        for key, w in (("scores", want or ev.want), ("extra", extra)):
            if w:
                _, t = timed(lambda e=e, f=feats, w=w: scores.compute(e, f, ev.refs[e.name], w, y), ev.device)
                out[key] += t
    out["total"] = out["generate"] + out["features"] + out["scores"]
    return out


def score_parts(ev, G, n: int) -> dict:
    """Seconds of each metric alone on the same features: which one the scores' time goes to."""
    u8, y = ev.generate(G, n)
    out = {}
    for e in ev.extractors:
        feats = e.features(u8, ev.cfg.batch_size)
        for m in ("fid", "kid", "is", "classes"):
            if ev.want.get(m):
                want = {m: True, "class_acc": m == "classes" and ev.want.get("class_acc")}
                _, t = timed(lambda e=e, f=feats, w=want: scores.compute(e, f, ev.refs[e.name], w, y), ev.device)
                out[m] = out.get(m, 0.0) + t
    return out


def cost_per_n(ctx: Context, images, name: str) -> dict:
    p, rep = ctx.profile, ctx.report
    with cache_at(ctx.tmp / f"cache-{name}"):  # empty: the first build computes the reference statistics
        ev, fresh = timed(lambda: evaluator(ctx, images, [name], p.ref_n), ctx.device)
        ev, cached = timed(lambda: evaluator(ctx, images, [name], p.ref_n), ctx.device)
    G = build(ctx.cfg(EXP).model, 32)[0].to(ctx.device)
    time_eval(ev, G, min(p.eval_ns))  # warm-up
    runs = {n: [] for n in p.eval_ns}
    for _ in range(p.eval_reps):  # N interleaved: load drift hits every N alike
        for n in p.eval_ns:
            with ctx.report.steady.window():
                runs[n].append(time_eval(ev, G, n))
    rows = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    n_ref = len(ev.ref_images)
    top = max(rows)
    parts = score_parts(ev, G, top)
    rep.table(["N", "total s", "generate s", "features s", "scores s (FID/KID/IS/classes)", "s per 1,000"],
              [[f"{n:,}", f"{r['total']:.2f}", f"{r['generate']:.2f}", f"{r['features']:.2f}", f"{r['scores']:.2f}",
                f"{r['total'] / n * 1000:.2f}"] for n, r in rows.items()])
    per_image = max(fresh - cached, 0.0) / n_ref
    rep.md(f"scores at N = {top:,}, each alone: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()), "")
    rep.md(f"{name}: {EXP} G, eval batch {ev.cfg.batch_size}, {n_ref:,} reference images: reference statistics "
           f"{fresh:.2f} s on a fresh cache (extractor load included), {cached:.2f} s from the cache "
           f"(measured; ≈{per_image * 1000:.2f} ms per reference image)", "")
    reps = [{n: rs[i] for n, rs in runs.items()} for i in range(p.eval_reps)]  # one set of rows per round
    return {"rows": rows, "reps": reps, "score_parts": parts, "ref_fresh_s": fresh, "ref_cached_s": cached,
            "ref_images": n_ref,
            "ref_per_image_s": per_image, "features_per_sample_s": rows[top]["features"] / top,
            "generate_per_sample_s": rows[top]["generate"] / top, "largest_n": top}


def scores_at(rows: dict, n: int) -> float:
    """The scores' seconds at N = n: as measured at the nearest N ≥ n, else at the largest (FID is constant in N,
    KID's subsets stop growing at N = 1,000, IS is a few ms)."""
    return rows[min((m for m in rows if m >= n), default=max(rows))]["scores"]


def eval_s(per_ext: dict, gen: float, N: int, rnd: int | None = None) -> float:
    """One evaluation at N samples: generation + features + scores, from the medians or from round `rnd`'s rows."""
    out = gen * N
    for pe in per_ext.values():
        rows = pe["rows"] if rnd is None else pe["reps"][rnd]
        top = max(rows)
        out += rows[top]["features"] / top * N + scores_at(rows, N)
    return out


def prc_check(ctx: Context, images, names) -> tuple[float, list[float]]:
    """What precision/recall and the class metrics add to an evaluation of a conditional G at N = prc_n: their
    scoring time on the evaluation's own features (the extractors compute the layers they use anyway) against
    the time of the evaluation with FID/KID/IS alone, both timed on the same samples; (the mean, each round's)."""
    p, n = ctx.profile, ctx.profile.prc_n
    G = build(ctx.cfg(EXP).model, 32, 10)[0].to(ctx.device)
    with cache_at(ctx.tmp / "cache-prc"):
        ev = evaluator(ctx, images, names, n, 10, prc=True, classes=True)
    base = {**ev.want, "prc": False, "classes": False, "class_acc": False}
    extra = {"prc": True, "classes": True, "class_acc": True}
    runs = []
    for _ in range(max(3, p.eval_reps)):  # rounds: the samples the target is judged on
        with ctx.report.steady.window():
            runs.append(time_eval(ev, G, n, base, extra))
    cost = statistics.fmean(r["extra"] / r["total"] for r in runs)
    t_base, t_extra = statistics.median(r["total"] for r in runs), statistics.median(r["extra"] for r in runs)
    ctx.report.md(f"Precision/recall + class consistency (conditional {EXP} G, N = {n:,} vs {len(ev.ref_images):,} "
                  f"reference images, extractors {', '.join(names)}): an evaluation with FID/KID/IS takes "
                  f"{t_base:.2f} s, scoring precision/recall and the class metrics on its features {t_extra:.2f} s "
                  f"more → {cost * 100:+.1f} % (mean of {len(runs)} rounds, measured)", "")
    ctx.report.data(prc={"n": n, "runs": runs, "added": cost})
    return cost, [r["extra"] / r["total"] for r in runs]


def gen_per_sample(G, z_dim: int, batch: int, device) -> float:
    z = torch.randn(batch, z_dim, device=device)
    G.eval()
    with torch.inference_mode():
        G(z)
        _, t = timed(lambda: G(z), device)
    return t / batch


def step_time(ctx: Context, exp: str, cfg) -> tuple[float, str, bool]:
    """(seconds per G step at the experiment's own settings, how it was had, whether it is a lower bound).

    A step too slow to time here at its own batch is replaced by the same step at batch 8: a lower bound of the
    real step (less work), so the share computed from it is an upper bound."""
    from gan.bench.speed import EngineLoop, time_steps

    known = ctx.left.get("step_s", {}).get(exp)
    if known:
        return known[0], f"measured ({known[1]})", False
    limit = ["data.limit=2048"]  # step time does not depend on the dataset's size
    b = cfg.optim.batch_size
    small = EngineLoop("batch 8", ctx, exp, limit + [f"optim.batch_size={min(8, b)}"])
    time_steps(small, 1)
    t_small = time_steps(small, 1)
    small.close()
    if t_small * b / min(8, b) > ctx.profile.exact_step_s:
        return t_small, f"lower bound: the step at batch {min(8, b)}", True
    e = EngineLoop("own", ctx, exp, limit)
    time_steps(e, 1)
    k = max(1, min(5, round(2.0 / max(t_small * b / min(8, b), 1e-3))))
    st = time_steps(e, k) / k
    e.close()
    return st, f"measured ({k} step{'s' if k > 1 else ''})", False


def share(ctx: Context, per_ext: dict, n_images: int) -> float:
    rep, worst, rows, data = ctx.report, (0.0, "", []), [], {}
    for exp in ctx.profile.share_exps:
        cfg = ctx.cfg(exp)
        m = cfg.metrics
        st, how, lower = step_time(ctx, exp, cfg)
        gen = gen_per_sample(build(cfg.model, cfg.data.image_size)[0].to(ctx.device), cfg.model.z_dim,
                             cfg.metrics.batch_size, ctx.device)
        steps = total_steps(cfg, n_images)
        n_evals = (steps // m.every + (steps % m.every != 0)) if m.every else 1
        N = m.num_samples
        ev_s = eval_s(per_ext, gen, N)
        R = min(m.ref_samples or n_images, n_images)
        ref_s = sum(pe["ref_cached_s"] + pe["ref_per_image_s"] * R for pe in per_ext.values())
        train_s, metr = steps * st, n_evals * ev_s
        cached, fresh = metr / (train_s + metr), (metr + ref_s) / (train_s + metr + ref_s)
        # per round: the evaluation's rows of that round (the step time is one measurement, the same in all)
        rounds = [(n_evals * (m2 := eval_s(per_ext, gen, N, i)) + ref_s) / (train_s + n_evals * m2 + ref_s)
                  for i in range(ctx.profile.eval_reps)]
        worst = max(worst, (fresh, exp, rounds))
        extrap = N > max(ctx.profile.eval_ns) or R > max(pe["ref_images"] for pe in per_ext.values())
        rows.append([exp, cfg.model.arch, f"{st:.3f} s", how, f"{steps:,}", f"{m.every or 'end'}", f"{N:,}",
                     f"{ev_s:.1f} s" + (" (extrap.)" if extrap else ""), f"{R:,}: {ref_s:.1f} s",
                     f"{'≤ ' if lower else ''}{cached * 100:.2f} %", f"**{'≤ ' if lower else ''}{fresh * 100:.2f} %**"])
        data[exp] = {"step_s": st, "step_how": how, "steps": steps, "evaluations": n_evals, "eval_s": ev_s,
                     "ref_s": ref_s, "share_cached": cached, "share_fresh": fresh, "upper_bound": lower,
                     "generate_per_sample_s": gen, "share_fresh_per_round": rounds}
    rep.md(f"Metrics' share of each shipped experiment's wall time at its default cadence on {ctx.device.type} "
           f"(extractors {', '.join(per_ext)}; {n_images:,} training images):", "")
    rep.table(["experiment", "arch", "step", "step measured as", "steps", "every", "N", "one evaluation",
               "reference: images, s", "share (cached ref.)", "share (first run)"], rows)
    rep.md("one evaluation = N × (generation s/sample of this G, measured at its eval batch + features s/sample) "
           "+ the scores' cost measured at the nearest N ≥ its N (else the largest); reference = statistics of the run's reference images, "
           "paid once (first run on a machine; later runs read the cache); share = metrics ÷ (steps × step + "
           "metrics). Grids and checkpoints are not metrics and not counted.", "")
    rep.data(share=data)
    return worst


def run(ctx: Context) -> None:
    rep = ctx.report
    chosen, notes = extractors.choose(["auto"])
    rep.md(*[f"- extractor {n}" for n in notes], "")
    names = [n for n, _ in chosen]
    if not names:
        rep.measure("metrics_share", None, "no feature extractor available")
        rep.measure("prc_cost", None, "no feature extractor available")
        return
    data = load_dataset(ctx.cfg(EXP).data)
    n_images = len(data.images)
    images = to_tensor(data.images, 32, ctx.device)
    del data
    per_ext = {}
    for name in names:
        rep.md(f"### {name}", "")
        per_ext[name] = cost_per_n(ctx, images, name)
        r = per_ext[name]["rows"]
        rep.headline(f"evaluation ({name}, {ctx.device.type}): " + ", ".join(
            f"N = {n:,} {v['total']:.2f} s" for n, v in r.items()) + f"; reference statistics of "
            f"{per_ext[name]['ref_images']:,} images {per_ext[name]['ref_fresh_s']:.2f} s fresh, "
            f"{per_ext[name]['ref_cached_s']:.2f} s cached")
    rep.data(cost={k: {kk: vv for kk, vv in v.items()} for k, v in per_ext.items()})
    rep.md("### precision/recall and class consistency", "")
    cost, rounds = prc_check(ctx, images, names)
    rep.measure("prc_cost", cost, f"N = {ctx.profile.prc_n:,}, extractors {', '.join(names)}", samples=rounds)
    rep.headline(f"precision/recall + class consistency at N = {ctx.profile.prc_n:,}: {cost * 100:+.1f} % on an "
                 "evaluation's time")
    del images
    rep.md("### share of wall time", "")
    worst, exp, rounds = share(ctx, per_ext, n_images)
    rep.measure("metrics_share", worst, f"worst: {exp} (first run; estimated, see the table; rounds: its evaluation "
                "timed in each round, its step time measured once)", samples=rounds)
    rep.headline(f"metrics' share of wall time at the default cadence: at most {worst * 100:.1f} % ({exp}, first "
                 "run with reference statistics; estimated from measured per-sample and per-step costs)")

"""Each of the engine's levers on and off, one config switch at a time, against the DCGAN defaults in one race:
channels_last, reuse_fake, dense_gemm, wgrad_gemm, compile, precision fp32/bf16, TF32 (CUDA), DiffAugment,
conditional."""
from __future__ import annotations

import gc
import statistics

from gan import device as gdevice
from gan.bench.context import Context
from gan.bench.speed import RACE_HEADER, EngineLoop, race, race_rows
from gan.errors import GanError

EXP = "dcgan"
DIFFAUG = "color,translation,cutout"


def plan(ctx: Context) -> tuple[list[tuple[str, list[str], str]], list[list]]:
    """[(label, overrides, note)] to race, and rows for the levers that cannot run here."""
    c = ctx.cfg(EXP).train
    flip = lambda k, v: f"train.{k}={str(not v).lower()}"  # noqa: E731
    todo = [(f"channels_last {'off' if c.channels_last else 'on'}", [flip("channels_last", c.channels_last)],
             "memory format of G, D and the real batch"),
            (f"reuse_fake {'off' if c.reuse_fake else 'on'}", [flip("reuse_fake", c.reuse_fake)],
             "off: a second G forward (fresh latents) for the G step"),
            (f"dense_gemm {'off' if c.dense_gemm else 'on'}", [flip("dense_gemm", c.dense_gemm)],
             "off: G's first and D's last layer as convolutions, not one GEMM each"),
            (f"wgrad_gemm {'off' if c.wgrad_gemm else 'on'}", [flip("wgrad_gemm", c.wgrad_gemm)],
             "off: oneDNN's weight gradients at the 4×4 maps (the lever acts on a CPU in bf16 only)"),
            ("DiffAugment on", [f'train.diffaug="{DIFFAUG}"'], "every image D sees, real and fake, augmented"),
            ("conditional on", ["model.conditional=true"], "conditional BatchNorm in G, projection D")]
    skipped = []
    ok, why = gdevice.bf16_supported(ctx.device)
    if ok:
        todo.append(("bf16 autocast", ['train.precision="bf16"'], why))
    else:
        skipped.append(["bf16 autocast", "—", "—", "—", f"not run: {why}"])
    if ctx.cuda:
        todo.append((f"TF32 {'off' if c.tf32 else 'on'}", [flip("tf32", c.tf32)], "matmuls and convolutions"))
    if ctx.profile.compile:
        todo.append(("torch.compile", ["train.compile=true"], "G and D compiled"))
    else:
        skipped.append(["torch.compile", "—", "—", "—", f"not run in --{ctx.profile.name} (its warm-up takes "
                                                        "minutes on a CPU); the full run times it"])
    return todo, skipped


def run(ctx: Context) -> None:
    rep = ctx.report
    base = "defaults"
    contenders, notes = [EngineLoop(base, ctx, EXP)], {}
    todo, skipped = plan(ctx)
    for label, ov, note in todo:
        try:
            contenders.append(EngineLoop(label, ctx, EXP, ov))
            notes[label] = note
        except GanError as e:  # e.g. conditional on data without labels
            skipped.append([label, "—", "—", "—", f"not run: {e}"])
    cfg = contenders[0].cfg
    ctx.say(f"### {EXP}: {cfg.model.arch}, batch {cfg.optim.batch_size}, {cfg.loss.name} loss; each lever flips one "
            "switch of the defaults")
    res = race(ctx, contenders, base, "defaults, levers")
    rows = race_rows(res, base, notes) + skipped
    rep.table([h.format(base="defaults") for h in RACE_HEADER], rows)
    rep.md("Cost of a lever = mean over rounds of (defaults' img/s ÷ the lever's img/s in the same round) − 1: "
           "the time it adds to a training step; a target is judged on its 95 % interval over the rounds.")
    costs = {k: [1 / p - 1 for p in r["paired"]] for k, r in res.items() if k != base}
    cost = {k: statistics.fmean(v) for k, v in costs.items()}
    data = {"img_s": {k: r["median"] for k, r in res.items()}, "paired": {k: r["paired"] for k, r in res.items()},
            "added_step_time": cost, "added_per_round": costs, "not_run": [r[0] + ": " + r[-1] for r in skipped]}
    for key, label in (("diffaug_cost", "DiffAugment on"), ("conditional_cost", "conditional on")):
        if label in cost:
            rep.measure(key, cost[label], f"{res[label]['median']:,.1f} vs defaults {res[base]['median']:,.1f} img/s",
                        samples=costs[label])
            rep.headline(f"{label} ({EXP}): adds {cost[label] * 100:+.1f} % to a training step")
        else:
            rep.measure(key, None, next((r[-1] for r in skipped if r[0] == label), "not run"))
    if "bf16 autocast" in res:
        r32, r16 = res[base]["median"], res["bf16 autocast"]["median"]
        data["bf16_vs_fp32"] = r16 / r32
        rep.headline(f"bf16 autocast on {ctx.device.type}: {r16:,.1f} img/s vs fp32 {r32:,.1f} img/s "
                     f"({statistics.median(res['bf16 autocast']['paired']):.2f}× paired); its FID change: see the "
                     "FID check")
    if "torch.compile" in res:
        r = res["torch.compile"]
        extra = max(0.0, r["warm_s"] - (10 if ctx.cuda else ctx.profile.warm) * r["step_s"])
        gain = res[base]["step_s"] - r["step_s"]
        pays = f"pays back after ≈{extra / gain:,.0f} steps" if gain > 0 else "never pays back (not faster here)"
        data["compile"] = {"warmup_extra_s": extra, "gain_s_per_step": gain}
        rep.md(f"torch.compile: warm-up {r['warm_s']:.1f} s (+{extra:.1f} s over eager steps), {pays}.")
        rep.headline(f"torch.compile ({EXP}, {ctx.device.type}): {statistics.median(r['paired']):.2f}× of defaults, "
                     f"warm-up +{extra:.0f} s, {pays}")
    for k, v in cost.items():
        if k not in ("DiffAugment on", "conditional on", "bf16 autocast", "torch.compile"):
            rep.headline(f"{k} ({EXP}): {1 / (1 + v):.2f}× of the defaults' img/s")
    rep.data(**data)
    for c in contenders:
        c.close()
    gc.collect()

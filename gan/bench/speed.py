"""Training speed: the engine (`Trainer.train_step`) against the loop the reference projects write, side by side.

The seed-style loop is PyTorch's DCGAN example as the reference projects copy it: PIL images through
ToTensor + Normalize in a 2-worker DataLoader, BCE with logits, plain Adam, one D step (real then fake, two
backward calls) and one G step on the same fake batch, `.item()` on the losses every step.

`race` times contenders in interleaved windows (ABC.., ..CBA), all windows of one race with the same step
count, so background load hits every contender alike; it reports medians and the per-round (paired) ratios, the
samples a target is judged on (gan/bench/verdict.py). Every window is watched for other processes' CPU
(machine.Steadiness).
"""
from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import time

import numpy as np
import torch

from gan import device as gdevice
from gan.bench.context import Context


class PILImages(torch.utils.data.Dataset):
    """What the reference projects hand their DataLoader: PIL images, torchvision transforms per item."""

    def __init__(self, images_nhwc: np.ndarray, transform):
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images_nhwc]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), 0


class SeedLoop:
    def __init__(self, label: str, cfg, images_nhwc: np.ndarray, device: torch.device):
        from torchvision import transforms

        from gan.models import build, gemm

        self.label, self.device, self.batch = label, device, cfg.optim.batch_size
        self.imgs_per_step, self.z_dim = self.batch, cfg.model.z_dim
        torch.manual_seed(0)
        # plain convolutions, as the reference projects have them: the GEMM levers are the engine's
        self.G, self.D = (gemm.configure(m, dense=False, wgrad=False).to(device)
                          for m in build(cfg.model, cfg.data.image_size))
        o = cfg.optim
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.g_lr, betas=(o.beta1, o.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.d_lr, betas=(o.beta1, o.beta2))
        self.crit = torch.nn.BCEWithLogitsLoss()
        tf = [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
        if images_nhwc.shape[1] != cfg.data.image_size:
            tf.insert(0, transforms.Resize(cfg.data.image_size))
        ds = PILImages(images_nhwc, transforms.Compose(tf))
        self.loader = torch.utils.data.DataLoader(ds, batch_size=self.batch, shuffle=True, num_workers=2,
                                                  drop_last=True, persistent_workers=True)
        self.it = iter(self.loader)

    def step(self):
        try:
            real, _ = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            real, _ = next(self.it)
        real = real.to(self.device)
        b = real.size(0)
        self.D.zero_grad()
        label = torch.full((b,), 1.0, device=self.device)
        out = self.D(real)
        err_real = self.crit(out, label)
        err_real.backward()
        d_x = out.mean().item()
        fake = self.G(torch.randn(b, self.z_dim, device=self.device))
        label.fill_(0.0)
        out = self.D(fake.detach())
        err_fake = self.crit(out, label)
        err_fake.backward()
        d_g_z1 = out.mean().item()
        self.opt_D.step()
        self.G.zero_grad()
        label.fill_(1.0)
        out = self.D(fake)
        err_g = self.crit(out, label)
        err_g.backward()
        d_g_z2 = out.mean().item()
        self.opt_G.step()
        self.last = ((err_real + err_fake).item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # what they print each step

    def finish(self, out) -> None:
        gdevice.sync(self.device)

    def close(self) -> None:
        self.it = self.loader = None


class EngineLoop:
    """`Trainer.train_step()` as `gan train` calls it; the host waits only at the end of a window."""

    def __init__(self, label: str, ctx: Context, exp: str, overrides=()):
        self.label = label
        self.tr = ctx.trainer(exp, overrides)
        self.cfg, self.device = self.tr.cfg, self.tr.device
        self.imgs_per_step = self.cfg.optim.batch_size * self.cfg.optim.n_dis  # real images through D

    def step(self):
        return self.tr.train_step()

    def finish(self, out) -> None:
        if out is not None:
            out.sum().item()
        gdevice.sync(self.device)

    def close(self) -> None:
        self.tr = None


def time_steps(c, n: int, steady=None) -> float:
    with steady.window() if steady else contextlib.nullcontext():
        t = time.perf_counter()
        out = None
        for _ in range(n):
            out = c.step()
        c.finish(out)
        return time.perf_counter() - t


def spread(rates: list[float]) -> float:
    """How much the same window repeated varies: the coefficient of variation of its rates."""
    return statistics.stdev(rates) / statistics.fmean(rates) if len(rates) > 1 else 0.0


def race(ctx: Context, contenders: list, base: str, name: str = "") -> dict:
    """{label: {rates, median, step_s, warm_s, paired}}: img/s per window; paired = rate / base's rate in the
    same round. The base's window spread is recorded in the report under `name`."""
    p = ctx.profile
    warm = 10 if ctx.cuda else p.warm
    res = {}
    for c in contenders:  # kernel choice, DataLoader workers, compile
        t = time.perf_counter()
        time_steps(c, warm)
        res[c.label] = {"warm_s": time.perf_counter() - t, "rates": []}
    step_s = {c.label: time_steps(c, 1) for c in contenders}  # sizes the windows
    steps = max(1, round(p.window_s / statistics.median(step_s.values())))
    ctx.say(f"_{len(contenders)} contenders, {p.windows} rounds of windows of {steps} step(s) "
            f"(≈{steps * statistics.median(step_s.values()):.1f} s each)_")
    for r in range(p.windows):
        for c in (contenders if r % 2 == 0 else contenders[::-1]):
            res[c.label]["rates"].append(steps * c.imgs_per_step / time_steps(c, steps, ctx.report.steady))
    for c in contenders:
        r = res[c.label]
        r["median"] = statistics.median(r["rates"])
        r["step_s"] = c.imgs_per_step / r["median"]
        r["paired"] = [a / b for a, b in zip(r["rates"], res[base]["rates"])]
        r["steps_per_window"] = steps
        r["spread"] = spread(r["rates"])
    ctx.report.spread[name or base] = res[base]["spread"]
    return res


def race_rows(res: dict, base: str, notes: dict) -> list[list]:
    rows = []
    for label, r in res.items():
        rates, pr = r["rates"], r["paired"]
        ratio = "—" if label == base else f"{statistics.fmean(pr):.2f}× ({min(pr):.2f}–{max(pr):.2f})"
        rows.append([label, f"{r['median']:,.1f}", f"{min(rates):,.0f}–{max(rates):,.0f}", ratio,
                     notes.get(label, "")])
    return rows


RACE_HEADER = ["loop", "img/s (median)", "min–max", "÷ {base}: mean of paired (range)", "note"]


def engine_vs_seed(ctx: Context, exp: str) -> dict:
    cfg0 = ctx.cfg(exp)
    n_dis = cfg0.optim.n_dis
    common = ["optim.n_dis=1"] if n_dis > 1 else []  # one D step per G step, as the seed loop does
    from gan.data import load_dataset

    images = load_dataset(cfg0.data).images
    # the seed loop first: its DataLoader workers fork before the engine holds its copy of the data
    seed = SeedLoop("seed-style loop", ctx.cfg(exp, common), images, ctx.device)
    del images
    eng = EngineLoop("engine (defaults)", ctx, exp, common)
    ctx.say(f"### {exp}: {cfg0.model.arch}, batch {cfg0.optim.batch_size}, {cfg0.loss.name} loss"
            + (f", n_dis {n_dis} → 1 for the race" if n_dis > 1 else "")
            + (", EMA" if cfg0.optim.ema_decay else "") + (", spectral norm" if cfg0.model.spectral_norm else ""))
    res = race(ctx, [seed, eng], seed.label, f"seed loop, {exp}")
    t = eng.tr.cfg.train
    notes = {seed.label: "PIL + ToTensor/Normalize, DataLoader(2 workers), BCE, Adam, .item() each step",
             eng.label: f"uint8 data on {ctx.device.type}, channels_last={str(t.channels_last).lower()}, "
                        f"{'fused' if ctx.cuda else 'foreach'} Adam, {cfg0.loss.name} loss, no sync per step"}
    ctx.report.table([h.format(base="seed") for h in RACE_HEADER], race_rows(res, seed.label, notes))
    ratio = statistics.fmean(res[eng.label]["paired"])
    if exp == "dcgan":
        ctx.left["G:dcgan"] = copy.deepcopy(eng.tr.nets.G_sample).cpu()
    if n_dis == 1:
        ctx.left.setdefault("step_s", {})[exp] = (res[eng.label]["step_s"], "speed race median", eng.tr.precision)
    seed.close()
    eng.close()
    gc.collect()
    return {"engine_img_s": res[eng.label]["median"], "seed_img_s": res[seed.label]["median"], "ratio": ratio,
            "paired": res[eng.label]["paired"], "rates": {k: v["rates"] for k, v in res.items()},
            "steps_per_window": res[eng.label]["steps_per_window"], "n_dis_raced": 1}


def cuda_peak(ctx: Context, batches: tuple = (128, 512, 2048)) -> dict:
    """The engine's DCGAN img/s on CUDA at larger batches, fp32 (TF32) and bf16: the best is the target's value
    (gan/bench/gpu_check.py runs it on the CPU too, at small batches: its first GPU run is not its first run)."""
    rows, best = [], (0.0, "", 0, "", 0)
    precs = ("fp32", "bf16") if gdevice.bf16_supported(ctx.device)[0] else ("fp32",)  # else bf16 would be fp32
    for batch in batches:
        for prec in precs:
            e = EngineLoop(f"batch {batch} {prec}", ctx, "dcgan", [f"optim.batch_size={batch}",
                                                                   f'train.precision="{prec}"'])
            time_steps(e, 20)
            n = max(10, round(1.0 / (time_steps(e, 10) / 10)))
            rate = n * e.imgs_per_step / time_steps(e, n)
            rows.append([e.label, f"{rate:,.0f}", n])
            best = max(best, (rate, e.label, batch, prec, n))
            e.close()
    ctx.report.table(["engine setting", "img/s", "steps timed"], rows)
    _, label, batch, prec, n = best  # the best setting again, in rounds: the samples the target is judged on
    e = EngineLoop(label, ctx, "dcgan", [f"optim.batch_size={batch}", f'train.precision="{prec}"'])
    time_steps(e, 20)
    rates = [n * e.imgs_per_step / time_steps(e, n, ctx.report.steady) for _ in range(ctx.profile.windows)]
    e.close()
    ctx.report.spread[f"CUDA {label}"] = spread(rates)
    return {"best_img_s": statistics.fmean(rates), "best": label, "rates": rates}


def run(ctx: Context) -> None:
    rep = ctx.report
    out = {}
    for exp in ("dcgan", "baseline"):
        out[exp] = engine_vs_seed(ctx, exp)
    rep.data(**out)
    d = out["dcgan"]
    rep.measure("engine_vs_seed", d["ratio"], f"engine {d['engine_img_s']:,.1f} vs seed {d['seed_img_s']:,.1f} img/s",
                samples=d["paired"])
    for exp, d in out.items():
        rep.headline(f"{exp}: engine {d['engine_img_s']:,.1f} img/s, seed-style loop {d['seed_img_s']:,.1f} img/s, "
                     f"engine ÷ seed {d['ratio']:.2f}× (mean of {len(d['paired'])} paired windows, range "
                     f"{min(d['paired']):.2f}–{max(d['paired']):.2f})")
    rep.md("img/s = real images through D per second: window steps × images per step ÷ window wall time. "
           "The ratio is the mean over rounds of engine ÷ seed in windows run back to back; the target is judged on "
           "its 95 % interval over the rounds. On a busy machine the "
           "seed loop's two DataLoader worker processes win extra CPU share from the scheduler, which the engine's "
           "one process does not: there the ratio understates the engine.")
    if ctx.cuda:
        peak = cuda_peak(ctx)
        rep.data(cuda=peak)
        name = torch.cuda.get_device_name(ctx.device)
        rep.measure("cuda_img_s", peak["best_img_s"], f"{peak['best']} on {name}", samples=peak["rates"])
        rep.headline(f"CUDA ({name}): DCGAN engine {peak['best_img_s']:,.0f} img/s ({peak['best']})")

"""Speed benchmark (a script, not a test): `make bench` / `python -m gan.bench [--quick] [--device auto|cpu|cuda]
[--batch 128 ...]`.

In one run, on one machine, it prints:
  1./2. training images/s of the engine (`Trainer.train_step`) against a seed-style plain loop (PIL dataset +
        torchvision transforms + DataLoader(num_workers=2), BCE, plain Adam, `.item()` every step) for the
        `dcgan` and the `baseline` experiments' architectures, windows interleaved so background load hits
        both alike, plus the engine's levers side by side (channels_last, Adam flavour, host sync, compile);
  3.    the cost of metrics: seconds per evaluation at N = 500/1000/2000 samples per feature extractor
        (reference statistics timed separately), and the share of metrics in each shipped experiment's
        wall time at its default cadence, with the FID check of every numerics-changing lever;
  4.    peak memory of training and of evaluation, each in its own spawned process.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import glob
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10"
SHIPPED = ("smoke", "basic", "dcgan", "dcgan_fc", "dcgan_upsample", "dcgan64", "baseline", "sngan", "wgan_gp",
           "sngan_resnet")
T0 = time.perf_counter()

console = Console(highlight=False)
if not console.is_terminal:  # piped to a file: wide enough for the tables
    console = Console(highlight=False, width=int(os.environ.get("COLUMNS", 118)))


def say(msg: str = "") -> None:
    console.print(msg)


def note(msg: str) -> None:
    console.print(f"[dim]  note: {msg}[/]")


def elapsed() -> float:
    return time.perf_counter() - T0


def fmt_s(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


# ------------------------------------------------------------------------------------------------ setup

@dataclasses.dataclass
class Setup:
    device: torch.device
    quick: bool
    data_ov: list  # config overrides that point every run at the same data
    data_note: str
    logs: Path  # throw-away run folders
    windows: int
    window_s: float
    batches: list  # [] = the experiment's own batch size
    c10_weights: Path
    smoke_run: bool = False


def find_data(tmp: Path) -> tuple[list[str], str]:
    root = Path(os.environ.get("GAN_DATA_ROOT") or DEFAULT_DATA)
    if glob.glob(str(root / "train-*.npz")) or (root / "cifar-10-batches-py").is_dir():
        return [f'data.root="{root}"'], f"CIFAR-10 from {root}"
    x = np.random.default_rng(0).integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8)
    p = tmp / "random-uint8.npz"
    np.savez(p, images=x)
    return (['data.dataset="npz"', f'data.path="{p}"'],
            f"RANDOM uint8 data (10,000 images; no CIFAR-10 at {root}, set GAN_DATA_ROOT): timings are valid, "
            "FIDs are not")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        txt = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("model name")), "?")
        flags = next((ln.split(":", 1)[1].split() for ln in txt.splitlines() if ln.startswith("flags")), [])
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        return f"{model} ({', '.join(isa) or 'no AVX2'})"
    except OSError:
        return platform.processor() or "?"


def loadavg() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average ?"


# ------------------------------------------------------------------------------------------------ contenders

class PILImages(torch.utils.data.Dataset):
    """What the reference projects hand their DataLoader: PIL images, torchvision transforms per item."""

    def __init__(self, images_nhwc: np.ndarray, transform):
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images_nhwc]  # built once, as the brief of the seed asks
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), 0


class SeedLoop:
    """The plain loop the reference projects write (PyTorch's DCGAN example): DataLoader of PIL images,
    ToTensor + Normalize, BCE with logits, plain Adam, one D step (real then fake, separate backward calls)
    and one G step reusing the same fake batch, `.item()` on the losses every step as they print them."""

    def __init__(self, label: str, cfg, images_nhwc: np.ndarray, device: torch.device, batch: int):
        from torchvision import transforms

        from gan.models import build

        self.label, self.device, self.batch = label, device, batch
        self.imgs_per_step = batch
        self.z_dim = cfg.model.z_dim
        torch.manual_seed(0)
        self.G, self.D = build(cfg.model, cfg.data.image_size)
        self.G.to(device)
        self.D.to(device)
        o = cfg.optim
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.g_lr, betas=(o.beta1, o.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.d_lr, betas=(o.beta1, o.beta2))
        self.crit = torch.nn.BCEWithLogitsLoss()
        tf = [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
        if images_nhwc.shape[1] != cfg.data.image_size:
            tf.insert(0, transforms.Resize(cfg.data.image_size))
        self.ds = PILImages(images_nhwc, transforms.Compose(tf))
        self.loader = torch.utils.data.DataLoader(self.ds, batch_size=batch, shuffle=True, num_workers=2,
                                                  drop_last=True, persistent_workers=True)
        self.it = iter(self.loader)
        self.last = None

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
        noise = torch.randn(b, self.z_dim, device=self.device)
        fake = self.G(noise)
        label.fill_(0.0)
        out = self.D(fake.detach())
        err_fake = self.crit(out, label)
        err_fake.backward()
        d_g_z1 = out.mean().item()
        err_d = err_real + err_fake
        self.opt_D.step()
        self.G.zero_grad()
        label.fill_(1.0)
        out = self.D(fake)
        err_g = self.crit(out, label)
        err_g.backward()
        d_g_z2 = out.mean().item()
        self.opt_G.step()
        self.last = (err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # what they print every step
        return None

    def finish(self, out) -> None:
        sync(self.device)

    def close(self) -> None:
        self.it = None
        self.loader = None
        gc.collect()


class EngineLoop:
    """`Trainer.train_step()` as `gan train` calls it; the host waits only at the end of a window."""

    def __init__(self, label: str, s: Setup, exp: str, overrides: list[str], sync_every_step: bool = False,
                 adam_foreach: bool | None = None):
        from gan import config
        from gan.engine import Trainer

        self.label = label
        self.cfg = config.load(exp, s.data_ov + overrides)
        self.tr = Trainer(self.cfg, str(s.device), logs=s.logs, quiet=True)
        self.device = self.tr.device
        self.imgs_per_step = self.cfg.optim.batch_size * self.cfg.optim.n_dis  # real images D consumes
        self.sync_every_step = sync_every_step
        if adam_foreach is not None:  # replace the engine's optimisers by another Adam flavour (bench only)
            o = self.cfg.optim
            self.tr.opt_G = torch.optim.Adam(self.tr.G.parameters(), o.g_lr, (o.beta1, o.beta2), foreach=adam_foreach)
            self.tr.opt_D = torch.optim.Adam(self.tr.D.parameters(), o.d_lr, (o.beta1, o.beta2), foreach=adam_foreach)

    def step(self):
        out = self.tr.train_step()
        if self.sync_every_step:
            out.tolist()  # what a loop that logs every step pays
        return out

    def finish(self, out) -> None:
        if out is not None:
            out.sum().item()
        sync(self.device)

    def close(self) -> None:
        self.tr = None
        gc.collect()


def time_steps(c, n: int) -> float:
    t = time.perf_counter()
    out = None
    for _ in range(n):
        out = c.step()
    c.finish(out)
    return time.perf_counter() - t


def race(contenders: list, s: Setup, warm: int, title: str, seed_label: str) -> dict:
    """Warm-up, then `s.windows` rounds of one timed window per contender (order alternating ABC.., ..CBA),
    all windows with the same number of steps. Returns {label: {"rates": [...], "step_s": ..., "warm_s": ...}}."""
    res = {}
    for c in contenders:  # warm-up: oneDNN kernel choice, DataLoader workers, compile
        t = time.perf_counter()
        firsts = []
        for _ in range(warm):
            firsts.append(time_steps(c, 1))
        res[c.label] = {"warm_s": time.perf_counter() - t, "firsts": firsts, "rates": []}
    # calibrate: one more step each, to size the windows
    step_s = {c.label: time_steps(c, 1) for c in contenders}
    per = statistics.median(step_s.values())
    steps = max(1, round(s.window_s / per))
    say(f"[dim]  {title}: warm-up done ({', '.join(f'{k} {fmt_s(v)}/step' for k, v in step_s.items())}); "
        f"{s.windows} rounds × {len(contenders)} windows of {steps} step(s) (≈{steps * per:.1f} s each)[/]")
    for r in range(s.windows):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for c in order:
            dt = time_steps(c, steps)
            res[c.label]["rates"].append(steps * c.imgs_per_step / dt)
    for c in contenders:
        res[c.label]["median"] = statistics.median(res[c.label]["rates"])
        res[c.label]["step_s"] = c.imgs_per_step / res[c.label]["median"]
    seed = res[seed_label]["rates"]
    for c in contenders:
        res[c.label]["paired"] = [a / b for a, b in zip(res[c.label]["rates"], seed)]
    return res


def race_table(title: str, res: dict, seed_label: str, notes: dict) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    t.add_column("loop")
    t.add_column("img/s (median)", justify="right")
    t.add_column("min–max", justify="right")
    t.add_column("spread", justify="right")
    t.add_column("vs seed", justify="right")
    t.add_column("paired ratios", justify="right")
    t.add_column("note")
    base = res[seed_label]["median"]
    for label, r in res.items():
        rates = r["rates"]
        spread = (max(rates) - min(rates)) / r["median"] * 100
        ratio = "—" if label == seed_label else f"{r['median'] / base:.2f}×"
        paired = "—" if label == seed_label else f"{min(r['paired']):.2f}–{max(r['paired']):.2f}×"
        t.add_row(label, f"{r['median']:.1f}", f"{min(rates):.0f}–{max(rates):.0f}", f"±{spread / 2:.0f}%", ratio,
                  paired, notes.get(label, ""))
    return t


# ------------------------------------------------------------------------------------------------ sections 1-2

def train_section(s: Setup, exp: str, images_nhwc: np.ndarray, summary: list) -> dict:
    from gan import config

    cfg0 = config.load(exp, s.data_ov)
    batches = s.batches or [cfg0.optim.batch_size]
    cuda = s.device.type == "cuda"
    out = {}
    for batch in batches:
        n_dis = cfg0.optim.n_dis
        common = [f"optim.batch_size={batch}"] + (["optim.n_dis=1"] if n_dis > 1 else [])
        seed_label = "seed-style loop"
        contenders, notes = [], {}
        # DataLoader first: its workers are forked before the engines hold their data copies
        contenders.append(SeedLoop(seed_label, config.load(exp, s.data_ov + [f"optim.batch_size={batch}"]),
                                   images_nhwc, s.device, batch))
        notes[seed_label] = "DataLoader(PIL)+BCE+Adam, .item()/step"
        eng = EngineLoop("engine (defaults)", s, exp, common)
        contenders.append(eng)
        dflt = eng.cfg.train
        notes[eng.label] = (f"channels_last={str(dflt.channels_last).lower()}, "
                            f"{'fused' if cuda else 'foreach'} Adam, no sync/step"
                            + (f", {dflt.precision}, tf32={str(dflt.tf32).lower()}" if cuda else ""))
        if not (s.quick and n_dis > 1):  # --quick: the slow baseline races only seed vs engine defaults
            contenders.append(EngineLoop("engine channels_last off", s, exp, common + ["train.channels_last=false"]))
        if cuda:
            contenders.append(EngineLoop("engine tf32 off", s, exp, common + ["train.tf32=false"]))
            contenders.append(EngineLoop("engine bf16 autocast", s, exp, common + ['train.precision="bf16"']))
        if not s.quick or n_dis == 1:
            lbl = "engine reuse_fake off"
            contenders.append(EngineLoop(lbl, s, exp, common + ["train.reuse_fake=false"]))
            notes[lbl] = "a second G forward for the G step (fresh latents)"
        if not s.quick:
            contenders.append(EngineLoop("engine + sync every step", s, exp, common, sync_every_step=True))
            notes["engine + sync every step"] = ".tolist() on the losses each step"
            contenders.append(EngineLoop("engine, for-loop Adam", s, exp, common, adam_foreach=False))
            notes["engine, for-loop Adam"] = "Adam(foreach=False), as plain Adam on CPU"
            if exp == "dcgan" or cuda:
                contenders.append(EngineLoop("engine + torch.compile", s, exp, common + ["train.compile=true"]))
        warm = 10 if cuda else (1 if s.quick else 2)  # + one calibration step, also untimed
        say(f"\n[bold]{exp}[/] ({cfg0.model.arch}, batch {batch}, {cfg0.loss.name} loss, n_dis {n_dis}"
            f"{', EMA' if cfg0.optim.ema_decay else ''}{', spectral norm' if cfg0.model.spectral_norm else ''})")
        res = race(contenders, s, warm, exp, seed_label)
        comp = res.get("engine + torch.compile")
        if comp:
            extra = max(0.0, comp["warm_s"] - warm * comp["step_s"])
            summary.append(f"  torch.compile warm-up {comp['warm_s']:.1f} s for {warm} steps")
            gain = res["engine (defaults)"]["step_s"] - comp["step_s"]
            payback = f"pays back after ≈{extra / gain:.0f} steps" if gain > 0 else "never pays back (not faster)"
            notes["engine + torch.compile"] = f"warm-up {comp['warm_s']:.1f} s (+{extra:.1f} s), {payback}"
        seed_note = ("seed loop: n_dis 1 with BCE as the reference projects do; engine: the experiment's own "
                     f"{cfg0.loss.name} loss" + (", EMA" if cfg0.optim.ema_decay else ""))
        if n_dis > 1:
            seed_note += (f", n_dis overridden from {n_dis} to 1 for the comparison, so both do one D step and one "
                          "G step per batch (img/s = real images through D per second)")
        console.print(race_table(f"{exp}: training images/s on {s.device.type}, batch {batch}", res, seed_label,
                                 notes))
        note(seed_note)
        note("img/s per window = window steps × images per step / window wall time; spread = ±half the min–max "
             "range; paired ratios = engine/seed of windows run back to back")
        ratio = res["engine (defaults)"]["median"] / res[seed_label]["median"]
        target = "" if cuda else f" (CPU target ≥ 1.15×: {'PASS' if ratio >= 1.15 else 'FAIL'})"
        summary.append(f"{exp} batch {batch}: engine {res['engine (defaults)']['median']:.1f} img/s, seed "
                       f"{res[seed_label]['median']:.1f} img/s, engine/seed = {ratio:.2f}×{target}")
        dm = res["engine (defaults)"]["median"]
        levers = [f"{k} {v['median'] / dm:.2f}× of defaults" for k, v in res.items()
                  if k not in (seed_label, "engine (defaults)")]
        if levers:
            summary.append("  " + "; ".join(levers))
        # the engine with the experiment's own n_dis: its real step time (for the metrics share)
        own = None
        if n_dis > 1 and not s.quick:
            e5 = EngineLoop(f"engine, own n_dis {n_dis}", s, exp, [f"optim.batch_size={batch}"])
            time_steps(e5, 1)
            dt = time_steps(e5, 2)
            own = dt / 2
            say(f"  engine with its own n_dis {n_dis}: {fmt_s(own)}/step = {2 * e5.imgs_per_step / dt:.1f} real img/s "
                f"through D (each G step amortised over {n_dis} D steps)")
            e5.close()
        out[batch] = {"res": res, "own_step_s": own,
                      "G": copy.deepcopy(contenders[1].tr.G).cpu() if batch == batches[0] else None,
                      "cfg": contenders[1].cfg, "compile_ran": comp is not None}
        for c in contenders:
            c.close()
        del contenders
        gc.collect()
    return out


# ------------------------------------------------------------------------------------------------ section 3

def extractor_plan(s: Setup) -> tuple[list[str], list[str]]:
    from gan.metrics import inception_weights_path

    names, why = [], []
    if s.c10_weights.is_file():
        names.append("c10")
    else:
        why.append(f"c10: skipped — weights {s.c10_weights} not found (train them with `gan features train`)")
    p, reason = inception_weights_path()
    if p:
        names.append("inception")
    else:
        why.append(f"inception: skipped — {reason}")
    return names, why


def time_eval(ev, G, n: int, want: dict) -> dict:
    """One evaluation as Evaluator.__call__ does it, with each part timed: generate, features, fid, kid, is."""
    from gan.metrics import scores

    t = {}
    t0 = time.perf_counter()
    u8 = ev.generate(G, n)
    sync(ev.device)
    t["generate"] = time.perf_counter() - t0
    vals = {}
    for e in ev.extractors:
        t0 = time.perf_counter()
        feats = e.features(u8, ev.cfg.batch_size)
        t["features"] = t.get("features", 0) + time.perf_counter() - t0
        ref = ev.refs[e.name]
        ref_stats = {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()}
        for m in ("fid", "kid", "isc"):
            if want.get(m):
                t0 = time.perf_counter()
                vals.update(scores(e, feats, ref["features"], ref_stats, {m: True}))
                t[m] = t.get(m, 0) + time.perf_counter() - t0
    t["total"] = sum(v for k, v in t.items())
    t["values"] = vals
    return t


def metrics_section(s: Setup, trained: dict, summary: list) -> dict:
    from gan import config
    from gan.engine import Trainer
    from gan.metrics import Evaluator

    names, skipped = extractor_plan(s)
    for w in skipped:
        say(f"  {w}")
    info = {"names": names}
    if not names:
        summary.append("metrics: no feature extractor available here — metric cost, share and FID checks skipped")
        return info
    quiet = lambda *a, **k: None  # noqa: E731
    smoke = Trainer(config.load("smoke", s.data_ov), str(s.device), logs=s.logs, quiet=True)
    time_steps(_Wrap(smoke), 2)
    smoke_step = time_steps(_Wrap(smoke), 3) / 3
    G = smoke.sample_G
    mcfg = smoke.cfg.metrics
    Ns = [500, 1000] if s.quick else [500, 1000, 2000]
    if s.device.type == "cuda":
        Ns += [10000, 50000]
    want = {"fid": mcfg.fid, "kid": mcfg.kid, "isc": mcfg.isc}
    per_ext = {}
    for name in names:
        m = dataclasses.replace(mcfg, extractors=[name])
        if name == "inception" and s.device.type == "cpu":
            m = dataclasses.replace(m, ref_samples=min(m.ref_samples or 2000, 2000))
        t0 = time.perf_counter()
        ev = Evaluator(m, smoke.images, smoke.device, smoke.cfg.model.z_dim, quiet)
        ref_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = Evaluator(m, smoke.images, smoke.device, smoke.cfg.model.z_dim, quiet)
        ref_cached = time.perf_counter() - t0
        n_ref = len(ev.ref_images)
        # features/s of the extractor alone
        x = torch.randint(0, 256, (m.batch_size, 3, 32, 32), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0)).to(s.device)
        e = ev.extractors[0]
        e.features(x, m.batch_size)
        sync(s.device)
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < (1.0 if s.quick else 3.0):
            e.features(x, m.batch_size)
            k += 1
        sync(s.device)
        fps = k * m.batch_size / (time.perf_counter() - t0)
        time_eval(ev, G, min(200, m.batch_size * 2), want)  # warm-up
        reps = 1 if s.quick else 3
        runs = {n: [] for n in Ns}
        for rep in range(reps):  # N interleaved, so load drift hits every N alike
            for n in Ns:
                if rep == 0 or n <= 2000:
                    runs[n].append(time_eval(ev, G, n, want))
        rows = {}
        for n, rs in runs.items():
            rows[n] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "values"}
            rows[n]["values"] = rs[0]["values"]
        t = Table(title=f"metric cost, extractor {name}: {n_ref} reference images, eval batch {m.batch_size}, "
                        f"smoke's G on {s.device.type}", title_justify="left")
        for col in ("N", "total", "s / 1000", "generate", "features", "fid", "kid", "is", "(gen+feat) / 1000"):
            t.add_column(col, justify="right")
        for n, r in rows.items():
            t.add_row(str(n), f"{r['total']:.2f} s", f"{r['total'] / n * 1000:.2f}", f"{r['generate']:.2f}",
                      f"{r['features']:.2f}", f"{r.get('fid', 0):.2f}", f"{r.get('kid', 0):.2f}",
                      f"{r.get('isc', 0):.2f}", f"{(r['generate'] + r['features']) / n * 1000:.2f}")
        console.print(t)
        say(f"  reference statistics ({n_ref} images): {ref_first:.2f} s on a fresh cache (extractor load included), "
            f"{ref_cached:.2f} s when cached; extractor alone {fps:,.0f} features/s at batch {m.batch_size}")
        n_lo, n_hi = min(Ns), max(n for n in Ns if n <= 2000)
        lin_lo = (rows[n_lo]["generate"] + rows[n_lo]["features"]) / n_lo
        lin_hi = (rows[n_hi]["generate"] + rows[n_hi]["features"]) / n_hi
        growth = rows[n_hi]["total"] / rows[n_lo]["total"]
        linear_ok = growth <= 1.15 * n_hi / n_lo  # no faster than linear (with 15% timing tolerance)
        note(f"N ×{n_hi / n_lo:.0f} → total ×{growth:.2f} ({'at most linear' if linear_ok else 'FASTER than linear'})"
             f"; generate+features per 1000: {lin_lo * 1000:.2f} → {lin_hi * 1000:.2f} s. KID uses "
             f"min(1000, N)-sized subsets ×100, so its cost stops growing at N = 1000; FID/IS are nearly constant")
        if s.device.type == "cuda":
            for n in (10000, 50000):
                if n in rows:
                    say(f"  {n // 1000}k-sample evaluation: {rows[n]['total']:.1f} s + reference statistics "
                        f"{ref_first:.1f} s = {rows[n]['total'] + ref_first:.1f} s")
        summary.append(f"metrics {name}: " + ", ".join(f"N={n} {rows[n]['total']:.2f} s" for n in Ns if n <= 2000)
                       + f" ({'grows at most linearly' if linear_ok else 'grows FASTER than linearly'}); reference "
                       f"{ref_first:.1f} s once, {ref_cached:.2f} s cached")
        n_kid = 1000 if 1000 in rows else n_hi  # KID subsets are min(1000, N): constant from N = 1000 on
        per_ext[name] = {"ev": ev, "rows": rows, "ref_first": ref_first, "ref_cached": ref_cached, "m": m,
                         "feat_per": (rows[n_hi]["features"]) / n_hi,
                         "const": rows[n_hi].get("fid", 0) + rows[n_hi].get("isc", 0) + rows[n_kid].get("kid", 0)}
        if not s.quick and name == names[0]:
            eval_batches(s, ev, G, want)
    info["per_ext"] = per_ext
    share_section(s, smoke, smoke_step, per_ext, trained, summary)
    fid_check(s, per_ext[names[0]]["ev"], trained, summary)
    smoke = None
    return info


class _Wrap:
    def __init__(self, tr):
        self.tr, self.device = tr, tr.device

    def step(self):
        return self.tr.train_step()

    def finish(self, out):
        if out is not None:
            out.sum().item()
        sync(self.device)


def eval_batches(s: Setup, ev, G, want: dict) -> None:
    """The "larger evaluation batches" lever: the same N = 1000 evaluation at several batch sizes."""
    cells = []
    for b in (100, 250, 500):
        ev.cfg = dataclasses.replace(ev.cfg, batch_size=b)
        time_eval(ev, G, b, want)
        r = [time_eval(ev, G, 1000, want) for _ in range(2)]
        cells.append(f"batch {b}: {min(x['generate'] + x['features'] for x in r):.2f} s")
    ev.cfg = dataclasses.replace(ev.cfg, batch_size=100)
    say("  evaluation batch size (generate + features, N = 1000): " + ", ".join(cells))


def step_time(s: Setup, exp: str, known: dict) -> tuple[float, str, object, float]:
    """(seconds per G step at the experiment's own settings, how it was measured, G, generate s/sample)."""
    from gan import config
    from gan.engine import Trainer

    cfg = config.load(exp, s.data_ov)
    n_dis = cfg.optim.n_dis
    big = cfg.model.arch == "sngan_resnet" and s.device.type == "cpu"
    if exp in known:
        st, how = known[exp]
        tr = None
    else:
        ov = ["optim.n_dis=1"] if n_dis > 1 and (s.quick or big) else []
        tr = Trainer(config.load(exp, s.data_ov + ov), str(s.device), logs=s.logs, quiet=True)
        w = _Wrap(tr)
        n = 1 if big or s.quick or n_dis > 1 else 2
        time_steps(w, 1)
        st = time_steps(w, n) / n
        how = f"{n} step{'s' if n > 1 else ''}" + (f", n_dis 1 (real {n_dis}): share is an upper bound" if ov else "")
    # generation cost per sample for this architecture, at its eval batch size
    from gan.models import build

    G = tr.sample_G if tr is not None else build(cfg.model, cfg.data.image_size)[0].to(s.device)
    G.eval()
    b = cfg.metrics.batch_size
    with torch.inference_mode():
        z = torch.randn(b, cfg.model.z_dim, device=s.device)
        G(z)
        sync(s.device)
        t0 = time.perf_counter()
        G(z)
        sync(s.device)
        gen = (time.perf_counter() - t0) / b
    return st, how, cfg, gen


def share_section(s: Setup, smoke, smoke_step: float, per_ext: dict, trained: dict, summary: list) -> None:
    """Share of wall time spent in metrics at each shipped experiment's default cadence."""
    from gan import config

    say(f"\n[bold]metrics share of wall time[/] (extractors: {', '.join(per_ext)})")
    known = {"smoke": (smoke_step, "3 steps")}
    for exp, d in trained.items():
        b0 = next(iter(d))
        r = d[b0]
        if s.batches and b0 != config.load(exp, s.data_ov).optim.batch_size:
            continue
        n_dis = config.load(exp, s.data_ov).optim.n_dis
        if r["own_step_s"] is not None:
            known[exp] = (r["own_step_s"], f"{exp} section, own n_dis")
        elif n_dis == 1:
            known[exp] = (r["res"]["engine (defaults)"]["step_s"], f"{exp} section median")
        else:
            known[exp] = (r["res"]["engine (defaults)"]["step_s"],
                          f"{exp} section, n_dis 1 (real {n_dis}): share is an upper bound")
    # smoke, measured directly: 3 evaluations at its num_samples + its reference statistics once
    mc = smoke.cfg.metrics
    n_eval = len([st for st in range(1, smoke.steps + 1) if (mc.every and st % mc.every == 0) or st == smoke.steps])
    ev_smoke = sum(pe["rows"][mc.num_samples]["total"] if mc.num_samples in pe["rows"] else math.nan
                   for pe in per_ext.values())
    ref_smoke = sum(pe["ref_first"] for pe in per_ext.values())
    train_s = smoke.steps * smoke_step
    metr = n_eval * ev_smoke
    share_cached = metr / (train_s + metr)
    share_fresh = (metr + ref_smoke) / (train_s + metr + ref_smoke)
    say(f"  smoke (estimated): {smoke.steps} steps × {fmt_s(smoke_step)} = {train_s:.0f} s training, {n_eval} "
        f"evaluations × {ev_smoke:.2f} s = {metr:.1f} s metrics, reference statistics {ref_smoke:.1f} s "
        f"(first run only) → metrics share {share_cached * 100:.1f}% ({share_fresh * 100:.1f}% with a fresh cache)")
    summary.append(f"smoke run: metrics share {share_cached * 100:.1f}% estimated ({share_fresh * 100:.1f}% with a "
                   f"fresh reference cache) — target ≤ 10%: {'PASS' if share_fresh <= 0.10 else 'FAIL'}")
    if s.smoke_run:
        measured_smoke(s, summary)
    t = Table(title=f"metrics share at each shipped experiment's default cadence ({s.device.type}; evaluations "
                    "extrapolated from the fit above)", title_justify="left")
    for col in ("experiment", "arch", "step", "measured as", "every", "N", "eval (est.)", "share"):
        t.add_column(col, justify="right" if col not in ("experiment", "arch", "measured as") else "left")
    over = []
    skipped = []
    for exp in SHIPPED:
        if s.quick and exp not in known:
            skipped.append(exp)
            continue
        try:
            st, how, cfg, gen = step_time(s, exp, known)
        except Exception as e:  # noqa: BLE001 - one experiment that cannot run here does not stop the bench
            t.add_row(exp, "?", "—", f"skipped: {type(e).__name__}: {str(e)[:60]}", "", "", "", "")
            continue
        n = cfg.metrics.num_samples
        if exp == "smoke":  # measured above with smoke's own G and metrics settings
            ev = sum(pe["rows"][n]["total"] for pe in per_ext.values())
        else:
            ev = sum(gen * n + pe["feat_per"] * n + pe["const"] for pe in per_ext.values())
        every = cfg.metrics.every
        if every:
            share = ev / (every * st + ev)
            sh = f"{share * 100:.1f}%"
            if share > 0.10:
                over.append(f"{exp} {share * 100:.0f}%")
        else:
            sh = "end only"
        t.add_row(exp, cfg.model.arch, fmt_s(st), how, str(every), str(n), f"{ev:.1f} s", sh)
        gc.collect()
    console.print(t)
    if skipped:
        note(f"--quick measures only the experiments timed above; the full run adds {', '.join(skipped)}")
    note("eval (est.) = N × (generate s/sample of this G at its eval batch + features s/sample) + FID/KID/IS "
         "cost at the largest measured N; share = eval / (every × step + eval); reference statistics are paid "
         "once per run (cached across runs) and not counted here")
    which = "every shipped experiment's" if not skipped else "the measured experiments'"
    summary.append(f"metrics share ≤ 10% at {which} cadence on this {s.device.type}: "
                   + ("PASS" if not over else "FAIL for " + ", ".join(over)))


def measured_smoke(s: Setup, summary: list) -> None:
    """A real default smoke run (full mode): wall time and the time its evaluations took."""
    from gan import config
    from gan.engine import Trainer

    t0 = time.perf_counter()
    tr = Trainer(config.load("smoke", s.data_ov), str(s.device), logs=s.logs, quiet=True)
    res = tr.run()
    wall = time.perf_counter() - t0
    evs = [m.get("time/eval_seconds", 0.0) for _, m in res.metrics]
    ref = getattr(tr, "ref_seconds", 0.0)
    share = (sum(evs) + ref) / wall
    say(f"  smoke (measured, a real `gan train smoke`-equivalent run): {wall:.0f} s wall, {len(evs)} evaluations "
        f"{sum(evs):.1f} s + reference statistics {ref:.1f} s (cached by the estimate above) → metrics share "
        f"{share * 100:.1f}%")
    summary.append(f"smoke run measured: {wall:.0f} s wall, metrics {share * 100:.1f}% of it")


def fid_check(s: Setup, ev, trained: dict, summary: list) -> None:
    """Every lever that changes numerics must keep FID within 1% of the fp32 value on the same samples."""
    first = trained.get("dcgan") or next(iter(trained.values()), None)
    if not first:
        return
    r = first[next(iter(first))]
    G0 = r["G"].to(s.device).eval()
    n = 1000 if s.quick else 2000
    name = ev.extractors[0].name
    e = ev.extractors[0]
    ref = ev.refs[name]
    ref_stats = {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()}
    from gan.metrics import scores

    def fid_of(u8):
        feats = e.features(u8, ev.cfg.batch_size)
        return scores(e, feats, None, ref_stats, {"fid": True})["fid"]

    def gen(G, ctx=None):
        import contextlib

        with ctx or contextlib.nullcontext():
            return ev.generate(G, n)

    base_G = copy.deepcopy(G0).to(memory_format=torch.contiguous_format)
    z_dim_eval, ev.z_dim = ev.z_dim, r["cfg"].model.z_dim  # the evaluator was built for smoke's G
    cuda = s.device.type == "cuda"
    if cuda:
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref_u8 = gen(base_G)
    fid0 = fid_of(ref_u8)
    levers = [("channels_last", lambda: gen(copy.deepcopy(G0).to(memory_format=torch.channels_last)))]
    if r["compile_ran"]:
        levers.append(("torch.compile", lambda: gen(torch.compile(copy.deepcopy(base_G)))))
    if cuda:
        def tf32():
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            try:
                return gen(base_G)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        levers.append(("TF32", tf32))
        levers.append(("bf16 autocast", lambda: gen(base_G, torch.autocast("cuda", torch.bfloat16))))
    t = Table(title=f"FID check of numerics-changing levers: FID_{name} of the same {n} latents, same G weights "
                    f"(dcgan G after the timed windows) vs fp32 {'(TF32 off) ' if cuda else ''}= {fid0:.3f}",
              title_justify="left")
    for col in ("lever", "FID", "relative diff", "pixels differing", "max |Δ| (of 255)", "< 1%"):
        t.add_column(col, justify="right" if col != "lever" else "left")
    fails = []
    for lname, make in levers:
        u8 = make()
        f = fid_of(u8)
        rel = abs(f - fid0) / max(abs(fid0), 1e-12)
        diff = (u8.int() - ref_u8.int()).abs()
        t.add_row(lname, f"{f:.3f}", f"{rel * 100:.3f}%", f"{int((diff > 0).sum())} of {diff.numel():,}",
                  str(int(diff.max())), "PASS" if rel < 0.01 else "FAIL")
        if rel >= 0.01:
            fails.append(lname)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    ev.z_dim = z_dim_eval
    console.print(t)
    note("G is only briefly trained here, so its FID is large; the pixel columns show how much the samples "
         "themselves move")
    summary.append(f"FID within 1% for {', '.join(x for x, _ in levers)}: "
                   + ("PASS" if not fails else "FAIL for " + ", ".join(fails)))


# ------------------------------------------------------------------------------------------------ section 4

def _vm(key: str) -> float:
    for ln in Path("/proc/self/status").read_text().splitlines():
        if ln.startswith(key + ":"):
            return int(ln.split()[1]) / 1024  # kB -> MiB
    return math.nan


def _peak_child(task: dict, q) -> None:
    """Runs in a spawned process: only the part whose peak memory we want."""
    try:
        torch.set_num_threads(task["threads"])
        from gan import config, features
        from gan.engine import Trainer
        from gan.metrics import Evaluator

        features.WEIGHTS = Path(task["c10"])
        device = torch.device(task["device"])
        base = _vm("VmHWM")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if task["kind"] == "train":
            tr = Trainer(config.load(task["exp"], task["ov"]), task["device"], logs=task["logs"], quiet=True)
            for _ in range(task["steps"]):
                out = tr.train_step()
            out.sum().item()
        else:
            tr = Trainer(config.load("smoke", task["ov"]), task["device"], logs=task["logs"], quiet=True)
            m = dataclasses.replace(tr.cfg.metrics, extractors=task["extractors"])
            ev = Evaluator(m, tr.images, tr.device, tr.cfg.model.z_dim, lambda *a, **k: None)
            ev(tr.sample_G, task["n"])
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        q.put({"base": base, "peak": _vm("VmHWM"), "gpu": gpu})
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        q.put({"error": f"{type(e).__name__}: {e}"})


def run_child(task: dict, timeout: float = 300) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(task, q))
    p.start()
    try:
        r = q.get(timeout=timeout)
    except Exception:  # noqa: BLE001
        r = {"error": "timed out"}
    p.join(10)
    if p.is_alive():
        p.kill()
    return r


def memory_section(s: Setup, metric_names: list[str], summary: list) -> None:
    say("\n[bold]peak memory[/] (each part in its own spawned process; RSS high-water mark VmHWM"
        + (", torch.cuda.max_memory_allocated" if s.device.type == "cuda" else "") + ")")
    base = {"threads": torch.get_num_threads(), "c10": str(s.c10_weights), "device": str(s.device),
            "logs": str(s.logs), "ov": s.data_ov}
    tasks = [("training dcgan (3 steps)", dict(base, kind="train", exp="dcgan", steps=3, ov=s.data_ov))]
    if s.quick:
        tasks.append(("training baseline (2 steps, n_dis 1)",
                      dict(base, kind="train", exp="baseline", steps=2, ov=s.data_ov + ["optim.n_dis=1"])))
    else:
        tasks.append(("training baseline (2 steps)", dict(base, kind="train", exp="baseline", steps=2)))
    n = 1000 if s.quick else 2000
    if metric_names:
        tasks.append((f"evaluation {'+'.join(metric_names)}, N = {n} (smoke's G, cached reference)",
                      dict(base, kind="eval", extractors=metric_names, n=n)))
    else:
        say("  evaluation: skipped — no feature extractor available")
    t = Table(title="peak memory", title_justify="left")
    for col in ("part", "peak RSS", "above the imports", "peak GPU allocated"):
        t.add_column(col, justify="right" if col != "part" else "left")
    for label, task in tasks:
        r = run_child(task)
        if "error" in r:
            t.add_row(label, "error", r["error"][:70], "")
            continue
        gpu = f"{r['gpu']:.0f} MiB" if r["gpu"] is not None else "—"
        t.add_row(label, f"{r['peak']:.0f} MiB", f"{r['peak'] - r['base']:.0f} MiB", gpu)
        summary.append(f"peak memory {label}: {r['peak']:.0f} MiB RSS (+{r['peak'] - r['base']:.0f} MiB over the "
                       f"imports)" + (f", GPU {gpu}" if r["gpu"] is not None else ""))
    console.print(t)


# ------------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gan.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer/shorter windows, N = 500/1000 only (< 3 min on CPU)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="training batch sizes (default: each experiment's own on CPU, 128 and 512 on CUDA)")
    ap.add_argument("--windows", type=int, default=None, help="timed windows per loop (default 5 quick, 7 full)")
    ap.add_argument("--window-seconds", type=float, default=None, help="target length of one window")
    ap.add_argument("--sections", default="train,metrics,memory", help="comma list out of train, metrics, memory")
    ap.add_argument("--smoke-run", action="store_true",
                    help="also time a real default smoke run (≈3 min on a 2-core CPU) to check the estimated share")
    ap.add_argument("--c10-weights", default=None, help="c10 extractor weights (default gan/weights/c10.pt)")
    a = ap.parse_args(argv)

    from gan import features
    from gan.engine import pick_device
    from gan.errors import GanError

    try:
        device = pick_device(a.device)
    except GanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.c10_weights:
        features.WEIGHTS = Path(a.c10_weights).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="gan-bench-"))
    os.environ["GAN_CACHE"] = str(tmp / "cache")  # reference statistics are timed on a fresh cache
    data_ov, data_note = find_data(tmp)
    cuda = device.type == "cuda"
    batches = a.batch or ([128, 512] if cuda else [])
    s = Setup(device, a.quick, data_ov, data_note, tmp / "logs", a.windows or (5 if a.quick else 6),
              a.window_seconds or (2.0 if a.quick else 3.0), batches, Path(features.WEIGHTS), a.smoke_run)
    sections = set(a.sections.split(","))

    say(f"[bold]gan bench[/] {'--quick ' if a.quick else ''}on {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if cuda
           else f" ({cpu_name()}; torch uses {torch.backends.cpu.get_cpu_capability()})")
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; {loadavg()}")
    say(f"data: {data_note}")
    try:
        la = os.getloadavg()[0]
        if la > 0.5 * (os.cpu_count() or 1):
            say(f"[yellow]the machine is busy ({loadavg()}): absolute numbers will be low and ratios noisy (the "
                "seed loop's DataLoader processes also win extra CPU share from the scheduler); time on a quiet "
                "machine[/]")
    except OSError:
        pass
    summary: list[str] = []
    trained = {}
    times = {}
    try:
        return _run(s, sections, summary, trained, times, a, cuda)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _run(s: Setup, sections: set, summary: list, trained: dict, times: dict, a, cuda: bool) -> int:
    data_ov = s.data_ov
    t0 = time.perf_counter()
    if "train" in sections:
        from gan import config
        from gan.data import load_images

        images_nhwc, _ = load_images(config.load("dcgan", data_ov).data)
        for exp in ("dcgan", "baseline"):
            trained[exp] = train_section(s, exp, images_nhwc, summary)
        del images_nhwc
        times["training"] = time.perf_counter() - t0
    info = {"names": []}
    if "metrics" in sections:
        t0 = time.perf_counter()
        say("\n[bold]metric cost[/]")
        info = metrics_section(s, trained, summary)
        times["metrics"] = time.perf_counter() - t0
    if "memory" in sections:
        t0 = time.perf_counter()
        names = info["names"] if "metrics" in sections else extractor_plan(s)[0]
        memory_section(s, names, summary)
        times["memory"] = time.perf_counter() - t0

    total = elapsed()
    limit = 180 if a.quick else 900
    say("\n[bold]summary[/]")
    for line in summary:
        say(f"  {line}")
    say(f"  bench wall time {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in times.items())}; target < "
        f"{limit} s{'' if cuda else ' on this CPU when quiet'}); {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

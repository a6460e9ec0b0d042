"""Peak memory of training and of evaluation, each part in its own spawned process (a fresh interpreter: the
high-water mark is that part's own, not the bench's). The parts run side by side: peaks do not add up across
processes, and the imports are paid once in wall time."""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from pathlib import Path

import torch

from gan.bench.context import Context


def _vm(key: str) -> float:
    """A /proc/self/status figure in MiB (VmHWM: peak resident set)."""
    try:
        for ln in Path("/proc/self/status").read_text().splitlines():
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# Precision/recall at these reference sizes (the fake set: PRC_FAKE samples), on synthetic features of c10's
# shape: the distances cost the same whatever the values. 50k is the full CIFAR-10 training set, what `baseline`
# and `best` use by default (once killed at 23.7 GB); too slow for --quick on a CPU.
PRC_REF = {"full": (5_000, 50_000), "quick": (5_000,), "tiny": (300,)}
PRC_FAKE, PRC_DIM = 5_000, 192


def _prc(task: dict) -> dict:
    """The real images' radii (once per reference set: then cached) and one evaluation's precision/recall."""
    import time

    from gan.metrics import prc

    g = torch.Generator().manual_seed(0)
    real = torch.randn(task["n_ref"], PRC_DIM, generator=g).abs_()
    fake = torch.randn(min(PRC_FAKE, task["n_ref"]), PRC_DIM, generator=g).abs_()
    base, t0 = _vm("VmHWM"), time.perf_counter()
    radii = prc.radii(real)
    t1 = time.perf_counter()
    prc.precision_recall(fake, real, radii)
    return {"base": base, "peak": _vm("VmHWM"), "gpu": None, "radii_s": t1 - t0,
            "eval_s": time.perf_counter() - t1, "n_fake": len(fake)}


def _part(task: dict, q) -> None:
    """Runs in the spawned process: only the part whose peak we want."""
    try:
        torch.set_num_threads(task["threads"])
        if task["kind"] == "prc":
            q.put(_prc(task))
            return
        import dataclasses

        from gan import config
        from gan.engine import Trainer
        from gan.metrics import evaluator as gev

        device = torch.device(task["device"])
        cfg = config.load(task["exp"], task["overrides"])
        base = _vm("VmHWM")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tr = Trainer(cfg, device=task["device"], logs=task["logs"], quiet=True)
        if task["kind"] == "train":
            out = None
            for _ in range(task["steps"]):
                out = tr.train_step()
            out.sum().item()
        else:
            m = dataclasses.replace(cfg.metrics, extractors=task["extractors"], ref_samples=task["ref_n"])
            ev = gev.Evaluator(m, tr.images, tr.device, cfg.model.z_dim, lambda *a, **k: None)
            ev(tr.nets.G_sample, task["n"])
        gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        q.put({"base": base, "peak": _vm("VmHWM"), "gpu": gpu})
    except BaseException as e:  # noqa: BLE001 - said by the parent
        q.put({"error": f"{type(e).__name__}: {e}"})


def measure(tasks: list[dict], timeout: float) -> list[dict]:
    """Each task in its own spawned process, all at once (each high-water mark is its own process's)."""
    spawn = mp.get_context("spawn")
    qs = [spawn.Queue() for _ in tasks]
    ps = [spawn.Process(target=_part, args=(t, q)) for t, q in zip(tasks, qs)]
    for p in ps:
        p.start()
    out = []
    for p, q in zip(ps, qs):
        try:
            out.append(q.get(timeout=timeout))
        except Exception:  # noqa: BLE001 - queue.Empty
            out.append({"error": f"no answer within {timeout:.0f} s"})
        p.join(30)
        if p.is_alive():
            p.kill()
            p.join()
    return out


def run(ctx: Context) -> None:
    from gan.metrics import extractors

    rep, p = ctx.report, ctx.profile
    base = {"threads": torch.get_num_threads(), "device": str(ctx.device), "logs": str(ctx.tmp / "logs")}
    ov = [*ctx.data_ov, *p.shrink]
    n = max(p.eval_ns)
    names = [name for name, _ in extractors.choose(["auto"])[0]]
    parts = [(f"training dcgan ({p.memory_steps} steps)", dict(base, kind="train", exp="dcgan", steps=p.memory_steps,
                                                              overrides=ov)),
             (f"training baseline ({p.memory_steps} steps)", dict(base, kind="train", exp="baseline",
                                                                 steps=p.memory_steps, overrides=ov))]
    if names:
        parts.append((f"evaluation {'+'.join(names)}, N = {n:,}, {p.ref_n:,} reference images (smoke's G)",
                      dict(base, kind="eval", exp="smoke", overrides=ov, extractors=names, n=n, ref_n=p.ref_n)))
    rows, data = [], {}
    for (label, _), r in zip(parts, measure([t for _, t in parts], timeout=600)):
        data[label] = r
        if "error" in r:
            raise RuntimeError(f"{label}: {r['error']}")
        gpu = f"{r['gpu']:,.0f} MiB" if r["gpu"] is not None else "—"
        rows.append([label, f"{r['peak']:,.0f} MiB", f"{r['peak'] - r['base']:,.0f} MiB", gpu])
        rep.headline(f"peak memory, {label}: {r['peak']:,.0f} MiB RSS" + (f", GPU {gpu}" if r["gpu"] else ""))
    rep.table(["part (own spawned process)", "peak RSS (VmHWM)", "above the imports", "peak GPU allocated"], rows)
    prc_rows = []
    for n_ref in PRC_REF.get(p.name, PRC_REF["quick"]):  # one at a time: their times are their own
        r = measure([dict(base, kind="prc", n_ref=n_ref)], timeout=3600)[0]
        data[f"precision/recall N_ref = {n_ref}"] = r
        if "error" in r:
            raise RuntimeError(f"precision/recall at {n_ref:,} reference images: {r['error']}")
        prc_rows.append([f"{n_ref:,}", f"{r['n_fake']:,}", f"{r['radii_s']:.1f} s", f"{r['eval_s']:.1f} s",
                         f"{r['peak']:,.0f} MiB"])
        rep.headline(f"precision/recall, {n_ref:,} reference images: peak {r['peak']:,.0f} MiB RSS, real radii "
                     f"{r['radii_s']:.1f} s (cached after), evaluation {r['eval_s']:.1f} s")
    rep.table(["reference images (192-d)", "generated", "real k-NN radii (once, then cached)",
               "precision/recall of one evaluation", "peak RSS"], prc_rows)
    rep.md(f"Each part ran in its own fresh interpreter (side by side) with the bench's {base['threads']} torch threads; data: "
           f"{ctx.data_note}; the evaluation's reference statistics come from the bench's cache when an earlier "
           f"section made them (GAN_CACHE={os.environ.get('GAN_CACHE', '?')}).", "")
    rep.data(**data)

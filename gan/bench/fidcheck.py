"""Levers that change numerics must not change results: FID_c10 of the same G weights on the same latents, with
each lever on (channels_last, G's first layer as one GEMM, torch.compile, bf16 autocast where it runs at speed, TF32
on CUDA) against fp32 contiguous convolutions (TF32 off), the extractor always in fp32. The GEMM weight gradient
(train.wgrad_gemm) changes only a backward: tests/test_gemm.py holds its parity with oneDNN's gradient."""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch

from gan import device as gdevice
from gan.bench.context import Context
from gan.data import load_dataset, to_tensor
from gan.metrics import evaluator as gev, protocol
from gan.models import gemm

EXP = "dcgan"


@contextlib.contextmanager
def tf32(on: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def trained_G(ctx: Context):
    """The DCGAN G the speed section trained during its windows, else one trained here for a few steps."""
    if "G:dcgan" in ctx.left:
        return ctx.left["G:dcgan"], "the dcgan G after the speed section's timed windows"
    from gan.bench.speed import EngineLoop, time_steps

    e = EngineLoop("fid", ctx, EXP)
    time_steps(e, ctx.profile.fid_steps)
    G = copy.deepcopy(e.tr.nets.G_sample).cpu()
    e.close()
    return G, f"a dcgan G trained {ctx.profile.fid_steps} steps here"


def levers(ctx: Context, G0):
    """[(name, a function giving the G forward's uint8 samples with the lever on)] and rows for those not run."""
    plain = gemm.configure(copy.deepcopy(G0).to(ctx.device, memory_format=torch.contiguous_format), False, False)
    out = [("channels_last", lambda gen: gen(copy.deepcopy(plain).to(memory_format=torch.channels_last), None)),
           ("dense_gemm", lambda gen: gen(gemm.configure(copy.deepcopy(plain), True, False), None))]
    skipped = []
    if ctx.profile.compile:
        out.append(("torch.compile", lambda gen: gen(torch.compile(copy.deepcopy(plain)), None)))
    else:
        skipped.append(["torch.compile", "—", "—", "—", "—", f"not run in --{ctx.profile.name}"])
    ok, why = gdevice.bf16_supported(ctx.device)
    if ok:
        out.append((f"bf16 autocast ({ctx.device.type})",
                    lambda gen: gen(plain, torch.autocast(ctx.device.type, dtype=torch.bfloat16))))
    else:
        skipped.append([f"bf16 autocast ({ctx.device.type})", "—", "—", "—", "—", f"not run: {why}"])
    if ctx.cuda:
        out.append(("TF32", lambda gen: gen(plain, tf32(True))))
    return plain, out, skipped


def run(ctx: Context) -> None:
    rep, p = ctx.report, ctx.profile
    cfg = ctx.cfg(EXP)
    data = load_dataset(cfg.data)
    images = to_tensor(data.images, 32, ctx.device)
    del data
    m = dataclasses.replace(cfg.metrics, extractors=["c10"], ref_samples=p.ref_n, fid=True, kid=False, is_=False,
                            prc=False, classes=False)
    ev = gev.Evaluator(m, images, ctx.device, cfg.model.z_dim, lambda *a, **k: None)
    if not ev.extractors:
        rep.measure("fid_levers", None, "c10 weights missing: " + "; ".join(ev.notes))
        return
    tag = protocol.tag("fid", ev.extractors[0].suffix)
    G0, where = trained_G(ctx)

    def gen(G, ctx_mgr):
        with ctx_mgr or contextlib.nullcontext():
            return ev.generate(G, p.fid_n)[0]

    with tf32(False):
        plain, todo, skipped = levers(ctx, G0)
        ref_u8 = gen(plain, None)
        fid0 = ev.score_images(ref_u8).values[tag]
        rows, changes = [], {}
        for name, make in todo:
            u8 = make(gen)
            f = ev.score_images(u8).values[tag]
            rel = abs(f - fid0) / max(abs(fid0), 1e-12)
            diff = (u8.int() - ref_u8.int()).abs()
            changes[name] = {"fid": f, "relative": rel, "pixels_differing": int((diff > 0).sum()),
                             "max_abs_diff": int(diff.max())}
            rows.append([name, f"{f:.4f}", f"{rel * 100:.3f} %", f"{int((diff > 0).sum()):,} of {diff.numel():,}",
                         int(diff.max()), "PASS" if rel < 0.01 else "FAIL"])
    rep.md(f"{tag} of {p.fid_n:,} samples of {where}, same latents, against {len(ev.ref_images):,} reference "
           f"images; fp32 contiguous{' with TF32 off' if ctx.cuda else ''}: **{fid0:.4f}**", "")
    rep.table(["lever (G's forward)", "FID", "change", "pixels differing", "max |Δ| (of 255)", "< 1 %"],
              rows + skipped)
    rep.md("A briefly trained G has a large FID; the pixel columns show how far the samples themselves move.", "")
    rep.data(fid_fp32=fid0, levers=changes, samples=p.fid_n, G=where)
    worst = max(changes.items(), key=lambda kv: kv[1]["relative"])
    rep.measure("fid_levers", worst[1]["relative"], f"worst: {worst[0]} (of {', '.join(changes)})", exact=True)
    rep.headline("FID_c10 change on the same samples: " + ", ".join(
        f"{k} {v['relative'] * 100:.3f} %" for k, v in changes.items()) + f" (fp32 FID {fid0:.2f}, {p.fid_n:,} "
        "samples)")

"""FLOP rate: how much of this machine's matrix-multiply ceiling a training step uses.

The ceiling is measured in the same run, per dtype: the fastest of torch's matmul (2048²), a 1×1 convolution (a
GEMM run by oneDNN, the library the convolutions use; on AMD CPUs MKL's matmul can be far slower than oneDNN) and a
3×3 convolution (the shape DCGAN's layers are made of: oneDNN runs it faster than either GEMM in fp32 on some CPUs,
and a ceiling below the model's own layers would read as a share over 100 %).
FLOPs per image are torch's own count (`FlopCounterMode`) of one `train_step` (G forward, every D forward and
backward, the G update): matmuls and convolutions only, so BatchNorm, activations, Adam and the EMA are the part of
the step the share leaves out. Share = img/s × FLOPs per image ÷ ceiling.

`quick` is raced in fp32 and bf16, and with each speed lever on bf16 turned off where it keeps the computation
(channels_last, the dense layers as one GEMM, the small-map weight gradients as one GEMM) or on (compile), or
changed (twice the batch: fewer, larger steps, a different run: the sweep decides whether its FID holds). Then
where the step's time goes, by torch's profiler: what is left to win, and where.
"""
from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from gan import device as gdevice
from gan.bench.context import SHIPPED, Context
from gan.bench.speed import RACE_HEADER, EngineLoop, race, race_rows, time_steps

EXP = "quick"


def _rate(fn, flops: float, reps: int) -> float:
    fn()
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        rates.append(flops / (time.perf_counter() - t))
    return statistics.median(rates)


def ceiling(device: torch.device, dtype: torch.dtype, reps: int = 5) -> dict:
    """GFLOP/s of a large GEMM in `dtype`: {"matmul", "conv1x1", "conv3x3", "best"}."""
    n = 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    mm = lambda: (a @ b, gdevice.sync(device))  # noqa: E731
    x = torch.randn(64, 1024, 16, 16, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    cv = lambda: (F.conv2d(x, w), gdevice.sync(device))  # noqa: E731
    x3 = torch.randn(64, 256, 16, 16, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w3 = torch.randn(256, 256, 3, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    cv3 = lambda: (F.conv2d(x3, w3, padding=1), gdevice.sync(device))  # noqa: E731
    out = {"matmul": _rate(mm, 2 * n ** 3, reps) / 1e9, "conv1x1": _rate(cv, 2 * 64 * 256 * 1024 * 1024, reps) / 1e9,
           "conv3x3": _rate(cv3, 2 * 64 * 256 * 256 * 256 * 9, reps) / 1e9}
    out["best"] = max(out.values())
    return out


def flops_per_image(ctx: Context, exp: str, overrides=(), batch: int | None = None) -> float | None:
    """torch's FLOP count of one training step ÷ real images through D; at `batch` when given (FLOPs are linear
    in the batch, so a small batch counts a big model's step exactly and fast)."""
    from torch.utils.flop_counter import FlopCounterMode

    ov = [*overrides, 'train.precision="fp32"', "train.compile=false"] + ([f"optim.batch_size={batch}"] if batch else [])
    e = EngineLoop(exp, ctx, exp, ov)
    e.step()  # first step outside the count: lazy init, EMA copy
    try:
        with FlopCounterMode(display=False) as fc:
            e.step()
    except RuntimeError:  # torch's counter cannot follow autograd.grad (the gradient penalties): not counted
        return None
    finally:
        e.close()
    return fc.get_total_flops() / e.imgs_per_step


# torch's op names, read as what a user can act on (self time: an op's own, not its callees')
OP_GROUPS = (("convolution backward (oneDNN: input and weight gradients)", ("aten::convolution_backward",)),
             ("convolution forward (oneDNN; transposed ones count under aten::_convolution)",
              ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution")),
             ("matmul (the GEMM levers: dense layers, small-map weight gradients)", ("aten::mm", "aten::addmm")),
             ("BatchNorm forward and backward", ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                                                 "aten::_batch_norm_with_update", "aten::batch_norm_backward")),
             ("activations (LeakyReLU, ReLU, tanh) and their gradients",
              ("aten::leaky_relu", "aten::leaky_relu_", "aten::leaky_relu_backward", "aten::threshold_backward",
               "aten::relu_", "aten::clamp_min_", "aten::tanh", "aten::tanh_backward")),
             ("copies and casts (bf16 casts, layouts, im2col)", ("aten::copy_", "aten::_to_copy",
                                                                  "aten::constant_pad_nd", "aten::fill_")))


@contextlib.contextmanager
def _silent_fd2():
    """The profiler's C++ side writes start/stop notes (and, on a CUDA build without a GPU, an 'ERROR' about the
    device count) straight to file descriptor 2; they would read as failures in the bench's output."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved), os.close(null)


def time_by_op(ctx: Context, overrides, steps: int = 4) -> list[tuple[str, float]]:
    """[(group, share of the step's CPU time)] of `steps` training steps under torch's profiler, largest first;
    what no group names is 'the rest' (Adam, the EMA, losses, sampling, Python)."""
    from torch.profiler import ProfilerActivity, profile

    e = EngineLoop("profile", ctx, EXP, overrides)
    time_steps(e, 2)  # warm: lazy init, the EMA copy
    p = profile(activities=[ProfilerActivity.CPU])
    with _silent_fd2():
        p.start()
    time_steps(e, steps)
    with _silent_fd2():
        p.stop()
        averages = p.key_averages()
    e.close()
    self_us = {a.key: a.self_cpu_time_total for a in averages}
    total = sum(self_us.values()) or 1.0
    rows = [(name, sum(self_us.get(k, 0.0) for k in keys) / total) for name, keys in OP_GROUPS]
    rows.append(("the rest (Adam, EMA, losses, sampling, Python)", 1.0 - sum(s for _, s in rows)))
    return sorted(rows, key=lambda r: -r[1])


def run(ctx: Context) -> None:
    rep, dev = ctx.report, ctx.device
    dtypes = {"fp32": torch.float32}
    ok, why = gdevice.bf16_supported(dev)
    if ok:
        dtypes["bf16"] = torch.bfloat16
    ceil = {k: ceiling(dev, d) for k, d in dtypes.items()}
    rep.table(["dtype", "matmul 2048² GFLOP/s", "1×1 conv (oneDNN) GFLOP/s", "3×3 conv GFLOP/s", "ceiling used"],
              [[k, f"{c['matmul']:,.0f}", f"{c['conv1x1']:,.0f}", f"{c['conv3x3']:,.0f}", f"{c['best']:,.0f}"]
               for k, c in ceil.items()])
    if not ok:
        rep.md(f"bf16 not measured: {why}")
    per_img = {exp: flops_per_image(ctx, exp, batch=8) for exp in SHIPPED}
    b2 = 2 * ctx.cfg(EXP).optim.batch_size

    prec = lambda p: f'train.precision="{p}"'  # noqa: E731
    todo = [(f"{EXP} fp32", [prec("fp32")], "fp32")]
    if ok:
        todo += [(f"{EXP} bf16", [prec("bf16")], "bf16"),
                 (f"{EXP} bf16, channels_last off", [prec("bf16"), "train.channels_last=false"], "bf16"),
                 (f"{EXP} bf16, dense_gemm off", [prec("bf16"), "train.dense_gemm=false"], "bf16"),
                 (f"{EXP} bf16, wgrad_gemm off", [prec("bf16"), "train.wgrad_gemm=false"], "bf16"),
                 (f"{EXP} bf16, both GEMM levers off (the step before 2026-12-04)",
                  [prec("bf16"), "train.dense_gemm=false", "train.wgrad_gemm=false"], "bf16"),
                 (f"{EXP} bf16, batch {b2}", [prec("bf16"), f"optim.batch_size={b2}"], "bf16")]
        if ctx.profile.compile:
            todo.append((f"{EXP} bf16, torch.compile", [prec("bf16"), "train.compile=true"], "bf16"))
    contenders = [EngineLoop(label, ctx, EXP, ov) for label, ov, _ in todo]
    base = f"{EXP} bf16" if ok else f"{EXP} fp32"
    ctx.say(f"### {EXP}: fp32 and bf16, and the speed levers on bf16")
    res = race(ctx, contenders, base, f"{EXP} bf16 levers")
    dtype_of = {label: d for label, _, d in todo}
    share = {label: r["median"] * per_img[EXP] / 1e9 / ceil[dtype_of[label]]["best"] for label, r in res.items()}
    notes = {label: f"{share[label] * 100:.0f} % of the {dtype_of[label]} ceiling" for label in res}
    rep.table([h.format(base=base) for h in RACE_HEADER], race_rows(res, base, notes))
    for c in contenders:
        c.close()
    gc.collect()
    by_op = []
    if not ctx.cuda:  # on a GPU the host's profile says little about the kernels
        by_op = time_by_op(ctx, next(ov for label, ov, _ in todo if label == base))
        rep.md(f"Where {base}'s step spends its CPU time (torch's profiler, 4 steps, self time of each op):", "")
        rep.table(["part of the step", "share of its time"], [[n, f"{s * 100:.0f} %"] for n, s in by_op])

    rows, data = [], {}
    for exp, f in sorted(per_img.items()):
        if f is None:
            rows.append([exp, "not counted", "torch's FlopCounterMode cannot follow its gradient penalty "
                                             "(autograd.grad)"])
            data[exp] = {"gflop_per_img": None}
            continue
        row, data[exp] = [exp, f"{f / 1e9:.3f}"], {"gflop_per_img": f / 1e9}
        timed = {label: r["median"] for label, r in res.items() if label.startswith(f"{exp} ") and "," not in label}
        known = ctx.left.get("step_s", {}).get(exp)  # the speed section's race (its default precision)
        if known and not timed:
            timed[f"{exp} {known[2]}"] = ctx.cfg(exp).optim.batch_size / known[0]
        cells = []
        for label, img_s in timed.items():
            d = label.rsplit(" ", 1)[1]
            s = img_s * f / 1e9 / ceil[d]["best"] if d in ceil else None
            data[exp][label] = {"img_s": img_s, "share": s}
            cells.append(f"{label.split(' ', 1)[1]}: {img_s:,.0f} img/s = {img_s * f / 1e9:,.0f} GFLOP/s"
                         + (f" ({s * 100:.0f} %)" if s is not None else ""))
        rows.append(row + ["; ".join(cells) or "not timed in this run"])
    rep.table(["experiment", "GFLOP per image (one training step)", "FLOP rate, share of the ceiling"], rows)
    rep.data(ceiling=ceil, flops=data, quick_levers={k: {"img_s": r["median"], "share": share[k],
                                                         "paired": r["paired"]} for k, r in res.items()},
             time_by_op=dict(by_op))
    for label in res:
        rep.headline(f"{label}: {res[label]['median']:,.0f} img/s, {share[label] * 100:.0f} % of this machine's "
                     f"{dtype_of[label]} GEMM ceiling ({ceil[dtype_of[label]]['best']:,.0f} GFLOP/s)")

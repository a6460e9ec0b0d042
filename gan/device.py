"""Which device a run uses and which numerics: fp32, or bf16 autocast where the hardware has bf16 units.

bf16 autocast on a CPU without AVX512-BF16 runs ≈ 23× slower than fp32, so `bf16` there keeps fp32 and says so;
`auto` times a few G+D steps of the run's own models in both and keeps the faster (on copies, with the RNG forked,
so the run itself is untouched).
"""
from __future__ import annotations

import contextlib
import copy
import platform
import time
from pathlib import Path

import torch

from gan import compat
from gan.errors import GanError


def pick(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GanError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise GanError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def configure(device: torch.device, tf32: bool) -> None:
    """Process-wide CUDA numerics: TF32 matmuls/convolutions as asked; cuDNN picks the fastest kernels."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """(whether bf16 autocast runs at speed here, why)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "CUDA bf16" if ok else "this GPU has no bf16"
    ok = compat.mkldnn_bf16_supported()
    return ok, ("this CPU has AVX512-BF16" if ok else
                "this CPU has no AVX512-BF16 (bf16 autocast measured 23× slower than fp32 on such CPUs)")


def autocast(device: torch.device, precision: str):
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_seconds(G, D, z, real, device, precision, reps: int = 3) -> float:
    """Median seconds of one G forward + D forward/backward on copies of the run's models."""
    times = []
    for i in range(reps + 1):  # the first one warms up (kernel choice)
        t = time.perf_counter()
        with autocast(device, precision):
            loss = D(G(z)).float().mean() - D(real).float().mean()
        loss.backward()
        sync(device)
        if i:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def choose_precision(wanted: str, device: torch.device, G, D, z_dim: int, batch: int, size: int,
                     log=print, num_classes: int = 0) -> str:
    """The precision a run trains in: fp32, or bf16 where it runs at speed; for `auto`, the faster one measured."""
    if wanted == "fp32":
        return "fp32"
    ok, why = bf16_supported(device)
    if not ok:
        log(f"[yellow]train.precision = {wanted}: keeping fp32 ({why})[/]")
        return "fp32"
    if wanted == "bf16":
        return "bf16"
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        g, d = copy.deepcopy(G).train(), copy.deepcopy(D).train()
        y = torch.zeros(batch, dtype=torch.long, device=device) if num_classes else None
        gz = (lambda z: g(z, y)) if num_classes else g
        dz = (lambda x: d(x, y)) if num_classes else d
        z = torch.randn(batch, z_dim, device=device)
        real = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        t = {p: _step_seconds(gz, dz, z, real, device, p) for p in ("fp32", "bf16")}
    pick_ = min(t, key=t.get)
    log(f"train.precision = auto: {pick_} (one G+D step at batch {batch}: fp32 {t['fp32'] * 1000:.0f} ms, bf16 "
        f"{t['bf16'] * 1000:.0f} ms on {device})")
    return pick_


# The ISA flags that decide which kernels oneDNN can use (bf16 at speed needs avx512_bf16 or amx_bf16).
ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_info() -> tuple[str, list[str]]:
    """(model name, the ISA flags above that this CPU has)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU", []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return model, [f for f in ISA if f in flags]

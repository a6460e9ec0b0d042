"""What the numbers were measured on: CPU model and ISA flags, bf16 support, GPU, versions, threads, load."""
from __future__ import annotations

import datetime as dt
import os
import socket

import torch

from gan import device as gdevice
from gan.rundir import git_commit, versions

cpu = gdevice.cpu_info  # (model name, the ISA flags that decide oneDNN's kernels)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def facts(device: torch.device) -> dict:
    """Everything the report's header says about the machine, at the start of the run."""
    model, isa = cpu()
    bf16_cpu, why = gdevice.bf16_supported(torch.device("cpu"))
    out = {"host": socket.gethostname(), "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "device": str(device), "cpu": model, "isa": isa, "cores": os.cpu_count(),
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_bf16": bf16_cpu, "cpu_bf16_why": why, "threads": torch.get_num_threads(),
           "gpu": None, "load_start": loadavg(), "load_end": None, "git_commit": git_commit(), **versions()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        out["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}"
        out["gpu_bf16"] = gdevice.bf16_supported(device)[0]
    return out


def header(f: dict) -> list[str]:
    """The report's first lines, one fact each."""
    la = lambda v: " ".join(f"{x:.2f}" for x in v) if v else "?"  # noqa: E731
    cores = f["cores"] or 1
    busy = f["load_start"] and max(f["load_start"][0], (f["load_end"] or [0])[0]) > 0.5 * cores
    return [
        f"- machine: `{f['host']}`, {f['cpu']} ({', '.join(f['isa']) or 'no AVX2'}), {f['cores']} cores, "
        f"torch uses {f['torch_cpu_capability']} kernels",
        f"- bf16 on this CPU: {'yes' if f['cpu_bf16'] else 'no'} "
        f"(`torch.ops.mkldnn._is_mkldnn_bf16_supported()`: {f['cpu_bf16_why']})",
        f"- GPU: {f['gpu'] or 'none'}; device used: `{f['device']}`",
        f"- torch {f['torch']}, torchvision {f['torchvision']}, torch-fidelity {f['torch_fidelity']}, "
        f"python {f['python']}; {f['threads']} torch threads; git {(f['git_commit'] or '?')[:10]}",
        f"- load average (1/5/15 min) at start {la(f['load_start'])}"
        + (f", at end {la(f['load_end'])}" if f["load_end"] else "")
        + (f" — **busy machine** (more than half of the {cores} cores taken by other work): absolute numbers are "
           "low and ratios noisy; torch's threads then also wait on each other (`--threads 1` can be faster)"
           if busy else ""),
        f"- started {f['started']}",
    ]

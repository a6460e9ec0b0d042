"""What the numbers were measured on: CPU model and ISA flags, bf16 support, GPU, versions, threads, load; and how
steady the machine was during the timed windows (`Steadiness`)."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import statistics
import time

import torch

from gan import device as gdevice
from gan.rundir import git_commit, versions

cpu = gdevice.cpu_info  # (model name, the ISA flags that decide oneDNN's kernels)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_ticks() -> tuple[int, int, int] | None:
    """(busy, total, steal) clock ticks of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    v += [0] * (8 - len(v))
    total = sum(v)
    return total - v[3] - v[4], total, v[7]  # idle and iowait are not busy


def _tree_ticks(root: int) -> int:
    """CPU ticks (user + system) of process `root` and its descendants: the live ones (e.g. DataLoader workers) and,
    through each live process's cutime + cstime, those it has already waited for (a timed subprocess)."""
    parent, ticks = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(d)], ticks[int(d)] = int(rest[1]), sum(int(x) for x in rest[11:15])
    keep, total = {root}, 0
    for pid in sorted(parent):  # children have larger pids, except after a pid wrap: then they are missed
        if pid == root or parent[pid] in keep:
            keep.add(pid)
            total += ticks[pid]
    return total


class Steadiness:
    """Samples, around every timed window, the CPU that other processes used meanwhile (machine busy time minus
    this process tree's), the hypervisor's steal, and the 1-minute load; `summary()` says how steady it was."""

    def __init__(self):
        self.windows: list[dict] = []
        self.cores = os.cpu_count() or 1

    @contextlib.contextmanager
    def window(self):
        m0, own0, t0 = _machine_ticks(), _tree_ticks(os.getpid()), time.perf_counter()
        try:
            yield
        finally:
            m1, own1, wall = _machine_ticks(), _tree_ticks(os.getpid()), time.perf_counter() - t0
            if m0 and m1 and wall > 0 and m1[1] > m0[1]:
                others = max(0.0, (m1[0] - m0[0] - (own1 - own0)) / HZ / wall)
                self.windows.append({"others_cores": round(others, 3), "wall_s": round(wall, 3),
                                     "steal": round((m1[2] - m0[2]) / (m1[1] - m0[1]), 4),
                                     "load1": (loadavg() or [None])[0]})

    def summary(self) -> dict | None:
        if not self.windows:
            return None
        o = [w["others_cores"] for w in self.windows]
        return {"windows": len(self.windows), "seconds": round(sum(w["wall_s"] for w in self.windows), 1),
                "cores": self.cores, "others_median": statistics.median(o), "others_max": max(o),
                "steal": statistics.fmean(w["steal"] for w in self.windows),
                "load1": [w["load1"] for w in self.windows if w["load1"] is not None]}


def steadiness_line(s: dict | None, spread: dict) -> str:
    """One line: other processes' CPU during the timed windows, steal, and the spread of repeated windows."""
    if not s:
        return "- steadiness during the measurement: unknown (no /proc/stat here)"
    busy = s["others_median"] > 0.25 * s["cores"]
    load = s["load1"]
    return (f"- steadiness during the measurement ({s['windows']} timed windows, {s['seconds']:.0f} s): other "
            f"processes used {s['others_median']:.2f} of {s['cores']} cores (median; max {s['others_max']:.2f}), "
            f"CPU steal {s['steal'] * 100:.1f} %"
            + (f", 1-min load {min(load):.1f}–{max(load):.1f}" if load else "")
            + ("; the same window repeated varied " + ", ".join(f"±{v * 100:.0f} % ({k})" for k, v in spread.items())
               if spread else "")
            + (" — **not steady**: ratios are noisy, verdicts lean to \"unclear\"" if busy else " — steady"))


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
        + " (before and after: how steady the machine was while measuring is the steadiness line)",
        f"- started {f['started']}",
    ]

"""Multi-process training (torchrun, DistributedDataParallel): `Dist`, who this process is and the few collectives
the engine needs (a no-op form in one process), a BatchNorm that syncs on the CPU, and the `gan train --nproc N` launcher.

torchrun sets WORLD_SIZE/RANK/LOCAL_RANK. Without them (or with WORLD_SIZE=1) nothing here is used and a run is
exactly the single-process one. NCCL on GPUs (cuda:LOCAL_RANK per process), gloo on the CPU.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

from gan.errors import GanError

TIMEOUT_ENV = "GAN_DIST_TIMEOUT"
# Collectives wait at most this long for a peer. A dead process is normally noticed at once (gloo: the socket
# closes; torchrun: it watches its children and stops the others), so this only bounds a peer that hangs. It must
# exceed the longest rank-0-only section (metrics, checkpoint writes), during which the other ranks wait.
DEFAULT_TIMEOUT = 600


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def launched() -> bool:
    """True inside a process started by torchrun (any world size)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    return dist.get_world_size() if active() else 1


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        t = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise GanError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not t > 0:
        raise GanError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return t


class Dist:
    """Who this process is and the few collectives the engine needs. `Dist.start(device)` joins torchrun's
    process group when WORLD_SIZE > 1; otherwise it is the single-process form, where every collective is the
    identity and every process is the main one, so the engine has no `if ddp` branches."""

    def __init__(self, device: torch.device, rank: int = 0, world: int = 1):
        self.device, self.rank, self.world = device, rank, world
        self.is_main = rank == 0
        self.ddp = world > 1

    @classmethod
    def start(cls, device: torch.device) -> "Dist":
        """`device` is the validated --device: cpu -> gloo on the CPU; cuda -> NCCL on cuda:LOCAL_RANK."""
        if env_world() <= 1:
            return cls(device)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if device.index is not None:
                raise GanError(f"--device {device}: under torchrun each process takes cuda:LOCAL_RANK; use "
                               "--device cuda")
            if local >= torch.cuda.device_count():
                raise GanError(f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                               f"use --nproc_per_node ≤ {torch.cuda.device_count()}")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        timeout = datetime.timedelta(seconds=timeout_seconds())
        if not dist.is_initialized():
            if device.type == "cuda":
                dist.init_process_group("nccl", timeout=timeout, device_id=device)
            else:
                dist.init_process_group("gloo", timeout=timeout)
        return cls(device, dist.get_rank(), dist.get_world_size())

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.ddp else None

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of n."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean over ranks (a new tensor; NaN anywhere gives NaN everywhere)."""
        if not self.ddp:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank when it is true on any (one all_reduce for all of them)."""
        if not self.ddp:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return tuple(bool(v > 0) for v in t.tolist())

    def broadcast(self, obj, src: int = 0):
        """rank `src`'s `obj` on every rank (pickled; small things only)."""
        if not self.ddp:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def on_main(self, fn):
        """fn() on the main rank, its result (or its GanError, raised on every rank) everywhere."""
        out, err = None, None
        if self.is_main:
            try:
                out = fn()
            except GanError as e:
                err = str(e)
        out, err = self.broadcast((out, err))
        if err:
            raise GanError(err)
        return out

    def main_only(self):
        """The main rank's extra work (grids, metrics) must not move the RNG the ranks share: fork it."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=cuda)

    def facts(self, sync_batchnorm: bool) -> dict:
        return {"world_size": self.world, "backend": self.backend, "sync_batchnorm": sync_batchnorm}

    def describe(self, batch_size: int, sync_batchnorm: bool) -> str:
        """Where the run trains, in words: the device, or the processes and their share of each batch."""
        if not self.ddp:
            return str(self.device)
        return (f"{self.world} processes ({self.backend}, {self.device.type}, {batch_size // self.world} images "
                f"each, {'sync' if sync_batchnorm else 'per-rank'} BatchNorm)")

    def shield(self) -> None:
        """A failing rank writes its status: torchrun's SIGTERM to the survivors must not cut that write short."""
        if self.ddp:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def peer_failed(self, e: BaseException) -> bool:
        """Whether `e` is a collective that failed because another process of the job stopped."""
        return self.ddp and (isinstance(e, dist.DistError) or isinstance(e, RuntimeError) and
                             any(w in str(e).lower() for w in ("gloo", "nccl", "connection")))

    def finish(self) -> None:
        """Every rank stopped on the same step: leave together."""
        if self.ddp and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


# ---- BatchNorm over the global batch -------------------------------------------------------------------------

class _SumOverRanks(torch.autograd.Function):
    """y = Σ_ranks x on every rank. The loss DDP differentiates is Σ_ranks loss_r (it then averages the gradients),
    so ∂/∂x_r = Σ_ranks ∂loss/∂y: the backward is the same sum (itself differentiable, for gradient penalties)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, g):
        return _SumOverRanks.apply(g.contiguous())


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with the statistics of the global batch (all ranks), for gloo/CPU, where torch's nn.SyncBatchNorm
    is not implemented (it accepts only GPU tensors). Same parameters and buffers as BatchNorm1d/2d/3d, so state
    dicts are interchangeable; in eval mode, or in one process, it is plain BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, C] + [1] * (x.dim() - 2)
        n = (x.numel() // C) * world()  # every rank holds the same number of samples (batch_size % world == 0)
        xf = x.float()
        mean = _SumOverRanks.apply(xf.sum(dims)) / n
        xc = xf - mean.view(shape)
        var = _SumOverRanks.apply((xc * xc).sum(dims)) / n  # two passes: no E[x²]-E[x]² cancellation
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), f)
                self.running_var.lerp_((var * (n / max(n - 1, 1))).to(self.running_var.dtype), f)
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _to_cpu_sync(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (SyncBatchNormCPU,
                                                                                       nn.SyncBatchNorm)):
        out = SyncBatchNormCPU(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _to_cpu_sync(child))
    return out


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of `module` normalised over the global batch: torch's SyncBatchNorm on CUDA, ours on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_cpu_sync(module)


# ---- `gan train --nproc N` ---------------------------------------------------------------------------------

def launch(nproc: int, gan_args: list[str]) -> int:
    """`torchrun --standalone --nproc_per_node N -m gan ARGS`, run by torchrun's own code in this process; the
    exit code is the first failed rank's (128+signal when a signal ended it), 0 when all succeeded."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # "--": every later word is ours (else argparse takes `--logs` for an abbreviation of torchrun's --logs-specs)
    args = torchrun.parse_args(["--standalone", "--nproc_per_node", str(nproc), "-m", "--", "gan", *gan_args])
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)  # torchrun takes these over
    old = {s: signal.getsignal(s) for s in handled}
    try:
        torchrun.run(args)
        return 0
    except ChildFailedError as e:
        first = e.get_first_failure()[1]
        for r, f in sorted(e.failures.items()):
            how = f"signal {f.signal_name()}" if f.exitcode < 0 else f"exit code {f.exitcode}"
            print(f"error: rank {r} (pid {f.pid}) ended with {how}", file=sys.stderr)
        return 128 - first.exitcode if first.exitcode < 0 else first.exitcode
    except SignalException as e:  # torchrun got SIGINT/SIGTERM: it passed it on to every rank and waited for them
        return 128 + int(e.sigval)
    finally:
        for s, h in old.items():
            try:
                signal.signal(s, h)
            except (ValueError, TypeError):
                pass

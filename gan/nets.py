"""G and D as the training loop uses them, made in one place: build, SyncBatchNorm, memory format, compile, DDP,
the EMA copy and the optimisers.

Handles, one per role:
  G, D      the weights (checkpoints, exports, the EMA's source)
  G_ema     the average of G's weights (None when optim.ema_decay = 0)
  G_sample  what samples, grids and metrics use: G_ema when there is one, else G
  G_train   G's forward in both updates; under DDP its gradients are averaged over the processes
  D_train   D's forward in D's update (averaged likewise)
  D_judge   D's forward inside G's update: D is not updated there, so no averaging and no weight gradients
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from gan import compat, contract
from gan.dist import Dist, sync_batchnorm
from gan.models import build, gemm


@dataclass
class Nets:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None
    G_train: Callable
    D_train: Callable
    D_judge: Callable
    memory_format: torch.memory_format

    @property
    def G_sample(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None}

    def load_state_dict(self, s: dict) -> None:
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        if self.G_ema is not None and s.get("G_ema") is not None:
            self.G_ema.load_state_dict(s["G_ema"])

    @torch.no_grad()
    def ema_update(self, decay: float) -> None:
        """G_ema ← decay·G_ema + (1-decay)·G (decay 0 copies); BatchNorm statistics are copied, not averaged."""
        if self.G_ema is None:
            return
        compat.foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for be, bm in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(bm)


def make(cfg, dist: Dist, num_classes: int = 0) -> Nets:
    c = cfg
    G, D = build(c.model, c.data.image_size, num_classes)
    for m in (G, D):
        gemm.configure(m, c.train.dense_gemm, c.train.wgrad_gemm)
    if dist.ddp and c.model.sync_batchnorm:  # same parameters and buffers: checkpoints do not change
        G, D = sync_batchnorm(G, dist.device), sync_batchnorm(D, dist.device)
    mf = torch.channels_last if c.train.channels_last else torch.contiguous_format
    G.to(dist.device, memory_format=mf)
    D.to(dist.device, memory_format=mf)
    contract.check(c, G, D, dist.device, num_classes)  # a user's own model or loss, on 2 images (gan/contract.py)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if c.optim.ema_decay > 0 else None
    G_train, D_train = G, D
    if dist.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # No buffer sync before each forward: with sync BN the running statistics agree anyway (per-rank BN:
        # rank 0's are the ones saved and used for samples), spectral norm's u/v follow from identical weights,
        # and D runs 2-3 forwards per backward, each of which would broadcast.
        kw = dict(device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                  find_unused_parameters=False)
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else "broadcast_buffers")  # torch renamed it (same meaning for the forward)
        kw[no_sync] = False
        G_train, D_train = DDP(G, **kw), DDP(D, **kw)
    compile_ = torch.compile if c.train.compile else (lambda m: m)
    return Nets(G, D, G_ema, compile_(G_train), compile_(D_train), compile_(D), mf)


def optimizers(cfg, nets: Nets, device: torch.device) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for each; fused kernels on CUDA, foreach (multi-tensor) on the CPU (fused there measured no faster in a
    whole step: 1.01× [0.99-1.03], 2026-12-04)."""
    o = cfg.optim
    fused = device.type == "cuda"
    kw = dict(betas=(o.beta1, o.beta2), foreach=not fused, fused=fused or None)
    return torch.optim.Adam(nets.G.parameters(), o.g_lr, **kw), torch.optim.Adam(nets.D.parameters(), o.d_lr, **kw)

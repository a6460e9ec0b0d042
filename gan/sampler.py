"""Batches drawn by index from the device copy of the data: a fresh permutation each pass, optional flip."""
from __future__ import annotations

import numpy as np
import torch

from gan.data import to_float


class Sampler:
    """next() -> (x, y): x float [-1, 1] (this rank's share of the batch), y its int64 labels or None.

    Its state (permutation, position, generator) goes into checkpoints, so a resumed run sees the
    same batches as an uninterrupted one. Labels draw nothing from any RNG: with or without them the
    batches are the same.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, hflip: bool, seed: int, rank: int = 0,
                 world: int = 1, labels: np.ndarray | torch.Tensor | None = None):
        self.images, self.batch_size, self.hflip = images, batch_size, hflip
        self.labels = None
        if labels is not None:
            self.labels = torch.as_tensor(labels).to(device=images.device, dtype=torch.int64)
            if self.labels.shape != (len(images),):
                raise ValueError(f"labels {tuple(self.labels.shape)} do not match {len(images)} images")
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = self._new_perm()
        self.pos = 0
        self.epoch = 0
        # Under DDP every rank keeps the global state and takes its contiguous slice of each global batch:
        # over the ranks, exactly the one-process batch, and the RNG moves as in one process.
        self.lo, self.hi = rank * batch_size // world, (rank + 1) * batch_size // world

    def _new_perm(self) -> torch.Tensor:
        return torch.randperm(len(self.images), generator=self.gen).to(self.images.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pos + self.batch_size > len(self.perm):  # drop the ragged tail, as DataLoader(drop_last) does
            self.perm, self.pos, self.epoch = self._new_perm(), 0, self.epoch + 1
        idx = self.perm[self.pos: self.pos + self.batch_size]
        self.pos += self.batch_size
        mine = idx[self.lo:self.hi]
        x = to_float(self.images[mine])
        if self.hflip:  # drawn for the global batch, then sliced
            flip = torch.rand(self.batch_size, 1, 1, 1, device=x.device)[self.lo:self.hi] < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x, (self.labels[mine] if self.labels is not None else None)

    def state_dict(self) -> dict:
        return {"perm": self.perm.cpu(), "pos": self.pos, "epoch": self.epoch, "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        self.perm, self.pos, self.epoch = s["perm"].to(self.images.device), int(s["pos"]), int(s["epoch"])
        self.gen.set_state(s["gen"])

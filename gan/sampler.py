"""Batches drawn by index from the device copy of the dataset."""
from __future__ import annotations

import torch

from gan.data import to_float


class Sampler:
    """Batches drawn by index from the device copy: a fresh permutation each pass, optional flip.

    Its state (permutation, position, generator) goes into checkpoints, so a resumed run sees the
    same batches as an uninterrupted one.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, hflip: bool, seed: int, rank: int = 0,
                 world: int = 1, labels: torch.Tensor | None = None):
        self.images, self.batch_size, self.hflip, self.labels = images, batch_size, hflip, labels
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
        x = to_float(self.images[idx[self.lo:self.hi]])
        if self.hflip:  # drawn for the global batch, then sliced
            flip = torch.rand(self.batch_size, 1, 1, 1, device=x.device)[self.lo:self.hi] < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x, (None if self.labels is None else self.labels[idx[self.lo:self.hi]])

    def state_dict(self) -> dict:
        return {"perm": self.perm.cpu(), "pos": self.pos, "epoch": self.epoch, "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        self.perm, self.pos, self.epoch = s["perm"].to(self.images.device), int(s["pos"]), int(s["epoch"])
        self.gen.set_state(s["gen"])

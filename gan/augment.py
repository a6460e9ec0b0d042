"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees, real and fake,
so D cannot memorise a small training set while G still gets gradients through the augmentation.

The three ops of the paper, on images in [-1, 1], each drawn per sample on the device (no host sync):
  color        brightness + U(-0.5, 0.5); saturation × U(0, 2) about the per-pixel channel mean;
               contrast × U(0.5, 1.5) about the per-image mean
  translation  shift by up to 1/8 of the image size in x and y, zero padding
  cutout       a zero square of half the image size at a random centre (clipped at the border)
"""
from __future__ import annotations

import torch

from gan.config import DIFFAUG_OPS as POLICIES, parse_diffaug as parse  # checked with the config, without torch


def _u(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (hi - lo) + lo


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + _u(x, -0.5, 0.5)
    m = x.mean(1, keepdim=True)
    x = (x - m) * _u(x, 0.0, 2.0) + m
    m = x.mean((1, 2, 3), keepdim=True)
    return (x - m) * _u(x, 0.5, 1.5) + m


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    # Each output pixel reads the input at (i - dy, j - dx); reads that fall outside are the zero border.
    iy = torch.arange(h, device=x.device).view(1, h, 1) - dy
    ix = torch.arange(w, device=x.device).view(1, 1, w) - dx
    inside = ((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)).unsqueeze(1)
    flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    out = x.reshape(n, x.shape[1], h * w).gather(2, flat).view_as(x)
    return out * inside


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    oy = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2  # row index inside the square
    ox = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    hole = (oy >= 0) & (oy < ch) & (ox >= 0) & (ox < cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


OPS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """Callable `aug(x)`: the policy's ops in the paper's order; the identity when the policy is empty."""

    def __init__(self, policy: str = ""):
        self.ops = [OPS[p] for p in POLICIES if p in parse(policy)]

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

"""Your own GAN, as `gan` trains it: a small ResNet generator with self-attention (SAGAN, Zhang et al. 2019) and a
ResNet discriminator with the same attention, which none of the built-in families has.

The experiment names it `model.arch = "resnet_attn.py:build"` (a path relative to the experiment file). `build` is
called with the [model.args] (depth, attention) and the standard values its signature names (z_dim, image_size,
g_channels, d_channels, spectral_norm); it returns (G, D) under the contract:
G(z, y=None): (N, z_dim) -> (N, 3, S, S) in [-1, 1];  D(x, y=None): (N, 3, S, S) -> (N,) raw logits.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if on else module


class SelfAttention(nn.Module):
    """Every position attends to every other (keys and values pooled 2×), added back through a gate γ that starts
    at 0, so the block begins as the identity and the net learns how much attention to use."""

    def __init__(self, ch: int, sn: bool = False):
        super().__init__()
        self.q, self.k = _sn(nn.Conv2d(ch, ch // 8, 1), sn), _sn(nn.Conv2d(ch, ch // 8, 1), sn)
        self.v, self.o = _sn(nn.Conv2d(ch, ch // 2, 1), sn), _sn(nn.Conv2d(ch // 2, ch, 1), sn)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        q = self.q(x).flatten(2)  # (N, C/8, HW)
        k = F.max_pool2d(self.k(x), 2).flatten(2)  # (N, C/8, HW/4)
        v = F.max_pool2d(self.v(x), 2).flatten(2)  # (N, C/2, HW/4)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (N, HW, HW/4)
        return x + self.gamma * self.o((v @ attn.transpose(1, 2)).view(n, c // 2, h, w))


class GBlock(nn.Module):
    def __init__(self, ch: int, up: bool):
        super().__init__()
        self.up = up
        self.bn1, self.bn2 = nn.BatchNorm2d(ch), nn.BatchNorm2d(ch)
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        h = F.relu(self.bn1(x))
        if self.up:
            h, x = F.interpolate(h, scale_factor=2), F.interpolate(x, scale_factor=2)
        return x + self.c2(F.relu(self.bn2(self.c1(h))))


class Generator(nn.Module):
    def __init__(self, z_dim: int, ch: int, image_size: int, depth: int, attention: bool):
        super().__init__()
        self.ch = ch
        self.linear = nn.Linear(z_dim, 4 * 4 * ch)
        blocks, size = [], 4
        while size < image_size:  # each resolution: one upsampling block, then depth - 1 more
            size *= 2
            blocks += [GBlock(ch, up=True)] + [GBlock(ch, up=False) for _ in range(depth - 1)]
            if attention and size == 16:
                blocks.append(SelfAttention(ch))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, 3, 3, 1, 1), nn.Tanh())

    def forward(self, z, y=None):
        return self.out(self.blocks(self.linear(z).view(-1, self.ch, 4, 4)))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, sn: bool):
        super().__init__()
        self.c1, self.c2 = _sn(nn.Conv2d(cin, cout, 3, 1, 1), sn), _sn(nn.Conv2d(cout, cout, 3, 1, 1), sn)
        self.skip = _sn(nn.Conv2d(cin, cout, 1), sn)

    def forward(self, x):
        h = self.c2(F.relu(self.c1(F.relu(x))))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class Discriminator(nn.Module):
    def __init__(self, ch: int, image_size: int, attention: bool, sn: bool):
        super().__init__()
        layers, size, cin = [], image_size, 3
        while size > 4:
            layers.append(DBlock(cin, ch, sn))
            size, cin = size // 2, ch
            if attention and size == 16:
                layers.append(SelfAttention(ch, sn))
        self.blocks = nn.Sequential(*layers)
        self.linear = _sn(nn.Linear(ch, 1), sn)

    def forward(self, x, y=None):
        return self.linear(F.relu(self.blocks(x)).sum((2, 3))).flatten()


def build(z_dim: int, image_size: int, g_channels: int, d_channels: int, spectral_norm: bool,
          depth: int = 1, attention: bool = True) -> tuple[nn.Module, nn.Module]:
    """depth: residual blocks per resolution of G (≥ 1); attention: self-attention at 16×16 in G and D."""
    if depth < 1:
        raise ValueError(f"depth = {depth}: expected at least 1 block per resolution")
    return (Generator(z_dim, g_channels, image_size, depth, attention),
            Discriminator(d_channels, image_size, attention, spectral_norm))

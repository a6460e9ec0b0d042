"""Architectures of the small CIFAR-10 GAN reference projects users migrate from (all trained with BCE).

- `basic`: a tutorial GAN. G: Linear -> 8×8, (Upsample, Conv3, BN, ReLU) ×2, Conv3, tanh.
  D: four 3×3 stride-2 convs, LeakyReLU(0.2) + Dropout, flatten, Linear.
- `dcgan_upsample`: G mixes transposed convs and Upsample+Conv, BN and LeakyReLU(0.2).
  D like basic's but three 4×4 stride-2 convs.
- `dcgan_fc`: G opens with two fully connected layers (BN1d, ReLU), then transposed convs.
  D: 4×4 stride-2 convs to 4×4, then two fully connected layers.
- the fourth project is plain `dcgan` at 64×64 (see dcgan.py).

Unconditional only (the registry refuses model.conditional for them). Every D takes `spectral_norm`, `batchnorm` (all convs but the first) and `dropout` like dcgan's.
"""
import torch
import torch.nn as nn

from gan.models import apply_sn, gemm, register
from gan.models.dcgan import _init


def _down_stack(widths: list[int], kernel: int, batchnorm: bool, dropout: float) -> nn.Sequential:
    """Stride-2 convs 3 -> widths[0] -> ... each halving the map, LeakyReLU(0.2), optional BN / dropout."""
    layers, cin = [], 3
    for i, cout in enumerate(widths):
        bn = batchnorm and i > 0  # never normalise the raw image layer (DCGAN practice)
        layers.append(nn.Conv2d(cin, cout, kernel, 2, 1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        cin = cout
    return nn.Sequential(*layers)


# --- basic ---------------------------------------------------------------------------------------

class BasicGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, ch: int = 64, image_size: int = 32):
        super().__init__()
        self.width, self.bottom = ch * 2, image_size // 4  # 128 channels at 8×8 by default
        self.linear = nn.Linear(z_dim, self.width * self.bottom ** 2)
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(self.width, ch * 2, 3, 1, 1), nn.BatchNorm2d(ch * 2), nn.ReLU(True),
            nn.Upsample(scale_factor=2), nn.Conv2d(ch * 2, ch, 3, 1, 1), nn.BatchNorm2d(ch), nn.ReLU(True),
            nn.Conv2d(ch, 3, 3, 1, 1), nn.Tanh(),
        )
        self.z_dim = z_dim
        _init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.linear(z).view(z.shape[0], self.width, self.bottom, self.bottom))


class BasicDiscriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = False, batchnorm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        widths = [max(ch // 2, 1), ch, ch * 2, ch * 4]  # 32, 64, 128, 256 by default
        self.net = _down_stack(widths, 3, batchnorm, dropout)
        self.linear = nn.Linear(widths[-1] * (image_size // 16) ** 2, 1)
        _init(self)
        if spectral_norm:  # after _init, so the stored weights get the init
            apply_sn(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.net(x).flatten(1)).flatten()


# --- dcgan_upsample ------------------------------------------------------------------------------

class UpsampleGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, ch: int = 64, image_size: int = 32):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        self.net = nn.Sequential(
            gemm.ConvTranspose2d(z_dim, ch * 4, 4, 1, 0), nn.BatchNorm2d(ch * 4), act(),  # 1 -> 4
            nn.ConvTranspose2d(ch * 4, ch * 2, 4, 2, 1), nn.BatchNorm2d(ch * 2), act(),  # 4 -> 8
            nn.Upsample(scale_factor=2), nn.Conv2d(ch * 2, ch, 3, 1, 1), nn.BatchNorm2d(ch), act(),  # 8 -> 16
            nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), act(),  # 16 -> 32
            nn.Conv2d(ch, 3, 3, 1, 1), nn.Tanh(),
        )
        self.z_dim = z_dim
        _init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class UpsampleDiscriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = False, batchnorm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        widths = [ch, ch * 2, ch * 4]  # 32 -> 4
        self.net = _down_stack(widths, 4, batchnorm, dropout)
        self.linear = nn.Linear(widths[-1] * (image_size // 8) ** 2, 1)
        _init(self)
        if spectral_norm:  # after _init, so the stored weights get the init
            apply_sn(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.net(x).flatten(1)).flatten()


# --- dcgan_fc ------------------------------------------------------------------------------------

class FCGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, ch: int = 64, image_size: int = 32):
        super().__init__()
        self.width, self.bottom = ch * 4, image_size // 8
        self.fc = nn.Sequential(
            nn.Linear(z_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(True),
            nn.Linear(1024, self.width * self.bottom ** 2), nn.BatchNorm1d(self.width * self.bottom ** 2),
            nn.ReLU(True),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(ch * 4, ch * 2, 4, 2, 1), nn.BatchNorm2d(ch * 2), nn.ReLU(True),  # 4 -> 8
            nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(True),  # 8 -> 16
            nn.ConvTranspose2d(ch, 3, 4, 2, 1), nn.Tanh(),  # 16 -> 32
        )
        self.z_dim = z_dim
        _init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.fc(z).view(z.shape[0], self.width, self.bottom, self.bottom))


class FCDiscriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = False, batchnorm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        widths = [ch, ch * 2, ch * 4]  # 32 -> 4
        self.net = _down_stack(widths, 4, batchnorm, dropout)
        self.fc = nn.Sequential(
            nn.Linear(widths[-1] * (image_size // 8) ** 2, 1024), nn.LeakyReLU(0.2, True),
            nn.Linear(1024, 1),
        )
        _init(self)
        if spectral_norm:  # after _init, so the stored weights get the init
            apply_sn(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.net(x).flatten(1)).flatten()


def _d(cls):
    return lambda m, s, k: cls(m.d_channels, s, m.spectral_norm, m.d_batchnorm, m.dropout)


register("basic", lambda m, s, k: BasicGenerator(m.z_dim, m.g_channels, s), _d(BasicDiscriminator))
register("dcgan_upsample", lambda m, s, k: UpsampleGenerator(m.z_dim, m.g_channels, s), _d(UpsampleDiscriminator))
register("dcgan_fc", lambda m, s, k: FCGenerator(m.z_dim, m.g_channels, s), _d(FCDiscriminator))

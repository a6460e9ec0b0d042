"""SN-GAN ResNet for 32×32 (Miyato et al. 2018, appendix B.4), as in w86763777/pytorch-gan-collections
`ResGenerator32` / `ResDiscriminator32`.

G: Linear(z -> 4·4·W), three up-blocks (BN-ReLU-Upsample-Conv3-BN-ReLU-Conv3, 1×1 upsampled shortcut),
BN-ReLU-Conv3 to RGB, tanh. W = 4·g_channels (256 at the default).
D: an optimised first block, one down-block, two plain blocks, ReLU, global sum pool, Linear -> 1.
W = 2·d_channels (128 at the default). Spectral norm on every conv/linear of D when `spectral_norm`.
Initialisation follows the reference: Xavier-uniform, gain √2 inside residual branches, 1 elsewhere.
"""
import math

import torch
import torch.nn as nn

from gan.models import register, sn
from gan.models.conditional import Projection, Seq, batchnorm, check_labels


def _xavier(conv: nn.Module, gain: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(conv.weight, gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _res_conv(cin: int, cout: int) -> nn.Conv2d:
    # √2 gain keeps the variance of ReLU'd residual branches (reference init)
    return _xavier(nn.Conv2d(cin, cout, 3, 1, 1), math.sqrt(2))


class GenBlock(nn.Module):
    takes_labels = True

    def __init__(self, cin: int, cout: int, num_classes: int = 0):
        super().__init__()
        self.residual = Seq(
            batchnorm(cin, num_classes), nn.ReLU(), nn.Upsample(scale_factor=2),
            _res_conv(cin, cout), batchnorm(cout, num_classes), nn.ReLU(),
            _res_conv(cout, cout),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2), _xavier(nn.Conv2d(cin, cout, 1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.residual(x, y) + self.shortcut(x)


class OptimizedDisBlock(nn.Module):
    """First D block: no ReLU before the first conv (it would clip the image), pool on the shortcut first."""

    def __init__(self, cin: int, cout: int, spectral_norm: bool = True):
        super().__init__()
        self.residual = nn.Sequential(
            sn(_res_conv(cin, cout), spectral_norm), nn.ReLU(),
            sn(_res_conv(cout, cout), spectral_norm), nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), sn(_xavier(nn.Conv2d(cin, cout, 1)), spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DisBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool = False, spectral_norm: bool = True):
        super().__init__()
        residual = [nn.ReLU(), sn(_res_conv(cin, cout), spectral_norm), nn.ReLU(),
                    sn(_res_conv(cout, cout), spectral_norm)]
        shortcut = []
        if cin != cout or down:  # identity shortcut when shapes already match
            shortcut.append(sn(_xavier(nn.Conv2d(cin, cout, 1)), spectral_norm))
        if down:
            residual.append(nn.AvgPool2d(2))
            shortcut.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*residual)
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Generator(nn.Module):
    def __init__(self, z_dim: int = 128, ch: int = 64, image_size: int = 32, num_classes: int = 0):
        super().__init__()
        self.width = ch * 4  # 256 at the default 64, the paper's width
        self.bottom = image_size // 8  # three ×2 up-blocks
        self.linear = _xavier(nn.Linear(z_dim, self.bottom * self.bottom * self.width))
        self.blocks = Seq(*[GenBlock(self.width, self.width, num_classes) for _ in range(3)])
        self.output = Seq(batchnorm(self.width, num_classes), nn.ReLU(True),
                          _xavier(nn.Conv2d(self.width, 3, 3, 1, 1)), nn.Tanh())
        self.z_dim, self.num_classes = z_dim, num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, y)
        x = self.linear(z).view(z.shape[0], self.width, self.bottom, self.bottom)
        return self.output(self.blocks(x, y), y)


class Discriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = True, num_classes: int = 0):
        super().__init__()
        w = ch * 2  # 128 at the default 64, the paper's width
        self.blocks = nn.Sequential(
            OptimizedDisBlock(3, w, spectral_norm),  # 32 -> 16
            DisBlock(w, w, down=True, spectral_norm=spectral_norm),  # 16 -> 8
            DisBlock(w, w, spectral_norm=spectral_norm),
            DisBlock(w, w, spectral_norm=spectral_norm),
            nn.ReLU(),
        )
        # No bias: a constant offset on D's logit carries no information (reference has none).
        self.linear = sn(_xavier(nn.Linear(w, 1, bias=False)), spectral_norm)
        self.num_classes = num_classes
        if num_classes:
            self.projection = Projection(num_classes, w)
            sn(self.projection.embed, spectral_norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(x).sum(dim=(2, 3))  # global *sum* pool, as the paper
        if not self.num_classes:
            return self.linear(h).flatten()
        check_labels(self.num_classes, y)
        return self.linear(h).flatten() + self.projection(h, y)


register(
    "sngan_resnet",
    lambda m, s, k: Generator(m.z_dim, m.g_channels, s, k),
    lambda m, s, k: Discriminator(m.d_channels, s, m.spectral_norm, k),
)

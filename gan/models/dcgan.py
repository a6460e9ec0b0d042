"""DCGAN (Radford et al. 2016) at 32×32 and 64×64: transposed convs + BatchNorm + ReLU, tanh out;
D strided convs + LeakyReLU(0.2), optional BatchNorm / spectral norm / dropout.

At 32×32 with z=100 and 64 channels: G 1.07 M and D 0.66 M parameters, the reference projects' sizes.
Conditional (num_classes > 0): G's BatchNorms take per-class gain/bias, D adds a projection term on its
sum-pooled last feature map.
"""
import torch
import torch.nn as nn

from gan.models import apply_sn, gemm, register
from gan.models.conditional import Projection, Seq, batchnorm, check_labels


def _init(m: nn.Module) -> None:
    # DCGAN's N(0, 0.02) init; BatchNorm weights around 1.
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(mod.weight, 0.0, 0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d) and mod.affine:
            nn.init.normal_(mod.weight, 1.0, 0.02)
            nn.init.zeros_(mod.bias)


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, ch: int = 64, image_size: int = 32, num_classes: int = 0):
        super().__init__()
        n_up = {32: 3, 64: 4}[image_size]  # 4×4 -> image_size
        width = ch * 2 ** (n_up - 1)
        layers = [gemm.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=False),  # z -> 4×4, as one GEMM
                  batchnorm(width, num_classes), nn.ReLU(True)]
        for _ in range(n_up - 1):
            layers += [gemm.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       batchnorm(width // 2, num_classes), nn.ReLU(True)]
            width //= 2
        layers += [gemm.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = Seq(*layers)
        self.z_dim, self.num_classes = z_dim, num_classes
        _init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, y)
        return self.net(z.view(z.shape[0], -1, 1, 1), y)


class Discriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = False, batchnorm: bool = False,
                 dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        n_down = {32: 3, 64: 4}[image_size]  # image_size -> 4×4
        layers, cin, cout = [], 3, ch
        for i in range(n_down):
            layers.append(gemm.Conv2d(cin, cout, 4, 2, 1, bias=not batchnorm or i == 0))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            if dropout:
                layers.append(nn.Dropout(dropout))
            cin, cout = cout, cout * 2
        layers.append(gemm.Conv2d(cin, 1, 4, 1, 0))  # the 4×4 map -> a logit, as one GEMM
        self.net = nn.Sequential(*layers)
        self.num_classes = num_classes
        if num_classes:
            self.projection = Projection(num_classes, cin)
        _init(self)
        if spectral_norm:  # after init, so the stored weights get DCGAN's init
            apply_sn(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not self.num_classes:
            return self.net(x).flatten()
        check_labels(self.num_classes, y)
        h = self.net[:-1](x)
        return self.net[-1](h).flatten() + self.projection(h.sum((2, 3)), y)


register(
    "dcgan",
    lambda m, s, k: Generator(m.z_dim, m.g_channels, s, k),
    lambda m, s, k: Discriminator(m.d_channels, s, m.spectral_norm, m.d_batchnorm, m.dropout, k),
)

"""SN-GAN "standard CNN" (Miyato et al. 2018, appendix B.4) for 32×32, as in
w86763777/pytorch-gan-collections `source/models/sngan.py` (Generator32 / Discriminator32).

G: Linear(z -> 4·4·M), BN-ReLU, three ConvT 4×4/2 halving the width (BN-ReLU each), Conv 3×3 to RGB, tanh.
D: seven convs (3×3/1 and 4×4/2 alternating) with LeakyReLU(0.1), then one Linear on the 4×4 map.
`sngan_cnn` puts spectral norm on every D layer when `spectral_norm` is set; `wgan_cnn` is the same pair
for WGAN-GP and never normalises D (the gradient penalty assumes a plain, BatchNorm-free critic).
"""
import torch
import torch.nn as nn

from gan.models import apply_sn, register
from gan.models.conditional import Projection, Seq, batchnorm, check_labels
from gan.models.dcgan import _init


class Generator(nn.Module):
    def __init__(self, z_dim: int = 128, ch: int = 64, image_size: int = 32, num_classes: int = 0):
        super().__init__()
        width = ch * 8  # 512 at the default 64, the paper's M
        self.bottom = image_size // 8  # three ×2 upsamplings
        self.width = width
        self.linear = nn.Linear(z_dim, self.bottom * self.bottom * width)
        bn = lambda c: batchnorm(c, num_classes)  # noqa: E731
        self.net = Seq(
            bn(width), nn.ReLU(True),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1), bn(width // 2), nn.ReLU(True),
            nn.ConvTranspose2d(width // 2, width // 4, 4, 2, 1), bn(width // 4), nn.ReLU(True),
            nn.ConvTranspose2d(width // 4, width // 8, 4, 2, 1), bn(width // 8), nn.ReLU(True),
            nn.Conv2d(width // 8, 3, 3, 1, 1), nn.Tanh(),
        )
        self.z_dim, self.num_classes = z_dim, num_classes
        _init(self)  # N(0, 0.02), as the reference code does

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, y)
        x = self.linear(z).view(z.shape[0], self.width, self.bottom, self.bottom)
        return self.net(x, y)


class Discriminator(nn.Module):
    def __init__(self, ch: int = 64, image_size: int = 32, spectral_norm: bool = True, num_classes: int = 0):
        super().__init__()
        # Widths as in the reference code (64,128,128,256,256,512,512 at ch=64): each stride-2 conv
        # doubles the width and the following 3×3 keeps it.
        c1, c2, c3, c4 = ch, ch * 2, ch * 4, ch * 8
        act = lambda: nn.LeakyReLU(0.1, True)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(3, c1, 3, 1, 1), act(),
            nn.Conv2d(c1, c2, 4, 2, 1), act(),  # 32 -> 16
            nn.Conv2d(c2, c2, 3, 1, 1), act(),
            nn.Conv2d(c2, c3, 4, 2, 1), act(),  # 16 -> 8
            nn.Conv2d(c3, c3, 3, 1, 1), act(),
            nn.Conv2d(c3, c4, 4, 2, 1), act(),  # 8 -> 4
            nn.Conv2d(c4, c4, 3, 1, 1), act(),
        )
        self.linear = nn.Linear((image_size // 8) ** 2 * c4, 1)
        self.num_classes = num_classes
        if num_classes:
            self.projection = Projection(num_classes, c4)
        _init(self)
        if spectral_norm:  # after _init, so the stored weights get the init
            apply_sn(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x)
        out = self.linear(h.flatten(1)).flatten()
        if not self.num_classes:
            return out
        check_labels(self.num_classes, y)
        return out + self.projection(h.sum((2, 3)), y)


register(
    "sngan_cnn",
    lambda m, s, k: Generator(m.z_dim, m.g_channels, s, k),
    lambda m, s, k: Discriminator(m.d_channels, s, m.spectral_norm, k),
)
register(
    "wgan_cnn",
    lambda m, s, k: Generator(m.z_dim, m.g_channels, s, k),
    lambda m, s, k: Discriminator(m.d_channels, s, spectral_norm=False, num_classes=k),
)

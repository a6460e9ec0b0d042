"""The built-in model families by name, readable without importing torch: which image sizes each makes, whether it
has a class-conditional form, one line about it, and the module that builds it (imported only when a model is built).

`gan.models.register` takes each family's facts from here, so this table is their one source; `config` checks
`model.arch` against it. A name that is not here is a user's own model, `path/to/file.py:callable` (gan/usercode.py).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    sizes: tuple[int, ...]
    conditional: bool  # has a class-conditional form (conditional BatchNorm in G, projection D)
    doc: str
    module: str  # imported by gan.models: it registers the family's builders


BUILTIN: dict[str, Family] = {
    "basic": Family((32,), False, "tutorial GAN: Linear+Upsample/Conv G, 3×3 strided-conv D with dropout",
                    "gan.models.reference"),
    "dcgan": Family((32, 64), True, "DCGAN: transposed-conv G, strided-conv D", "gan.models.dcgan"),
    "dcgan_fc": Family((32,), False, "DCGAN variant with fully connected layers at G's input and D's output",
                       "gan.models.reference"),
    "dcgan_upsample": Family((32,), False, "DCGAN variant: ConvT + Upsample/Conv G with LeakyReLU, 4×4 strided-conv "
                             "D with dropout", "gan.models.reference"),
    "sngan_cnn": Family((32,), True, "SN-GAN standard CNN (Miyato et al. 2018); spectral norm in D when "
                        "spectral_norm", "gan.models.sngan"),
    "sngan_resnet": Family((32,), True, "SN-GAN ResNet for CIFAR-10 (Miyato et al. 2018); spectral norm in D when "
                           "spectral_norm", "gan.models.resnet"),
    "wgan_cnn": Family((32,), True, "SN-GAN standard CNN for WGAN-GP: critic has no spectral norm and no BatchNorm",
                       "gan.models.sngan"),
}


def conditional_names() -> str:
    return ", ".join(sorted(n for n, f in BUILTIN.items() if f.conditional))

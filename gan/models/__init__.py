"""Registry of generator/discriminator families. One file per family; each registers itself here.

Contract: G(z) takes z of shape (N, z_dim) and returns (N, 3, S, S) in [-1, 1];
D(x) takes (N, 3, S, S) in [-1, 1] and returns raw logits of shape (N,) (no sigmoid: losses apply it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class Arch:
    generator: Callable[..., nn.Module]  # (model_cfg, image_size) -> nn.Module
    discriminator: Callable[..., nn.Module]
    sizes: tuple[int, ...]
    doc: str


ARCHES: dict[str, Arch] = {}


def register(name: str, generator, discriminator, sizes=(32,), doc: str = "") -> None:
    ARCHES[name] = Arch(generator, discriminator, tuple(sizes), doc)


def sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral norm when asked for (Miyato et al. 2018); identity otherwise."""
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def apply_sn(model: nn.Module) -> nn.Module:
    """Spectral norm on every conv/linear of an already initialised model."""
    for m in list(model.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    return model


def build(model_cfg, image_size: int) -> tuple[nn.Module, nn.Module]:
    arch = ARCHES[model_cfg.arch]
    return arch.generator(model_cfg, image_size), arch.discriminator(model_cfg, image_size)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Importing a family registers it.
from gan.models import dcgan  # noqa: E402,F401
for _mod in ("sngan", "resnet", "reference"):
    try:
        __import__(f"gan.models.{_mod}")
    except ModuleNotFoundError as _e:  # families still being written are simply absent
        if _e.name != f"gan.models.{_mod}":
            raise

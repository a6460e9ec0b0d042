"""Registry of generator/discriminator families. One file per family; each registers itself here (its facts, sizes
and conditional form, are in gan/families.py, readable without torch). A user's own model, `model.arch =
"path/to/file.py:callable"`, is built by gan/models/user.py under the same contract (checked: gan/contract.py).

Contract: G(z, y=None) takes z of shape (N, z_dim) (and, when conditional, int64 class labels y of shape (N,)) and
returns (N, 3, S, S) in [-1, 1]; D(x, y=None) takes (N, 3, S, S) in [-1, 1] and returns raw logits of shape (N,)
(no sigmoid: the losses apply it). Families that support it build their conditional form when num_classes > 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from gan.errors import GanError
from gan.families import BUILTIN
from gan.usercode import is_ref


@dataclass(frozen=True)
class Arch:
    generator: Callable[..., nn.Module]  # (model_cfg, image_size, num_classes) -> nn.Module
    discriminator: Callable[..., nn.Module]
    sizes: tuple[int, ...]
    doc: str
    conditional: bool  # has a class-conditional form


ARCHES: dict[str, Arch] = {}


def register(name: str, generator, discriminator, sizes=None, doc: str | None = None,
             conditional: bool | None = None) -> None:
    """A family's builders; its facts (sizes, doc, conditional) from gan/families.py for a built-in name."""
    f = BUILTIN.get(name)
    ARCHES[name] = Arch(generator, discriminator, tuple(sizes or (f.sizes if f else (32,))),
                        doc if doc is not None else f.doc if f else "",
                        conditional if conditional is not None else bool(f and f.conditional))


def sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral norm when asked for (Miyato et al. 2018); identity otherwise."""
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def apply_sn(model: nn.Module) -> nn.Module:
    """Spectral norm on every conv/linear (and a projection's class embedding) of an already initialised model."""
    for m in list(model.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(m)
    return model


def build(model_cfg, image_size: int, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    if is_ref(model_cfg.arch):  # the user's own "file.py:build"
        from gan.models import user

        return user.build(model_cfg, image_size, num_classes)
    arch = ARCHES[model_cfg.arch]
    if num_classes and not arch.conditional:
        conditional = ", ".join(sorted(n for n, a in ARCHES.items() if a.conditional))
        raise GanError(f"model.conditional = true: model {model_cfg.arch!r} has no conditional form (use one of "
                       f"{conditional})")
    return (arch.generator(model_cfg, image_size, num_classes),
            arch.discriminator(model_cfg, image_size, num_classes))


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Importing a family registers it.
from gan.models import dcgan, reference, resnet, sngan  # noqa: E402,F401

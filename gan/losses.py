"""Every GAN loss and penalty in one place. D outputs raw logits; each loss applies its own link.

A user's own loss, `loss.name = "path/to/losses.py:name"`, names an object with `d(real, fake)` and `g(fake)` (raw
D logits of shape (N,) in, a scalar out), or a callable (a class) that makes one from its [loss.args]. `prepare`
makes it once per run (gan/contract.py checks it on 2 images); d_loss and g_loss then route its name to it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gan import userargs, usercode
from gan.errors import GanError

USER: dict[str, object] = {}  # loss.name -> the user's loss object of the run being built (prepare)


def prepare(loss_cfg) -> object | None:
    """The user's loss object for this config (None for a built-in loss), kept under its name for d_loss/g_loss."""
    if not usercode.is_ref(loss_cfg.name):
        return None
    obj = usercode.load(loss_cfg.name, "loss.name").obj
    if not userargs.is_loss_object(obj):
        try:
            obj = obj(**loss_cfg.args)
        except Exception as e:
            raise usercode.UserCodeError(loss_cfg.name, "at construction", e) from None
        if not userargs.is_loss_object(obj):
            raise GanError(f"{usercode.display(loss_cfg.name)} returned a {type(obj).__name__}; expected an object "
                           "with d(real, fake) and g(fake)")
    USER[loss_cfg.name] = obj
    return obj


def d_loss(name: str, real: torch.Tensor, fake: torch.Tensor, smoothing: float = 0.0,
           noise: float = 0.0) -> torch.Tensor:
    if name in USER:
        return USER[name].d(real, fake)
    if name == "bce":
        # One-sided label smoothing (Salimans et al. 2016) plus optional uniform noise on the targets.
        t_real = torch.full_like(real, 1.0 - smoothing)
        t_fake = torch.zeros_like(fake)
        if noise:
            t_real = t_real - noise * torch.rand_like(real)
            t_fake = t_fake + noise * torch.rand_like(fake)
        return (F.binary_cross_entropy_with_logits(real, t_real)
                + F.binary_cross_entropy_with_logits(fake, t_fake))
    if name == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if name == "wgan":
        return fake.mean() - real.mean()
    raise ValueError(name)


def g_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    if name in USER:
        return USER[name].g(fake)
    if name == "bce":  # non-saturating: maximise log D(G(z))
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if name in ("hinge", "wgan"):
        return -fake.mean()
    raise ValueError(name)


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (‖∇D(x̂)‖ - 1)² on random interpolates."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(D, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ½‖∇D(x)‖² on real images."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(1).mean()


def penalty(cfg, D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | float:
    """The D penalties the loss config asks for (0 when none); D is the callable D sees images through."""
    out = 0.0
    if cfg.gp_weight:
        out = out + cfg.gp_weight * gradient_penalty(D, real, fake)
    if cfg.r1_weight:
        out = out + cfg.r1_weight * r1_penalty(D, real)
    return out


def d_output_mean(name: str, logits: torch.Tensor) -> torch.Tensor:
    """Mean D output shown in TensorBoard (D/real, D/fake): a probability for bce, the raw score otherwise."""
    return torch.sigmoid(logits).mean() if name == "bce" else logits.mean()

"""The contract of a user's own model and loss, checked before the first step on a batch of 2 on the run's device
(gan/nets.py calls `check` where the nets are made: after the data, before any run folder; a bad model leaves no
run behind). Every break is one line naming the file, the callable and what was expected against what came, exit 2:

    examples/mygan.py:build: G returned (2, 1, 32, 32); expected (2, 3, 32, 32)

G(z, y=None): z (N, z_dim) -> (N, 3, S, S) float32, finite, in [-1, 1]; D(x, y=None) -> (N,) raw logits, finite;
both take y (the trainer passes it, None when unconditional) and, when model.conditional, use it; each has parameters
that require grad, and a gradient reaches them through D(G(z)). A loss: d(real, fake) and g(fake) return finite
scalars whose gradients reach D and G. An exception inside the user's code keeps its traceback
(usercode.UserCodeError). The nets come back as they were: weights, buffers, RNG streams, no gradients.
"""
from __future__ import annotations

import contextlib
import inspect

import torch

from gan import losses, usercode
from gan.errors import GanError

EPS = 1e-4  # G's range: tanh's output, with float rounding


def check(cfg, G, D, device, num_classes: int) -> None:
    """The user's model (model.arch = "file.py:name") and loss (loss.name = ...): nothing to check for built-ins."""
    loss = losses.prepare(cfg.loss)
    mine = usercode.is_ref(cfg.model.arch)
    if not mine and loss is None:
        return
    size, z_dim = cfg.data.image_size, cfg.model.z_dim
    with _untouched(G, D, device):
        z = torch.randn(2, z_dim, device=device)
        y = torch.tensor([0, min(1, num_classes - 1)], device=device) if num_classes else None
        x_real = torch.rand(2, 3, size, size, device=device) * 2 - 1
        if mine:
            model(cfg.model.arch, G, D, z, y, x_real, num_classes)
        if loss is not None:
            loss_contract(cfg.loss.name, loss, G, D, z, y, x_real)


@contextlib.contextmanager
def _untouched(G, D, device):
    """The check leaves no trace: the RNG streams forked, weights and buffers (BatchNorm statistics, spectral
    norm's vectors) restored, gradients dropped."""
    saved = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in (G, D)]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            with torch.no_grad():
                for m, sd in zip((G, D), saved):
                    m.load_state_dict(sd)
                    m.zero_grad(set_to_none=True)


def _call(ref: str, what: str, fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        raise usercode.UserCodeError(ref, f"in the contract check ({what} on a batch of 2)", e) from None


def _takes_y(where: str, role: str, net, conditional: bool) -> None:
    try:
        params = inspect.signature(net.forward).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    if len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) < 2:
        why = "y holds the class labels (model.conditional = true)" if conditional else \
            "the trainer passes y, None when unconditional"
        raise GanError(f"{where}: {role}.forward{inspect.signature(net.forward)} takes no y; expected "
                       f"forward({'z' if role == 'G' else 'x'}, y=None): {why}")


def _tensor(where: str, what: str, out, shape: tuple) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise GanError(f"{where}: {what} returned a {type(out).__name__}; expected a tensor {_shape(shape)}")
    if tuple(out.shape) != shape:
        raise GanError(f"{where}: {what} returned {_shape(out.shape)}; expected {_shape(shape)}" +
                       (": one raw logit per image (flatten it)" if len(shape) == 1 and out.numel() == shape[0]
                        else ""))
    if out.dtype != torch.float32:
        raise GanError(f"{where}: {what} returned dtype {out.dtype}; expected torch.float32")
    bad = int((~torch.isfinite(out.detach())).sum())
    if bad:
        raise GanError(f"{where}: {what} returned non-finite values ({bad} of {out.numel()} NaN or inf); expected "
                       "finite values")
    return out


def _shape(s) -> str:
    return "(" + ", ".join(map(str, s)) + ("," if len(s) == 1 else "") + ")"


def _trainable(where: str, role: str, net) -> None:
    n = sum(p.numel() for p in net.parameters())
    if not any(p.requires_grad for p in net.parameters()):
        raise GanError(f"{where}: {role} has no parameter that requires grad ({n:,} parameters, none trainable); "
                       f"expected trainable parameters")


def _grads_reach(where: str, role: str, net, through: str) -> None:
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads or not any(bool(g.abs().sum() > 0) for g in grads):
        raise GanError(f"{where}: no gradient of {through} reaches {role}'s parameters; expected {role}'s output to "
                       "depend on its weights (a detach() or torch.no_grad() inside?)")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise GanError(f"{where}: {role}'s gradients through {through} are not finite; expected finite gradients")


def model(ref: str, G, D, z, y, x_real, num_classes: int) -> None:
    where, n, size = usercode.display(ref), z.shape[0], x_real.shape[-1]
    for role, net in (("G", G), ("D", D)):
        _trainable(where, role, net)
        _takes_y(where, role, net, bool(num_classes))
    fake = _tensor(where, "G", _call(ref, "G(z, y)", G, z, y), (n, 3, size, size))
    lo, hi = float(fake.detach().min()), float(fake.detach().max())
    if lo < -1 - EPS or hi > 1 + EPS:
        raise GanError(f"{where}: G returned values in [{lo:.4g}, {hi:.4g}]; expected [-1, 1] (end G with tanh)")
    _tensor(where, "D", _call(ref, "D(x, y)", D, x_real, y), (n,))
    if num_classes > 1:  # the same input with classes 0 and 1 must give two outputs
        two = torch.tensor([0, 1], device=z.device)
        for role, net, inp in (("G", G, z[:1].repeat(n, 1)), ("D", D, x_real[:1].repeat(n, 1, 1, 1))):
            out = _call(ref, f"{role} with classes 0 and 1", net, inp, two)
            if torch.equal(out[0], out[1]):
                raise GanError(f"{where}: {role} ignores y: one input with classes 0 and 1 gave the same output; "
                               "expected a class-conditional {role} (model.conditional = true)".replace("{role}", role))
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    _call(ref, "D(G(z)).mean().backward()", lambda: D(G(z, y), y).float().mean().backward())
    _grads_reach(where, "G", G, "D(G(z))")
    _grads_reach(where, "D", D, "D(G(z))")


def _scalar(where: str, what: str, out) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise GanError(f"{where}: {what} returned a {type(out).__name__}; expected a scalar tensor")
    if out.numel() != 1:
        raise GanError(f"{where}: {what} returned {_shape(out.shape)}; expected a scalar (reduce it with .mean())")
    if not out.is_floating_point() or not bool(torch.isfinite(out.detach()).all()):
        raise GanError(f"{where}: {what} returned {out.detach().flatten()[0].item()!r} ({out.dtype}); expected a "
                       "finite floating-point scalar")
    if not out.requires_grad:
        raise GanError(f"{where}: {what} returned a tensor with no gradient; expected a loss computed from its "
                       "inputs")
    return out


def loss_contract(ref: str, obj, G, D, z, y, x_real) -> None:
    where = usercode.display(ref)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    fake = G(z, y).detach()
    real_logits, fake_logits = D(x_real, y).float(), D(fake, y).float()
    ld = _scalar(where, "d(real, fake)", _call(ref, "d(real, fake)", obj.d, real_logits, fake_logits))
    _call(ref, "d(real, fake).backward()", ld.backward)
    _grads_reach(where, "D", D, "d(real, fake)")
    G.zero_grad(set_to_none=True)
    lg = _scalar(where, "g(fake)", _call(ref, "g(fake)", obj.g, D(G(z, y), y).float()))
    _call(ref, "g(fake).backward()", lg.backward)
    _grads_reach(where, "G", G, "g(fake)")

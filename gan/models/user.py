"""A user's own model: `model.arch = "path/to/mygan.py:build"` names a callable that returns (G, D) under the
registry's contract (gan/models/__init__.py). It is called with its [model.args] and the standard values its
signature names (the rule: gan/userargs.py, MODEL_KEYS); an exception inside it keeps its traceback
(usercode.UserCodeError). What G and D then do is checked on 2 images before the first step (gan/contract.py)."""
from __future__ import annotations

import torch.nn as nn

from gan import userargs, usercode
from gan.errors import GanError


def build(m, image_size: int, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    ld = usercode.load(m.arch, "model.arch")
    kw = userargs.call_kwargs(ld.obj, m.args, userargs.model_standard(m, image_size, num_classes))
    try:
        out = ld.obj(**kw)
    except Exception as e:
        raise usercode.UserCodeError(m.arch, "at construction", e) from None
    where = usercode.display(m.arch)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = f"a {type(out).__name__}" + (f" of {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise GanError(f"{where} returned {got}; expected a pair (G, D) of torch.nn.Module")
    for role, net in zip("GD", out):
        if not isinstance(net, nn.Module):
            raise GanError(f"{where}: {role} is a {type(net).__name__}; expected a torch.nn.Module")
    return out[0], out[1]

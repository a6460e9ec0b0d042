"""What a checkpoint holds of a run in training, and how a resume puts it back: the weights and optimisers, the data
order, every RNG, the metric history and best point, the clock, the precision and the step schedules, so that a
resumed run continues bit for bit. `Trainer.state()` and the resume path are the only callers."""
from __future__ import annotations

from collections import deque

from gan import checkpoint
from gan.errors import GanError

LOSS_TAIL = 100  # (step, loss_D, loss_G) log points kept (Result.losses, checkpoints); the whole curve: TensorBoard


def capture(tr) -> dict:
    return {"step": tr.step, **tr.nets.state_dict(), "opt_G": tr.opt_G.state_dict(), "opt_D": tr.opt_D.state_dict(),
            "sampler": tr.sampler.state_dict(), "rng": checkpoint.rng_state(tr.device),
            "history": [[s, m] for s, m in tr.history], "best": tr.best, "losses": list(tr.loss_log),
            "train_seconds": tr.train_seconds, "precision": tr.precision, "num_classes": tr.num_classes,
            "class_names": tr.data.class_names, "eval_pending": tr.eval_pending, "config": tr.cfg.to_dict(),
            "arch": tr.cfg.model.arch, "schedule": tr.sched.state_dict()}


def restore(tr, s: dict) -> None:
    o = tr.cfg.optim
    try:
        if int(s.get("num_classes", 0)) != tr.num_classes:
            raise ValueError(f"the checkpoint has {s.get('num_classes', 0)} classes, this config {tr.num_classes}")
        tr.nets.load_state_dict(s)
        tr.opt_G.load_state_dict(s["opt_G"])
        tr.opt_D.load_state_dict(s["opt_D"])
        for opt, lr in ((tr.opt_G, o.g_lr), (tr.opt_D, o.d_lr)):  # the optimiser's own copy would undo a --set
            opt.param_groups[0].update(lr=lr, betas=(o.beta1, o.beta2))
        tr.sampler.load_state_dict(s["sampler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise GanError(f"{tr.run_dir / 'checkpoints' / 'last.pt'}: does not fit model {tr.cfg.model.arch!r} "
                       f"of this config ({str(e).splitlines()[0][:160]})") from None
    checkpoint.set_rng_state(s["rng"], tr.device)
    tr.step = tr.saved_step = int(s["step"])
    tr.history = [(int(a), dict(b)) for a, b in s.get("history", [])]
    tr.best, tr.loss_log = s.get("best"), deque((tuple(x) for x in s.get("losses", [])), maxlen=LOSS_TAIL)
    tr.train_seconds, tr.precision = float(s.get("train_seconds", 0.0)), s.get("precision", "fp32")
    tr.eval_pending = bool(s.get("eval_pending", False))
    tr.sched.load_state_dict(s.get("schedule"))

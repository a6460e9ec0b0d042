"""`train.precision = "auto"` decided once per sweep, so that every seed of a setting (and every setting) trains in
the same numerics: a run deciding on its own times a few steps while other jobs compete for the machine, and
seeds could land in different precisions, a difference the report would call seed noise.

The sweep process times one G+D step of the first setting's models in fp32 and bf16 (device.choose_precision, the
run's own measurement) with the torch threads one job gets, before any job runs; the choice goes to sweep.json
(`precision`) and each run that would say `auto` starts with `--set train.precision=<choice>`, which its run.json
and config.toml then record. Slurm jobs run on other machines than the sweep: `auto` is refused there.
"""
from __future__ import annotations

import contextlib
import datetime as dt

from gan import config
from gan.errors import GanError

KEY = "train.precision"


def wanted(overrides: list[str]) -> str | None:
    """The precision the last `train.precision=` among `overrides` asks for (None when none does)."""
    vals = [o.split("=", 1)[1].strip().strip("\"'") for o in overrides if o.split("=", 1)[0].strip() == KEY]
    return vals[-1] if vals else None


def needs_pin(man, entry: dict) -> str | None:
    """The `--set train.precision=...` a run of this sweep starts with: the sweep's choice when the run would say
    `auto` (its own override, else the sweep's base), None otherwise."""
    decided = man.data.get("precision")
    if not decided:
        return None
    own = wanted(entry.get("overrides", []))
    if (own or decided["asked"]) != "auto":
        return None
    return f"{KEY}={decided['chosen']}"


def check(asked: str, grid: dict, kind: str) -> bool:
    """Whether a sweep asks for `auto` (its base config, or a swept value); refused for Slurm, before anything is
    made."""
    if asked != "auto" and "auto" not in [v.strip().strip("\"'") for v in grid.get(KEY, [])]:
        return False
    if kind == "slurm":
        raise GanError("train.precision = auto: a Slurm job runs on another machine than this sweep, which cannot "
                       "time it there; --set train.precision=bf16 or fp32")
    return True


@contextlib.contextmanager
def _threads(n: int):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decide(man, exp: str, sets: list[str], first: list[str], device: str, threads: int, kind: str,
           log=print) -> None:
    """Time `auto` once for the sweep (recorded in sweep.json) when its base config or a swept value asks for it;
    nothing when a sweep already decided (a resumed one keeps its choice)."""
    if man.data.get("precision"):
        return
    asked = config.load(exp, sets).train.precision
    if not check(asked, man.data.get("grid") or {}, kind):
        return
    import torch

    from gan import device as gdevice
    from gan import nets as gnets

    cfg = config.load(exp, sets + [o for o in first if o.split("=", 1)[0].strip() != KEY])
    dev = gdevice.pick(device)
    num_classes = 10 if cfg.model.conditional else 0  # timing only: the class count barely changes a step
    G, D = gnets.build(cfg.model, cfg.data.image_size, num_classes)
    G, D = G.to(dev), D.to(dev)
    said = []
    with _threads(threads):
        chosen = gdevice.choose_precision("auto", dev, G, D, cfg.model.z_dim, cfg.optim.batch_size,
                                          cfg.data.image_size, said.append, num_classes)
    line = said[-1] if said else f"{KEY} = auto: {chosen}"
    man.update(man.data, precision={"asked": asked, "chosen": chosen, "why": line, "threads": threads or
                                    torch.get_num_threads(), "device": str(dev),
                                    "at": dt.datetime.now().astimezone().isoformat(timespec="seconds")})
    log(f"sweep: {line.replace('train.precision = auto', 'train.precision = auto, decided once for every run')}")

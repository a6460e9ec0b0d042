"""`--set section.key=value` (and `section.args.name=value`, a user's own argument): how an item is read, the rule
for a key given twice (the last wins), the keys an explicit --set wins over (MASKS), and the keys a resumed run may
not change. gan/config.py applies them; nothing here knows the config's dataclasses."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from gan import tomlfile
from gan.errors import GanError

# Keys renamed since older runs wrote their config.toml: read under the new name.
ALIASES = {("metrics", "isc"): "is"}

USER_REFS = {("model", "arch"), ("loss", "name")}  # keys that may name the user's code by a relative path


def split_key(key: str) -> tuple[str, str] | None:
    """'optim.g_lr' -> ('optim', 'g_lr'); 'model.args.depth' -> ('model', 'args.depth'); None otherwise."""
    parts = key.strip().split(".")
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "args"):
        return parts[0], ".".join(parts[1:])
    return None


def set_key(doc: dict, section: str, name: str, value, item: str) -> None:
    """doc[section][name] = value, `args.x` into the [section.args] table."""
    table = doc.setdefault(section, {})
    if not isinstance(table, dict):
        raise GanError(f"--set {item!r}: [{section}] is not a table")
    if name.startswith("args."):
        table = table.setdefault("args", {})
        if not isinstance(table, dict):
            raise GanError(f"--set {item!r}: {section}.args is not a table")
        name = name[5:]
    table[name] = value


def get_key(d: dict, section: str, name: str):
    """The value of section.name (`args.x` too) in a config's to_dict(); KeyError when absent."""
    table = d[section]
    return table["args"][name[5:]] if name.startswith("args.") else table[name]


def parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item:
        raise GanError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    if split_key(key) is None:
        raise GanError(f"--set {item!r}: expected section.key=value (or section.args.name=value), e.g. "
                       "optim.batch_size=64")
    section, name = split_key(key)
    try:  # a TOML value (numbers, booleans, lists, quoted strings); bare words are strings
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


# What a resumed run may not change: its identity (experiment, data, model, loss, numerics) and what its metric
# numbers mean (the protocol). Everything else (length, cadences, learning rates...) may change on resume.
RESUME_LOCKED = {"experiment": None, "data": None, "model": None, "loss": None,
                 "optim": {"batch_size", "n_dis", "g_batch_size"}, "train": {"precision", "diffaug"},
                 "metrics": {"extractors", "num_samples", "ref_samples", "inception_weights", "fid", "kid", "is",
                             "prc", "classes"}}


def resume_locked(section: str, k: str) -> bool:
    locked = RESUME_LOCKED.get(section, set())
    return locked is None or k in locked or ALIASES.get((section, k)) in locked


def check_resume_overrides(overrides: list[str]) -> None:
    """A resumed run refuses --set of a key that would change its model, data, loss or metric protocol."""
    for item in overrides:
        section, k, _ = parse_override(item)
        if resume_locked(section, k):
            raise GanError(f"--set {item}: {section}.{k} cannot change when a run resumes (it would change the "
                           f"run's model, data, loss or metrics); start a new run with `gan train`")


# Keys that make another key meaningless. An explicit --set of the meaningless key always wins over the file: it
# takes effect (the masking key is changed: `fix`) or is refused with one line naming both; when --set gives both
# keys they contradict each other: refused. (train.minutes and train.steps are two limits, whichever comes first;
# loss.label_* outside bce and model.conditional without a conditional model are refused in cross_check.)
MASKS = [  # (key, masking key, masked when, fix or None)
    (("train", "steps"), ("train", "epochs"), lambda c: c.train.epochs > 0, 0.0),
    (("optim", "ema_start"), ("optim", "ema_decay"), lambda c: c.optim.ema_decay == 0, None),
    (("metrics", "*"), ("metrics", "enabled"), lambda c: not c.metrics.enabled, None),
    (("metrics", "inception_weights"), ("metrics", "extractors"),
     lambda c: not {"auto", "inception"} & set(c.metrics.extractors), None),
    (("data", "path"), ("data", "dataset"), lambda c: c.data.dataset == "cifar10", None),
    (("data", "root"), ("data", "dataset"), lambda c: c.data.dataset != "cifar10", None),
]


def explicit_wins(cfg, given: dict[tuple[str, str], str], path: Path) -> None:
    for (sec, k), (msec, mk), masked, fix in MASKS:
        for (gs, gk), item in given.items():
            if gs != sec or (k != "*" and ALIASES.get((gs, gk), gk) != k) or (gs, gk) == (msec, mk) \
                    or not masked(cfg):
                continue
            have = tomlfile.value(getattr(getattr(cfg, msec), mk))
            if (msec, mk) in given:
                raise GanError(f"--set {item} and --set {given[(msec, mk)]} contradict each other: {msec}.{mk} = "
                               f"{have} makes {gs}.{gk} meaningless; choose one")
            if fix is None:
                raise GanError(f"--set {item}: no effect while {msec}.{mk} = {have} (in {path}); --set {msec}.{mk} "
                               "too")
            setattr(getattr(cfg, msec), mk, fix)


def last_wins(overrides: list[str]) -> list[str]:
    """The one rule for a key given twice with --set, in every command (train, resume, validate, sweep): the last
    value wins, as in most command lines; the earlier ones are dropped here, before anything reads them."""
    keys = [tuple(parse_override(i)[:2]) for i in overrides]
    last = {k: n for n, k in enumerate(keys)}
    return [i for n, (i, k) in enumerate(zip(overrides, keys)) if last[k] == n]

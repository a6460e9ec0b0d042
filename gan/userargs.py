"""A user's own callable's keyword arguments ([model.args], [loss.args]), checked against its signature and
annotations before any data loads: an unknown, missing or mistyped one is one line naming it and the accepted ones.
And the one rule for what else a user's model callable is passed (MODEL_KEYS). Nothing here imports torch."""
from __future__ import annotations

import inspect
import types
import typing

from gan.errors import GanError
from gan.usercode import display, load, short


# ---- keyword arguments -----------------------------------------------------------------------------------------
def signature(fn) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or an object without a signature: not checked
        return None


def _hints(fn) -> dict:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation that names what cannot be resolved: left unchecked
        return {}


def describe(t) -> str:
    """An annotation as a type a TOML value can have."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin in (list, tuple) or t in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return "a list" + (f" of {describe(inner[0]).removeprefix('an ').removeprefix('a ')}s" if inner else "")
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}.get(
        t, getattr(t, "__name__", str(t)))


def conforms(v, t) -> bool:
    """Whether a TOML value fits an annotation (one that a TOML value cannot have is not checked)."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is inspect.Parameter.empty or t is typing.Any:
        return True
    if origin is typing.Literal:
        return v in args
    if origin in (typing.Union, types.UnionType):
        return any(conforms(v, a) for a in args)
    if t is bool:
        return isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t is str:
        return isinstance(v, str)
    if origin in (list, tuple) or t in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return isinstance(v, list) and all(conforms(x, inner[0]) for x in v) if inner else isinstance(v, list)
    if t is dict or origin is dict:
        return isinstance(v, dict)
    return True


def _toml_value(v) -> bool:
    return isinstance(v, (bool, int, float, str)) or (isinstance(v, list) and all(_toml_value(x) for x in v))


def check_args(ref: str, fn, given: dict, standard: dict, section: str, where: str) -> dict:
    """[section.args] checked against fn's signature: returns them with the defaults of the ones not given (those a
    TOML file can hold), in the signature's order. `standard`: the [section] keys passed by name when fn names
    them, which [section.args] may not repeat."""
    sig, label = signature(fn), f"{display(ref)}"
    if sig is None:
        return dict(given)
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    own = [p for p in params if p.name not in standard]
    takes = ", ".join(p.name for p in own) or "none"
    hints = _hints(fn)
    for k, v in given.items():
        if k in standard:
            raise GanError(f"{where}: {section}.args.{k}: {k} is {section}.{k} (passed to {label} by name when it "
                           f"takes it): set {section}.{k}, not {section}.args.{k}")
        if k not in {p.name for p in own} and not var_kw:
            raise GanError(f"{where}: {section}.args.{k}: {label} takes no argument {k!r} (its arguments: {takes})")
        if k in hints and not conforms(v, hints[k]):
            raise GanError(f"{where}: {section}.args.{k} = {_show(v)}: expected {describe(hints[k])} ({label} "
                           f"annotates {k}: {_annotation(hints[k])}; its arguments: {takes})")
    for p in own:
        if p.default is p.empty and p.name not in given:
            raise GanError(f"{where}: {section}.args.{p.name} is missing: {label} requires it (its arguments: "
                           f"{takes}; set it in [{section}.args])")
    positional_only = [p.name for p in sig.parameters.values() if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if positional_only:
        raise GanError(f"{where}: {label} has positional-only parameters ({', '.join(positional_only)}): every "
                       "argument is passed by keyword")
    out = {}
    for p in own:
        if p.name in given:
            v = given[p.name]
            out[p.name] = float(v) if hints.get(p.name) is float and isinstance(v, int) else v
        elif _toml_value(p.default):
            out[p.name] = p.default
    return out | {k: v for k, v in given.items() if k not in out}


def call_kwargs(fn, args: dict, standard: dict) -> dict:
    """What fn is called with: the standard values it names, then its own arguments."""
    sig = signature(fn)
    named = set(sig.parameters) if sig is not None else set()
    return {k: v for k, v in standard.items() if k in named} | dict(args)


def arg_rows(ref: str, fn, args: dict, standard: dict, section: str) -> list[tuple[str, str, str]]:
    """`gan keys EXP`: (key, value, meaning) for each of the callable's own arguments (`args`: as the config holds
    them, defaults filled in), and the standard keys it takes by name."""
    from gan import tomlfile

    sig, hints, rows = signature(fn), _hints(fn), []
    if sig is None:
        return [(f"{section}.args.{k}", tomlfile.value(v), "(not checked: no signature)") for k, v in args.items()]
    for p in sig.parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        ann = _annotation(hints[p.name]) if p.name in hints else "any type"
        if p.name in standard:
            v = standard[p.name]
            key = {"image_size": "data.image_size", "num_classes": "num_classes"}.get(p.name, f"{section}.{p.name}")
            rows.append((key, tomlfile.value(v) if _toml_value(v) else str(v), f"{ann}: passed by name"))
            continue
        default = "required" if p.default is p.empty else \
            f"default {tomlfile.value(p.default) if _toml_value(p.default) else repr(p.default)}"
        if p.name not in args:
            rows.append((f"{section}.args.{p.name}", "-", f"{ann}, {default}"))
            continue
        how = "its default" if p.default is not p.empty and args[p.name] == p.default else f"set ({default})"
        rows.append((f"{section}.args.{p.name}", tomlfile.value(args[p.name]), f"{ann}, {how}"))
    return rows


def _annotation(t) -> str:
    return getattr(t, "__name__", None) if isinstance(t, type) else str(t).replace("typing.", "")


def _show(v) -> str:
    from gan import tomlfile

    return tomlfile.value(v)


# ---- the rule for a user's model and loss ----------------------------------------------------------------------
# A user's model callable is passed, by name and only when its signature names them: the [model] keys below, the
# run's image_size, and num_classes (0 unconditional; the dataset's class count when model.conditional = true, when
# G and D are also given class labels y). Its own [model.args] are passed always. z_dim is always the latent size the
# trainer draws, whether or not the callable takes it. A loss callable gets its [loss.args] only.
MODEL_KEYS = ("z_dim", "g_channels", "d_channels", "spectral_norm", "d_batchnorm", "dropout")


def model_standard(m, image_size: int, num_classes: int) -> dict:
    return {k: getattr(m, k) for k in MODEL_KEYS} | {"image_size": image_size, "num_classes": num_classes}


def check_model(m, image_size: int, where: str) -> dict:
    """model.arch's callable imported and its [model.args] checked; returns the args with their defaults."""
    ld = load(m.arch, "model.arch")
    if not callable(ld.obj):
        raise GanError(f"{where}: model.arch = {display(m.arch)!r} is a {type(ld.obj).__name__}: expected a callable "
                       "returning (G, D)")
    return check_args(m.arch, ld.obj, m.args, model_standard(m, image_size, 0), "model", where)


def is_loss_object(obj) -> bool:
    """An object with d(real, fake) and g(fake) (not a class: a class is a factory, called with [loss.args])."""
    return not inspect.isclass(obj) and callable(getattr(obj, "d", None)) and callable(getattr(obj, "g", None))


def check_loss(loss, where: str) -> dict:
    ld = load(loss.name, "loss.name")
    if is_loss_object(ld.obj):
        if loss.args:
            raise GanError(f"{where}: [loss.args]: {display(loss.name)} is an object with d and g, not a callable "
                           "that makes one: it takes no arguments")
        return {}
    if not callable(ld.obj):
        raise GanError(f"{where}: loss.name = {display(loss.name)!r} is a {type(ld.obj).__name__}: expected an object "
                       "with d(real, fake) and g(fake), or a callable (a class) that returns one")
    return check_args(loss.name, ld.obj, loss.args, {}, "loss", where)

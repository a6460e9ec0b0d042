"""Experiment config: plain typed dataclasses, read from TOML, every key validated with a clear message.

Each field's `metadata` carries its documentation and allowed values; `gan keys` prints them and the
README table is made from the same source, so a default can't drift from its documentation.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan import lookup, tomlfile, userargs, usercode
from gan.overrides import (ALIASES, USER_REFS, check_resume_overrides, explicit_wins, get_key,  # noqa: F401
                           last_wins, parse_override, resume_locked, set_key, split_key)
from gan.errors import GanError, did_you_mean

EXPERIMENTS_DIR = lookup.SHIPPED_DIR  # the shipped experiments; a name is looked up as gan/lookup.py says
resolve_path = lookup.resolve


def _f(default, doc: str, *, choices=None, min=None, max=None, min_open=False, factory=False, user=False):
    """`user`: besides `choices`, a reference to the user's own code (`file.py:name`, gan/usercode.py)."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "min_open": min_open, "user": user}
    if factory:
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Experiment:
    name: str = _f("", "run name prefix; defaults to the file's stem")
    description: str = _f("", "one line shown by `gan list`")
    seed: int = _f(0, "seeds torch, numpy, python and the data order", min=0)


@dataclass
class Data:
    dataset: str = _f("cifar10", "cifar10 (torchvision, downloads), npz (file/folder/glob) or folder (images)",
                      choices=("cifar10", "npz", "folder"))
    root: str = _f("data", "torchvision's CIFAR-10 folder; env GAN_DATA_ROOT overrides the default")
    path: str = _f("", "npz file, folder of train-*.npz shards or glob; or an image folder")
    image_size: int = _f(32, "training resolution: images are resized to it when they differ", choices=(32, 64))
    hflip: bool = _f(True, "random horizontal flip of real images")
    limit: int = _f(0, "use only the first N images (0 = all)", min=0)
    fraction: float = _f(1.0, "limited data: train on this share (0.1 = 10%), the first of each class; after data.limit",
                         min=0.0, min_open=True, max=1.0)
    dequantize: bool = _f(False, "add uniform noise in [0, 1/128) to real images in [-1, 1], as "
                                 "pytorch-gan-collections' data pipeline does (its published recipes)")


@dataclass
class Model:
    arch: str = _f("dcgan", "generator/discriminator family (`gan list --models`), or your own: "
                            "\"path/to/file.py:build\" (relative to the experiment file) or \"package.module:build\"",
                   user=True)
    args: dict = _f({}, "[model.args]: your own model's keyword arguments, checked against its signature "
                        "(`gan keys EXP` lists them)", factory=True)
    z_dim: int = _f(100, "latent size", min=1, max=4096)
    g_channels: int = _f(64, "generator base width", min=1, max=2048)
    d_channels: int = _f(64, "discriminator base width", min=1, max=2048)
    spectral_norm: bool = _f(False, "spectral norm on every D layer")
    d_batchnorm: bool = _f(False, "BatchNorm in D (arches that support it)")
    dropout: float = _f(0.0, "dropout in D (arches that support it)", min=0.0, max=0.9)
    conditional: bool = _f(False, "class-conditional: conditional BatchNorm in G, projection D (Miyato & Koyama "
                                  "2018); needs a dataset with labels")
    sync_batchnorm: bool = _f(True, "several processes (torchrun): BatchNorm statistics of the global batch, as in "
                                    "one process (SyncBatchNorm); false = each rank's own shard")


@dataclass
class Loss:
    name: str = _f("hinge", "bce (non-saturating), hinge or wgan; or your own: \"path/to/losses.py:name\"",
                   choices=("bce", "hinge", "wgan"), user=True)
    args: dict = _f({}, "[loss.args]: your own loss's keyword arguments, checked against its signature",
                    factory=True)
    label_smoothing: float = _f(0.0, "bce: real target is 1 - this", min=0.0, max=0.5)
    label_noise: float = _f(0.0, "bce: uniform noise of this size added to the targets", min=0.0, max=0.5)
    gp_weight: float = _f(0.0, "WGAN-GP gradient penalty weight (0 = off)", min=0.0)
    r1_weight: float = _f(0.0, "R1 penalty weight on real images (0 = off)", min=0.0)


@dataclass
class Optim:
    batch_size: int = _f(128, "images per D step", min=1, max=65536)
    g_lr: float = _f(2e-4, "generator Adam learning rate", min=0.0, min_open=True, max=1.0)
    d_lr: float = _f(2e-4, "discriminator Adam learning rate", min=0.0, min_open=True, max=1.0)
    beta1: float = _f(0.5, "Adam beta1", min=0.0, max=0.999)
    beta2: float = _f(0.999, "Adam beta2", min=0.0, max=0.9999)
    n_dis: int = _f(1, "D steps per G step", min=1, max=100)
    ema_decay: float = _f(0.999, "EMA of G's weights for samples and metrics (0 = off)", min=0.0, max=0.99999)
    ema_start: int = _f(0, "step from which the EMA averages (copies G before); needs ema_decay > 0", min=0)
    g_batch_size: int = _f(0, "latents per G step (0 = optim.batch_size; pytorch-gan-collections draws 2 × batch)",
                           min=0, max=65536)
    lr_decay: str = _f("none", "learning-rate schedule over train.steps: none, or linear (to 0 at the last step, as "
                               "pytorch-gan-collections' LambdaLR)", choices=("none", "linear"))


@dataclass
class Train:
    steps: int = _f(1000, "generator steps (ignored when epochs > 0; --set train.steps=N sets epochs = 0)", min=1)
    epochs: float = _f(0.0, "length in passes over the data instead of steps (0 = use steps)", min=0.0)
    log_every: int = _f(50, "scalars every N steps", min=1)
    image_every: int = _f(500, "fake grid from the fixed latents every N steps", min=1)
    checkpoint_every: int = _f(1000, "checkpoints/last.pt every N steps", min=1)
    save_png: bool = _f(False, "also write real/fake grids as PNG under results/")
    export: bool = _f(False, "write netG.pth/netD.pth (plain state_dicts) at the end")
    channels_last: bool = _f(True, "channels_last memory format (faster convolutions on CPU and GPU)")
    dense_gemm: bool = _f(True, "a transposed conv on a 1×1 input (DCGAN G's first layer) and a conv whose kernel "
                                "covers its whole input (D's last) run as one matmul: the same weights and function, "
                                "far faster than conv kernels at these shapes (gan/models/gemm.py)")
    wgrad_gemm: bool = _f(True, "on a CPU in bf16, the weight gradient of a conv whose small map is at most 4×4 "
                                "(DCGAN's 4->8 and 8->4 layers) as one GEMM: oneDNN's bf16 weight-gradient kernel "
                                "runs at half its forward rate (gan/models/gemm.py)")
    reuse_fake: bool = _f(True, "with n_dis = 1 and no gp/r1: one G forward per step serves the D and the G update "
                                "(as the reference loops do; ≈19% fewer FLOPs for DCGAN)")
    compile: bool = _f(False, "torch.compile G and D (opt-in: the warm-up pays back only on long GPU runs)")
    precision: str = _f("fp32", "bf16 = bf16 autocast (CUDA, or a CPU with AVX512-BF16; elsewhere fp32 is kept "
                                "and said); auto = the faster of fp32 and bf16, measured at start on this machine",
                         choices=("fp32", "bf16", "auto"))
    diffaug: str = _f("", "DiffAugment policy (Zhao et al. 2020): comma list of color, translation, cutout, applied "
                          "to every image D sees (empty = off)")
    minutes: float = _f(0.0, "stop after this many minutes of training time (evaluations excluded), with a "
                              "checkpoint and a final evaluation; 0 = no limit", min=0.0)
    tf32: bool = _f(True, "TF32 matmuls/convolutions on CUDA (no effect on CPU)")
    print_every: int = _f(0, "also print a loss line every N steps (0 = progress bar only)", min=0)
    tuned_steps: int = _f(0, "under train.minutes: the steps the step schedules (log/image/metrics/checkpoint "
                             "cadences, optim.ema_start) were written for; a machine measured to reach fewer in the "
                             "budget scales them down and says so (0 = never scaled)", min=0)


@dataclass
class Metrics:
    every: int = _f(5000, "evaluate every N steps and at the end (0 = only at the end)", min=0)
    num_samples: int = _f(10000, "generated samples per evaluation", min=2)
    ref_samples: int = _f(0, "reference (training) images for the statistics (0 = all)", min=0)
    fid: bool = _f(True, "Fréchet distance")
    kid: bool = _f(True, "kernel inception distance")
    is_: bool = _f(True, "Inception Score (on each extractor's class logits)")
    prc: bool = _f(False, "precision and recall (Kynkäänniemi et al. 2019), on each extractor's features")
    classes: bool = _f(True, "class metrics from c10's logits: class coverage (class_entropy) for every run, "
                             "class consistency (class_acc) for conditional runs")
    neighbours: int = _f(0, "at the end of a completed run, `gan neighbours` on this many samples: copy rate vs "
                            "held-out real images, grid of their nearest training images; 0 = off", min=0, max=50000)
    extractors: list = _f(["auto"], "feature extractors: inception, c10, or auto (inception when its weights "
                                    "are present, plus c10)", factory=True)
    inception_weights: str = _f("", "path to pt_inception-2015-12-05 weights; env GAN_INCEPTION_WEIGHTS")
    fetch_inception: bool = _f(True, "when extractors want the standard Inception and its weights are missing, fetch "
                                     "them once at start (torch-fidelity's URL or env GAN_INCEPTION_URL, sha256 "
                                     "verified; offline: c10 after ≤ 3 s)")
    batch_size: int = _f(250, "images per feature-extraction batch", min=1)
    enabled: bool = _f(True, "compute metrics at all (false: a --set of another metrics key is refused)")


@dataclass
class Config:
    experiment: Experiment = field(default_factory=Experiment)
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    loss: Loss = field(default_factory=Loss)
    optim: Optim = field(default_factory=Optim)
    train: Train = field(default_factory=Train)
    metrics: Metrics = field(default_factory=Metrics)

    def to_dict(self) -> dict:
        """{section: {key: value}} with the keys as the TOML files spell them."""
        return {sec: {key(f): getattr(getattr(self, sec), f.name) for f in dataclasses.fields(getattr(self, sec))}
                for sec in _SECTION_CLS}


def key(f: dataclasses.Field) -> str:
    """A field's key in TOML: `is_` (a Python keyword otherwise) is `is`."""
    return f.name.rstrip("_")


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_SECTION_CLS = {"experiment": Experiment, "data": Data, "model": Model, "loss": Loss, "optim": Optim,
                "train": Train, "metrics": Metrics}


def _type_name(t) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "list": "a list of strings", "dict": "a table of key = value"}[t]


def _check(where: str, section: str, key: str, value: Any, f: dataclasses.Field) -> Any:
    """Return the value coerced to the field's type, or raise GanError naming file, key, value, expectation."""
    t = f.type if isinstance(f.type, str) else f.type.__name__
    k = f"{section}.{key}"
    bad = lambda what: GanError(f"{where}: {k} = {value!r}: expected {what}")  # noqa: E731
    if t == "bool":
        if not isinstance(value, bool):
            raise bad(_type_name(t))
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(_type_name(t))
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(_type_name(t))
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
    elif t == "str":
        if not isinstance(value, str):
            raise bad(_type_name(t))
    elif t == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(_type_name(t))
    elif t == "dict":
        if not isinstance(value, dict):
            raise bad(_type_name(t))
        for name, v in value.items():  # keyword arguments: names with TOML values, no deeper tables
            if not name.isidentifier() or isinstance(v, dict):
                raise GanError(f"{where}: {k}.{name}: expected a Python name with a value, not a table")
    m = f.metadata
    if isinstance(value, str) and m["user"] and usercode.is_ref(value):
        return value
    if m["choices"] is not None and value not in m["choices"]:
        raise bad("one of " + ", ".join(repr(c) for c in m["choices"])
                  + (", or your own \"path/to/file.py:name\"" if m["user"] else ""))
    lo, hi = m["min"], m["max"]
    if lo is not None and (value < lo or (m["min_open"] and value == lo)):
        raise bad(f"{'>' if m['min_open'] else '≥'} {lo}" + (f" and ≤ {hi}" if hi is not None else ""))
    if hi is not None and value > hi:
        raise bad(f"≤ {hi}" + (f" and ≥ {lo}" if lo is not None else ""))
    return value


def from_dict(doc: dict, where: str) -> Config:
    if not isinstance(doc, dict):
        raise GanError(f"{where}: expected a TOML table")
    cfg = Config()
    for section, table in doc.items():
        if section not in _SECTION_CLS:
            raise GanError(f"{where}: unknown section [{section}]{did_you_mean(section, _SECTION_CLS)}: expected one "
                           f"of {', '.join(_SECTION_CLS)}")
        if not isinstance(table, dict):
            raise GanError(f"{where}: {section} = {table!r}: expected a [{section}] table")
        obj = getattr(cfg, section)
        fields = {key(f): f for f in dataclasses.fields(obj)}
        for k, value in table.items():
            k = ALIASES.get((section, k), k)
            if k not in fields:
                raise GanError(f"{where}: unknown key {section}.{k}{did_you_mean(k, fields)}: expected one of "
                               f"{', '.join(fields)}")
            setattr(obj, fields[k].name, _check(where, section, k, value, fields[k]))
    return cfg


DIFFAUG_OPS = ("color", "translation", "cutout")  # gan/augment.py's ops, in the paper's order


def parse_diffaug(policy: str) -> list[str]:
    """'color,translation' -> ['color', 'translation']; unknown names raise ValueError."""
    ops = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in ops if p not in DIFFAUG_OPS]
    if bad:
        raise ValueError(f"unknown DiffAugment op(s) {', '.join(bad)}: expected a comma list out of "
                         f"{', '.join(DIFFAUG_OPS)}")
    return ops


def cross_check(cfg: Config, where: str) -> None:
    """Rules that involve more than one key."""
    _check_arch(cfg, where)
    if cfg.data.dataset in ("npz", "folder") and not cfg.data.path:
        raise GanError(f"{where}: data.path is empty: dataset {cfg.data.dataset!r} needs a path")
    for e in cfg.metrics.extractors:
        if e not in ("auto", "inception", "c10"):
            raise GanError(f"{where}: metrics.extractors = {cfg.metrics.extractors!r}: "
                           "expected a list out of 'auto', 'inception', 'c10'")
    if cfg.loss.name != "bce" and (cfg.loss.label_smoothing or cfg.loss.label_noise):
        raise GanError(f"{where}: loss.label_smoothing/label_noise apply to loss.name = 'bce' only")
    if usercode.is_ref(cfg.loss.name):  # the user's loss: imported, its [loss.args] checked (gan/usercode.py)
        cfg.loss.args = userargs.check_loss(cfg.loss, where)
    elif cfg.loss.args:
        raise GanError(f"{where}: [loss.args] is for your own loss (loss.name = \"path/to/losses.py:name\"); "
                       f"{cfg.loss.name!r} takes [loss] keys")
    try:
        parse_diffaug(cfg.train.diffaug)
    except ValueError as e:
        raise GanError(f"{where}: train.diffaug = {cfg.train.diffaug!r}: {e}") from None
    from gan.rundir import check_name

    try:
        check_name(cfg.experiment.name, "experiment.name")
    except GanError as e:
        raise GanError(f"{where}: {e}") from None


def _check_arch(cfg: Config, where: str) -> None:
    """model.arch: a built-in family (gan/families.py, no torch imported), one a wrapper script registered, or the
    user's own callable, imported with its [model.args] checked against its signature (gan/usercode.py)."""
    import sys

    from gan.families import BUILTIN, conditional_names

    m = cfg.model
    if usercode.is_ref(m.arch):
        m.args = userargs.check_model(m, cfg.data.image_size, where)
        return
    registered = getattr(sys.modules.get("gan.models"), "ARCHES", {})  # gan.models.register from a script
    fam = BUILTIN.get(m.arch) or registered.get(m.arch)
    if fam is None:
        raise GanError(f"{where}: model.arch = {m.arch!r}: expected one of {', '.join(sorted(BUILTIN | registered))}"
                       ", or your own \"path/to/file.py:build\"")
    if m.args:
        raise GanError(f"{where}: [model.args] is for your own model (model.arch = \"path/to/file.py:build\"); "
                       f"{m.arch!r} takes [model] keys")
    if cfg.data.image_size not in fam.sizes:
        sizes = " or ".join(map(str, fam.sizes))
        raise GanError(f"{where}: data.image_size = {cfg.data.image_size}: model {m.arch!r} makes {sizes}×{sizes} "
                       "images")
    if m.conditional and not fam.conditional:
        raise GanError(f"{where}: model.conditional = true: model {m.arch!r} has no conditional form "
                       f"(use one of {conditional_names()})")


def load(exp: str, overrides: list[str] | None = None) -> Config:
    """Read an experiment by name or path, apply `--set` overrides (config.last_wins), validate everything."""
    path = resolve_path(exp)
    overrides = last_wins(overrides or [])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise GanError(f"{path}: cannot read ({e.strerror or e})") from None
    doc = tomlfile.parse(raw, str(path))
    for item in overrides or []:
        section, key, value = parse_override(item)
        if (section, key) in USER_REFS:  # a path on the command line is relative to the current directory
            value = usercode.absolute(value, Path.cwd())
        set_key(doc, section, key, value, item)
    where = f"{path}" + (" (with --set)" if overrides else "")
    return validate(doc, where, path.stem, {tuple(parse_override(i)[:2]): i for i in overrides or []}, path)


def validate(doc: dict, where: str, stem: str, given: dict | None = None, path: Path | None = None) -> Config:
    """A parsed TOML document as a Config, every rule checked (GanError naming `where` otherwise); `given`:
    {(section, key): item} of the --set items, `stem`: the name when the document gives none."""
    cfg = from_dict(doc, where)
    base = Path(path).resolve().parent if path else Path.cwd()  # a path in an experiment file: relative to it
    cfg.model.arch, cfg.loss.name = usercode.absolute(cfg.model.arch, base), usercode.absolute(cfg.loss.name, base)
    explicit_wins(cfg, given or {}, path or where)
    if not cfg.experiment.name:
        cfg.experiment.name = stem
    if cfg.data.root == "data" and os.environ.get("GAN_DATA_ROOT"):
        cfg.data.root = os.environ["GAN_DATA_ROOT"]
    cross_check(cfg, where)
    return cfg


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML (written to every run folder)."""
    return tomlfile.dumps(cfg.to_dict())


def keys_doc() -> list[tuple[str, str, str]]:
    """(section.key, default, doc) for every key: `gan keys` and the README table."""
    rows = []
    for section, cls in _SECTION_CLS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{section}.{key(f)}", tomlfile.value(default), f.metadata["doc"]))
    return rows


def own_keys(cfg: Config) -> list[tuple[str, str, str]]:
    """`gan keys EXP`: the arguments of the experiment's own model and loss, with their values (gan/usercode.py)."""
    rows = []
    if usercode.is_ref(cfg.model.arch):
        fn = usercode.load(cfg.model.arch, "model.arch").obj
        std = userargs.model_standard(cfg.model, cfg.data.image_size, "(the dataset's class count when conditional)")
        rows += userargs.arg_rows(cfg.model.arch, fn, cfg.model.args, std, "model")
    if usercode.is_ref(cfg.loss.name):
        obj = usercode.load(cfg.loss.name, "loss.name").obj
        rows += [] if userargs.is_loss_object(obj) else userargs.arg_rows(cfg.loss.name, obj, cfg.loss.args, {}, "loss")
    return rows

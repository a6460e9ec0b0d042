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

from gan import tomlfile
from gan.errors import GanError

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


def _f(default, doc: str, *, choices=None, min=None, max=None, min_open=False, factory=False):
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "min_open": min_open}
    if factory:
        return field(default_factory=lambda: list(default), metadata=meta)
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


@dataclass
class Model:
    arch: str = _f("dcgan", "generator/discriminator family, see `gan list --models`")
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
    name: str = _f("hinge", "bce (non-saturating), hinge or wgan", choices=("bce", "hinge", "wgan"))
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


# Keys renamed since older runs wrote their config.toml: read under the new name.
ALIASES = {("metrics", "isc"): "is"}


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_SECTION_CLS = {"experiment": Experiment, "data": Data, "model": Model, "loss": Loss, "optim": Optim,
                "train": Train, "metrics": Metrics}


def _type_name(t) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "list": "a list of strings"}[t]


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
    m = f.metadata
    if m["choices"] is not None and value not in m["choices"]:
        raise bad("one of " + ", ".join(repr(c) for c in m["choices"]))
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
            raise GanError(f"{where}: unknown section [{section}]: expected one of {', '.join(_SECTION_CLS)}")
        if not isinstance(table, dict):
            raise GanError(f"{where}: {section} = {table!r}: expected a [{section}] table")
        obj = getattr(cfg, section)
        fields = {key(f): f for f in dataclasses.fields(obj)}
        for k, value in table.items():
            k = ALIASES.get((section, k), k)
            if k not in fields:
                raise GanError(f"{where}: unknown key {section}.{k}: expected one of {', '.join(fields)}")
            setattr(obj, fields[k].name, _check(where, section, k, value, fields[k]))
    return cfg


def cross_check(cfg: Config, where: str) -> None:
    """Rules that involve more than one key."""
    from gan import augment
    from gan.models import ARCHES  # late import: models import torch

    if cfg.model.arch not in ARCHES:
        raise GanError(f"{where}: model.arch = {cfg.model.arch!r}: expected one of {', '.join(sorted(ARCHES))}")
    sizes = ARCHES[cfg.model.arch].sizes
    if cfg.data.image_size not in sizes:
        raise GanError(f"{where}: data.image_size = {cfg.data.image_size}: model {cfg.model.arch!r} makes "
                       f"{' or '.join(map(str, sizes))}×{' or '.join(map(str, sizes))} images")
    if cfg.data.dataset in ("npz", "folder") and not cfg.data.path:
        raise GanError(f"{where}: data.path is empty: dataset {cfg.data.dataset!r} needs a path")
    for e in cfg.metrics.extractors:
        if e not in ("auto", "inception", "c10"):
            raise GanError(f"{where}: metrics.extractors = {cfg.metrics.extractors!r}: "
                           "expected a list out of 'auto', 'inception', 'c10'")
    if cfg.loss.name != "bce" and (cfg.loss.label_smoothing or cfg.loss.label_noise):
        raise GanError(f"{where}: loss.label_smoothing/label_noise apply to loss.name = 'bce' only")
    if cfg.model.conditional and not ARCHES[cfg.model.arch].conditional:
        conditional = ", ".join(sorted(n for n, a in ARCHES.items() if a.conditional))
        raise GanError(f"{where}: model.conditional = true: model {cfg.model.arch!r} has no conditional form "
                       f"(use one of {conditional})")
    try:
        augment.parse(cfg.train.diffaug)
    except ValueError as e:
        raise GanError(f"{where}: train.diffaug = {cfg.train.diffaug!r}: {e}") from None
    from gan.rundir import check_name

    try:
        check_name(cfg.experiment.name, "experiment.name")
    except GanError as e:
        raise GanError(f"{where}: {e}") from None


def parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item:
        raise GanError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    if key.count(".") != 1:
        raise GanError(f"--set {item!r}: expected section.key=value, e.g. optim.batch_size=64")
    section, name = key.strip().split(".")
    try:  # a TOML value (numbers, booleans, lists, quoted strings); bare words are strings
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


# What a resumed run may not change: its identity (experiment, data, model, loss, numerics) and what its metric
# numbers mean (the protocol). Everything else (length, cadences, learning rates...) may change on resume.
RESUME_LOCKED = {"experiment": None, "data": None, "model": None, "loss": None,
                 "optim": {"batch_size", "n_dis"}, "train": {"precision", "diffaug"},
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


def _explicit_wins(cfg: Config, given: dict[tuple[str, str], str], path: Path) -> None:
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


def resolve_path(exp: str) -> Path:
    p = Path(exp)
    if p.is_dir():
        raise GanError(f"experiment '{exp}' is a folder: expected a .toml file or the name of one under "
                       f"experiments/")
    if p.suffix == ".toml" or "/" in exp:
        if p.is_dir():
            raise GanError(f"experiment file '{exp}' is a folder: expected a .toml file")
        if not p.is_file():
            raise GanError(f"experiment file '{exp}' not found")
        return p
    p = EXPERIMENTS_DIR / f"{exp}.toml"
    if not p.is_file() and Path(exp).is_dir():
        raise GanError(f"experiment '{exp}' is a folder: expected an experiment name or a .toml file")
    if not p.is_file():
        names = ", ".join(sorted(x.stem for x in EXPERIMENTS_DIR.glob("*.toml")))
        raise GanError(f"no experiment named '{exp}' (known: {names})")
    return p


def last_wins(overrides: list[str]) -> list[str]:
    """The one rule for a key given twice with --set, in every command (train, resume, validate, sweep): the last
    value wins, as in most command lines; the earlier ones are dropped here, before anything reads them."""
    keys = [tuple(parse_override(i)[:2]) for i in overrides]
    last = {k: n for n, k in enumerate(keys)}
    return [i for n, (i, k) in enumerate(zip(overrides, keys)) if last[k] == n]


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
        doc.setdefault(section, {})
        if not isinstance(doc[section], dict):
            raise GanError(f"--set {item!r}: [{section}] is not a table")
        doc[section][key] = value
    where = f"{path}" + (" (with --set)" if overrides else "")
    return validate(doc, where, path.stem, {tuple(parse_override(i)[:2]): i for i in overrides or []}, path)


def validate(doc: dict, where: str, stem: str, given: dict | None = None, path: Path | None = None) -> Config:
    """A parsed TOML document as a Config, every rule checked (GanError naming `where` otherwise); `given`:
    {(section, key): item} of the --set items, `stem`: the name when the document gives none."""
    cfg = from_dict(doc, where)
    _explicit_wins(cfg, given or {}, path or where)
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

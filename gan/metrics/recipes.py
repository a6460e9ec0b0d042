"""The recipes behind published figures, in this project's config keys: a figure stands beside an experiment or a
run only when it trains the same way, or with the difference said.

A recipe is what the source sets: its flag file, as written (kept below with the commit it was read at), mapped onto
our keys, plus what its training script fixes in code (Adam's betas, the G step's batch, the learning-rate decay,
the data pipeline, spectral norm, no EMA). Keys that only log or evaluate (logdir, sample_step, fid_cache) are not
part of a recipe. `tests/test_published.py` parses the flag files and holds each `*_collections` experiment to them.
"""
from __future__ import annotations

from dataclasses import dataclass

COLLECTIONS_AT = "w86763777/pytorch-gan-collections @ 860e90b"

# configs/<name>.txt in that commit, as written
FLAGFILES = {
    "SNGAN_CIFAR10_CNN": "--arch=cnn32 --batch_size=128 --dataset=cifar10 --fid_cache=./stats/cifar10.train.npz "
                         "--logdir=./logs/SNGAN_CIFAR10_CNN --loss=hinge --lr_D=0.0002 --lr_G=0.0002 --n_dis=1 "
                         "--num_images=50000 --record --sample_step=500 --sample_size=64 --seed=0 "
                         "--total_steps=100000 --z_dim=100",
    "SNGAN_CIFAR10_RES": "--arch=res32 --batch_size=64 --dataset=cifar10 --fid_cache=./stats/cifar10.train.npz "
                         "--logdir=./logs/SNGAN_CIFAR10_RES --loss=hinge --lr_D=0.0002 --lr_G=0.0002 --n_dis=5 "
                         "--num_images=50000 --record --sample_step=500 --sample_size=64 --seed=0 "
                         "--total_steps=100000 --z_dim=128",
    "WGANGP_CIFAR10_CNN": "--alpha=10.0 --arch=cnn32 --batch_size=128 --dataset=cifar10 "
                          "--fid_cache=./stats/cifar10.train.npz --logdir=./logs/WGANGP_CIFAR10_CNN --loss=was "
                          "--lr_D=0.0002 --lr_G=0.0002 --n_dis=1 --num_images=50000 --record --sample_step=500 "
                          "--sample_size=64 --seed=0 --total_steps=100000 --z_dim=100",
}
# flag -> our key (value mapped by VALUES where the names differ); None: logging or evaluation, not the recipe
FLAGS = {"arch": "model.arch", "batch_size": "optim.batch_size", "dataset": "data.dataset", "loss": "loss.name",
         "lr_D": "optim.d_lr", "lr_G": "optim.g_lr", "n_dis": "optim.n_dis", "seed": "experiment.seed",
         "total_steps": "train.steps", "z_dim": "model.z_dim", "alpha": "loss.gp_weight", "fid_cache": None,
         "logdir": None, "num_images": None, "record": None, "sample_step": None, "sample_size": None}
LOSSES = {"hinge": "hinge", "was": "wgan", "bce": "bce"}

# What every training script of the collection fixes in code, and what each script adds (sngan.py, wgangp.py)
COMMON = {"optim.beta1": 0.0, "optim.beta2": 0.9, "optim.lr_decay": "linear", "optim.ema_decay": 0.0,
          "model.g_channels": 64, "model.d_channels": 64, "model.conditional": False, "model.d_batchnorm": False,
          "model.dropout": 0.0, "data.image_size": 32, "data.limit": 0, "data.fraction": 1.0,
          "train.precision": "fp32", "train.diffaug": "", "loss.r1_weight": 0.0}
SCRIPTS = {
    "sngan.py": {"arches": {"cnn32": "sngan_cnn", "res32": "sngan_resnet"}, "model.spectral_norm": True,
                 "data.hflip": False, "data.dequantize": True, "loss.gp_weight": 0.0},
    "wgangp.py": {"arches": {"cnn32": "wgan_cnn"}, "model.spectral_norm": False,
                  "data.hflip": True, "data.dequantize": False},
}


def parse_flags(text: str) -> dict[str, str]:
    """'--a=1 --record' -> {'a': '1', 'record': 'true'}"""
    out = {}
    for item in text.split():
        k, _, v = item.removeprefix("--").partition("=")
        out[k] = v if _ else "true"
    return out


def _number(v: str):
    try:
        return int(v)
    except ValueError:
        return float(v)


@dataclass(frozen=True)
class Recipe:
    flagfile: str  # a key of FLAGFILES
    script: str  # a key of SCRIPTS
    experiment: str  # our experiment file that is this recipe

    @property
    def source(self) -> str:
        return f"{COLLECTIONS_AT}: {self.script} --flagfile configs/{self.flagfile}.txt"

    def keys(self) -> dict:
        """The recipe as {section.key: value}: the flag file mapped, the script's code, the collection's code."""
        flags, script = parse_flags(FLAGFILES[self.flagfile]), SCRIPTS[self.script]
        out = {}
        for f, v in flags.items():  # the flag file first: what a reader compares first
            key = FLAGS[f]
            if key is None:
                continue
            out[key] = (script["arches"][v] if f == "arch" else LOSSES[v] if f == "loss" else v if f == "dataset"
                        else _number(v))
        out["optim.g_batch_size"] = 2 * out["optim.batch_size"]  # the script's G step draws batch_size * 2 latents
        return out | {k: v for k, v in script.items() if k != "arches"} | COMMON


def differences(config: dict, recipe: Recipe) -> list[tuple[str, object, object]]:
    """Where a config ({section: {key: value}}, as config.toml or Config.to_dict() hold it) differs from a recipe:
    [(section.key, ours, the source's)], in the recipe's order; [] when it is that recipe."""
    out = []
    for k, want in recipe.keys().items():
        sec, name = k.split(".")
        have = (config.get(sec) or {}).get(name)
        if k == "optim.g_batch_size" and not have:  # 0 = the D batch
            have = (config.get("optim") or {}).get("batch_size")
        same = have == want or (isinstance(have, (int, float)) and isinstance(want, (int, float))
                                and not isinstance(have, bool) and float(have) == float(want))
        if not same:
            out.append((k, have, want))
    return out


def said(diffs: list[tuple[str, object, object]]) -> str:
    """"n_dis 5 (source 1), batch_size 64 (128)": the differences in a line, keys without their section."""
    return ", ".join(f"{k.split('.')[1]} {_shown(a)} ({'source ' if i == 0 else ''}{_shown(b)})"
                     for i, (k, a, b) in enumerate(diffs))


def _shown(v) -> str:
    return "true" if v is True else "false" if v is False else v if isinstance(v, str) else f"{v:g}" \
        if isinstance(v, float) else str(v)

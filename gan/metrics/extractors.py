"""The registry of feature extractors: each has its torch-fidelity name, the feature layer per metric, and where
its weights come from. The standard Inception is fetched (fetch.py, sha256 verified) when a run wants it, it is
missing and `metrics.fetch_inception` is on; weights that cannot be had are said once and skipped."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from gan import compat, fileio
from gan.metrics import fetch, protocol

INCEPTION_FILE = fetch.INCEPTION_FILE  # torch-fidelity's download name
_SHA: dict = {}  # (path, size, mtime) -> sha256: a weights file is hashed once per process


def sha256_file(path: str) -> str:
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = fileio.sha256_file(path)
    return _SHA[key]


def inception_weights(configured: str = "") -> tuple[str | None, str]:
    """(path or None, why): config key, then env GAN_INCEPTION_WEIGHTS, then torch-fidelity's hub cache."""
    for src, p in (("metrics.inception_weights", configured),
                   ("GAN_INCEPTION_WEIGHTS", os.environ.get("GAN_INCEPTION_WEIGHTS", ""))):
        if p:
            if Path(p).is_file():
                return p, f"{src}={p}"
            return None, f"{src}={p} does not exist"
    hub = fetch.target()
    if hub.is_file():
        return str(hub), f"torch-fidelity cache {hub}"
    return None, MISSING


MISSING = ("no Inception weights (`gan features get inception`, or set GAN_INCEPTION_WEIGHTS or "
           "metrics.inception_weights to a local pt_inception-2015-12-05 .pth)")


def c10_weights(_configured: str = "") -> tuple[str | None, str]:
    from gan import features

    return (str(features.WEIGHTS), "packaged") if features.WEIGHTS.is_file() else (None, "packaged weights missing")


def _register_c10() -> None:
    from gan import features

    features.register()


@dataclass(frozen=True)
class Spec:
    fidelity_name: str  # name in torch-fidelity's registry
    layers: dict  # metric -> feature layer ("is" and the class metrics use class logits)
    weights: Callable[[str], tuple[str | None, str]]
    setup: Callable[[], None] = lambda: None
    classifier: bool = False  # its logits are CIFAR-10 classes: class consistency / coverage can be measured


REGISTRY: dict[str, Spec] = {
    "inception": Spec("inception-v3-compat", {"fid": "2048", "kid": "2048", "prc": "2048", "is": "logits_unbiased"},
                      inception_weights),
    "c10": Spec("c10", {"fid": "feat", "kid": "feat", "prc": "feat", "is": "logits"}, c10_weights, _register_c10,
                classifier=True),
}


def choose(names: list[str], inception_path: str = "", fetch_missing: bool = False,
           console=None) -> tuple[list[tuple[str, str]], list[str]]:
    """[(name, weights_path)] that will run, and one line per extractor saying why it runs or not.
    `fetch_missing`: the standard Inception, wanted and not found anywhere, is fetched once (a short timeout)."""
    wanted = []
    for n in names:
        wanted += ["inception", "c10"] if n == "auto" else [n]
    chosen, notes = [], []
    for name in dict.fromkeys(wanted):  # keep order, drop repeats
        path, why = REGISTRY[name].weights(inception_path)
        aside = ""
        if path is not None and name == "inception":
            path, why, aside = _usable(path, why)
        if path is None and name == "inception" and why == MISSING and fetch_missing:
            path, got = fetch.at_run_start(console)
            why = got if path else f"no Inception weights: {got}"
        if path is None:
            notes.append(f"{name}: skipped, {aside}{why}")
        else:
            chosen.append((name, path))
            notes.append(f"{name}: on, {aside}weights {why}")
    return chosen, notes


def _usable(path: str, why: str) -> tuple[str | None, str, str]:
    """(path or None, why, what was done) for Inception weights about to be used. torch-fidelity's cache holds the
    standard file or nothing: any other bytes there (half a download, a damaged or foreign file) are moved aside,
    and the weights count as missing (so a run fetches them once). A file the user named is never moved: one that
    does not load is skipped, said once."""
    if Path(path) == fetch.target():
        if sha256_file(path) == fetch.EXPECTED_SHA256:
            return path, why, ""
        from gan.fileio import set_aside

        moved = set_aside(Path(path), "not the standard file: its sha256 differs", log=lambda _m: None)
        return None, MISSING, f"the cached {Path(path).name} was not the standard file (moved aside to {moved.name}); "
    try:
        torch.load(path, map_location="cpu", weights_only=True)  # torch-fidelity loads with weights_only=False
    except Exception as e:  # noqa: BLE001 - a damaged, truncated or foreign file, or a pickle with code in it
        return None, f"{why}: the file does not load as plain tensors (weights_only=True: {type(e).__name__})", ""
    return path, why, ""


@dataclass
class Extractor:
    name: str
    spec: Spec
    module: torch.nn.Module
    weights_path: str
    sha256: str
    layers: list = field(default_factory=list)
    suffix: str = ""  # tag suffix: metrics/fid{suffix}
    on_batch: Callable[[int], None] | None = None  # told the images of each batch done (a progress bar)

    @torch.inference_mode()
    def features(self, images_u8: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Features of uint8 (N,3,H,W) images, batch by batch, gathered on the CPU as torch-fidelity does."""
        out: dict[str, list] = {k: [] for k in self.layers}
        for chunk in images_u8.split(batch_size):
            feats = self.module(chunk)
            for k, v in zip(self.module.features_list, feats):
                out[k].append(v.cpu())
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        return {k: torch.cat(v) for k, v in out.items()}


def load(name: str, weights_path: str, device: torch.device) -> Extractor:
    spec = REGISTRY[name]
    spec.setup()
    if name == "inception":  # torch-fidelity unpickles it with weights_only=False: only after this load succeeds
        try:
            torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a pickle with code in it, a damaged or foreign file
            from gan.errors import GanError

            raise GanError(f"Inception weights '{weights_path}' do not load as plain tensors (weights_only=True: "
                           f"{type(e).__name__}); not using them") from None
    layers = list(dict.fromkeys(spec.layers.values()))
    module = compat.create_feature_extractor(spec.fidelity_name, layers, weights_path).to(device)
    sha = sha256_file(weights_path)
    return Extractor(name, spec, module, weights_path, sha, layers, protocol.suffix(name, sha))


def where(inception_path: str = "") -> list[str]:
    """`gan features where`: one line per extractor: the weights a run would use, why, and the tags they give."""
    out = []
    for name, spec in REGISTRY.items():
        path, why = spec.weights(inception_path)
        if path is None:
            more = (f"; a run fetches them at start from {fetch.url()} into {fetch.target().parent} "
                    "(metrics.fetch_inception = true), or `gan features get inception`" if why == MISSING else "")
            out.append(f"{name}: none: {why}{more}")
            continue
        sha = sha256_file(path)
        sfx = protocol.suffix(name, sha)
        std = ("the pinned standard" if sfx == "" else "not the standard file" if name == "inception"
               else "the packaged file")
        out.append(f"{name}: {path} ({why}), sha256 {sha[:16]}… ({std}): logs metrics/fid{sfx}, kid{sfx}, is{sfx}")
    out.append("inception looks in order: metrics.inception_weights, env GAN_INCEPTION_WEIGHTS, torch-fidelity's "
               f"cache {fetch.target()}")
    return out

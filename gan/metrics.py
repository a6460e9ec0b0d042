"""FID / KID / IS through torch-fidelity, with the generator fed in memory (no PNG round trip).

Extractors are a registry (`EXTRACTORS`): each has its torch-fidelity name, the tag suffix its
numbers are logged under, and where its weights come from. Numbers from one extractor are never
logged under another's tag: `metrics/fid` is Inception only, `metrics/fid_c10` is ours.

Reference features are cached on disk keyed by the reference images' content hash, the extractor's
weights sha256 and the sample count (torch-fidelity's own cache is keyed by a name only).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.utils import create_feature_extractor

from gan.data import content_hash, to_uint8

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's download name
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub names files by their sha256's first digits
EVAL_SEED = 2020  # the same latents at every evaluation: curves move with G, not with sampling noise


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_CACHE", Path.home() / ".cache" / "gan"))


def inception_weights_path(configured: str = "") -> tuple[str | None, str]:
    """(path or None, why): config key, then env GAN_INCEPTION_WEIGHTS, then torch-fidelity's hub cache."""
    for src, p in (("metrics.inception_weights", configured),
                   ("GAN_INCEPTION_WEIGHTS", os.environ.get("GAN_INCEPTION_WEIGHTS", ""))):
        if p:
            if Path(p).is_file():
                return p, f"{src}={p}"
            return None, f"{src}={p} does not exist"
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if hub.is_file():
        return str(hub), f"torch-fidelity cache {hub}"
    return None, ("no Inception weights (set GAN_INCEPTION_WEIGHTS or metrics.inception_weights to a local "
                  "pt_inception-2015-12-05 .pth)")


def _c10_weights(_configured: str = "") -> tuple[str | None, str]:
    from gan import features

    return (str(features.WEIGHTS), "packaged") if features.WEIGHTS.is_file() else (None, "packaged weights missing")


@dataclass(frozen=True)
class ExtractorSpec:
    fidelity_name: str  # name in torch-fidelity's registry
    suffix: str  # tag suffix: metrics/fid{suffix}
    layers: dict  # metric -> feature layer
    weights: Callable[[str], tuple[str | None, str]]
    setup: Callable[[], None] = lambda: None


def _register_c10() -> None:
    from gan import features

    features.register()


EXTRACTORS: dict[str, ExtractorSpec] = {
    "inception": ExtractorSpec("inception-v3-compat", "", {"fid": "2048", "kid": "2048", "isc": "logits_unbiased"},
                               inception_weights_path),
    "c10": ExtractorSpec("c10", "_c10", {"fid": "feat", "kid": "feat", "isc": "logits"}, _c10_weights,
                         _register_c10),
}


def choose_extractors(names: list[str], inception_weights: str = "") -> tuple[list[tuple[str, str]], list[str]]:
    """[(name, weights_path)] that will run, and one line per extractor saying why it runs or not."""
    wanted = []
    for n in names:
        wanted += ["inception", "c10"] if n == "auto" else [n]
    chosen, notes = [], []
    for name in dict.fromkeys(wanted):  # keep order, drop repeats
        path, why = EXTRACTORS[name].weights(inception_weights)
        if path is None:
            notes.append(f"{name}: skipped, {why}")
        else:
            chosen.append((name, path))
            notes.append(f"{name}: on, weights {why}")
    return chosen, notes


@dataclass
class Extractor:
    name: str
    spec: ExtractorSpec
    module: torch.nn.Module
    weights_path: str
    sha256: str
    layers: list = field(default_factory=list)
    suffix: str = ""  # tag suffix: metrics/fid{suffix}

    @torch.inference_mode()
    def features(self, images_u8: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Features of uint8 (N,3,H,W) images, batch by batch, gathered on the CPU as torch-fidelity does."""
        out: dict[str, list] = {k: [] for k in self.layers}
        for chunk in images_u8.split(batch_size):
            feats = self.module(chunk)
            for k, v in zip(self.module.features_list, feats):
                out[k].append(v.cpu())
        return {k: torch.cat(v) for k, v in out.items()}


def load_extractor(name: str, weights_path: str, device: torch.device) -> Extractor:
    spec = EXTRACTORS[name]
    spec.setup()
    layers = list(dict.fromkeys(spec.layers.values()))
    module = create_feature_extractor(spec.fidelity_name, layers, cuda=False, verbose=False,
                                      feature_extractor_weights_path=weights_path).to(device)
    sha = sha256_file(weights_path)
    suffix = spec.suffix
    if name == "inception" and not sha.startswith(INCEPTION_SHA256_PREFIX):
        # Not the standard pt_inception-2015-12-05 weights (a stand-in, a retrained net): its numbers must never
        # pass for standard FIDs, so they get a tag of their own.
        suffix = f"_inception_{sha[:8]}"
    return Extractor(name, spec, module, weights_path, sha, layers, suffix)


def _fidelity_kwargs(n1: int, n2: int) -> dict:
    # torch-fidelity's defaults, with the KID subset shrunk to fit small sample counts.
    return {"verbose": False, "kid_subset_size": min(1000, n1, n2), "kid_subsets": 100, "isc_splits": 10,
            "samples_shuffle": True, "rng_seed": 2020}


def scores(ext: Extractor, fake: dict, ref: dict | None, ref_stats: dict | None, want: dict) -> dict[str, float]:
    """torch-fidelity's own metric functions on precomputed features. Keys: fid, kid, kid_std, is, is_std."""
    out: dict[str, float] = {}
    n_fake = len(next(iter(fake.values())))
    if want.get("fid"):
        st = fid_featuresdict_to_statistics(fake, ext.spec.layers["fid"])
        out["fid"] = fid_statistics_to_metric(st, ref_stats, False)["frechet_inception_distance"]
    if want.get("kid"):
        n_ref = len(ref[ext.spec.layers["kid"]])
        kid = kid_featuresdict_to_metric(fake, ref, ext.spec.layers["kid"], **_fidelity_kwargs(n_fake, n_ref))
        out["kid"], out["kid_std"] = kid["kernel_inception_distance_mean"], kid["kernel_inception_distance_std"]
    if want.get("isc"):
        isc = isc_featuresdict_to_metric(fake, ext.spec.layers["isc"], **_fidelity_kwargs(n_fake, n_fake))
        out["is"], out["is_std"] = isc["inception_score_mean"], isc["inception_score_std"]
    return out


class Evaluator:
    """Computes the configured metrics for a generator, against cached reference features."""

    def __init__(self, mcfg, ref_images: torch.Tensor, device: torch.device, z_dim: int, log=print):
        self.cfg, self.device, self.z_dim, self.log = mcfg, device, z_dim, log
        chosen, self.notes = choose_extractors(mcfg.extractors, mcfg.inception_weights)
        n_ref = min(mcfg.ref_samples or len(ref_images), len(ref_images))
        self.ref_images = ref_images[:n_ref]
        self.ref_hash = content_hash(self.ref_images)
        self.extractors = [load_extractor(n, p, device) for n, p in chosen]
        self.refs = {e.name: self._reference(e) for e in self.extractors}
        for e in self.extractors:
            if e.suffix != e.spec.suffix:
                self.notes.append(f"{e.name}: weights sha256 {e.sha256[:16]}… are not the standard "
                                  f"pt_inception-2015-12-05: logged as metrics/fid{e.suffix}, not metrics/fid")
        self.is_warned: set[str] = set()
        self.want = {"fid": mcfg.fid, "kid": mcfg.kid, "isc": mcfg.isc}

    def protocol(self) -> list[dict]:
        """What every metric point means: extractor, its weights, sample counts, reference set."""
        return [{"extractor": e.name, "weights": e.weights_path, "weights_sha256": e.sha256,
                 "tags": [f"metrics/{m}{e.suffix}" for m, on in
                          (("fid", self.cfg.fid), ("kid", self.cfg.kid), ("is", self.cfg.isc)) if on],
                 "num_samples": self.cfg.num_samples, "reference": "training images",
                 "reference_samples": len(self.ref_images), "reference_sha256": self.ref_hash}
                for e in self.extractors]

    def _reference(self, e: Extractor) -> dict:
        key = f"{e.name}-{e.sha256[:16]}-{self.ref_hash[:16]}-n{len(self.ref_images)}"
        path = cache_dir() / "refstats" / f"{key}.pt"
        if path.is_file():
            try:
                blob = torch.load(path, weights_only=True)
                self.log(f"reference statistics for {e.name}: cached {path}")
                return blob
            except Exception:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
                self.log(f"reference cache {path} is unreadable: recomputing")
        t0 = time.perf_counter()
        feats = e.features(self.ref_images, self.cfg.batch_size)
        st = fid_featuresdict_to_statistics(feats, e.spec.layers["fid"])
        blob = {"features": feats, "mu": torch.from_numpy(st["mu"]), "sigma": torch.from_numpy(st["sigma"])}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        self.log(f"reference statistics for {e.name}: {len(self.ref_images)} images in "
                 f"{time.perf_counter() - t0:.1f}s, cached {path}")
        return blob

    @torch.inference_mode()
    def generate(self, G: torch.nn.Module, n: int) -> torch.Tensor:
        """n uint8 samples from G on fixed latents; leaves the global RNG untouched."""
        gen = torch.Generator(self.device).manual_seed(EVAL_SEED)
        was_training = G.training
        G.eval()
        out = []
        for start in range(0, n, self.cfg.batch_size):
            z = torch.randn(min(self.cfg.batch_size, n - start), self.z_dim, generator=gen, device=self.device)
            out.append(to_uint8(G(z)))
        G.train(was_training)
        return torch.cat(out)

    def score_images(self, fake_u8: torch.Tensor) -> dict[str, float]:
        """Metrics of given uint8 images, as {tag: value}; IS that is not finite is skipped with one warning."""
        out = {}
        for e in self.extractors:
            feats = e.features(fake_u8, self.cfg.batch_size)
            ref = self.refs[e.name]
            ref_stats = {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()}
            for k, v in scores(e, feats, ref["features"], ref_stats, self.want).items():
                tag = f"metrics/{k}{e.suffix}"
                if not np.isfinite(v):
                    if e.name not in self.is_warned:
                        self.is_warned.add(e.name)
                        self.log(f"warning: {tag} is not finite ({e.name} weights without a usable head?): "
                                 "skipping it")
                    continue
                out[tag] = float(v)
        return out

    def __call__(self, G: torch.nn.Module, n: int | None = None) -> dict[str, float]:
        return self.score_images(self.generate(G, n or self.cfg.num_samples))

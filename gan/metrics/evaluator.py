"""The evaluator: a generator's samples, made in memory on fixed latents, scored against cached reference features
by every chosen extractor (see extractors.py), through torch-fidelity's own metric functions (scores.py).

Built in one place (`build`) for the engine, `gan eval` and the benchmarks. Reference features are cached on disk,
keyed by the reference images' content hash, the extractor's weights sha256 and the count (torch-fidelity's own
cache is keyed by a name only), with a checksum of its contents; a damaged cache file is recomputed and said, never
trusted. Two processes computing one cache at once each write a temp file and put it in with one rename: one good
file is left.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gan import fileio, stop
from gan.data import content_hash, to_uint8
from gan.metrics import extractors, prc, protocol, scores

EVAL_SEED = 2020  # the same latents at every evaluation: curves move with G, not with sampling noise


def _console(log):
    """The rich console behind `log` (console.print) for a download's progress bar; None for other loggers."""
    owner = getattr(log, "__self__", None)
    return owner if hasattr(owner, "is_terminal") else None


def cache_dir() -> Path:
    return Path(os.environ.get("GAN_CACHE", Path.home() / ".cache" / "gan"))


@dataclass
class Evaluation:
    values: dict[str, float]  # tag -> value; a non-finite value stays in (the caller says so)
    spread: dict[str, float] = field(default_factory=dict)  # std/<metric><suffix>: KID and IS over subsets/splits
    histograms: dict[str, torch.Tensor] = field(default_factory=dict)  # tag -> per-class counts


class Evaluator:
    """Computes the configured metrics for a generator, against cached reference features."""

    reference = "training images"  # what the reference set is, in the protocol record

    def __init__(self, mcfg, ref_images: torch.Tensor, device: torch.device, z_dim: int, log=print,
                 num_classes: int = 0, class_names: list[str] | None = None, meter=None, reference: str | None = None):
        self.cfg, self.device, self.z_dim, self.log, self.num_classes = mcfg, device, z_dim, log, num_classes
        chosen, self.notes = extractors.choose(mcfg.extractors, mcfg.inception_weights,
                                               getattr(mcfg, "fetch_inception", False), _console(log))
        # c10's classes are CIFAR-10's: its class metrics mean something only on a dataset with those classes
        self.labels_of, why = scores.c10_labels(class_names)
        if mcfg.classes and self.labels_of is None and any(extractors.REGISTRY[n].classifier for n, _ in chosen):
            self.notes.append(f"class metrics off: {why}")
        n_ref = min(mcfg.ref_samples or len(ref_images), len(ref_images))
        self.ref_images = ref_images[:n_ref]
        self.ref_hash = content_hash(self.ref_images)
        self.extractors = [extractors.load(n, p, device) for n, p in chosen]
        self.want = scores.wanted(mcfg, num_classes > 0, self.labels_of is not None)
        self.reference = reference or self.reference
        if meter is not None and self.extractors:  # a long extraction: its time said up front, then a bar
            fresh = sum(not self._cache_path(e).is_file() for e in self.extractors)
            meter.plan(self.extractors, mcfg.num_samples + len(self.ref_images) * fresh // len(self.extractors),
                       device)
        self.refs = {e.name: self._reference(e) for e in self.extractors}
        for e in self.extractors:
            if e.suffix != protocol.EXTRACTOR_SUFFIX[e.name]:
                self.notes.append(f"{e.name}: weights sha256 {e.sha256[:16]}… are not the standard "
                                  f"pt_inception-2015-12-05: logged as metrics/fid{e.suffix}, not metrics/fid")

    def tags(self, e: extractors.Extractor) -> list[str]:
        return [protocol.tag(m, e.suffix) for m in scores.names(self.want, e.spec.classifier)]

    def protocol(self) -> list[dict]:
        """What every metric point means: extractor, its weights, sample counts, reference set."""
        return [{"extractor": e.name, "suffix": e.suffix, "weights": e.weights_path, "weights_sha256": e.sha256,
                 "tags": self.tags(e), "num_samples": self.cfg.num_samples, "reference": self.reference,
                 "reference_samples": len(self.ref_images), "reference_sha256": self.ref_hash,
                 "classes_sampled": "uniformly, in turn" if self.num_classes else None,
                 **(scores.ceilings(e, self.refs[e.name]) if e.spec.classifier and self.want["classes"] else {})}
                for e in self.extractors]

    def _cache_path(self, e: extractors.Extractor) -> Path:
        key = f"{e.name}-{e.sha256[:16]}-{self.ref_hash[:16]}-n{len(self.ref_images)}"
        return cache_dir() / "refstats" / f"{key}.pt"

    def _reference(self, e: extractors.Extractor) -> dict:
        path = self._cache_path(e)
        if path.is_file():
            try:
                blob = fileio.load_torch(path)
                if not (isinstance(blob, dict) and isinstance(blob.get("features"), dict) and "mu" in blob):
                    raise fileio.Corrupt("not a reference cache")
                if set(e.layers) <= set(blob["features"]) and len(blob["mu"]):
                    self.log(f"reference statistics for {e.name}: cached {path}")
                    return self._with_radii(e, blob, path)
                self.log(f"reference cache {path} lacks some features: recomputing")
            except Exception as err:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
                why = str(err) if isinstance(err, fileio.Corrupt) else type(err).__name__
                self.log(f"reference cache {path} is damaged ({why}): recomputing")
        stop.at("refstats")
        t0 = time.perf_counter()
        feats = e.features(self.ref_images, self.cfg.batch_size)
        blob = {"features": feats, **scores.fid_statistics(e, feats)}
        if self.want.get("prc"):
            blob[scores.RADII] = prc.radii(feats[e.spec.layers["prc"]])
        self.log(f"reference statistics for {e.name}: {len(self.ref_images)} images in "
                 f"{time.perf_counter() - t0:.1f}s, {self._save(path, blob)}")
        return blob

    def _with_radii(self, e: extractors.Extractor, blob: dict, path: Path) -> dict:
        """The real images' k-NN radii for precision/recall, computed once and kept in the reference cache."""
        if not self.want.get("prc"):
            return blob
        r = blob.get(scores.RADII)
        if isinstance(r, torch.Tensor) and r.shape == (len(self.ref_images),):
            return blob
        t0 = time.perf_counter()
        blob[scores.RADII] = prc.radii(blob["features"][e.spec.layers["prc"]])
        self.log(f"precision/recall radii for {e.name}: {len(self.ref_images)} images in "
                 f"{time.perf_counter() - t0:.1f}s, {self._save(path, blob)}")
        return blob

    @staticmethod
    def _save(path: Path, blob: dict) -> str:
        try:
            fileio.save_torch(path, blob, checksum=True)  # atomic: two writers at once leave one good file
            return f"cached {path}"
        except fileio.GanError as err:  # a cache that cannot be written is not a reason to stop the run
            return f"not cached ({err})"

    def latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The n fixed evaluation latents and, for a conditional G, classes in turn (uniform over classes)."""
        gen = torch.Generator(self.device).manual_seed(EVAL_SEED)
        z = torch.randn(n, self.z_dim, generator=gen, device=self.device)
        y = torch.arange(n, device=self.device) % self.num_classes if self.num_classes else None
        return z, y

    @torch.inference_mode()
    def generate(self, G: torch.nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n uint8 samples from G (in eval mode) on the fixed latents, and their classes; the global RNG is untouched."""
        z, y = self.latents(n)
        was_training = G.training
        G.eval()
        bs = self.cfg.batch_size
        out = [to_uint8(G(z[i:i + bs], None if y is None else y[i:i + bs])) for i in range(0, n, bs)]
        G.train(was_training)
        return torch.cat(out), y

    def score_images(self, fake_u8: torch.Tensor, classes: torch.Tensor | None = None) -> Evaluation:
        """Metrics of given uint8 images (and the classes they were asked for), as {tag: value}."""
        out = Evaluation({})
        for e in self.extractors:
            feats = e.features(fake_u8, self.cfg.batch_size)
            vals, std, hist = scores.compute(e, feats, self.refs[e.name], self.want, classes, self.labels_of)
            out.values.update({protocol.tag(k, e.suffix): v for k, v in vals.items()})
            out.spread.update({f"std/{k}{e.suffix}": v for k, v in std.items()})
            out.histograms.update({protocol.tag(k, e.suffix): v for k, v in hist.items()})
        return out

    def __call__(self, G: torch.nn.Module, n: int | None = None) -> Evaluation:
        fake, classes = self.generate(G, n or self.cfg.num_samples)
        stop.at("eval")
        return self.score_images(fake, classes)


def build(mcfg, ref_images: torch.Tensor, device: torch.device, z_dim: int, log=print,
          num_classes: int = 0, class_names: list[str] | None = None, meter=None,
          reference: str | None = None) -> tuple[Evaluator | None, list[str]]:
    """The evaluator a run's metrics config asks for, or None, with one line per extractor saying why.
    `class_names`: the dataset's (class metrics run only when they are CIFAR-10's)."""
    if not mcfg.enabled or not scores.names(scores.wanted(mcfg, num_classes > 0), classifier=True):
        return None, ["off (metrics.enabled = false or no metric chosen)"]
    ev = Evaluator(mcfg, ref_images, device, z_dim, log, num_classes, class_names, meter=meter, reference=reference)
    return (ev if ev.extractors else None), ev.notes

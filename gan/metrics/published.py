"""The protocols papers measure CIFAR-10 GANs by, and the figures they report under each.

A protocol fixes the sample count, the reference set and the extractor (the standard Inception): numbers of two
protocols are never put side by side. `gan eval RUN --protocol NAME` measures a run under one, `gan leaderboard
--published` shows the figures below only beside runs measured under the same protocol, and the README's
experiments table takes its published column from `readme_cell`.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan.errors import GanError
from gan.metrics.recipes import Recipe, differences, said


@dataclass(frozen=True)
class Protocol:
    name: str
    samples: int  # generated images
    reference: str  # "train" or "test": which CIFAR-10 split the statistics are of
    reference_count: int  # how many of its images (all of them)
    used_by: str

    @property
    def what(self) -> str:
        return (f"{self.samples:,} samples vs the {self.reference_count:,} CIFAR-10 "
                f"{'training' if self.reference == 'train' else 'test'} images, standard Inception")


# The sizes are the protocols' own; tests shrink them here (a seam no command exposes) to run the path end to end.
PROTOCOLS = {
    "published": Protocol("published", 50_000, "train", 50_000, "pytorch-gan-collections, StudioGAN"),
    "diffaug": Protocol("diffaug", 10_000, "test", 10_000, "the DiffAugment code (Zhao et al. 2020)"),
}

# train (50k) vs test (10k) FID with the standard Inception, as pytorch-image-generation-metrics 0.6 reports it (the
# renamed w86763777/pytorch-gan-metrics; its README and PyPI page): the official TF code, its own port, and the port
# with `use_torch=True`
TRAIN_VS_TEST = {"official TF": 3.1508, "pytorch-image-generation-metrics": 3.1525, "its use_torch=True": 3.1457}

# What a protocol's run must have trained on: all 50,000 CIFAR-10 training images in their original order, at
# 32×32 (gan.data.content_hash of the uint8 N×3×32×32 tensor; tests/test_published.py checks it on the shards).
CIFAR10_TRAIN_SHA256 = "9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111"


@dataclass(frozen=True)
class Figure:
    model: str
    fid: float
    protocol: str  # a key of PROTOCOLS
    source: str
    conditional: bool = False  # a class-conditional model: ranked only beside conditional runs
    recipe: Recipe | None = None  # what the source trained, in our keys; its experiment is that recipe
    related: tuple = ()  # our experiments of this model with another recipe: their README cell says how they differ

    @property
    def kind(self) -> str:
        return "conditional" if self.conditional else "unconditional"


COLLECTIONS = "w86763777/pytorch-gan-collections (README, CIFAR-10 table)"
DIFFAUG = ("Zhao et al. 2020, Differentiable Augmentation, CIFAR-10 100 % data (mit-han-lab/data-efficient-gans "
           "READMEs, fid10k)")
LITERATURE = [
    Figure("DCGAN", 42.72, "published", COLLECTIONS),  # its cnn32 DCGAN (5×5 D convs) is not our `dcgan` model
    Figure("WGAN-GP CNN", 19.83, "published", COLLECTIONS,
           recipe=Recipe("WGANGP_CIFAR10_CNN", "wgangp.py", "wgan_gp_collections"), related=("wgan_gp",)),
    Figure("SN-GAN CNN", 17.81, "published", COLLECTIONS,
           recipe=Recipe("SNGAN_CIFAR10_CNN", "sngan.py", "sngan_collections"), related=("baseline", "sngan")),
    Figure("SN-GAN ResNet", 14.32, "published", COLLECTIONS,
           recipe=Recipe("SNGAN_CIFAR10_RES", "sngan.py", "sngan_resnet_collections"), related=("sngan_resnet",)),
    Figure("BigGAN + DiffAugment", 8.70, "diffaug", DIFFAUG, conditional=True),
    Figure("StyleGAN2 + DiffAugment", 9.89, "diffaug", DIFFAUG),
]


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise GanError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)} "
                       f"({'; '.join(f'{k}: {p.what}' for k, p in PROTOCOLS.items())})")
    return PROTOCOLS[name]


def readme_cell(experiment: str, config: dict) -> str:
    """The README experiments table's published column for an experiment ({section: {key: value}} its config):
    the figure beside the experiment that is its source's recipe; for one of the same model with another recipe,
    how it differs and which experiment is the source's; "—" when no figure applies."""
    cells = []
    for f in LITERATURE:
        if f.recipe is not None and experiment == f.recipe.experiment:
            diff = differences(config, f.recipe)
            cells.append(f"FID {f.fid:.2f} ({f.model}, {f.kind}, protocol `{f.protocol}`): the source's recipe"
                         if not diff else f"— (differs from the recipe of {f.model}'s {f.fid:.2f}: {said(diff)})")
        elif experiment in f.related:
            cells.append(f"— (not the recipe of {f.model}'s {f.fid:.2f}: {said(differences(config, f.recipe))}; "
                         f"`{f.recipe.experiment}` is)")
    return "; ".join(cells) or "—"


def figures_for(p: str, kind: str) -> list[Figure]:
    """The figures under protocol `p` of one kind (conditional or not): only these are ranked beside such runs."""
    return [f for f in LITERATURE if f.protocol == p and f.kind == kind]


def recipe_of(config: dict) -> Figure | None:
    """The published figure whose recipe a run's config ({section: {key: value}}) is, or None."""
    return next((f for f in LITERATURE if f.recipe is not None and not differences(config, f.recipe)), None)


def check_applies(p: Protocol, image_size: int, data_sha256: str, source: str) -> None:
    """A published protocol measures only a run that trained on all of CIFAR-10's training images at 32×32
    (by content: `data_sha256` of the images it trained on), in one line otherwise."""
    if image_size != 32:
        raise GanError(f"--protocol {p.name} applies to runs trained on CIFAR-10 at 32×32: this run trained at "
                       f"{image_size}×{image_size}")
    if data_sha256 != CIFAR10_TRAIN_SHA256:
        raise GanError(f"--protocol {p.name} applies to runs trained on CIFAR-10's 50,000 training images: this run "
                       f"trained on other images ({source}; content sha256 {str(data_sha256)[:16]}…, CIFAR-10's "
                       f"{CIFAR10_TRAIN_SHA256[:16]}…)")


def split_images(root: str, stem: str) -> tuple[np.ndarray, str] | None:
    """All the CIFAR-10 images of split `stem` ("train" or "test") under `root` as uint8 NHWC and where they came
    from: `<stem>-*.npz` shards, else torchvision's cifar-10-batches-py; None when neither is there."""
    from gan.data import load_npz, read_cifar10_batches

    r = Path(root).expanduser()
    if glob.glob(str(r / f"{stem}-*.npz")):
        src = str(r / f"{stem}-*.npz")
        return load_npz(src)[0], src
    if (r / "cifar-10-batches-py").is_dir():
        src = str(r / "cifar-10-batches-py" / ("data_batch_*" if stem == "train" else "test_batch"))
        return read_cifar10_batches(r / "cifar-10-batches-py", Path(src).name)[0], src
    return None


def reference_images(p: Protocol, root: str) -> tuple[np.ndarray, str]:
    """All the CIFAR-10 images of the protocol's split under `root` (train-*.npz / test-*.npz shards, else
    torchvision's cifar-10-batches-py) as uint8 NHWC, and where they came from; refused in one line when there
    are fewer than the protocol needs."""
    stem = "train" if p.reference == "train" else "test"
    found = split_images(root, stem)
    if found is None:
        raise GanError(f"--protocol {p.name}: no CIFAR-10 {stem} images under '{root}' ({stem}-*.npz shards or "
                       "torchvision's cifar-10-batches-py); give --data DIR")
    x, src = found
    if len(x) < p.reference_count or x.shape[1:3] != (32, 32):
        raise GanError(f"--protocol {p.name} needs {p.reference_count:,} CIFAR-10 {stem} images (32×32); "
                       f"{src} has {len(x):,} of {x.shape[1]}×{x.shape[2]}: give --data a folder with all of them "
                       "(e.g. torchvision's cifar-10-batches-py)")
    return x[:p.reference_count], f"{src} ({p.reference_count:,} images)"


def check(root: str, weights: str, device, metrics, log=print, console=None) -> float:
    """`gan features check --published`: FID of all 50,000 CIFAR-10 training images against the 10,000 test
    images with the standard Inception (≈ 3.15 published); reference statistics cached like every reference.
    `metrics`: a metrics config (the caller's defaults) that this check narrows to Inception FID."""
    import dataclasses

    from gan import compat
    from gan.data import to_tensor
    from gan.fileio import sha256_file
    from gan.metrics import extractors, protocol as proto
    from gan.metrics.evaluator import Evaluator
    from gan.metrics.meter import Meter

    path, why = extractors.inception_weights(weights)
    if path is None:
        raise GanError(f"--published needs the standard Inception weights: {why}")
    if sha256_file(path) != proto.INCEPTION_SHA256:
        raise GanError(f"--published: {path} is not the standard pt_inception-2015-12-05 (sha256 differs from the "
                       "pinned one): the published figure holds for the standard weights only")
    train, test = (reference_images(PROTOCOLS[k], root) for k in ("published", "diffaug"))
    m = dataclasses.replace(metrics, extractors=["inception"], inception_weights=path, fid=True, kid=False,
                            is_=False, prc=False, classes=False, fetch_inception=False, num_samples=0)
    stats = []
    for (x, where) in (train, test):
        meter = Meter(console, log)
        try:
            ev = Evaluator(m, to_tensor(x, 32, device), device, 1, log, meter=meter, reference=where)
        finally:
            meter.close()
        stats.append({"mu": ev.refs["inception"]["mu"].numpy(), "sigma": ev.refs["inception"]["sigma"].numpy()})
    fid = compat.fid(stats[0], stats[1])
    log(f"FID train {len(train[0]):,} vs test {len(test[0]):,} (standard Inception): {fid:.4f}  "
        f"(published: {', '.join(f'{v} {k}' for k, v in TRAIN_VS_TEST.items())}; pytorch-image-generation-metrics 0.6)")
    return float(fid)

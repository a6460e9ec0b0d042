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

# train (50k) vs test (10k) FID with the standard Inception, w86763777/pytorch-image-generation-metrics
TRAIN_VS_TEST = (3.1508, 3.1518)  # TF, PyTorch


@dataclass(frozen=True)
class Figure:
    model: str
    fid: float
    protocol: str  # a key of PROTOCOLS
    source: str
    experiments: tuple = ()  # our experiment files that train this model (README's published column)


COLLECTIONS = "w86763777/pytorch-gan-collections (README, CIFAR-10 table)"
DIFFAUG = ("Zhao et al. 2020, Differentiable Augmentation, CIFAR-10 100 % data (mit-han-lab/data-efficient-gans "
           "READMEs, fid10k)")
LITERATURE = [
    Figure("DCGAN", 42.72, "published", COLLECTIONS),
    Figure("WGAN-GP CNN", 19.83, "published", COLLECTIONS, ("wgan_gp",)),
    Figure("SN-GAN CNN", 17.81, "published", COLLECTIONS, ("baseline", "sngan")),
    Figure("SN-GAN ResNet", 14.32, "published", COLLECTIONS, ("sngan_resnet",)),
    Figure("BigGAN + DiffAugment", 8.70, "diffaug", DIFFAUG),
    Figure("StyleGAN2 + DiffAugment", 9.89, "diffaug", DIFFAUG),
]


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise GanError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)} "
                       f"({'; '.join(f'{k}: {p.what}' for k, p in PROTOCOLS.items())})")
    return PROTOCOLS[name]


def readme_cell(experiment: str) -> str:
    """The README experiments table's published column for an experiment ("—" when no figure applies)."""
    figs = [f for f in LITERATURE if experiment in f.experiments]
    return "; ".join(f"FID {f.fid:.2f} ({f.model}, protocol `{f.protocol}`)" for f in figs) or "—"


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

    from torch_fidelity.metric_fid import fid_statistics_to_metric

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
    fid = fid_statistics_to_metric(stats[0], stats[1], False)["frechet_inception_distance"]
    log(f"FID train {len(train[0]):,} vs test {len(test[0]):,} (standard Inception): {fid:.4f}  "
        f"(published: {TRAIN_VS_TEST[0]} TF, {TRAIN_VS_TEST[1]} PyTorch; w86763777/pytorch-image-generation-metrics)")
    return float(fid)

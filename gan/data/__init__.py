"""Datasets as one uint8 tensor (N, 3, H, W) held on the training device; batches drawn by index (gan.sampler).

Kinds (`data.dataset`):
- cifar10: CIFAR-10's 50,000 training images from `data.root`: train-*.npz shards, else torchvision's
  cifar-10-batches-py/data_batch_* pickles, else a torchvision download. Classes: CIFAR-10's ten names.
- npz: a file, a folder (its train-*.npz shards, else every *.npz) or a glob. Each file holds `images`
  (uint8 N×H×W×3, RGB), optional `labels` (integers ≥ 0, N or N×1) and optional `classes` (strings, one
  per label value). Without `classes`, 32×32 images whose labels lie in 0..9 are taken to be CIFAR-10 and get
  its names; other labelled files get no names (store a `classes` array to name them). Labels are kept only
  when every shard has them.
- folder: every image below `data.path`, centre-cropped to a square and resized to `data.image_size` once,
  so mixed sizes are fine. When every image lies in a subfolder, those subfolders are the classes (sorted
  names, as torchvision's ImageFolder); images directly in `data.path` make it a flat folder without labels.
  Hidden files and folders (.name) are skipped. Grayscale, palette, CMYK, 16-bit and alpha images are
  converted to RGB (16-bit scaled to 8, transparency composited on white) and one console line counts them
  per mode; other modes (32-bit float, ...) are refused.

Subsets: `data.limit` keeps the first N images, then `data.fraction` keeps that share of them: the first
images of each class in data order (every class keeps its share, at least one image) when there are labels,
else the first images. Both are deterministic, so every run and every DDP rank sees the same subset.

Bad files are one line (GanError) naming the file and what is wrong. Loading checks every zip member's
CRC, so a damaged shard is refused rather than trained on; pickles are read without running code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gan.errors import GanError
from gan.data.cifar import load_cifar10, read_cifar10_batches  # noqa: F401 - the package face
from gan.data.common import CIFAR10_CLASSES
from gan.data.folder import IMAGE_EXTS, load_folder  # noqa: F401
from gan.data.npz import load_npz, load_npz_dataset, npz_files  # noqa: F401


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray | None  # int64 (N,), class indices into `classes` when it is set
    classes: list[str] | None  # a name per class index
    source: str  # one line: where the images came from and how many were kept
    reference: np.ndarray | None = None  # what metrics compare against when not `images`: with data.fraction, every
    # image (after data.limit), as the DiffAugment paper measures its limited-data runs against the full set

    @property
    def metric_images(self) -> np.ndarray:
        """The images a run's metrics compare against (the reference set)."""
        return self.images if self.reference is None else self.reference


# ---- subsets and the one entry point --------------------------------------------------------------------------
def subset(n: int, labels: np.ndarray | None, limit: int = 0,
           fraction: float = 1.0) -> tuple[slice | np.ndarray, str]:
    """Which of `n` images to keep: the first `limit`, then `fraction` of those (per class when labelled).

    Returns a slice or sorted indices (data order is kept) and a few words saying what was kept."""
    keep: slice | np.ndarray = slice(0, min(limit, n) if limit else n)
    said = [f"data.limit = {limit}"] if limit and limit < n else []
    m = keep.stop
    if fraction < 1.0:
        y = labels[:m] if labels is not None else None
        if y is None:
            keep = slice(0, max(1, int(fraction * m + 0.5)))
        else:
            keep = np.zeros(m, bool)
            for c in np.unique(y):  # the first k of each class, every class keeping its share
                where = np.flatnonzero(y == c)
                keep[where[:max(1, int(fraction * len(where) + 0.5))]] = True
            keep = np.flatnonzero(keep)
        said.append(f"data.fraction = {fraction:g}" + (" per class" if y is not None else ""))
    kept = len(range(n)[keep]) if isinstance(keep, slice) else len(keep)
    return keep, (f"{kept} of {n} images: {', '.join(said)}" if said else f"{n} images")


def load_dataset(data_cfg, log=None) -> Dataset:
    """The images, labels and class names the config asks for, after data.limit and data.fraction."""
    if data_cfg.dataset == "npz":
        x, y, classes = load_npz_dataset(data_cfg.path)
        src = f"npz {data_cfg.path}"
    elif data_cfg.dataset == "folder":
        x, y, classes = load_folder(data_cfg.path, data_cfg.image_size, log)
        src = f"folder {data_cfg.path}"
    else:
        x, y = load_cifar10(data_cfg.root)
        classes = None if y is None else list(CIFAR10_CLASSES)
        src = f"cifar10 {data_cfg.root}"
    keep, said = subset(len(x), y, data_cfg.limit, data_cfg.fraction)
    ref = x[:data_cfg.limit or len(x)] if data_cfg.fraction < 1.0 else None
    return Dataset(x[keep], None if y is None else y[keep], classes, f"{src} ({said})", ref)


@dataclass
class TrainingSet:
    """The data a run trains on, on its device: uint8 NCHW images (and labels when conditional)."""
    images: torch.Tensor
    labels: torch.Tensor | None  # int64, only for a conditional run
    class_names: list[str] | None  # only for a conditional run
    reference: torch.Tensor  # what the run's metrics compare against
    source: str
    classes: list[str] | None = None  # the dataset's class names, conditional or not (class metrics need them)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0


def training_set(cfg, device: torch.device, world: int = 1, log=None) -> TrainingSet:
    """`cfg`'s dataset on `device`, checked against what the run asks of it (batch size, labels)."""
    data, b = load_dataset(cfg.data, log), cfg.optim.batch_size
    if b > len(data.images):
        raise GanError(f"optim.batch_size = {b}: larger than the dataset ({len(data.images)} images from "
                       f"{data.source})")
    if b % world:
        raise GanError(f"optim.batch_size = {b}: not divisible by the {world} processes (optim.batch_size is the "
                       "global batch; each rank takes an equal share)")
    if cfg.model.conditional and data.labels is None:
        raise GanError(f"model.conditional = true: the dataset has no class labels ({data.source})")
    images = to_tensor(data.images, cfg.data.image_size, device)
    ref = images if data.reference is None else to_tensor(data.metric_images, cfg.data.image_size, device)
    cond = cfg.model.conditional
    return TrainingSet(images, torch.from_numpy(data.labels).to(device) if cond else None,
                       data.classes if cond else None, ref, data.source, data.classes)


def to_tensor(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW on `device`, resized once when the data differ from `size`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    if x.shape[-1] != size or x.shape[-2] != size:
        chunks = []
        for c in x.split(1024):  # bounded memory for the float copy
            c = torch.nn.functional.interpolate(c.float(), size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)
            chunks.append(c.round().clamp(0, 255).to(torch.uint8))
        x = torch.cat(chunks)
    return x.to(device)


def content_hash(x: torch.Tensor) -> str:
    """sha256 of the images' bytes: the identity of a reference set for cached statistics."""
    import hashlib

    return hashlib.sha256(x.cpu().contiguous().numpy().tobytes()).hexdigest()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (what feature extractors and PNGs take)."""
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)

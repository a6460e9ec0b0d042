"""Datasets as one uint8 tensor (N, 3, H, W) held on the training device; batches drawn by index."""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan.errors import GanError


def npz_files(path: str) -> list[str]:
    """An npz path may be a file, a folder (its train-*.npz shards, else every *.npz) or a glob."""
    p = Path(path).expanduser()
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        files = sorted(glob.glob(str(p / "train-*.npz"))) or sorted(glob.glob(str(p / "*.npz")))
    else:
        files = sorted(glob.glob(str(p)))
    if not files:
        raise GanError(f"data.path: no .npz file at '{path}' (expected a file, a folder of train-*.npz shards or a glob)")
    return files


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images uint8 (N, H, W, 3) and labels (N,) or None, concatenated over the shards of `path`."""
    images, labels = [], []
    for f in npz_files(path):
        try:
            with np.load(f) as z:
                if "images" not in z:
                    raise GanError(f"data.path: '{f}' has no 'images' array (keys: {', '.join(z.files) or 'none'})")
                x = z["images"]
                y = z["labels"] if "labels" in z else None
        except (OSError, ValueError) as e:
            raise GanError(f"data.path: '{f}' is not a readable .npz file ({e})") from None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise GanError(
                f"data.path: '{f}' images are {x.dtype} {tuple(x.shape)}, expected uint8 N×H×W×3 (RGB)"
            )
        images.append(x)
        labels.append(y)
    if len({x.shape[1:] for x in images}) > 1:
        raise GanError(f"data.path: shards under '{path}' have different image sizes")
    y = None if any(v is None for v in labels) else np.concatenate(labels)
    return np.concatenate(images), y


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def load_folder(path: str, size: int) -> np.ndarray:
    """Every image below `path` (class subfolders or flat), centre-cropped to a square and resized once."""
    from PIL import Image

    root = Path(path).expanduser()
    if not root.is_dir():
        raise GanError(f"data.path: '{path}' is not a folder of images")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise GanError(f"data.path: no images ({', '.join(sorted(IMAGE_EXTS))}) under '{path}'")
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):  # load time only; the training loop never touches PIL
        try:
            im = Image.open(f).convert("RGB")
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds
            raise GanError(f"data.path: cannot read image '{f}' ({e})") from None
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
        out[i] = np.asarray(im)
    return out


def read_cifar10_batches(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's on-disk layout (cifar-10-batches-py/data_batch_1..5), read without its md5 check."""
    import pickle

    xs, ys = [], []
    for f in sorted(folder.glob("data_batch_*")):
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="latin1")  # the official CIFAR-10 python format is a pickle
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d.get("labels", d.get("fine_labels")), np.uint8))
    if not xs:
        raise GanError(f"'{folder}' has no data_batch_* files")
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(root: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 train images from `root`: train-*.npz shards, else torchvision's layout, else a download."""
    r = Path(root).expanduser()
    if glob.glob(str(r / "train-*.npz")):
        return load_npz(str(r / "train-*.npz"))
    if (r / "cifar-10-batches-py").is_dir():
        return read_cifar10_batches(r / "cifar-10-batches-py")
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(r), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - URLError, RuntimeError, OSError...
        raise GanError(
            f"CIFAR-10 is not in '{root}' and could not be downloaded ({type(e).__name__}); point at local data "
            f"with GAN_DATA_ROOT=DIR (torchvision layout or train-*.npz shards) or --set data.dataset=npz "
            f"--set data.path=PATH") from None
    return ds.data, np.asarray(ds.targets, np.uint8)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Dataset:
    images: np.ndarray
    labels: np.ndarray | None
    classes: list | None
    source: str


def load_dataset(data_cfg) -> Dataset:
    if data_cfg.dataset == "npz":
        x, y = load_npz(data_cfg.path)
        src = f"npz {data_cfg.path}"
    elif data_cfg.dataset == "folder":
        x, y = load_folder(data_cfg.path, data_cfg.image_size), None
        src = f"folder {data_cfg.path}"
    else:
        x, y = load_cifar10(data_cfg.root)
        src = f"cifar10 {data_cfg.root}"
    if data_cfg.limit:
        x, y = x[: data_cfg.limit], (None if y is None else y[: data_cfg.limit])
    y = None if y is None else y.astype(np.int64)
    return Dataset(x, y, CIFAR10_CLASSES if y is not None else None, f"{src} ({len(x)} images)")


def load_images(data_cfg) -> tuple[np.ndarray, str]:
    """uint8 (N, H, W, 3) for the config, and a one-line description of where they came from."""
    if data_cfg.dataset == "npz":
        x, _ = load_npz(data_cfg.path)
        src = f"npz {data_cfg.path}"
    elif data_cfg.dataset == "folder":
        x = load_folder(data_cfg.path, data_cfg.image_size)
        src = f"folder {data_cfg.path}"
    else:
        x, _ = load_cifar10(data_cfg.root)
        src = f"cifar10 {data_cfg.root}"
    if data_cfg.limit:
        x = x[: data_cfg.limit]
    return x, f"{src} ({len(x)} images)"


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



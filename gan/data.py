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

import glob
import math
import pickle
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan.errors import GanError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray | None  # int64 (N,), class indices into `classes` when it is set
    classes: list[str] | None  # a name per class index
    source: str  # one line: where the images came from and how many were kept


def _why(e: BaseException) -> str:
    """An exception as a short single line for a GanError."""
    name = type(e).__name__
    name = f"{type(e).__module__}.error" if name == "error" else name  # struct.error, zlib.error
    text = str(e).strip().splitlines()
    return f"{name}: {text[0][:160]}" if text else name


# ---- npz ---------------------------------------------------------------------------------------------------
# What numpy's .npy reader, zipfile and zlib raise on truncated or damaged bytes; anything else is a bug.
NPZ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError, ValueError,
              NotImplementedError, OSError)


def npz_files(path: str) -> list[str]:
    """An npz path may be a file, a folder (its train-*.npz shards, else every *.npz) or a glob."""
    p = Path(path).expanduser()
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        files = sorted(glob.glob(str(p / "train-*.npz"))) or sorted(glob.glob(str(p / "*.npz")))
    else:
        files = sorted(glob.glob(str(p)))
    files = [f for f in files if not Path(f).is_dir()]
    if not files:
        raise GanError(f"data.path: no .npz file at '{path}' (expected a file, a folder of train-*.npz shards or a glob)")
    return files


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, f: str) -> np.ndarray:
    """One .npy member; its header is checked against the member's size before anything is allocated."""
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format version {version} is not supported")
        if dtype.hasobject:
            raise GanError(f"data.path: '{f}': {info.filename} holds Python objects (pickles are not loaded)")
        want, have = math.prod(shape) * dtype.itemsize, info.file_size - fh.tell()
        if want != have:
            raise ValueError(f"its header says {dtype} {shape} ({want} bytes) but it holds {have} bytes")
        data = fh.read(want)
        if len(data) != want or fh.read():  # reading to the end makes zipfile check the CRC
            raise ValueError("its size does not match its header")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _read_npz(f: str) -> dict[str, np.ndarray]:
    """images/labels/classes of one .npz; every other member is read once too, for its CRC."""
    try:
        with open(f, "rb") as fh:
            head = fh.read(6)
    except OSError as e:
        raise GanError(f"data.path: '{f}': cannot read ({e.strerror or _why(e)})") from None
    if head == b"\x93NUMPY":
        raise GanError(f"data.path: '{f}' is a .npy array, not a .npz (save it with np.savez(path, images=...))")
    arrays = {}
    try:
        with zipfile.ZipFile(f) as zf:
            # zipfile stops listing at a damaged comment length and silently drops the members after it:
            # every central-directory record must be listed.
            zf.fp.seek(zf.start_dir)
            records = zf.fp.read().count(b"PK\x01\x02")
            if records != len(zf.infolist()):
                raise zipfile.BadZipFile(f"the directory holds {records} records but lists {len(zf.infolist())}")
            for info in zf.infolist():
                if info.flag_bits & 0x1:
                    raise GanError(f"data.path: '{f}': {info.filename} is encrypted")
                key = info.filename.removesuffix(".npy")
                if key in ("images", "labels", "classes"):
                    try:
                        arrays[key] = _read_npy(zf, info, f)
                    except ValueError as e:
                        raise ValueError(f"{info.filename}: {e}") from None
                else:
                    with zf.open(info) as m:
                        while m.read(1 << 20):
                            pass
    except zipfile.BadZipFile as e:
        if "not a zip file" in str(e):
            raise GanError(f"data.path: '{f}' is not a readable .npz file (not a zip archive: truncated, "
                           f"or not an .npz at all)") from None
        raise GanError(f"data.path: '{f}' is not a readable .npz file ({_why(e)}: damaged?)") from None
    except NPZ_ERRORS as e:  # OSError here is a damaged offset (a seek before the start), not a permission
        raise GanError(f"data.path: '{f}' is not a readable .npz file ({_why(e)}: damaged?)") from None
    return arrays


def _check_labels(f: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # (N, 1), as Keras stores them
        y = y[:, 0]
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise GanError(f"data.path: '{f}' labels are {y.dtype} {tuple(y.shape)}, expected integers (N,)")
    if len(y) != n:
        raise GanError(f"data.path: '{f}' has {len(y)} labels for {n} images")
    if n and y.min() < 0:
        raise GanError(f"data.path: '{f}' has negative labels (min {y.min()}): expected class indices ≥ 0")
    return y.astype(np.int64)


def _check_classes(f: str, c: np.ndarray) -> list[str]:
    if c.ndim != 1 or c.dtype.kind not in "US" or len(c) == 0:
        raise GanError(f"data.path: '{f}' classes are {c.dtype} {tuple(c.shape)}, expected a list of names")
    try:
        return [s.decode() if isinstance(s, bytes) else str(s) for s in c.tolist()]
    except UnicodeDecodeError:
        raise GanError(f"data.path: '{f}' classes are not UTF-8 text") from None


def load_npz_dataset(path: str) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Images uint8 (N, H, W, 3), labels int64 (N,) or None, class names or None, over the shards of `path`."""
    images, labels, classes = [], [], None
    files = npz_files(path)
    for f in files:
        z = _read_npz(f)
        if "images" not in z:
            raise GanError(f"data.path: '{f}' has no 'images' array (keys: {', '.join(sorted(z)) or 'none'})")
        x = z["images"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise GanError(
                f"data.path: '{f}' images are {x.dtype} {tuple(x.shape)}, expected uint8 N×H×W×3 (RGB)"
            )
        if len(x) == 0 or 0 in x.shape:
            raise GanError(f"data.path: '{f}' holds no images (shape {tuple(x.shape)})")
        y = _check_labels(f, z["labels"], len(x)) if "labels" in z else None
        if "classes" in z:
            c = _check_classes(f, z["classes"])
            if classes is not None and c != classes:
                raise GanError(f"data.path: '{f}' names other classes than the shards before it")
            classes = c
        images.append(x)
        labels.append(y)
    for f, x in zip(files, images):
        if x.shape[1:] != images[0].shape[1:]:
            raise GanError(f"data.path: shards under '{path}' have different image sizes: '{f}' holds "
                           f"{x.shape[1]}×{x.shape[2]}, '{files[0]}' {images[0].shape[1]}×{images[0].shape[2]}")
    y = None if any(v is None for v in labels) else np.concatenate(labels)
    x = np.concatenate(images)
    if y is not None and classes is not None and y.max() >= len(classes):
        raise GanError(f"data.path: '{path}' has label {y.max()} but only {len(classes)} class names")
    if y is not None and classes is None and x.shape[1:3] == (32, 32) and y.max() < 10:
        classes = list(CIFAR10_CLASSES)  # CIFAR-10-like: its names (documented above)
    if y is None:
        classes = None
    return x, y, classes


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Images uint8 (N, H, W, 3) and labels int64 (N,) or None, concatenated over the shards of `path`."""
    x, y, _ = load_npz_dataset(path)
    return x, y


# ---- image folders -----------------------------------------------------------------------------------------
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
# Modes converted to RGB, and how the console line names them.
CONVERTED = {"L": "grayscale", "1": "1-bit", "P": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab",
             "HSV": "HSV", "RGBX": "RGBX", "RGBA": "RGBA", "LA": "grayscale+alpha", "PA": "palette+alpha",
             "RGBa": "RGBA", "La": "grayscale+alpha", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit",
             "I;16N": "16-bit", "I": "16-bit"}


def _to_rgb(im):
    """A PIL image of any supported mode as 8-bit RGB; transparency composited on white."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode.startswith("I"):  # 16-bit grayscale: scale, PIL's convert("L") would clip at 255
        a = np.asarray(im).astype(np.float64) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode not in CONVERTED:
        raise ValueError(f"image mode {im.mode} is not supported (expected RGB, grayscale, palette or 16-bit)")
    if "A" in im.mode or "a" in im.mode or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _image_files(root: Path) -> list[Path]:
    def hidden(f: Path) -> bool:
        return any(part.startswith(".") for part in f.relative_to(root).parts)

    return sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file() and not hidden(f))


def load_folder(path: str, size: int, log=None) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Every image below `path` (class subfolders or flat), centre-cropped to a square and resized once.

    Returns images uint8 (N, size, size, 3), labels int64 (N,) and the sorted class names, or None and None
    for a flat folder. Non-RGB images are converted (one line through `log` counts them per mode)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise GanError(f"data.path: '{path}' is not a folder of images")
    files = _image_files(root)
    if not files:
        raise GanError(f"data.path: no images ({', '.join(sorted(IMAGE_EXTS))}) under '{path}'")
    rel = [f.relative_to(root).parts for f in files]
    labels = classes = None
    if all(len(p) > 1 for p in rel):  # every image in a class subfolder
        classes = sorted({p[0] for p in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p[0]] for p in rel], np.int64)
    out = np.empty((len(files), size, size, 3), np.uint8)
    modes = Counter()
    for i, f in enumerate(files):  # load time only; the training loop never touches PIL
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL warns on harmless oddities (EXIF); damage raises below
                with Image.open(f) as im:
                    im.load()
                    if im.mode != "RGB":
                        modes[im.mode] += 1
                    rgb = _to_rgb(im)
                    s = min(rgb.size)
                    left, top = (rgb.width - s) // 2, (rgb.height - s) // 2
                    rgb = rgb.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
                    out[i] = np.asarray(rgb)
        except UnidentifiedImageError:
            raise GanError(f"data.path: cannot read image '{f}' (not an image PIL knows: damaged, or another "
                           f"kind of file with an image extension)") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                Image.DecompressionBombError) as e:  # what PIL raises on damaged or unsupported files
            raise GanError(f"data.path: cannot read image '{f}' ({_why(e)})") from None
    if modes:
        said = ", ".join(f"{n} {CONVERTED.get(m, m)} ({m})" for m, n in sorted(modes.items()))
        (log or _console_print)(f"data: converted {sum(modes.values())} of {len(files)} images to RGB: {said}")
    return out, labels, classes


def _console_print(msg: str) -> None:
    from gan.tracking import console

    console.print(msg, markup=False)


# ---- torchvision's CIFAR-10 layout ----------------------------------------------------------------------------
class _Dtype:
    """numpy.dtype(descr, ...) as pickled, made into a dtype only once loading is over."""

    def __init__(self, descr, *_):
        self.descr, self.order = descr, "|"

    def __setstate__(self, state):
        self.order = state[1]

    def get(self) -> np.dtype:
        if not isinstance(self.descr, str) or self.order not in ("<", ">", "|", "="):
            raise ValueError("damaged dtype")
        dt = np.dtype(self.descr)
        if dt.hasobject:
            raise ValueError("an object array (pickles of objects are not loaded)")
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


class _Array:
    """An ndarray's pickled pieces (shape, dtype, bytes): an array only once its size is checked."""

    def __init__(self, *_):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def get(self) -> np.ndarray:
        if not isinstance(self.state, tuple) or len(self.state) not in (4, 5):
            raise ValueError("damaged array")
        shape, dtype, fortran, raw = self.state[-4:]
        raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2 pickles keep bytes as str
        if (not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)
                or not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray))):
            raise ValueError("damaged array")
        dt = dtype.get()
        if math.prod(shape) * dt.itemsize != len(raw):
            raise ValueError(f"array {shape} {dt} does not match its {len(raw)} bytes")
        return np.frombuffer(raw, dt).reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls, shape, typecode):
    return _Array()


def _frombuffer(buf, dtype, shape, order):  # pickle protocol 5's form of an array
    a = _Array()
    a.state = (shape, dtype, order == "F", bytes(buf))
    return a


def _scalar(dtype, raw):
    a = _Array()
    a.state = ((), dtype, False, raw)
    return a.get()[()]


def _latin1(s, encoding="utf-8"):  # how protocol 2 pickles bytes: _codecs.encode(str, "latin1")
    if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("damaged bytes")
    return s.encode("latin1")


class _Refused(pickle.UnpicklingError):
    pass


class _ArraysOnly(pickle._Unpickler):  # the pure-Python one: C's prints to stderr on some damaged lengths
    """The CIFAR-10 batches are dicts of numpy arrays, lists and strings: nothing else is constructed, and
    numpy is called only after loading, on checked pieces (no code in a pickle runs, and damaged bytes can
    reach no C-level reconstructor)."""

    SAFE = {("numpy", "ndarray"): _Array, ("numpy", "dtype"): _Dtype, ("_codecs", "encode"): _latin1}
    for core in ("numpy.core", "numpy._core"):
        SAFE[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        SAFE[(f"{core}.multiarray", "scalar")] = _scalar
        SAFE[(f"{core}.numeric", "_frombuffer")] = _frombuffer

    def find_class(self, module, name):
        if (module, name) not in self.SAFE:
            raise _Refused(f"{module}.{name}")
        return self.SAFE[(module, name)]


# What unpickling truncated or random bytes raises when only the stand-ins above may be built.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                 OverflowError, MemoryError, RecursionError, struct.error)


def _read_batch(f: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(f, "rb") as fh:
            d = _ArraysOnly(fh, encoding="latin1").load()  # the official CIFAR-10 python format is a pickle
        if isinstance(d, dict):
            d = {k.decode("latin1") if isinstance(k, bytes) else k: v.get() if isinstance(v, _Array) else v
                 for k, v in d.items()}
    except OSError as e:
        raise GanError(f"'{f}': cannot read ({e.strerror or _why(e)})") from None
    except _Refused as e:
        raise GanError(f"'{f}' is not a CIFAR-10 batch: it would construct {e} (refused: a pickle can run "
                       f"code)") from None
    except PICKLE_ERRORS as e:
        raise GanError(f"'{f}' is not a readable CIFAR-10 batch ({_why(e)}: truncated or damaged?)") from None
    if not isinstance(d, dict) or "data" not in d:
        what = (f"keys: {', '.join(repr(k)[:40] for k in list(d)[:8])}" if isinstance(d, dict)
                else type(d).__name__)
        raise GanError(f"'{f}' is not a CIFAR-10 batch: no 'data' ({what})")
    x, y = d["data"], d.get("labels", d.get("fine_labels"))
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or not len(x):
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise GanError(f"'{f}': 'data' is {what}, expected uint8 (N, 3072)")
    try:
        y = np.asarray(y, np.int64)
    except (TypeError, ValueError, OverflowError):
        y = None
    if y is None or y.shape != (len(x),) or y.min() < 0 or y.max() > 9:
        raise GanError(f"'{f}': expected {len(x)} 'labels' in 0..9 beside 'data'")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def read_cifar10_batches(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's on-disk layout (cifar-10-batches-py/data_batch_1..5), read without its md5 check."""
    xs, ys = [], []
    for f in sorted(folder.glob("data_batch_*")):
        x, y = _read_batch(f)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise GanError(f"'{folder}' has no data_batch_* files")
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(root: str) -> tuple[np.ndarray, np.ndarray | None]:
    """CIFAR-10 train images from `root`: train-*.npz shards, else torchvision's layout, else a download."""
    r = Path(root).expanduser()
    if glob.glob(str(r / "train-*.npz")):
        return load_npz(str(r / "train-*.npz"))  # shards without labels still train unconditional models
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
    return ds.data, np.asarray(ds.targets, np.int64)


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
    x = x[keep]
    y = None if y is None else y[keep]
    return Dataset(x, y, classes, f"{src} ({said})")


def load_images(data_cfg, log=None) -> tuple[np.ndarray, str]:
    """uint8 (N, H, W, 3) for the config, and a one-line description of where they came from.

    Kept for the callers that need no labels; new code takes load_dataset."""
    ds = load_dataset(data_cfg, log)
    return ds.images, ds.source


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

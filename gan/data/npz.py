"""npz shards read with every member's header and CRC checked, so a damaged shard is one line, never a
traceback or a silent partial load."""
from __future__ import annotations

import glob
import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from gan.errors import GanError
from gan.data.common import CIFAR10_CLASSES, why as _why

# ---------------------------------------------------------------------------------------------------
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


def _npy_header(fh) -> tuple[tuple, bool, np.dtype]:
    """shape, Fortran order and dtype of a .npy member. numpy parses the header as Python text (ast, and tokenize
    for Python-2 headers): damaged bytes there raise whatever the parser does (SyntaxError, tokenize.TokenError,
    TypeError, RecursionError, ...), not only ValueError. All of them mean one thing: the header is damaged."""
    fmt = np.lib.format
    try:
        with warnings.catch_warnings():  # "created on Python 2": a damaged header can look like one
            warnings.simplefilter("ignore")
            version = fmt.read_magic(fh)
            if version == (1, 0):
                return fmt.read_array_header_1_0(fh)
            if version == (2, 0):
                return fmt.read_array_header_2_0(fh)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):  # the zip's own damage: said as such
        raise
    except Exception as e:  # noqa: BLE001 - any parser error on these bytes is a damaged header
        raise ValueError(f"its .npy header is damaged ({_why(e)})") from None
    raise ValueError(f"npy format version {version} is not supported")


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, f: str) -> np.ndarray:
    """One .npy member; its header is checked against the member's size before anything is allocated."""
    with zf.open(info) as fh:
        shape, fortran, dtype = _npy_header(fh)
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

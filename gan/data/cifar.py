"""CIFAR-10 as torchvision lays it out (cifar-10-batches-py/data_batch_* pickles, read without running
code), or as train-*.npz shards, or downloaded by torchvision."""
from __future__ import annotations

import glob
import math
import pickle
import struct
from pathlib import Path

import numpy as np

from gan.errors import GanError
from gan.data.common import why as _why
from gan.data.npz import load_npz

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


def read_cifar10_batches(folder: Path, pattern: str = "data_batch_*") -> tuple[np.ndarray, np.ndarray]:
    """torchvision's on-disk layout (cifar-10-batches-py/data_batch_1..5; `test_batch` for the test set), read
    without its md5 check."""
    xs, ys = [], []
    for f in sorted(folder.glob(pattern)):
        x, y = _read_batch(f)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise GanError(f"'{folder}' has no {pattern} files")
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

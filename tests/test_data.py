"""Data loading: npz as file, folder or glob; torchvision's CIFAR-10 layout; clear errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gan.config import Data
from gan.data import load_cifar10, load_images, load_npz, to_tensor
from gan.sampler import Sampler
from gan.errors import GanError
from tests.conftest import SHARED, make_images, needs_shared


def _shards(tmp_path, n=3, per=10):
    for k in range(n):
        np.savez(tmp_path / f"train-{k:02d}.npz", images=make_images(per, seed=k), labels=np.full(per, k, np.uint8))
    return tmp_path


def test_npz_file_folder_and_glob(tmp_path):
    d = _shards(tmp_path)
    np.savez(tmp_path / "test-00.npz", images=make_images(5), labels=np.zeros(5, np.uint8))
    x1, y1 = load_npz(str(d / "train-01.npz"))
    x2, y2 = load_npz(str(d))  # a folder takes its train-* shards, not test-00
    x3, _ = load_npz(str(d / "train-0[01].npz"))
    assert x1.shape == (10, 32, 32, 3) and x2.shape == (30, 32, 32, 3) and x3.shape == (20, 32, 32, 3)
    assert list(np.unique(y2)) == [0, 1, 2] and (x2[10:20] == x1).all()


@pytest.mark.parametrize("images,msg", [
    (np.zeros((4, 32, 32, 3), np.float32), "expected uint8"),
    (np.zeros((4, 32, 32), np.uint8), "expected uint8 N×H×W×3"),
])
def test_npz_wrong_dtype_or_shape(tmp_path, images, msg):
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(GanError, match=msg):
        load_npz(str(tmp_path / "bad.npz"))


def test_npz_missing_and_keyless(tmp_path):
    with pytest.raises(GanError, match="no .npz file"):
        load_npz(str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "x.npz", pixels=np.zeros(3))
    with pytest.raises(GanError, match="has no 'images' array"):
        load_npz(str(tmp_path / "x.npz"))


def test_cifar10_torchvision_layout(tmp_path):
    """The on-disk layout torchvision's CIFAR10 writes: cifar-10-batches-py/data_batch_1..5 pickles."""
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    imgs = make_images(25)
    for b in range(5):
        chunk = imgs[b * 5:(b + 1) * 5]
        with open(d / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump({"data": chunk.transpose(0, 3, 1, 2).reshape(5, -1), "labels": [b] * 5}, f)
    x, y = load_cifar10(str(tmp_path))
    assert x.shape == (25, 32, 32, 3) and (x == imgs).all() and list(y[:6]) == [0] * 5 + [1]
    x2, src = load_images(Data(dataset="cifar10", root=str(tmp_path)))
    assert len(x2) == 25 and "25 images" in src


def test_cifar10_missing_without_network_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(GanError, match="could not be downloaded.*GAN_DATA_ROOT"):
        load_cifar10(str(tmp_path / "empty"))


def test_sampler_batches_on_device_scaled_and_flipped():
    imgs = to_tensor(make_images(20), 32, torch.device("cpu"))
    s = Sampler(imgs, 8, hflip=False, seed=0)
    seen = torch.cat([s.next()[0] for _ in range(2)])
    assert seen.min() >= -1 and seen.max() <= 1 and seen.dtype == torch.float32
    # a pass is a permutation: 16 distinct images out of 20
    assert len({tuple(x.flatten()[:50].tolist()) for x in seen}) == 16
    state = s.state_dict()
    a = s.next()[0]
    s.load_state_dict(state)
    assert torch.equal(a, s.next()[0])


def test_resize_to_64():
    x = to_tensor(make_images(3), 64, torch.device("cpu"))
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.uint8


@needs_shared
def test_shared_shards_load():
    x, y = load_npz(str(SHARED))
    assert len(x) >= 15000 and len(x) % 5000 == 0 and x.dtype == np.uint8 and len(y) == len(x)
    assert tuple(x[0, 0, 0]) == (59, 62, 63)  # CIFAR-10's first training pixel

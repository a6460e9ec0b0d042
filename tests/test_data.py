"""Data loading: npz as file, folder or glob; torchvision's CIFAR-10 layout; image folders; labels and class
names; data.limit and data.fraction; the sampler with labels. Damaged files: tests/test_corrupt_inputs.py."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gan import config
from gan.config import Data
from gan.data import CIFAR10_CLASSES, Dataset, load_cifar10, load_dataset, load_npz, subset, to_tensor
from gan.errors import GanError
from gan.sampler import Sampler
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
    ds = load_dataset(Data(dataset="cifar10", root=str(tmp_path)))
    assert len(ds.images) == 25 and (ds.images == imgs).all() and "25 images" in ds.source


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
    a, y = s.next()
    s.load_state_dict(state)
    assert torch.equal(a, s.next()[0]) and y is None


def test_resize_to_64():
    x = to_tensor(make_images(3), 64, torch.device("cpu"))
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.uint8


@needs_shared
def test_shared_shards_load():
    x, y = load_npz(str(SHARED))
    assert len(x) >= 15000 and len(x) % 5000 == 0 and x.dtype == np.uint8 and len(y) == len(x)
    assert tuple(x[0, 0, 0]) == (59, 62, 63)  # CIFAR-10's first training pixel


# ---- load_dataset: labels and class names ------------------------------------------------------------------
def test_load_dataset_npz_labels_and_classes(tmp_path):
    _shards(tmp_path)  # labels 0, 1, 2 at 32×32: CIFAR-10-like
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path)))
    assert isinstance(ds, Dataset) and ds.images.shape == (30, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and list(ds.labels[::10]) == [0, 1, 2]
    assert ds.classes == CIFAR10_CLASSES and ds.source == f"npz {tmp_path} (30 images)"
    # the file's own names win; labels as Keras stores them (N, 1) are accepted
    np.savez(tmp_path / "named.npz", images=make_images(4), labels=np.array([[0], [1], [1], [0]]),
             classes=np.array(["cats", "dogs"]))
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path / "named.npz")))
    assert ds.classes == ["cats", "dogs"] and list(ds.labels) == [0, 1, 1, 0]
    # not CIFAR-10-like (64×64, or labels beyond 9): labels without names
    np.savez(tmp_path / "big.npz", images=make_images(4, size=64), labels=np.arange(4))
    np.savez(tmp_path / "many.npz", images=make_images(4), labels=np.array([0, 5, 10, 11]))
    for name in ("big.npz", "many.npz"):
        ds = load_dataset(Data(dataset="npz", path=str(tmp_path / name)))
        assert ds.labels is not None and ds.classes is None, name
    # no labels in one shard: no labels at all
    np.savez(tmp_path / "train-09.npz", images=make_images(3))
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path)))
    assert len(ds.images) == 33 and ds.labels is None and ds.classes is None


def test_load_dataset_cifar10_names(tmp_path):
    np.savez(tmp_path / "train-00.npz", images=make_images(20), labels=np.arange(20, dtype=np.uint8) % 10)
    ds = load_dataset(Data(dataset="cifar10", root=str(tmp_path)))
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert ds.labels.dtype == np.int64 and list(ds.labels[:3]) == [0, 1, 2]


def _png(path, a, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode).save(path)


def test_folder_class_subfolders_flat_and_mixed_sizes(tmp_path):
    imgs = make_images(5, size=48)
    _png(tmp_path / "c" / "zebra" / "a.png", imgs[0])
    _png(tmp_path / "c" / "ant" / "b.png", imgs[1])
    _png(tmp_path / "c" / "ant" / "sub" / "c.png", imgs[2][:, 8:40])  # 48×32: centre-cropped, resized
    _png(tmp_path / "c" / "ant" / ".hidden.png", imgs[3])  # hidden: skipped
    (tmp_path / "c" / "ant" / "._b.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # skipped too
    ds = load_dataset(Data(dataset="folder", path=str(tmp_path / "c"), image_size=32))
    assert ds.images.shape == (3, 32, 32, 3) and ds.classes == ["ant", "zebra"]
    assert list(ds.labels) == [0, 0, 1] and ds.labels.dtype == np.int64  # ant/b, ant/sub/c, zebra/a
    _png(tmp_path / "c" / "loose.png", imgs[4])  # an image beside the class folders: a flat folder
    ds = load_dataset(Data(dataset="folder", path=str(tmp_path / "c"), image_size=32))
    assert len(ds.images) == 4 and ds.labels is None and ds.classes is None


def test_folder_modes_converted_to_rgb_and_said_once(tmp_path):
    from PIL import Image

    d = tmp_path / "m"
    _png(d / "gray.png", np.full((8, 8), 128, np.uint8), "L")
    _png(d / "gray2.png", np.full((8, 8), 64, np.uint8), "L")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red, but fully transparent: composited on white
    _png(d / "rgba.png", rgba, "RGBA")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(d / "deep.png")  # 16-bit gray: scaled, not clipped
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(d / "mid.png")
    Image.new("P", (8, 8), 3).save(d / "pal.png")  # palette entry 3
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(d / "cmyk.jpg")
    _png(d / "rgb.png", np.full((8, 8, 3), 7, np.uint8))
    said = []
    ds = load_dataset(Data(dataset="folder", path=str(d), image_size=32), log=said.append)
    px = {n: tuple(ds.images[i, 16, 16]) for i, n in enumerate(sorted(p.name for p in d.iterdir()))}
    assert px["gray.png"] == (128, 128, 128) and px["gray2.png"] == (64, 64, 64)
    assert px["rgba.png"] == (255, 255, 255) and px["deep.png"] == (255, 255, 255) and px["mid.png"] == (128,) * 3
    assert px["rgb.png"] == (7, 7, 7) and px["cmyk.jpg"][0] > 240
    assert said == ["data: converted 7 of 8 images to RGB: 1 CMYK (CMYK), 2 16-bit (I;16), 2 grayscale (L), "
                    "1 palette (P), 1 RGBA (RGBA)"]
    Image.fromarray(np.ones((8, 8), np.float32)).save(d / "float.tif")
    with pytest.raises(GanError, match=r"float.tif' \(ValueError: image mode F is not supported"):
        load_dataset(Data(dataset="folder", path=str(d)), log=said.append)


# ---- data.fraction and data.limit --------------------------------------------------------------------------
def test_fraction_takes_the_first_of_each_class_in_data_order():
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 1, 0, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])  # 8 zeros, 6 ones, 6 twos
    keep, said = subset(20, labels, fraction=0.5)
    assert list(keep) == sorted(keep)  # data order kept
    for c, n in ((0, 4), (1, 3), (2, 3)):
        assert list(keep[labels[keep] == c]) == list(np.flatnonzero(labels == c)[:n])
    assert said == "10 of 20 images: data.fraction = 0.5 per class"
    keep, _ = subset(20, labels, fraction=0.01)
    assert sorted(labels[keep]) == [0, 1, 2]  # every class keeps at least one image
    keep, said = subset(20, None, fraction=0.25)
    assert keep == slice(0, 5) and said == "5 of 20 images: data.fraction = 0.25"
    assert subset(20, labels) == (slice(0, 20), "20 images")


def test_limit_first_then_fraction(tmp_path):
    labels = np.arange(100) % 10  # CIFAR-10-like: 10 classes interleaved
    np.savez(tmp_path / "d.npz", images=make_images(100), labels=labels.astype(np.uint8))
    full = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz")))
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz"), fraction=0.1))
    assert len(ds.images) == 10 and list(ds.labels) == list(range(10))  # the first image of each class
    assert (ds.images == full.images[:10]).all() and "10 of 100 images: data.fraction = 0.1 per class" in ds.source
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz"), limit=40, fraction=0.5))
    assert len(ds.images) == 20 and sorted(np.bincount(ds.labels)) == [2] * 10  # half of the first 40, per class
    assert (ds.images == full.images[:20]).all()  # class c's first two of the first 40: images c and c + 10
    assert "20 of 100 images: data.limit = 40, data.fraction = 0.5 per class" in ds.source
    ds = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz"), limit=30))
    assert len(ds.images) == 30 and "30 of 100 images: data.limit = 30" in ds.source


def test_fraction_key_is_validated_and_documented(tmp_path):
    assert config.Config().data.fraction == 1.0
    assert any(k == "data.fraction" and "limited data" in doc for k, _, doc in config.keys_doc())
    assert config.load("smoke", ["data.fraction=0.2"]).data.fraction == 0.2
    for bad in ("0", "-0.1", "1.5", "nan"):
        with pytest.raises(GanError, match="data.fraction"):
            config.load("smoke", [f"data.fraction={bad}"])


# ---- the sampler with labels --------------------------------------------------------------------------------
def test_sampler_labels_follow_their_images_and_change_nothing_else():
    images = to_tensor(make_images(40), 32, torch.device("cpu"))
    labels = np.arange(40) * 3  # a label that names its image
    torch.manual_seed(1)
    plain = Sampler(images, 12, True, seed=4).next()
    torch.manual_seed(1)
    s = Sampler(images, 12, True, seed=4, labels=labels)
    x, y = s.next()
    assert torch.equal(x, plain[0]) and plain[1] is None  # the same batch, bit for bit
    assert y.dtype == torch.int64 and y.device == x.device and y.shape == (12,)
    # each label is its image's: find the image among the data (flipped or not)
    flat = images.float().div(127.5).sub(1).flatten(1)
    for xi, yi in zip(x, y):
        i = int(yi) // 3
        assert torch.equal(xi.flatten(), flat[i]) or torch.equal(xi.flip(2).flatten(), flat[i])
    # resume: the same (x, y) after load_state_dict
    state, rng = s.state_dict(), torch.get_rng_state()
    a = [s.next() for _ in range(5)]  # crosses a pass boundary (40 images, batches of 12)
    s.load_state_dict(state)
    torch.set_rng_state(rng)
    b = [s.next() for _ in range(5)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))


def test_sharded_sampler_labels_are_the_single_process_labels_split():
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(40)
    one = Sampler(images, 12, False, seed=5, labels=labels)
    ref = [one.next()[1] for _ in range(7)]  # two new passes
    ranks = [Sampler(images, 12, False, seed=5, rank=r, world=3, labels=labels) for r in range(3)]
    parts = [[s.next()[1] for _ in range(7)] for s in ranks]
    for i, y in enumerate(ref):
        assert torch.equal(torch.cat([parts[r][i] for r in range(3)]), y), i
    with pytest.raises(ValueError, match="do not match"):
        Sampler(images, 12, False, seed=5, labels=labels[:10])


def test_fraction_keeps_the_full_set_as_the_metrics_reference(tmp_path):
    """Limited-data runs are measured against every image, as the DiffAugment paper does."""
    np.savez(tmp_path / "d.npz", images=make_images(40), labels=np.arange(40, dtype=np.uint8) % 10)
    full = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz")))
    part = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz"), fraction=0.25))
    assert full.reference is None and (full.metric_images == full.images).all()
    assert len(part.images) == 10 and (part.metric_images == full.images).all()
    lim = load_dataset(Data(dataset="npz", path=str(tmp_path / "d.npz"), fraction=0.5, limit=20))
    assert len(lim.images) == 10 and (lim.metric_images == full.images[:20]).all()  # limit first, then fraction

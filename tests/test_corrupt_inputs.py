"""Every data or experiment file a user can get wrong, generated from good files made here.

Each case goes through `gan train FILE.toml` in-process and must end with exit 2 and one `error:` line that
names the damaged file, no traceback, and no run folder (data is loaded before any folder is made). A damage
that happens to be harmless (a flipped zip timestamp, a PNG cut inside its end marker) must load the very
arrays of the good file; with optim.batch_size larger than any test dataset such a load then ends with the
batch-size line instead, so no case trains.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan.data import load_folder, load_npz_dataset, read_cifar10_batches
from gan.errors import GanError
from tests.conftest import make_images, tiny_toml

N = 12  # images per good shard
IMAGES = make_images(N, size=8, seed=3)
LABELS = np.arange(N) % 10
CLASSES = np.array(["c%d" % k for k in range(10)])


def shard(compressed: bool, images=IMAGES, labels=LABELS, classes=CLASSES) -> bytes:
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, images=images, labels=labels, classes=classes)
    return b.getvalue()


# One good shard per container, made once: collection and the tests see the same bytes.
GOOD = {"stored": shard(False), "deflated": shard(True)}


def regions(data: bytes) -> dict[str, range]:
    """Where the zip's structures lie: the cases flip inside each of them, not only at random."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    first = zf.infolist()[0]
    data_start = 30 + len(first.filename) + int.from_bytes(data[28:30], "little")
    return {"localhdr": range(0, data_start), "npyhdr": range(data_start, data_start + 128),
            "centraldir": range(zf.start_dir, len(data) - 22), "eocd": range(len(data) - 22, len(data))}


def png(a: np.ndarray, mode: str | None = None) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "PNG")
    return b.getvalue()


def jpeg(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", quality=95)
    return b.getvalue()


GOOD_PNG = png(make_images(1, size=16, seed=7)[0])
GOOD_JPEG = jpeg(make_images(1, size=16, seed=8)[0])


def batch(k: int, protocol: int = 2) -> bytes:
    """A CIFAR-10 python batch as torchvision's layout holds them (protocol 2, as the original files)."""
    x = make_images(4, seed=20 + k)
    return pickle.dumps({"batch_label": f"batch {k}", "labels": [k, k + 1, k + 2, k + 3],
                         "data": x.transpose(0, 3, 1, 2).reshape(4, -1), "filenames": ["f.png"] * 4},
                        protocol=protocol)


GOOD_BATCH = batch(1)


def spread(n: int, k: int) -> list[int]:
    """k offsets evenly spread over 1..n-1."""
    return sorted({max(1, min(n - 1, round(n * i / (k + 1)))) for i in range(1, k + 1)})


# ---- the cases --------------------------------------------------------------------------------------------------
@dataclass
class Case:
    kind: str
    name: str
    build: Callable[[Path], tuple[Path, Path]]  # tmp_path -> (experiment file, the file the error must name)
    harmless_ok: bool = False  # may load fine, with the good file's arrays
    says: str = ""  # text the line must contain besides the file name

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def exp_for(tmp: Path, **data) -> Path:
    return tiny_toml(tmp / "exp.toml", tmp / "unused.npz", data=data, optim={"batch_size": 65536})


def npz_case(kind, name, make: Callable[[], bytes], harmless_ok=False, says=""):
    def build(tmp: Path):
        p = tmp / "data.npz"
        p.write_bytes(make())
        return exp_for(tmp, dataset="npz", path=str(p)), p
    return Case(kind, name, build, harmless_ok, says)


def arrays_npz(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def flipped(data: bytes, pos: int, mask: int) -> bytes:
    d = bytearray(data)
    d[pos] ^= mask
    return bytes(d)


CASES: list[Case] = []

# npz: truncated at 0, 1, inside the first zip header, evenly spread, inside the directory, len - 1.
for box, data in GOOD.items():
    cuts = sorted({0, 1, 2, 4, 10, 29, 30, 40, 64, *spread(len(data), 8), len(data) - 60, len(data) - 22,
                   len(data) - 2, len(data) - 1})
    for cut in cuts:
        CASES.append(npz_case("npz_truncated", f"{box}-at{cut}", lambda d=data, c=cut: d[:c]))

# npz: flipped bytes, at seeded random places and inside each zip structure; seeded masks (0xff or one bit).
for box, data in GOOD.items():
    rng = np.random.default_rng(1 if box == "stored" else 2)
    spots = [("any", int(p)) for p in rng.integers(0, len(data), 16)]
    for region, where in regions(data).items():
        spots += [(region, int(p)) for p in rng.choice(where, 4, replace=False)]
    for region, pos in spots:
        mask = 0xFF if rng.random() < 0.5 else 1 << int(rng.integers(0, 8))
        CASES.append(npz_case("npz_flipped", f"{box}-{region}-{pos}x{mask:02x}",
                              lambda d=data, p=pos, m=mask: flipped(d, p, m), harmless_ok=True))

# npz: files that are not an npz at all.
NOT_NPZ = {
    "empty": lambda: b"",
    "text": lambda: b"images = [1, 2, 3]\n",
    "npy": lambda: (lambda b: (np.save(b, IMAGES), b.getvalue())[1])(io.BytesIO()),
    "png": lambda: GOOD_PNG,
    "pickle": lambda: pickle.dumps({"images": IMAGES}),
    "random0": lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "random1": lambda: np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8).tobytes(),
    "zip_of_text": lambda: (lambda b: (zipfile.ZipFile(b, "w").writestr("images.npy", "hello"), b.getvalue())[1])(
        io.BytesIO()),
}
for name, make in NOT_NPZ.items():
    CASES.append(npz_case("npz_not_npz", name, make))

# npz: a good zip with the wrong arrays.
CONTENT = {
    "no_images": (lambda: arrays_npz(pixels=IMAGES), "has no 'images' array"),
    "float_images": (lambda: arrays_npz(images=IMAGES.astype(np.float32)), "expected uint8"),
    "gray_images": (lambda: arrays_npz(images=IMAGES[..., 0]), "expected uint8 N×H×W×3"),
    "rgba_images": (lambda: arrays_npz(images=np.concatenate([IMAGES, IMAGES[..., :1]], -1)), "expected uint8"),
    "chw_images": (lambda: arrays_npz(images=IMAGES.transpose(0, 3, 1, 2)), "expected uint8"),
    "zero_images": (lambda: arrays_npz(images=IMAGES[:0]), "holds no images"),
    "object_images": (lambda: arrays_npz(images=np.array([IMAGES, None], dtype=object)), "holds Python objects"),
    "labels_shorter": (lambda: arrays_npz(images=IMAGES, labels=LABELS[:-1]), f"{N - 1} labels for {N} images"),
    "labels_longer": (lambda: arrays_npz(images=IMAGES, labels=np.arange(N + 3)), f"{N + 3} labels for {N}"),
    "labels_float": (lambda: arrays_npz(images=IMAGES, labels=LABELS.astype(np.float32)), "expected integers"),
    "labels_2d": (lambda: arrays_npz(images=IMAGES, labels=np.zeros((N, 2), np.int64)), "expected integers"),
    "labels_negative": (lambda: arrays_npz(images=IMAGES, labels=LABELS - 1), "negative labels"),
    "classes_too_few": (lambda: arrays_npz(images=IMAGES, labels=LABELS, classes=CLASSES[:3]), "class names"),
    "classes_numbers": (lambda: arrays_npz(images=IMAGES, labels=LABELS, classes=np.arange(10)), "classes are"),
}
for name, (make, says) in CONTENT.items():
    CASES.append(npz_case("npz_content", name, make, says=says))


# npz: one damaged shard among good ones: the line names that shard.
def among_good(bad_index: int, damage: Callable[[bytes], bytes]):
    def build(tmp: Path):
        d = tmp / "shards"
        d.mkdir()
        for k in range(4):
            data = GOOD["stored"]
            (d / f"train-{k:02d}.npz").write_bytes(damage(data) if k == bad_index else data)
        return exp_for(tmp, dataset="npz", path=str(d)), d / f"train-{bad_index:02d}.npz"
    return build


for k in (0, 2, 3):
    CASES.append(Case("npz_bad_shard", f"truncated-{k}", among_good(k, lambda d: d[: len(d) // 2])))
    CASES.append(Case("npz_bad_shard", f"flipped-{k}", among_good(k, lambda d: flipped(d, 200, 0x10))))
CASES.append(Case("npz_bad_shard", "other_size-1", among_good(1, lambda d: shard(False, make_images(N, size=16))),
                  says="different image sizes"))


# image folders: class subfolders of good PNGs plus one bad file.
def folder(bad_name: str, make: Callable[[], bytes]):
    def build(tmp: Path):
        root = tmp / "images"
        for cls in ("cat", "dog"):
            (root / cls).mkdir(parents=True)
            for k in range(3):
                (root / cls / f"{k}.png").write_bytes(GOOD_PNG)
        p = root / "dog" / bad_name
        p.write_bytes(make())
        return exp_for(tmp, dataset="folder", path=str(root)), p
    return build


for name, good in (("png", GOOD_PNG), ("jpg", GOOD_JPEG)):
    for cut in sorted({0, 1, 8, 16, 33, *spread(len(good), 6), len(good) - 13, len(good) - 1}):
        CASES.append(Case("folder_truncated", f"{name}-at{cut}", folder(f"bad.{name}", lambda g=good, c=cut: g[:c]),
                          harmless_ok=True))
NOT_IMAGES = {
    "text.png": lambda: b"not an image\n",
    "empty.jpg": lambda: b"",
    "npz.png": lambda: GOOD["stored"],
    "random.webp": lambda: np.random.default_rng(5).integers(0, 256, 600, dtype=np.uint8).tobytes(),
    "pdf.gif": lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "float.tif": lambda: (lambda b: (Image.fromarray(np.ones((8, 8), np.float32)).save(b, "TIFF"), b.getvalue())[1])(
        io.BytesIO()),
}
for name, make in NOT_IMAGES.items():
    CASES.append(Case("folder_not_image", name.replace(".", "_"), folder(name, make)))


# torchvision's CIFAR-10 layout: data_batch_1 good, data_batch_2 bad.
def cifar(make: Callable[[], bytes]):
    def build(tmp: Path):
        d = tmp / "root" / "cifar-10-batches-py"
        d.mkdir(parents=True)
        (d / "data_batch_1").write_bytes(GOOD_BATCH)
        (d / "data_batch_2").write_bytes(make())
        return exp_for(tmp, dataset="cifar10", root=str(tmp / "root")), d / "data_batch_2"
    return build


for proto in (2, 4):
    good = batch(2, proto)
    for cut in sorted({0, 1, 2, 10, *spread(len(good), 8), len(good) - 1}):
        CASES.append(Case("cifar_truncated", f"p{proto}-at{cut}", cifar(lambda g=good, c=cut: g[:c])))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch cifar-pickle-ran-code",))


CIFAR_BAD = {
    "random0": (lambda: np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(), ""),
    "random1": (lambda: np.random.default_rng(1).integers(0, 256, 50, dtype=np.uint8).tobytes(), ""),
    "text": (lambda: b"airplane automobile bird\n", ""),
    "npz": (lambda: GOOD["stored"], ""),
    "no_data": (lambda: pickle.dumps({"labels": [0, 1]}, protocol=2), "no 'data'"),
    "a_list": (lambda: pickle.dumps([1, 2, 3], protocol=2), "no 'data'"),
    "data_wrong_shape": (lambda: pickle.dumps({"data": np.zeros((4, 1024), np.uint8), "labels": [0] * 4}),
                         "expected uint8 (N, 3072)"),
    "data_float": (lambda: pickle.dumps({"data": np.zeros((4, 3072)), "labels": [0] * 4}), "expected uint8"),
    "no_labels": (lambda: pickle.dumps({"data": np.zeros((4, 3072), np.uint8)}), "'labels'"),
    "labels_short": (lambda: pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0]}), "'labels'"),
    "code": (lambda: pickle.dumps({"data": _Evil()}), "would construct posix.system (refused"),
}
for name, (make, says) in CIFAR_BAD.items():
    CASES.append(Case("cifar_bad_pickle", name, cifar(make), says=says))


# TOML experiment files: good text, then the wrong encoding, NUL bytes, binary garbage; a folder.
def toml_case(name: str, make: Callable[[bytes], bytes], says: str):
    def build(tmp: Path):
        good = tiny_toml(tmp / "good.toml", tmp / "unused.npz").read_bytes()
        p = tmp / "bad.toml"
        p.write_bytes(make(good))
        return p, p
    return Case("toml", name, build, says=says)


def with_latin1(good: bytes) -> bytes:
    return good.replace(b'name = "tiny"', 'name = "tiny"\ndescription = "café ±"'.encode("latin-1"))


TOMLS = {
    "utf16_le_bom": (lambda g: g.decode().encode("utf-16"), "UTF-16"),
    "utf16_be_bom": (lambda g: b"\xfe\xff" + g.decode().encode("utf-16-be"), "UTF-16"),
    "utf16_no_bom": (lambda g: g.decode().encode("utf-16-le"), "NUL byte"),
    "utf32": (lambda g: g.decode().encode("utf-32"), "UTF-32"),
    "latin1": (with_latin1, "not UTF-8"),
    "cp1252_quotes": (lambda g: g + b"# \x93quoted\x94 in Windows-1252\n", "not UTF-8"),
    "nul_start": (lambda g: b"\0" + g, "NUL byte at offset 0"),
    "nul_middle": (lambda g: g[:40] + b"\0" + g[40:], "NUL byte at offset 40"),
    "nul_end": (lambda g: g + b"\0", "NUL byte"),
    "garbage0": (lambda g: np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes(), ""),
    "garbage1": (lambda g: np.random.default_rng(1).integers(128, 256, 64, dtype=np.uint8).tobytes(), "not UTF-8"),
    "garbage_in_good": (lambda g: g[:30] + np.random.default_rng(2).integers(0, 256, 40, dtype=np.uint8).tobytes()
                        + g[30:], ""),
    "png": (lambda g: GOOD_PNG, ""),
    "npz": (lambda g: GOOD["deflated"], ""),
    "nested_too_deep": (lambda g: b"a = " + b"[" * 5000, "TOML syntax error"),
}
for name, (make, says) in TOMLS.items():
    CASES.append(toml_case(name, make, says))


def toml_folder(arg: Callable[[Path], str]):
    def build(tmp: Path):
        (tmp / "exp.toml").mkdir()
        (tmp / "expdir").mkdir()
        return Path(arg(tmp)), Path(arg(tmp).rstrip("/"))
    return Case("toml", "folder-" + arg(Path("T")).replace("/", "_").replace(".", "_"), build, says="is a folder")


CASES += [toml_folder(lambda t: str(t / "exp.toml")), toml_folder(lambda t: str(t / "expdir") + "/"),
          toml_folder(lambda t: "expdir")]


# ---- the one test over them all ------------------------------------------------------------------------------
def reference(case: Case, named: Path):
    """What a harmless damage must load: the good file's arrays."""
    if case.kind == "npz_flipped":
        x, y, c = load_npz_dataset(str(named))
        return (x, y, c), (IMAGES, LABELS, list(CLASSES))
    if case.kind == "folder_truncated":
        got = load_folder(str(named.parent.parent), 8, log=lambda m: None)
        named.write_bytes(GOOD_JPEG if named.suffix == ".jpg" else GOOD_PNG)
        return got, load_folder(str(named.parent.parent), 8, log=lambda m: None)
    raise AssertionError(f"{case.id} cannot be harmless")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_file_is_one_line(case, tmp_path, monkeypatch):
    from gan.cli import app

    monkeypatch.chdir(tmp_path)
    exp, named = case.build(tmp_path)
    r = CliRunner().invoke(app, ["train", str(exp), "--logs", str(tmp_path / "logs")])
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "logs").exists()  # data is read before any run folder is made
    assert not (tmp_path / "cifar-pickle-ran-code").exists()
    if "larger than the dataset" in r.stderr:  # it loaded: only a harmless damage may
        assert case.harmless_ok, r.stderr
        got, want = reference(case, named)
        for a, b in zip(got, want):
            assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
        return
    assert str(named) in r.stderr, r.stderr
    assert case.says in r.stderr, r.stderr


def test_case_table():
    """The generated families, and enough of each (the report quotes these counts)."""
    counts = Counter(c.kind for c in CASES)
    assert len({c.id for c in CASES}) == len(CASES)
    want = {"npz_truncated": 30, "npz_flipped": 60, "npz_not_npz": 8, "npz_content": 14, "npz_bad_shard": 7,
            "folder_truncated": 20, "folder_not_image": 6, "cifar_truncated": 20, "cifar_bad_pickle": 11,
            "toml": 18}
    for kind, at_least in want.items():
        assert counts[kind] >= at_least, (kind, counts[kind])
    assert set(counts) == set(want)


# ---- every offset and every byte, straight through the loaders (no CLI): the whole family -------------------
@pytest.mark.parametrize("box", sorted(GOOD))
def test_every_truncation_and_byte_flip_of_a_shard(box, tmp_path):
    data, p = GOOD[box], tmp_path / "s.npz"
    outcomes = Counter()

    def outcome(how: str, at: int) -> None:
        try:
            x, y, c = load_npz_dataset(str(p))
        except GanError as e:
            assert str(p) in str(e) and "\n" not in str(e), (how, at, str(e))
            outcomes["refused"] += 1
            return
        assert how == "flip", (how, at)
        assert np.array_equal(x, IMAGES) and np.array_equal(y, LABELS) and c == list(CLASSES), (how, at)
        outcomes["harmless"] += 1

    p.write_bytes(data)
    with open(p, "r+b", buffering=0) as fh:  # damaged in place: rewriting the file each time is 10x slower
        for i in range(len(data)):
            fh.seek(i)
            fh.write(bytes([data[i] ^ 0xFF]))
            outcome("flip", i)
            fh.seek(i)
            fh.write(data[i:i + 1])
    for cut in range(len(data) - 1, -1, -1):
        os.truncate(p, cut)
        outcome("cut", cut)
    assert outcomes["refused"] > len(data)  # every cut, and most flips


def test_every_truncation_of_a_cifar_batch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    data = batch(1)
    for cut in range(0, len(data), 37):
        (d / "data_batch_1").write_bytes(data[:cut])
        with pytest.raises(GanError, match="data_batch_1"):
            read_cifar10_batches(d)

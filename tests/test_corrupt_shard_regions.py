"""A shard damaged in each of its regions, with members larger than zipfile's first read.

zipfile checks a member's CRC when it reaches the member's end; a member smaller than its first read (4 KiB) is
read whole at once, so its CRC refuses any damage before numpy ever parses the `.npy` header. Real shards hold
megabytes: there numpy's header parser (ast, and tokenize for what looks like a Python-2 header) sees the damaged
bytes first and raises SyntaxError, tokenize.TokenError, TypeError... Every region of such a shard is damaged
here: the local headers, each member's `.npy` header (every position, every byte that means something to a
Python tokenizer), the data, the central directory and its end record. Each load is refused in one line naming
the file, or, for a harmless damage, gives the good arrays.
"""
from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gan.data import load_npz_dataset
from gan.errors import GanError
from tests.conftest import make_images
from tests.test_corrupt_inputs import exp_for

N = 600  # images 600×4×4×3 = 28.8 KB, labels 4.8 KB, classes 10 × 120 chars × 4 = 4.8 KB: all over 4 KiB
IMAGES = make_images(N, size=4, seed=5)
LABELS = np.arange(N) % 10
CLASSES = np.array([f"class {k} " + "x" * 100 for k in range(10)])
# What Python's tokenizer reacts to, and the byte values at the edges.
HEADER_BYTES = sorted(set("()[]{}'\",:#\\ \nL9".encode()) | {0x00, 0x80, 0xFF})


def large_shard(compressed: bool) -> bytes:
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, images=IMAGES, labels=LABELS, classes=CLASSES)
    return b.getvalue()


LARGE = {"stored": large_shard(False), "deflated": large_shard(True)}


def regions(data: bytes) -> dict[str, list[int]]:
    """Offsets of each region, for every member: local header, .npy header (the first 128 bytes of its data, as
    stored), data (sampled), then the central directory and its end record."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    out: dict[str, list[int]] = {"localhdr": [], "npyhdr": [], "data": []}
    for info in zf.infolist():
        h = info.header_offset
        start = h + 30 + len(info.filename) + int.from_bytes(data[h + 28:h + 30], "little")
        out["localhdr"] += range(h, start)
        out["npyhdr"] += range(start, start + 128)
        out["data"] += range(start + 128, start + info.compress_size, 97)
    out["centraldir"] = list(range(zf.start_dir, len(data) - 22))
    out["eocd"] = list(range(len(data) - 22, len(data)))
    return out


def _outcome(p: Path) -> str:
    """'refused: <why>' (one line naming the file) or 'harmless' (the good arrays)."""
    try:
        x, y, c = load_npz_dataset(str(p))
    except GanError as e:
        assert str(p) in str(e) and "\n" not in str(e), str(e)
        return "refused: " + str(e)
    assert np.array_equal(x, IMAGES) and np.array_equal(y, LABELS) and c == list(CLASSES)
    return "harmless"


@pytest.mark.parametrize("box", sorted(LARGE))
def test_every_region_of_a_large_shard_is_refused_in_one_line(box, tmp_path):
    data, p = LARGE[box], tmp_path / "s.npz"
    p.write_bytes(data)
    seen: dict[str, Counter] = {}
    with open(p, "r+b", buffering=0) as fh:  # damaged in place, restored after each load
        for region, spots in regions(data).items():
            seen[region] = Counter()
            for i in spots:
                values = HEADER_BYTES if region == "npyhdr" and box == "stored" else [data[i] ^ 0xFF, data[i] ^ 1]
                for v in values:
                    if v == data[i]:
                        continue
                    fh.seek(i)
                    fh.write(bytes([v]))
                    try:
                        got = _outcome(p)
                    except Exception as e:  # noqa: BLE001 - say where, then fail
                        raise AssertionError(f"{region} byte {i} = {v:#04x}: {type(e).__name__}: {e}") from None
                    seen[region]["header damaged" if ".npy header is damaged" in got else got.split(":")[0]] += 1
                    fh.seek(i)
                    fh.write(data[i:i + 1])
    print(box, {r: dict(c) for r, c in seen.items()})
    for region, c in seen.items():
        assert c["refused"] + c["header damaged"] > 0, (region, c)
    if box == "stored":  # numpy's parser was reached (the case that once ended in a traceback), and said so
        assert seen["npyhdr"]["header damaged"] > 100, seen["npyhdr"]


def test_a_damaged_array_header_stops_train_in_one_line(tmp_path, monkeypatch):
    """The bytes that once gave tokenize.TokenError: an unclosed parenthesis in images.npy's header."""
    from gan.cli import app

    monkeypatch.chdir(tmp_path)
    data = bytearray(LARGE["stored"])
    at = data.index(b"'shape': (") + len(b"'shape': (600, 4, 4, 3")
    data[at] = ord(" ")  # "(600, 4, 4, 3 , }": Python-2 filtering, then tokenize: EOF in multi-line statement
    p = tmp_path / "train-00.npz"
    p.write_bytes(bytes(data))
    r = CliRunner().invoke(app, ["train", str(exp_for(tmp_path, dataset="npz", path=str(p))), "--logs",
                                 str(tmp_path / "logs")])
    print(r.stderr)
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(p) in r.stderr and "images.npy: its .npy header is damaged (TokenError" in r.stderr, r.stderr
    assert not (tmp_path / "logs").exists()

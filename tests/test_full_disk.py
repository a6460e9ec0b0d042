"""A disk that fills at each kind of write a run makes: the second `last.pt` (inside torch.save's zip writer, which
says `RuntimeError: ... unexpected pos`, not OSError), `best.pt`, run.json, config.toml, a PNG grid, the events,
the export at the end, the reference cache. The disk is a real tmpfs (root only), filled to the last byte just
before that write and freed right after it fails, so the run can still say `failed`. Each ends with one `error:
disk full` line, exit 1, run.json `failed`, the last good checkpoint loadable; a reference cache that cannot be
written is said in one line and the run goes on (the cache is optional)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from gan import checkpoint, fileio

from gan.writer import Tracker
from tests.conftest import tiny_toml
from tests.test_resume import cli, run_of


@pytest.fixture
def disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs (tests/test_stops.py's injected full disk covers the rest)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path, leave: int = 0) -> Path:
    """Every free byte of `where`'s filesystem taken, but `leave`: a write larger than that is cut short, which
    torch.save's zip writer says as `RuntimeError: ... unexpected pos` (with no room at all it says OSError)."""
    filler = where / "filler"
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError as e:
            assert e.errno == errno.ENOSPC
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


# kind -> (which write of it fills the disk: path -> bool, how many of them pass first)
KINDS = {
    "checkpoint": (lambda p: p.name == "last.pt", 1),
    "best": (lambda p: p.name == "best.pt", 1),
    "run.json": (lambda p: p.name == "run.json", 3),
    "config": (lambda p: p.name == "config.toml", 0),
    "png": (lambda p: p.suffix == ".png", 1),
    "export": (lambda p: p.name == "netG.pth", 0),
    "cache": (lambda p: "refstats" in p.parts, 0),
    "events": (None, 1),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_full_disk_at_each_kind_of_write_is_one_line(kind, disk, tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("GAN_CACHE", str(disk / "cache"))
    match, passes = KINDS[kind]
    seen = {"n": 0, "failed": []}

    def full_during(write, *a, more=lambda: None, **k):
        filler = fill(disk, 16 << 10 if kind == "checkpoint" else 0)
        more()
        try:
            return write(*a, **k)
        except BaseException as e:
            seen["failed"].append(e)
            raise
        finally:
            filler.unlink()

    real_write, real_flush = fileio.write_atomic, Tracker.flush

    def write_atomic(path, *a, **k):
        if match is not None and match(Path(path)) and not seen["failed"]:
            seen["n"] += 1
            if seen["n"] > passes:
                return full_during(real_write, path, *a, **k)
        return real_write(path, *a, **k)

    def flush(self):
        if match is None and not seen["failed"]:
            seen["n"] += 1
            if seen["n"] > passes:  # more than the events file's last page holds: the write needs a new page
                return full_during(real_flush, self, more=lambda: self.writer.add_text("more", "x" * 65536, 0))
        return real_flush(self)

    monkeypatch.setattr(fileio, "write_atomic", write_atomic)
    monkeypatch.setattr(Tracker, "flush", flush)
    metrics = {"enabled": True, "extractors": ["c10"], "every": 2, "num_samples": 16, "batch_size": 64,
               "kid": False, "is": False, "ref_samples": 64} if kind in ("best", "cache") else {}
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 4, "log_every": 1, "image_every": 2,
                                                          "checkpoint_every": 2, "save_png": True, "export": True},
                    metrics=metrics)
    r = cli("train", exp, "--device", "cpu", "--logs", disk / "logs")
    assert seen["failed"], (f"the {kind} write never came", r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and not isinstance(r.exception, (RuntimeError, OSError)), r.exception
    run = run_of(disk / "logs")
    info = json.loads((run / "run.json").read_text())
    if kind == "cache":  # optional: said, and the run goes on
        assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
        said = [ln for ln in r.stdout.splitlines() if "not cached (disk full: cannot write" in ln]
        assert len(said) == 1 and r.stderr == "", (r.stdout, r.stderr)
        assert info["status"] == "completed"
        return
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full: cannot write '"), r.stderr
    print(f"\n{kind}: {lines[0]}")
    assert info["status"] == "failed" and info["error"].startswith("disk full"), info
    assert not list(run.rglob(".*.tmp*")), "a temp file was left"
    last = run / "checkpoints" / "last.pt"
    assert last.exists() or kind in ("config", "png", "run.json")  # those may come before the first checkpoint
    if last.exists():
        kept = checkpoint.load(last, log=lambda m: None)["step"]
        assert kept in (2, 4), kept
    if kind == "checkpoint":  # the second last.pt failed inside torch.save: the first is the one kept
        assert kept == 2 and type(seen["failed"][0]).__name__ == "DiskFull"


def test_a_full_disk_inside_torch_save_is_disk_full(disk):
    """torch.save's zip writer turns the write's OSError into RuntimeError('... unexpected pos ...'): said as the
    full disk it is, the temp file gone, the file it would replace untouched."""
    import torch

    target = disk / "w.pt"
    fileio.save_torch(target, {"w": torch.ones(4)})
    filler = fill(disk, 256 << 10)
    with pytest.raises(fileio.DiskFull, match=f"disk full: cannot write '{target}'"):
        fileio.save_torch(target, {"w": torch.zeros(1 << 20)})
    filler.unlink()
    assert sorted(p.name for p in disk.iterdir()) == ["w.pt"]
    assert torch.equal(fileio.load_torch(target)["w"], torch.ones(4))


def test_gan_export_on_a_full_disk_is_one_line_exit_1(disk, tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz)
    assert cli("train", exp, "--device", "cpu", "--logs", disk / "logs").exit_code == 0
    run = run_of(disk / "logs")
    filler = fill(disk)
    r = cli("export", run)
    filler.unlink()
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("error: disk full: cannot write '") and len(r.stderr.strip().splitlines()) == 1
    assert not (run / "netG.pth").exists()

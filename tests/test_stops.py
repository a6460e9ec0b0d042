"""Stops in every phase and a full disk. SIGINT/SIGTERM during data loading, reference statistics, an evaluation
and a checkpoint write each end cleanly (exit 130/143, status interrupted, a loadable checkpoint where a step was
made). A logs folder on a filesystem that fills mid-run: one line, exit 1, status failed, the last good checkpoint
kept; `gan resume` continues once there is space again."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gan import checkpoint
from tests.conftest import ROOT, events, tiny_toml
from tests.test_resume import cli, run_of

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def metrics_exp(tmp_path: Path, npz: Path, **train) -> Path:
    return tiny_toml(tmp_path / "m.toml", npz, train={"steps": 6, "checkpoint_every": 3, **train},
                     metrics={"enabled": True, "extractors": ["c10"], "every": 3, "num_samples": 16,
                              "batch_size": 32, "kid": False})


def paused(args, moment: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`gan ARGS` held at `moment` (GAN_TEST_AT, see gan/stop.py) until a signal reaches it."""
    mark = tmp_path / "paused"
    env = dict(os.environ, OMP_NUM_THREADS="1", GAN_TEST_AT=moment, GAN_TEST_PAUSE=str(mark),
               GAN_CACHE=str(tmp_path / "cache"))  # an empty cache: the reference statistics are computed
    p = subprocess.Popen([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    t0 = time.time()
    while not mark.exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 300, f"never reached {moment}"
        time.sleep(0.02)
    return p, mark


PHASES = [("data", "data@1"), ("reference statistics", "refstats@1"), ("evaluation", "eval@1"),
          ("checkpoint write", "write:last.pt@1")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase,moment", PHASES, ids=[p for p, _ in PHASES])
def test_a_signal_in_every_phase_ends_cleanly(phase, moment, sig, tmp_path, tiny_npz):
    logs = tmp_path / "logs"
    p, _ = paused(["train", metrics_exp(tmp_path, tiny_npz), "--device", "cpu", "--logs", logs], moment, tmp_path)
    p.send_signal(sig)
    out, err = p.communicate(timeout=300)
    assert p.returncode == EXIT[sig], out + err
    assert "Traceback" not in err and f"signal {sig.name}: stopping cleanly" in out, out + err
    if phase == "data":  # before any folder: nothing to resume, nothing left behind
        assert "interrupted before training started" in out and not logs.exists()
        return
    run = run_of(logs)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    if phase == "reference statistics":  # no step was made: no checkpoint
        assert not (run / "checkpoints").exists()
        return
    ck = checkpoint.load(run / "checkpoints" / "last.pt")
    # an evaluation is dropped at once (step 3, made first on resume); a checkpoint write finishes, the next
    # step stops with its own checkpoint
    want = 3 if phase == "evaluation" else 4
    assert ck["step"] == info["step"] == want and ck["eval_pending"] == (phase == "evaluation")
    said = " ".join(out.split())
    assert f"interrupted at step {want}: {run}" in said, said  # the closing line names the run, in every phase
    if phase == "evaluation":  # dropped whole: nothing of it logged, its step's metric comes on resume
        assert "metrics/fid_c10" not in events(run).Tags()["scalars"]
        assert "checkpoint written" not in said  # the engine's loop line is for a stop between steps
    else:
        assert f"interrupted at step {want}: checkpoint written, resume with `gan resume {run}`" in said, said
    if sig == signal.SIGINT:
        r = cli("resume", run, "--device", "cpu")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        assert [e.step for e in events(run).Scalars("metrics/fid_c10")] == [3, 6]  # the metric curve is whole


# ---- a full disk ---------------------------------------------------------------------------------------------

def _tmpfs(where: Path, size: str) -> bool:
    """A small tmpfs at `where` (root only); False where it cannot be had."""
    if os.geteuid() != 0:
        return False
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _fill(disk: Path, leave: int) -> Path:
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_full_disk_mid_run_one_line_failed_checkpoint_kept_then_resume(tmp_path, tiny_npz):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "16m"):
        pytest.skip("needs root to mount a small tmpfs (test_full_disk_injected covers the rest)")
    try:
        exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 40, "log_every": 1, "image_every": 5,
                                                              "checkpoint_every": 5})
        env = dict(os.environ, OMP_NUM_THREADS="1")
        p = subprocess.Popen([sys.executable, "-m", "gan", "train", str(exp), "--device", "cpu", "--logs",
                              str(disk / "logs")], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        t0 = time.time()
        while not list(disk.glob("logs/*/*/checkpoints/last.pt")):
            assert p.poll() is None and time.time() - t0 < 300, p.communicate()
            time.sleep(0.02)
        filler = _fill(disk, 16 << 10)  # 16 KB left: the next checkpoint cannot be written, run.json can
        out, err = p.communicate(timeout=300)
        assert p.returncode == 1, out + err
        lines = err.strip().splitlines()
        run = run_of(disk / "logs")
        assert len(lines) == 1 and lines[0].startswith("error: disk full: cannot write '") and \
            f"free space, then `gan resume {run}` (it goes on from its last checkpoint)" in lines[0], err
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "failed" and info["error"].startswith("disk full")
        kept = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
        assert 5 <= kept < 40 and kept % 5 == 0
        print(f"\ndisk full after step {kept}: {lines[0]}")
        filler.unlink()  # space again
        r = cli("resume", run, "--device", "cpu")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        assert [e.step for e in events(run).Scalars("loss/D")] == list(range(1, 41))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_full_disk_injected(tmp_path, tiny_npz, monkeypatch):
    """The same, without root: OSError(ENOSPC) from every write (ours and TensorBoard's writer thread) once the
    first checkpoint is on disk."""
    from tensorboard.summary.writer import record_writer

    from gan import fileio

    disk = {"full": False, "filled": False}
    real_fsync, real_write, real_save = os.fsync, record_writer.RecordWriter.write, checkpoint.save

    def fsync(fd):
        if disk["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def write(self, data):
        if disk["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    def save(obj, path):
        real_save(obj, path)
        if obj["step"] == 10 and not disk["filled"]:  # the disk fills once, after this checkpoint
            disk["full"] = disk["filled"] = True

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    monkeypatch.setattr(checkpoint, "save", save)
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 30, "log_every": 1, "checkpoint_every": 5})
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("error: disk full: cannot write '") and len(r.stderr.strip().splitlines()) == 1
    run = run_of(tmp_path / "logs")
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # nothing could be written
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 10
    disk["full"] = False
    r = cli("resume", run, "--device", "cpu")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert [e.step for e in events(run).Scalars("loss/D")] == list(range(1, 31))

"""Writers beside a run's own (`gan eval`, `sample`, `export`) take the run's records lock: two evaluations at once
both land in metrics.json, an export writes its pair or nothing, and a run that is training can still be evaluated."""
from __future__ import annotations

import json
import threading
import time

import pytest

from gan import checkpoint, evaluate, fileio, runlock
from tests.conftest import copy_run


@pytest.fixture()
def run(two_runs, tmp_path):
    return copy_run(two_runs[1][0], tmp_path / "logs" / "tiny" / "run")


def test_two_evals_at_once_both_land(run, monkeypatch):
    """Each eval reads metrics.json, waits, then writes it back: without the lock the second would overwrite the
    first's record; with it, the second reads what the first wrote."""
    real = evaluate.read_records

    def slow_read(path, log):
        records = real(path, log)
        time.sleep(0.5)  # the window in which another eval would read the same old list
        return records

    monkeypatch.setattr(evaluate, "read_records", slow_read)
    errors = []

    def one(which):
        try:
            evaluate.evaluate(run, which, samples=4, metrics="fid", device="cpu", log=lambda *a, **k: None)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(w,)) for w in ("last", "best")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    records = json.loads((run / "metrics.json").read_text())
    assert sorted(r["checkpoint"] for r in records) == ["best", "last"]


def test_a_run_being_trained_can_still_be_evaluated(run, monkeypatch):
    """The trainer's `.lock` is not the records lock: an eval of a live run goes on (and says nothing of a holder)."""
    held = runlock.acquire(run)  # stands for the training process
    try:
        rec = evaluate.evaluate(run, "last", samples=4, metrics="fid", device="cpu", log=lambda *a, **k: None)
    finally:
        held.release()
    assert json.loads((run / "metrics.json").read_text())[-1]["step"] == rec["step"]


def test_records_lock_waits_for_another_writer_then_gives_up_in_one_line(run, monkeypatch):
    monkeypatch.setattr(runlock, "RECORDS_WAIT_S", 0.3)
    with runlock.records(run):
        t0 = time.monotonic()
        with pytest.raises(runlock.GanError, match="another command has been writing its records for 0 s"):
            with runlock.records(run):
                pass
        assert time.monotonic() - t0 >= 0.3
    with runlock.records(run):  # released: taken at once
        pass


def test_an_export_writes_its_pair_or_nothing(run, monkeypatch):
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    real = fileio.save_torch

    def full_at_d(path, obj, **kw):
        if path.name.startswith("netD"):
            raise fileio.DiskFull(path, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(fileio, "save_torch", full_at_d)
    with pytest.raises(fileio.DiskFull):
        checkpoint.export(run, state)
    assert not list(run.glob("net*.pth"))  # G's file went with D's failure
    monkeypatch.setattr(fileio, "save_torch", real)
    first, second = checkpoint.export(run, state), checkpoint.export(run, state)
    assert [p.name for p in first] == ["netG.pth", "netD.pth"] and [p.name for p in second] == ["netG-1.pth",
                                                                                               "netD-1.pth"]

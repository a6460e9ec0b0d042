"""sweep.json: what a sweep is (experiment, grid or search, seeds) and each run's overrides, folder and status.

    {"version": 1, "experiment": "smoke", "id": "sweep-20260101-120000", "grid": {"optim.g_lr": ["1e-4", "2e-4"]},
     "seeds": 2, "runs": [{"setting": "optim.g_lr=1e-4", "overrides": ["optim.g_lr=1e-4", "experiment.seed=0"],
     "seed": 0, "folder": "optim.g_lr=1e-4-s0", "status": "completed"}, ...]}

Only the sweep process writes it (atomically, gan.fileio); a run's own truth is its run.json and checkpoints, so
after a kill `needs()` reads those: a run is kept, resumed from its checkpoint, or started.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from pathlib import Path

from gan import checkpoint, fileio, runlock
from gan.errors import GanError
from gan.runs import info_of as run_info  # what a run says of itself, read only
from gan.sweep import launchers

VERSION = 1
FILE = "sweep.json"
FINAL = ("completed", "diverged", "pruned")  # a result: never run again
STATUSES = ("pending", "running", "pruning", "interrupted", "failed") + FINAL


class Manifest:
    def __init__(self, folder: Path, data: dict):
        self.folder, self.data = Path(folder), data

    @classmethod
    def create(cls, folder: Path, **fields) -> "Manifest":
        m = cls(folder, {"version": VERSION, **fields})
        m.save()
        return m

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        folder = Path(folder)
        path = folder / FILE
        if not path.is_file():
            raise GanError(f"'{folder}' is not a sweep folder (no {FILE})")
        data = fileio.read_json(path)  # damaged: GanError naming it, the file left as it is
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise GanError(f"'{path}' is not a sweep manifest (no runs list)")
        if data.get("version") != VERSION:
            raise GanError(f"'{path}': manifest version {data.get('version')!r}, this gan reads version {VERSION}")
        return cls(folder, data)

    @property
    def runs(self) -> list[dict]:
        return self.data["runs"]

    def run_dir(self, entry: dict) -> Path:
        return self.folder / entry["folder"]

    def save(self) -> None:
        fileio.write_json(self.folder / FILE, self.data)

    def add(self, entry: dict) -> dict:
        self.runs.append(entry)
        self.save()
        return entry

    def update(self, entry: dict, **fields) -> None:
        entry.update(fields)
        self.save()

    def settings(self) -> list[str]:
        return list(dict.fromkeys(r["setting"] for r in self.runs))


def needs(man: Manifest, entry: dict) -> str:
    """What a run needs now: "done" (a result: completed, diverged, pruned), "live" (a live process holds its lock,
    or its submitit job may still start it: wait for it, never start it twice), "resume" (its checkpoint), "start"
    (never started, or its folder has no checkpoint to continue from) or "prune" (the sweep decided to prune it and
    was stopped before it could say so in run.json)."""
    if entry.get("status") in FINAL:
        return "done"
    d = man.run_dir(entry)
    info = run_info(d)
    if info.get("status") in FINAL and entry.get("status") != "pruning":
        return "done"  # (its process may be closing, its job's controller exiting: the result is written)
    if runlock.holder(d) is not None or launchers.job_waiting(entry.get("launcher"), man.folder, entry.get("job")):
        return "live"
    if entry.get("status") == "pruning":
        return "prune"
    if checkpoint.resumable(d) is not None:
        return "resume"
    return "start"


def clear_for_start(man: Manifest, entry: dict, log=print) -> None:
    """A run that must start from scratch but left a folder (killed before its first checkpoint, or failed before
    one): the folder is moved aside under <sweep>/aborted/, never deleted, so `--run-dir` gets an empty folder."""
    d = man.run_dir(entry)
    if not d.exists() or (d.is_dir() and not any(d.iterdir())):
        return
    aside = man.folder / "aborted" / f"{d.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    aside.parent.mkdir(exist_ok=True)
    os.replace(d, aside)
    log(f"{entry['folder']}: no checkpoint to continue from; its folder moved aside to {aside}, starting it anew")


@contextlib.contextmanager
def lock(folder: Path):
    """One sweep process per sweep folder at a time (a second `--resume` would run the same runs twice). The lock
    is the kernel's (flock on an empty file that is never rewritten): a killed sweep leaves none behind."""
    f = open(Path(folder) / ".lock", "a")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            runner = (fileio.read_json(Path(folder) / FILE, default={}) or {}).get("runner", {})
            raise GanError(f"sweep '{folder}' is being run by another gan sweep (pid {runner.get('pid', '?')} on "
                           f"{runner.get('host', '?')}); wait for it or stop it first") from None
        yield
    finally:
        f.close()

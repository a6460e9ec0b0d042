"""One writer per run: a kernel lock on `<run>/.lock`, held for the run's whole life.

Whoever writes a run folder — `gan train` (a new folder or --run-dir), `gan resume`, a sweep job, a submitit/Slurm
job, rank 0 under torchrun — takes `acquire(run)` before it touches any file of the run, and keeps it until the
process ends. The lock is the kernel's (`flock`), so a process that dies for any reason (SIGKILL, the OOM killer)
leaves none behind. The holder writes its facts (pid, host, since, job) into the lock file, in place: the file is
never replaced, so every process locks the same inode.

Beside the run's own writer, commands add records to a run folder without changing its training state: `gan eval`
(metrics.json, its eval events), `gan sample` (PNGs), `gan export` (a netG/netD pair). They take `records(run)`, a
short exclusive lock on `<run>/.records.lock` held only while they write, so two at once (an eval under each
published protocol, say) both land, and a run that is training can still be evaluated.

A second writer gets one line naming the holder (GanError: exit 2) and has written nothing: the lock file it opened
already existed. Readers (`gan runs`, the leaderboard, `gan sweep`) ask `holder(run)`: a non-blocking shared
flock on a read-only open, released at once, so asking never writes and never changes the run's files. A run
whose run.json says `running` while nobody holds its lock is dead.

On NFS, Linux (NFSv4, or v3 with the lock manager) turns flock into POSIX byte-range locks that the server keeps
across clients; a shared lock needs only read access, which is why readers ask with LOCK_SH.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from gan.errors import GanError

FILE = ".lock"
RECORDS = ".records.lock"
RECORDS_WAIT_S = 120.0  # another side writer's write (a metrics.json, a pair of exports) takes well under this
JOB_ENV = ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID")  # the job a holder runs in, when it runs in one
RETRY_S = 1.0  # a reader's momentary shared lock can make a writer's try fail: it tries again this long


class Held(GanError):
    """The run is being written by another live process (its facts in `holder`)."""

    def __init__(self, run: Path, holder: dict):
        self.holder = holder
        super().__init__(f"run '{run}' is being written by another process ({describe(holder)}); "
                         "one writer per run: wait for it or stop it first")


def describe(h: dict) -> str:
    job = f", job {h['job']}" if h.get("job") else ""
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('since', '?')}{job}"


def _facts() -> dict:
    job = next((os.environ[k] for k in JOB_ENV if os.environ.get(k)), None)
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")} | ({"job": job} if job else {})


def _read(f) -> dict:
    try:
        f.seek(0)
        d = json.loads(f.read() or b"{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}  # being written by its holder this very moment, or not ours: the lock still says it is held


class RunLock:
    """The held lock: `release()` (or the process's end) frees it."""

    def __init__(self, run: Path, f):
        self.run, self.f = Path(run), f

    def release(self) -> None:
        if self.f is not None:
            self.f.close()  # closing the descriptor drops the flock
            self.f = None


def acquire(run: Path, fresh: bool = False) -> RunLock:
    """Take the run's lock or raise Held naming the holder; `run` must exist. The lock file is made when missing
    (a folder of an older gan), then the holder's facts are written into it. `fresh`: a new run's folder, which
    must hold nothing else once the lock is ours (two `--run-dir` of one folder: the later one is refused)."""
    path = Path(run) / FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise GanError(f"cannot open the run's lock '{path}' ({e.strerror})") from None
    f = os.fdopen(fd, "r+b")
    try:
        got = _lock_within(f, path, RETRY_S)
    except GanError:
        f.close()
        raise
    if not got:
        holder = _read(f)
        f.close()
        raise Held(Path(run), holder) from None
    if fresh and any(p.name != FILE for p in Path(run).iterdir()):
        f.close()
        raise GanError(f"--run-dir '{run}' exists and is not empty: not overwriting it")
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps(_facts()).encode() + b"\n")
        f.flush()
    except OSError as e:  # a full disk: the lock is held all the same; the facts are only for the message
        if e.errno is None:
            raise
    return RunLock(Path(run), f)


def _lock_within(f, path: Path, seconds: float) -> bool:
    """flock `f` exclusively, retrying for `seconds`: True once held, False when someone else still holds it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GanError(f"cannot lock '{path}' ({e.strerror}): this filesystem offers no locks") from None
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@contextlib.contextmanager
def holding(run: Path):
    """The lock for a short write by someone who is not the run's process (gan sweep marking a run it watched)."""
    lk = acquire(run)
    try:
        yield lk
    finally:
        lk.release()


@contextlib.contextmanager
def records(run: Path):
    """Exclusive use of the run's records for a writer beside its own (gan eval, sample, export): waits for another
    such writer to finish its write, never for the training process (which writes none of these files)."""
    path = Path(run) / RECORDS
    try:
        f = open(path, "a+b", buffering=0)  # unbuffered: a full disk fails the facts' write, never the close
    except OSError as e:
        raise GanError(f"cannot open the run's records lock '{path}' ({e.strerror})") from None
    with f:
        if not _lock_within(f, path, RECORDS_WAIT_S):
            raise GanError(f"run '{run}': another command has been writing its records for "
                           f"{RECORDS_WAIT_S:.0f} s ({describe(_read(f))}); try again when it is done") from None
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
            f.write(json.dumps(_facts()).encode() + b"\n")
            f.flush()
        yield


def refuse_if_held(run: Path) -> Path:
    """`run` as it is, or Held when a live process holds it (asked before any file of it is looked at)."""
    h = holder(run)
    if h is not None:
        raise Held(Path(run), h)
    return Path(run)


def holder(run: Path) -> dict | None:
    """The live writer's facts ({} when it wrote none yet), or None when nobody holds the lock (or there is no
    lock file). Read only: the lock file is opened read-only and a shared lock tried and dropped at once."""
    try:
        f = open(Path(run) / FILE, "rb")
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read(f)
            return None
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def live(status: str | None, run: Path) -> str | None:
    """The status a reader shows: run.json's, except `running` without a live holder, which is `dead`."""
    if status == "running" and holder(run) is None:
        return "dead"
    return status

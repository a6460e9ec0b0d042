"""How one run's process starts and is watched: `Local` (a `python -m gan` child process of the sweep) or
`Submitit` (a submitit job: Slurm, or submitit's local executor, that runs the same command). Both give a handle with poll() -> exit code or
None, and stop(signum) -> a graceful stop request the run answers with a checkpoint.

Local children run in their own process group, so a terminal's Ctrl-C reaches the sweep alone and the sweep passes
exactly one signal on per Ctrl-C (the run's first signal checkpoints, its second stops at once). So that no child
outlives a sweep killed with SIGKILL, each asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gan.errors import GanError

GAN_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this `gan` package: children import it
PR_SET_PDEATHSIG = 1
KINDS = ("local", "slurm", "submitit-local")


@dataclass
class Job:
    folder: str  # the run's folder name in the sweep
    args: list  # gan CLI arguments: ["train", BASE, "--set", ..., "--run-dir", DIR] or ["resume", DIR]
    env: dict = field(default_factory=dict)  # OMP_NUM_THREADS, MKL_NUM_THREADS, CUDA_VISIBLE_DEVICES
    log: Path | None = None  # where the run's console output goes (appended)


# What a run reads from its environment that changes what it computes: the data, the reference cache, the
# Inception weights. A sweep records them when it starts, and its runs get the recorded values on every start and
# resume: a `--resume` from another shell (or a Slurm job) trains on the same data.
RUN_ENV = ("GAN_DATA_ROOT", "GAN_CACHE", "GAN_INCEPTION_WEIGHTS", "GAN_INCEPTION_URL")


def recorded_env() -> dict:
    return {k: os.environ[k] for k in RUN_ENV if os.environ.get(k)}


def env_changes(recorded: dict) -> list[str]:
    """One line per variable whose value here differs from the one the sweep recorded."""
    return [f"{k}: the sweep's own {v!r} (recorded when it started), not this shell's "
            f"{os.environ.get(k)!r}" for k, v in recorded.items() if os.environ.get(k) != v]


def child_env(extra: dict) -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, **extra, "PYTHONPATH": GAN_ROOT + (os.pathsep + path if path else "")}


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


class LocalHandle:
    def __init__(self, proc: subprocess.Popen, out):
        self.proc, self.out, self.id = proc, out, str(proc.pid)

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is None:
            return None
        self.out.close()
        return 128 - code if code < 0 else code  # killed by a signal: the shell's convention

    def stop(self, signum: int) -> None:
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass


def command(args: list) -> list:
    """The one command a run of a sweep is, whichever launcher starts it: `python -m gan ARGS` (gan train/resume)."""
    return [sys.executable, "-m", "gan", *map(str, args)]


def dies_with_parent():
    """A preexec_fn for a child that must not outlive this process: the kernel SIGKILLs it when its parent dies
    (PR_SET_PDEATHSIG). It runs in the child between fork and exec: no locks, no imports."""
    libc, parent = _libc(), os.getpid()

    def preexec() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(137)

    return preexec


class Local:
    """Each run a child process `python -m gan ...` of this one."""
    kind = "local"
    batch = False

    def start(self, job: Job) -> LocalHandle:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(job.log, "ab")  # the run's console, appended across resumes (a log, not a result file)
        try:
            proc = subprocess.Popen(command(job.args), env=child_env(job.env), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, process_group=0, preexec_fn=dies_with_parent())
        except OSError as e:
            out.close()
            raise GanError(f"cannot start run {job.folder}: {e}") from None
        return LocalHandle(proc, out)


def run_gan(args: list, env: dict) -> int:
    """What a submitit job runs: the run's own `python -m gan ARGS` process, as a local sweep starts it (its thread
    count from `env`), and its exit code. The sweep never imports the command line: a run is that command.
    submitit's local executor stops a job by a SIGINT to the job's process alone: passed on to the run (its
    checkpoint). Slurm's scancel signals every process of the job, the run included, so SIGTERM is not passed on
    (twice would be "stop at once"). The run dies with the job (PR_SET_PDEATHSIG)."""
    proc = subprocess.Popen(command(args), env=child_env(env), stdin=subprocess.DEVNULL,
                            preexec_fn=dies_with_parent())
    old = signal.signal(signal.SIGINT, lambda signum, frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


class SubmititHandle:
    def __init__(self, job):
        self.job, self.id = job, str(job.job_id)

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result() or 0)
        except Exception:  # noqa: BLE001 - a job that was cancelled, killed or failed: the run.json says what
            return 1

    def stop(self, signum: int) -> None:
        """Slurm: scancel (SIGTERM to the run, SIGKILL after KillWait). The local executor passes a SIGINT on and
        kills about a second later: a run that cannot checkpoint by then resumes from its previous checkpoint."""
        self.job.cancel(check=False)


class Submitit:
    """Runs as submitit jobs: Slurm (`cluster="slurm"`; one job per run, or job arrays with `batch`) or
    submitit's local executor (`cluster="local"`, the same code path on one machine: what the tests use)."""

    def __init__(self, folder: Path, cluster: str, params: dict, batch: bool = False, parallelism: int = 0):
        import submitit

        self.kind = "slurm" if cluster == "slurm" else "submitit-local"
        self.batch = batch
        os.environ["PYTHONPATH"] = child_env({})["PYTHONPATH"]  # the jobs import this very `gan`
        self.ex = submitit.AutoExecutor(folder=Path(folder) / "submitit", cluster=cluster)
        params = {"timeout_min": 24 * 60, **params}
        if batch and parallelism and cluster == "slurm":
            params.setdefault("slurm_array_parallelism", parallelism)
        try:
            self.ex.update_parameters(**params)
        except (ValueError, TypeError) as e:
            raise GanError(f"--submitit: {str(e).splitlines()[0][:200]}") from None

    def start(self, job: Job) -> SubmititHandle:
        return SubmititHandle(self.ex.submit(run_gan, job.args, job.env))

    def start_many(self, jobs: list[Job]) -> list[SubmititHandle]:
        """All at once: a Slurm job array (at most slurm_array_parallelism running at a time)."""
        with self.ex.batch():
            subs = [self.ex.submit(run_gan, j.args, j.env) for j in jobs]
        return [SubmititHandle(s) for s in subs]


def make(kind: str, folder: Path, params: dict, batch: bool, parallelism: int):
    if kind not in KINDS:
        raise GanError(f"--launcher {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "local":
        return Local()
    return Submitit(folder, "slurm" if kind == "slurm" else "local", params, batch, parallelism)


# ---- runs this sweep process did not start (a killed sweep's jobs that run on) ------------------------------
STATUS_CODE = {"completed": 0, "pruned": 0, "failed": 1, "diverged": 3, "interrupted": 130}


def job_waiting(kind: str | None, folder: Path, job_id) -> bool:
    """Whether a submitit job recorded for a run may still start it (queued, or starting up): Slurm's own word
    (PENDING/RUNNING/...), or, for submitit's local executor, its controller process alive on this machine."""
    if not job_id:
        return False
    if kind == "submitit-local":
        try:
            return b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
    if kind == "slurm":
        try:
            import submitit

            state = submitit.SlurmJob(Path(folder) / "submitit", str(job_id)).state
        except Exception:  # noqa: BLE001 - sacct unreachable: the lock alone decides
            return False
        return state.split()[0] in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
                                    "RESIZING")
    return False  # a local child dies with its sweep (PR_SET_PDEATHSIG): its lock says the rest


class Attached:
    """A handle on a run that a live process (not this sweep's child) holds: poll() is None while its lock is
    held or its job may still start it, then the exit code its run.json status stands for; stop() signals the
    holder when it runs on this machine."""

    def __init__(self, run_dir: Path, kind: str | None, sweep: Path, job_id=None):
        from gan import runlock

        self.run_dir, self.kind, self.sweep, self.job_id = Path(run_dir), kind, Path(sweep), job_id
        self.holder = runlock.holder(self.run_dir)
        self.id = str(job_id or (self.holder or {}).get("pid", "?"))

    def describe(self) -> str:
        from gan import runlock

        if self.holder is not None:
            return f"held by {runlock.describe(self.holder)}"
        return f"its {self.kind} job {self.job_id} has not taken it yet"

    def poll(self) -> int | None:
        from gan import runlock
        from gan.runs import info_of

        h = self.holder = runlock.holder(self.run_dir)  # None once it let go: its pid may be another process's now
        if h is not None:
            return None
        if job_waiting(self.kind, self.sweep, self.job_id):
            return None
        return STATUS_CODE.get(info_of(self.run_dir).get("status"), 137)  # still "running": its process died

    def stop(self, signum: int) -> None:
        """Signal the process that holds the run's lock now, never a pid remembered from before it let go."""
        import socket

        from gan import runlock

        h = runlock.holder(self.run_dir) or {}
        if h.get("host") == socket.gethostname() and h.get("pid"):
            try:
                os.kill(int(h["pid"]), signum)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

"""The sweep's scheduler: J runs at once, each a normal `gan train`/`gan resume` process, with the machine split
between them (torch threads = cores // J on a CPU; one visible GPU per job on a GPU machine), a live table, and
Ctrl-C passed on exactly once per press (first: every run checkpoints and stops; second: they stop at once).

The scheduler is the only writer of sweep.json. Each run writes its own run.json (a `progress` heartbeat at each
log step, `last_eval` at each metric point), which the table and the pruner read.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from gan import runlock
from gan.runs import fmt_duration
from gan.stop import Stop
from gan.sweep import launchers, precision
from gan.sweep.manifest import FINAL, Manifest, clear_for_start, needs, run_info
from gan.console import console
from gan.rundir import RunInfo, now


@dataclass
class Slot:
    index: int
    threads: int  # torch threads of the run in this slot (0: leave the default)
    gpu: str | None = None  # its CUDA_VISIBLE_DEVICES


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() not in ("", "-1")]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA: a CPU machine
        return []


def make_slots(jobs: int | None, device: str, log=console.print) -> list[Slot]:
    """J slots: by default one per visible GPU (one on a CPU). On a CPU never more jobs than cores, and each job
    gets cores // J threads, so J jobs never oversubscribe the machine."""
    gpus = [] if device == "cpu" else visible_gpus()
    n, c = jobs or len(gpus) or 1, cores()
    if not gpus and n > c:
        log(f"--jobs {n}: this machine has {c} cores; running {c} at once (more would oversubscribe it)")
        n = c
    if gpus and n > len(gpus):
        log(f"--jobs {n} on {len(gpus)} GPUs: runs share GPUs")
    threads = max(1, c // n)
    return [Slot(i, threads, gpus[i % len(gpus)] if gpus else None) for i in range(n)]


@dataclass
class Active:
    entry: dict
    handle: object  # launchers.LocalHandle or SubmititHandle
    slot: Slot | None


class Scheduler:
    tick = 0.5  # seconds between looks at the runs

    def __init__(self, man: Manifest, launcher, slots: list[Slot], device: str = "auto", search=None,
                 log=console.print, rounds: bool = False):
        self.man, self.launcher, self.device, self.search, self.log = man, launcher, device, search, log
        self.rounds = rounds  # --rounds: the next runs start only when every running one has ended
        self.free = list(slots)
        self.active: dict[str, Active] = {}
        self.stop = Stop(log=log)
        self.queue = []
        self.failed_at_start: list[str] = []  # errors of the runs that failed before training, in a row
        self.halted = ""  # why no more runs start (the same error twice in a row: every run would fail alike)
        for e in man.runs:
            what = needs(man, e)
            if what == "live":  # a killed sweep's job that runs on: waited for, never started twice
                self._attach(e, self.free.pop(0) if self.free else None)
            elif what != "done":
                self.queue.append(e)
            elif e.get("status") not in FINAL:  # it ended while no sweep watched it (the sweep was killed)
                self._record(e, run_info(man.run_dir(e)).get("status", "completed"), None)

    # ---- starting a run ------------------------------------------------------------------------------------
    def job(self, entry: dict, what: str, slot: Slot | None) -> launchers.Job:
        d = self.man.run_dir(entry).resolve()
        if what == "resume":
            args = ["resume", str(d), "--device", self.device]
        else:
            pin = precision.needs_pin(self.man, entry)  # `auto` decided once for the sweep
            over = self.man.data.get("set", []) + entry["overrides"] + ([pin] if pin else [])
            sets = [a for o in over for a in ("--set", o)]
            args = ["train", str((self.man.folder / self.man.data["base"]).resolve()), *sets, "--device",
                    self.device, "--run-dir", str(d)]
        # the machine is split by this sweep's --jobs, on every start and resume: a run first started with more
        # threads resumes with its slot's share (its numbers then follow, not equal, an unbroken run's)
        threads = slot.threads if slot else 0
        env = dict(self.man.data.get("env", {}))  # the data and caches the sweep started with
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
        if slot is not None and slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        return launchers.Job(entry["folder"], args, env, self.man.folder / "console" / f"{entry['folder']}.log")

    def _attach(self, entry: dict, slot: Slot | None) -> None:
        h = launchers.Attached(self.man.run_dir(entry), entry.get("launcher"), self.man.folder, entry.get("job"))
        self.active[entry["folder"]] = Active(entry, h, slot)
        self.log(f"reattached {entry['folder']}: still running ({h.describe()}); waiting for it, not starting it "
                 "again")

    def _prepare(self, entry: dict) -> str | None:
        """What to run for this entry: "start" or "resume"; None when it needs nothing more (pruned)."""
        what = needs(self.man, entry)
        if what == "prune":  # the sweep was stopped between its pruning decision and the run's exit
            self.search.mark_pruned(self.man, entry)
            self._record(entry, "pruned", None)
            return None
        if what == "done":  # it ended since the queue was made
            self._record(entry, run_info(self.man.run_dir(entry)).get("status", "completed"), None)
            return None
        if what == "start":
            clear_for_start(self.man, entry, self.log)
        if what == "resume":  # asked its lock (and job): nobody holds it
            info = run_info(self.man.run_dir(entry))
            self.log(f"{entry['folder']}: stopped (run.json {info.get('status', '?')}, no live holder), checkpoint at "
                     f"step {info.get('step', '?')}: resuming it")
        return what

    def _launch(self, entry: dict, slot: Slot | None) -> None:
        what = self._prepare(entry)
        if what == "live":  # taken up by another process since the queue was made
            return self._attach(entry, slot)
        if what is None:
            if slot is not None:
                self.free.append(slot)
            return
        job = self.job(entry, what, slot)
        threads = job.env.get("OMP_NUM_THREADS")
        self.man.update(entry, status="running", attempts=entry.get("attempts", 0) + 1,
                        **({"threads": int(threads)} if threads else {}),
                        **({"gpu": slot.gpu} if slot is not None and slot.gpu is not None else {}))
        handle = self.launcher.start(job)
        self.man.update(entry, job=handle.id, launcher=self.launcher.kind)
        self.active[entry["folder"]] = Active(entry, handle, slot)
        where = f", {threads} threads" if threads else ""
        where += f", GPU {slot.gpu}" if slot is not None and slot.gpu is not None else ""
        self.log(f"{'resumed' if what == 'resume' else 'started'} {entry['folder']}{where}")

    def _fill(self) -> None:
        if self.launcher.batch:  # a job array: everything at once, the cluster runs J at a time
            batch = [(e, self._prepare(e)) for e in self.queue]
            self.queue = []
            for e, w in batch:
                if w == "live":
                    self._attach(e, None)
            batch = [(e, w) for e, w in batch if w and w != "live"]
            if batch:
                jobs = [self.job(e, w, self.free[0] if self.free else None) for e, w in batch]  # its threads
                for (e, _), h in zip(batch, self.launcher.start_many(jobs)):
                    self.man.update(e, status="running", attempts=e.get("attempts", 0) + 1, job=h.id,
                                    launcher=self.launcher.kind)
                    self.active[e["folder"]] = Active(e, h, None)
                self.log(f"submitted {len(batch)} runs as one job array")
            return
        if self.rounds and self.active:  # a round is still running: the next starts together, when it has ended
            return
        while self.free and not self.halted:
            entry = self.queue.pop(0) if self.queue else (self.search.new_entry() if self.search else None)
            if entry is None:
                return
            self._launch(entry, self.free.pop(0))

    # ---- a run's end ---------------------------------------------------------------------------------------
    def _ended(self, a: Active, code: int) -> None:
        entry, d = a.entry, self.man.run_dir(a.entry)
        info = run_info(d)
        st = info.get("status")
        if entry.get("status") == "pruning" and st != "completed":  # (it may have ended before the SIGTERM came)
            self.search.mark_pruned(self.man, entry)
            status = "pruned"
        elif st in ("completed", "diverged", "failed", "interrupted"):
            status = st
        elif st == "running":
            status = "interrupted"  # killed from outside (OOM killer, scancel): it resumes from its checkpoint
        elif code in (130, 143):
            status = "interrupted"  # stopped while loading its data: it left no folder, it starts again
        else:
            status = "failed"  # it ended before its run began (its console log says why)
        if code == 2 and st != "completed" and "already complete" in self._tail(entry):
            status = "completed"  # killed between its last checkpoint and its last run.json write
            with runlock.holding(d):  # its process has ended: the sweep writes run.json as its one writer
                RunInfo(d).update(status="completed", ended=now(), ended_by="gan sweep: its last checkpoint is at "
                                                                             "its last step")
        self._record(entry, status, code, info)

    def _record(self, entry: dict, status: str, code: int | None, info: dict | None = None) -> None:
        info = info if info is not None else run_info(self.man.run_dir(entry))
        fields = {"status": status, "step": info.get("step"), "best": info.get("best")}
        if code is not None:
            fields["exit_code"] = code
        if status == "failed":
            fields["error"] = info.get("error") or self._tail(entry)
        self.man.update(entry, **fields)
        self._streak(status, info, fields.get("error", ""))
        if self.search:
            self.search.finished(entry, status, info)
        best = info.get("best") or {}
        shown = f", best {best['tag'].split('/')[1]} {best['value']:.4g} at step {best['step']}" if best else ""
        err = f": {fields['error']}" if status == "failed" else ""
        self.log(f"{status} {entry['folder']} (step {info.get('step', 0)}){shown}{err}")

    def _streak(self, status: str, info: dict, error: str) -> None:
        """Two runs in a row that fail before their first step with the same error (missing data, a bad path):
        every run would, and a search would spend all its trials on it. No more runs start; the line says why."""
        if status != "failed" or info.get("step"):
            self.failed_at_start = []
            return
        self.failed_at_start.append(error)
        if len(self.failed_at_start) >= 2 and len(set(self.failed_at_start[-2:])) == 1 and not self.halted:
            self.halted = error
            self.log(f"[red]no more runs start: two runs in a row failed before training with the same error[/] "
                     f"({error}); fix it, then `gan sweep --resume {self.man.folder}` starts them again")

    def _tail(self, entry: dict) -> str:
        p = self.man.folder / "console" / f"{entry['folder']}.log"
        try:
            lines = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "")[:300]

    def _poll(self) -> None:
        for folder, a in list(self.active.items()):
            code = a.handle.poll()
            if code is None:
                continue
            self._ended(a, code)
            del self.active[folder]
            if a.slot is not None:
                self.free.append(a.slot)

    def _signal_all(self, signum: int) -> None:
        for a in self.active.values():
            a.handle.stop(signum)

    # ---- the loop ------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run everything the sweep still needs; the exit code (0, 1 when a run failed, 130/143 when stopped)."""
        self.stop.install()
        self.man.update(self.man.data, runner={"pid": os.getpid(), "host": os.uname().nodename})
        passed_on = 0  # signals passed on to the runs
        try:
            with self.view() as refresh:
                while True:
                    try:
                        if self.stop.signum and not passed_on:
                            self._signal_all(self.stop.signum)
                            passed_on = 1
                        if not self.stop.signum:
                            self._fill()
                        self._poll()
                        if self.search and not self.stop.signum:
                            self.search.watch(self)
                        refresh()
                        if not self.active and (self.stop.signum or not self._more()):
                            break
                        time.sleep(self.tick)
                    except KeyboardInterrupt:  # a second signal: every run stops at once
                        self._signal_all(signal.SIGINT)
                        passed_on = 2
        finally:
            self.stop.uninstall()
        if self.stop.signum:
            left = sum(r["status"] not in FINAL + ("failed",) for r in self.man.runs)
            self.log(f"[yellow]stopped: {left} runs to go; `gan sweep --resume {self.man.folder}` finishes them[/]")
            return self.stop.exit_code
        return 1 if any(r["status"] == "failed" for r in self.man.runs) else 0

    def _more(self) -> bool:
        if self.halted:
            return False
        return bool(self.queue) or bool(self.search and self.search.more())

    @contextlib.contextmanager
    def view(self):
        if not console.is_terminal:
            yield lambda: None
            return
        from rich.live import Live

        with Live(self.table(), console=console, auto_refresh=False) as live:  # no thread: children fork safely
            yield lambda: live.update(self.table(), refresh=True)

    def table(self):
        from rich.table import Table

        runs = self.man.runs
        done = sum(r["status"] in FINAL + ("failed",) for r in runs)
        t = Table("run", "status", "step", "img/s", "last FID", "ETA", box=None,
                  title=f"sweep {self.man.folder}: {done}/{self.search.total if self.search else len(runs)} done, "
                        f"{len(self.active)} running")
        for folder, a in self.active.items():
            attached = isinstance(a.handle, launchers.Attached)
            t.add_row(folder, *live_row(self.man.run_dir(a.entry), "attached" if attached else a.entry["status"]))
        return t


def live_row(run_dir: Path, status: str) -> list[str]:
    """step, img/s, last primary FID and ETA of a running run, from its run.json heartbeat."""
    info = run_info(run_dir)
    status = "dead" if runlock.live(info.get("status"), run_dir) == "dead" else status  # gone without a word
    p = info.get("progress") or {}
    step, steps, secs = p.get("step", 0), p.get("steps") or info.get("steps_planned"), p.get("train_seconds", 0)
    tag = (info.get("primary_metric") or {}).get("tag")
    ev = info.get("last_eval") or {}
    fid = ev.get("values", {}).get(tag) if tag else None
    eta, shown = remaining(step, steps, secs, p.get("minutes") or 0)
    return [status, f"{step}/{shown}", f"{p['images_per_sec']:.0f}" if p.get("images_per_sec") else "-",
            f"{fid:.4g} @ {ev.get('step')}" if fid is not None else "-", fmt_duration(eta)]


def remaining(step: int, steps: int | None, secs: float, minutes: float) -> tuple[float | None, str]:
    """(training seconds left, the steps the run will end at) under whichever limit ends it first: train.steps,
    or train.minutes (then its end step is an estimate from the pace so far, shown as ~N)."""
    if not step or not secs:
        return None, str(steps or "?")
    by_steps = (steps - step) * secs / step if steps else None
    by_time = max(0.0, 60 * minutes - secs) if minutes else None
    if by_time is not None and (by_steps is None or by_time < by_steps):
        return by_time, f"~{step + round(by_time * step / secs)}"
    return by_steps, str(steps or "?")

"""Stopping a run on request: SIGINT (Ctrl-C) and SIGTERM.

First signal: the run stops cleanly. During a training step (or a checkpoint write) the step finishes, a
checkpoint is written and the run is marked `interrupted` (exit 130, or 143 for SIGTERM). During a phase that can be
dropped without losing anything (data loading, reference statistics, an evaluation: `with stop.droppable():`) the
phase is left at once (`Interrupted`) and the same clean end follows. Second signal: stop at once (files are only
ever replaced atomically, so the last checkpoint stays good).

Under torchrun a Ctrl-C reaches each rank twice (the terminal's process group, then torchrun passes it on): a
repeat within `debounce` seconds counts as the same signal, and ranks act on a request only where they agree
(see engine), so no phase is dropped there.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


_signalled = False  # any signal handled by a Stop in this process (what a test pause waits for)


class Interrupted(Exception):
    """A droppable phase was left because of a stop request."""


class Stop:
    def __init__(self, debounce: float = 0.0, droppable: bool = True, log=print):
        self.signum = 0
        self.debounce, self.allow_drop, self.log = debounce, droppable, log
        self.t = 0.0
        self._dropping = 0
        self.old = {}

    def install(self) -> "Stop":
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (tests calling train() from a thread)
                pass
        return self

    def uninstall(self) -> None:
        for s, h in self.old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)
        self.old = {}

    def _handle(self, signum, frame):
        global _signalled
        _signalled = True
        if self.signum:
            if time.monotonic() - self.t < self.debounce:
                return
            raise KeyboardInterrupt
        self.signum, self.t = signum, time.monotonic()
        self.log(f"[yellow]signal {signal.Signals(signum).name}: stopping cleanly (again to stop at once)[/]")
        if self._dropping:
            raise Interrupted()

    @contextlib.contextmanager
    def droppable(self):
        """A phase a first signal may cut short: nothing it was making is needed to end the run cleanly."""
        if not self.allow_drop:
            yield
            return
        if self.signum:
            raise Interrupted()
        self._dropping += 1
        try:
            yield
        finally:
            self._dropping -= 1

    @property
    def exit_code(self) -> int:
        return 143 if self.signum == signal.SIGTERM else 130


# ---- a test hook: named moments -------------------------------------------------------------------------------
# Tests only (the program never sets these): GAN_TEST_AT="MOMENT@N" SIGKILLs this process the Nth time it reaches
# MOMENT; with GAN_TEST_PAUSE=FILE it creates FILE there instead and waits (up to 60 s) for a signal, so a test can
# signal a run inside a phase. Moments: data, refstats, eval, step, write:<file name> (temp file written, not yet
# in place), rotate:<file name> (between the two renames of a rotation).
_AT = os.environ.get("GAN_TEST_AT", "").rpartition("@")
_seen: dict[str, int] = {}


def at(moment: str) -> None:
    if _AT[0] != moment:
        return
    _seen[moment] = _seen.get(moment, 0) + 1
    if str(_seen[moment]) != _AT[2]:
        return
    if not os.environ.get("GAN_TEST_PAUSE"):
        os.kill(os.getpid(), signal.SIGKILL)
    Path(os.environ["GAN_TEST_PAUSE"]).touch()
    t0 = time.monotonic()
    while not _signalled and time.monotonic() - t0 < 60:
        time.sleep(0.02)

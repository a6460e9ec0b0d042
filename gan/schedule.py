"""When the loop does what: scalars, grids, metrics, checkpoints and the start of G's EMA every N generator steps, as
the config says, and the clock of a time budget (`train.minutes`) that ends the run.

A budget fixes time, not steps. On a machine slower than the one an experiment was tuned on, step-counted schedules
may never come: an EMA from step 250, or metrics every 500 steps, in a run that makes 248. `train.tuned_steps` says
how many steps the experiment's schedules were written for. Once the run has measured its own pace (the first
`MEASURE_S` seconds of training, or `MEASURE_SHARE` of a shorter budget, after its first step), a run that will make
fewer steps scales every step schedule down to the steps it will reach and says so in one line. The scale is kept in
checkpoints: a resumed run keeps its cadence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

MEASURE_S, MEASURE_SHARE = 30.0, 0.05  # training seconds (or share of the budget) the pace is measured over
FAR = 0.5  # fewer than this share of the tuned steps is "far fewer": said as a warning
NAMES = ("log_every", "image_every", "metrics_every", "checkpoint_every", "ema_start")


def total_steps(cfg, n_images: int) -> int:
    """The generator steps a run plans: train.steps, or train.epochs passes over its `n_images`."""
    if cfg.train.epochs > 0:  # one pass = N / (batch * n_dis) G steps, as the D sees every image once
        return max(1, math.ceil(cfg.train.epochs * n_images / (cfg.optim.batch_size * cfg.optim.n_dis)))
    return cfg.train.steps


@dataclass
class Schedule:
    base: dict  # name -> the step count the config gives
    budget_s: float = 0.0  # train.minutes in seconds; 0 = no budget
    tuned_steps: int = 0  # the steps the schedules were written for (0 = never scaled)
    scale: float | None = None  # set once the pace is measured (1.0: the schedules stand)
    projected: int | None = None  # steps the budget will reach, at the measured pace
    mark: tuple | None = field(default=None, repr=False)  # (step, train seconds) after this process's first step
    eval_s: float = 0.0  # the last evaluation's seconds: the ETA counts the evaluations still to come

    @classmethod
    def of(cls, cfg) -> Schedule:
        t, m = cfg.train, cfg.metrics
        base = dict(zip(NAMES, (t.log_every, t.image_every, m.every if m.enabled else 0, t.checkpoint_every,
                                cfg.optim.ema_start)))
        return cls(base, 60.0 * t.minutes, t.tuned_steps)

    def every(self, name: str) -> int:
        """The step count of schedule `name` now: as configured, or scaled to the steps the budget reaches."""
        n = self.base[name]
        if self.scale is None or self.scale >= 1.0 or n <= 0:
            return n
        return max(0 if name == "ema_start" else 1, round(n * self.scale))

    def due(self, name: str, step: int, final: bool) -> bool:
        e = self.every(name)
        return final or (e > 0 and step % e == 0)

    # ---- the budget -----------------------------------------------------------------------------------------
    def out_of_time(self, secs: float) -> bool:
        return bool(self.budget_s) and secs >= self.budget_s

    def measured(self, step: int, secs: float) -> bool:
        """Whether the pace can be measured now (and has not been): never without a budget."""
        if not self.budget_s or self.scale is not None:
            return False
        if self.mark is None:  # the first step pays for warm-up: the pace is measured from after it
            self.mark = (step, secs)
            return False
        n, dt = step - self.mark[0], secs - self.mark[1]
        return n >= 3 and dt >= min(MEASURE_S, MEASURE_SHARE * self.budget_s)

    def rate(self, step: int, secs: float) -> float | None:
        if self.mark is None or step <= self.mark[0] or secs <= self.mark[1]:
            return None
        return (step - self.mark[0]) / (secs - self.mark[1])

    def calibrate(self, step: int, secs: float) -> tuple[float, int]:
        """(scale, projected steps) from the pace since the first step."""
        projected = step + int(self.rate(step, secs) * max(0.0, self.budget_s - secs))
        return (min(1.0, projected / self.tuned_steps) if self.tuned_steps else 1.0), projected

    def adopt(self, scale: float, projected: int) -> None:
        self.scale, self.projected = scale, projected

    def line(self, experiment: str, minutes: float) -> str:
        """What the run says once its pace is known."""
        r = f"this machine makes about {self.projected:,} steps in train.minutes = {minutes:g}"
        if not self.tuned_steps:
            return r
        if self.scale >= 1.0:
            return f"{r} ({experiment} was tuned for {self.tuned_steps:,}: its schedules stand)"
        shown = ", ".join(f"{k.replace('_every', '')} every {self.every(k)}" for k in NAMES[1:4] if self.base[k] > 0)
        text = (f"{r}, {self.tuned_steps / max(self.projected, 1):.1f}× fewer than {experiment} was tuned for "
                f"({self.tuned_steps:,}): step schedules scaled by {self.scale:.3g}: {shown}, "
                f"EMA from step {self.every('ema_start')}")
        return f"[yellow]warning: {text}[/]" if self.scale < FAR else text

    def total(self, step: int, secs: float, steps: int) -> int:
        """The steps the run will end at: the plan's, or fewer where the budget ends it first."""
        r = self.rate(step, secs) if self.budget_s else None
        return steps if r is None else min(steps, step + int(r * max(0.0, self.budget_s - secs)))

    def left(self, step: int, secs: float, steps: int) -> float | None:
        """Seconds of wall time the budget has left: training, plus the evaluations still due (None: no budget)."""
        if not self.budget_s:
            return None
        e, end = self.every("metrics_every"), self.total(step, secs, steps)
        evals = (end // e - step // e if e > 0 else 0) + 1  # and the final one
        return max(0.0, self.budget_s - secs) + evals * self.eval_s

    def state_dict(self) -> dict:
        return {"scale": self.scale, "projected": self.projected}

    def load_state_dict(self, s: dict | None) -> None:
        s = s or {}
        self.scale, self.projected = s.get("scale"), s.get("projected")

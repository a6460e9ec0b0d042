"""A run's scalars, read from its TensorBoard event files with TensorBoard's own EventAccumulator (a restart's
purged steps dropped as TensorBoard drops them), as one `Series` per tag.

Every point has its step and wall-clock minutes since the run's first event. Metric points (`metrics/*`,
`eval/*`) also carry the training seconds (evaluations excluded) and images seen at that step: the engine logs
`progress/train_seconds` and `progress/images_seen` at each metric point, so the x axes of `gan compare --x` and
the thresholds of `gan leaderboard --at` read the logged numbers, never a reconstruction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gan.metrics import protocol

TRAIN_SECONDS, IMAGES_SEEN = "progress/train_seconds", "progress/images_seen"
# a resumed run's purge is expected and handled by load_scalars; TensorBoard's warning about it is noise on our tables
logging.getLogger("tensorboard").setLevel(logging.ERROR)


@dataclass
class Series:
    steps: list = field(default_factory=list)
    minutes: list = field(default_factory=list)  # wall-clock minutes since the run's first event
    values: list = field(default_factory=list)
    train_seconds: list = field(default_factory=list)  # per point; None where the run logged no progress there
    images: list = field(default_factory=list)

    def at(self, step: int) -> float:
        return self.values[self.steps.index(step)]


def has_events(run: Path) -> bool:
    return any(Path(run).glob("events.out.tfevents.*"))


def load_scalars(run: Path) -> dict[str, Series]:
    """Every scalar tag of a run; {} when it has no event files yet."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not has_events(run):
        return {}
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1,
                                                   "audio": 1, "compressedHistograms": 1})
    ea.Reload()  # a file being written reads up to its last whole record
    tags = ea.Tags().get("scalars", [])
    if not tags:
        return {}
    t0 = ea.FirstEventTimestamp()
    raw = {}
    for tag in tags:
        by_step = {}
        for e in ea.Scalars(tag):
            by_step[e.step] = e  # a step logged twice: the later write wins
        raw[tag] = by_step
    secs = {s: float(e.value) for s, e in raw.get(TRAIN_SECONDS, {}).items()}
    imgs = {s: float(e.value) for s, e in raw.get(IMAGES_SEEN, {}).items()}
    out = {}
    for tag, by_step in raw.items():
        s = Series()
        metric = tag.startswith(("metrics/", "eval/"))
        for step in sorted(by_step):
            s.steps.append(int(step))
            s.minutes.append((by_step[step].wall_time - t0) / 60.0)
            s.values.append(float(by_step[step].value))
            s.train_seconds.append(secs.get(step) if metric else None)
            s.images.append(imgs.get(step) if metric else None)
        out[tag] = s
    return out


def metric_tags(scalars: dict) -> list[str]:
    return sorted(t for t in scalars if t.startswith("metrics/"))


def best_point(s: Series, tag: str) -> tuple[int, float]:
    """(step, value) of the best point of `s` for `tag` (lower or higher is better, as the protocol says)."""
    pick = max if protocol.higher_is_better(tag) else min
    i = pick(range(len(s.values)), key=s.values.__getitem__)
    return s.steps[i], s.values[i]


def first_reaching(s: Series, tag: str, threshold: float) -> int | None:
    """Index of the first point of `s` at or past `threshold` (<= for lower-is-better tags), or None."""
    higher = protocol.higher_is_better(tag)
    return next((i for i, v in enumerate(s.values) if (v >= threshold if higher else v <= threshold)), None)


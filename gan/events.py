"""A run's scalars, read from its TensorBoard event files (gan/eventfile.py: a restart's purged steps dropped as
TensorBoard drops them), as one `Series` per tag.

Every point has its step and wall-clock minutes since the run's first event. Metric points (`metrics/*`,
`eval/*`) also carry the training seconds (evaluations excluded) and images seen at that step: the engine logs
`progress/train_seconds` and `progress/images_seen` at each metric point, so the x axes of `gan compare --x` and
the thresholds of `gan leaderboard --at` read the logged numbers, never a reconstruction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gan import eventfile
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
    return bool(eventfile.files(Path(run)))


def is_metric(tag: str) -> bool:
    """Metric points: they also carry the training seconds and images seen at their step."""
    return tag.startswith(("metrics/", "eval/"))


def load_scalars(run: Path) -> dict[str, Series]:
    """Every scalar tag of a run; {} when it has no event files yet (gan/eventfile.py: scalars only, fast)."""
    sc = eventfile.scan(Path(run))
    return series_of(sc.points, sc.t0)


def load_scalars_tb(run: Path) -> dict[str, Series]:
    """The same through TensorBoard's own EventAccumulator (every record and image decoded: slow on long runs):
    what the index is checked against, and `GAN_INDEX=events`."""
    t0, points = points_tb(run)
    return series_of(points, t0)


def points_tb(run: Path) -> tuple[float | None, dict]:
    """(first event's wall time, {tag: {step: (value, wall_time)}}) as TensorBoard's EventAccumulator reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not has_events(run):
        return None, {}
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1,
                                                   "audio": 1, "compressedHistograms": 1})
    ea.Reload()  # a file being written reads up to its last whole record
    tags = ea.Tags().get("scalars", [])
    if not tags:
        return None, {}
    points = {}
    for tag in tags:
        by_step = points[tag] = {}
        for e in ea.Scalars(tag):
            by_step[e.step] = (float(e.value), e.wall_time)  # a step logged twice: the later write wins
    return ea.FirstEventTimestamp(), points


def series_of(points: dict, t0: float | None) -> dict[str, Series]:
    """{tag: Series} from {tag: {step: (value, wall_time)}}; metric points get the progress logged at their step."""
    secs = {s: float(v) for s, (v, _) in points.get(TRAIN_SECONDS, {}).items()}
    imgs = {s: float(v) for s, (v, _) in points.get(IMAGES_SEEN, {}).items()}
    out = {}
    for tag, by_step in points.items():
        if not by_step:
            continue
        s = Series()
        metric = is_metric(tag)
        for step in sorted(by_step):
            value, wall = by_step[step]
            s.steps.append(int(step))
            s.minutes.append((wall - t0) / 60.0)
            s.values.append(float(value))
            s.train_seconds.append(secs.get(step) if metric else None)
            s.images.append(imgs.get(step) if metric else None)
        out[tag] = s
    return out


def metric_tags(scalars: dict) -> list[str]:
    return sorted(t for t in scalars if t.startswith("metrics/"))


def best_index(s: Series, tag: str) -> int:
    """Index of the best point of `s` for `tag` (lower or higher is better, as the protocol says; the first of
    equals)."""
    pick = max if protocol.higher_is_better(tag) else min
    return pick(range(len(s.values)), key=s.values.__getitem__)


def best_point(s: Series, tag: str) -> tuple[int, float]:
    """(step, value) of the best point of `s` for `tag`."""
    i = best_index(s, tag)
    return s.steps[i], s.values[i]


def first_reaching(s: Series, tag: str, threshold: float) -> int | None:
    """Index of the first point of `s` at or past `threshold` (<= for lower-is-better tags), or None."""
    higher = protocol.higher_is_better(tag)
    return next((i for i, v in enumerate(s.values) if (v >= threshold if higher else v <= threshold)), None)


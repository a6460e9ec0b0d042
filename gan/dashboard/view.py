"""What the GAN view shows, decided once for the TensorBoard tab and the PNG: which grid of a run stands at a chosen
step (its nearest logged one), how the primary metric is named, and what a run says about itself (run.json and
its sweep). The browser side (static/index.js) repeats only `nearest`, on the steps the server sends."""
from __future__ import annotations

import bisect
from pathlib import Path

from gan import runlock
from gan.metrics import protocol
from gan.runs import read_info

FAKE = "images/fake"  # the fixed-latent grid: the view's default
GRID_NAMES = {FAKE: "fixed latents", "images/fake_per_class": "per class", "images/neighbours": "neighbours",
              "images/real": "real", "images/real_augmented": "what D sees"}
SHORT = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall",
         "class_acc": "class consistency", "class_entropy": "class coverage"}


def nearest(steps: list[int], step: int) -> int | None:
    """The logged step closest to `step` (`steps` sorted; a tie goes to the earlier one); None when none."""
    if not steps:
        return None
    i = bisect.bisect_left(steps, step)
    if i == 0:
        return steps[0]
    if i == len(steps):
        return steps[-1]
    before, after = steps[i - 1], steps[i]
    return after if after - step < step - before else before


def metric_label(tag: str) -> str:
    """'metrics/fid_c10' -> 'FID c10': the metric and the extractor it was measured with (protocol's names)."""
    name, sfx = protocol.split(tag)
    return f"{SHORT.get(name, name)} {protocol.extractor_label(sfx)}"


def point_label(tag: str, points: list[tuple[int, float]], step: int) -> str:
    """'FID c10 12.3 @ step 500': the run's primary metric at its point nearest `step` (points sorted by step)."""
    if not tag:
        return "no metric logged"
    if not points:
        return f"{metric_label(tag)}: no point yet"
    at = nearest([s for s, _ in points], step)
    value = dict(points)[at]
    return f"{metric_label(tag)} {value:.4g} @ step {at}"


def run_facts(logdir: Path, name: str) -> dict:
    """What a run folder says about itself: experiment, status (`dead` when nobody holds a `running` run), sweep.
    {} for a TensorBoard run that is no run folder of ours (no run.json: a sweep's mean, another program's)."""
    run = Path(logdir) / name
    if not (run / "run.json").is_file():
        return {}
    info, problem = read_info(run)
    parts = Path(name).parts
    sweep = run.parent.name if (run.parent / "sweep.json").is_file() else None
    return {"experiment": info.get("experiment") or (parts[0] if len(parts) > 1 else run.parent.name),
            "sweep": sweep, "status": "damaged" if problem else runlock.live(info.get("status"), run) or "?"}

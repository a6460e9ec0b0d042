"""A target judged on an interval, not on one number: a busy machine moves a single ratio by more than the margin
a target leaves, so each timed target gives one sample per round (a paired window: the contenders measured back
to back) and is judged on the 95 % t-interval of their mean.

PASS when the whole interval clears the bound, FAIL when it lies wholly beyond it, "unclear" otherwise, with the
number of rounds that would settle it: the interval's half-width shrinks as 1/√n, so it clears the margin
|mean − bound| after about n × (half-width ÷ margin)² rounds. A value with no timing noise (the same samples
scored twice) is judged on the value itself ("exact").
"""
from __future__ import annotations

import math
import statistics

def t975(df: int) -> float:
    """The two-sided 95 % Student t quantile for `df` degrees of freedom (scipy's, exact for every df)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def interval(samples: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the samples' mean; low = high = mean for fewer than 2."""
    m = statistics.fmean(samples)
    if len(samples) < 2:
        return m, m, m
    hw = t975(len(samples) - 1) * statistics.stdev(samples) / math.sqrt(len(samples))
    return m, m - hw, m + hw


def _holds(v: float, op: str, bound: float) -> bool:
    return {">=": v >= bound, "<=": v <= bound, "<": v < bound}[op]


def judge(samples: list[float], op: str, bound: float, exact: bool = False) -> dict:
    """{status: PASS | FAIL | unclear, mean, low, high, n, rounds (to settle an unclear one, else None), why}."""
    samples = [float(s) for s in samples]
    n = len(samples)
    m, lo, hi = interval(samples)
    out = {"mean": m, "low": lo, "high": hi, "n": n, "rounds": None}
    if exact:
        return out | {"status": "PASS" if _holds(m, op, bound) else "FAIL", "why": "exact (no timing noise)"}
    if n < 2:
        return out | {"status": "unclear", "rounds": 3, "why": "one sample: no interval (≥ 3 rounds needed)"}
    if _holds(lo, op, bound) and _holds(hi, op, bound):
        return out | {"status": "PASS", "why": f"the whole 95 % interval of {n} rounds clears the bound"}
    if not _holds(lo, op, bound) and not _holds(hi, op, bound):
        return out | {"status": "FAIL", "why": f"the whole 95 % interval of {n} rounds misses the bound"}
    margin, hw = abs(m - bound), (hi - lo) / 2
    if margin == 0:
        return out | {"status": "unclear", "why": "the mean sits on the bound: no number of rounds settles it"}
    need = max(n + 1, math.ceil(n * (hw / margin) ** 2))
    return out | {"status": "unclear", "rounds": need,
                  "why": f"the 95 % interval of {n} rounds straddles the bound: ≈{need} rounds would settle it"}

"""How a figure grows over a long run: flat within noise, growing with the logged points (linearly in steps, since
every cadence is fixed), or growing faster (its growth per interval itself grows), or falling.

A series is judged on a straight line fitted through it: its change over the run, against a tolerance that is the
larger of a fixed share of its level and three times its relative scatter about the line (noise widens the band; a
steady drift does not, since the line absorbs it; for pure noise the fitted change over 10 marks has about the
scatter's size, so 3× rarely calls noise growth). A series that is not flat grows "faster" when its slope over
the second half of the run is more than `FASTER` times its slope over the first half: a linear series gives ≈ 1,
one that grows as steps² gives ≈ 2.4 over marks 10k..100k.
"""
from __future__ import annotations

import statistics

FLAT, LINEAR, FASTER_, FALLS, RISES = ("flat within noise", "grows with logged points", "grows faster", "falls",
                                      "rises")
FASTER = 1.5
NOISE = 3  # the flat band, in multiples of the scatter about the line


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs (0 with fewer than 2 distinct xs)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def judge(xs: list[float], ys: list[float], tol: float = 0.05, rate: bool = False) -> dict:
    """{verdict, change (fitted change over the run ÷ level), noise (relative scatter about the line), band,
    late_vs_early (second half's slope ÷ first half's; None when flat or undefined), per_interval (the fitted
    change per mark interval)}. A `rate` (steps/s) that is not flat rises or falls: it has no logged points."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) < 3:
        return {"verdict": "too few points", "change": None, "noise": None, "band": None, "late_vs_early": None,
                "per_interval": None}
    b = slope(xs, ys)
    level = statistics.median(abs(y) for y in ys) or 1e-12
    a = statistics.fmean(ys) - b * statistics.fmean(xs)
    noise = statistics.pstdev([y - (a + b * x) for x, y in zip(xs, ys)]) / level
    change = b * (xs[-1] - xs[0]) / level
    band = max(tol, NOISE * noise)
    out = {"change": change, "noise": noise, "band": band, "late_vs_early": None,
           "per_interval": b * (xs[-1] - xs[0]) / (len(xs) - 1)}
    if abs(change) <= band:
        return out | {"verdict": FLAT}
    if change < 0 or rate:
        return out | {"verdict": FALLS if change < 0 else RISES}
    mid = len(xs) // 2  # the middle mark belongs to both halves
    early, late = slope(xs[:mid + 1], ys[:mid + 1]), slope(xs[mid:], ys[mid:])
    ratio = late / early if early > 0 else float("inf")
    return out | {"verdict": FASTER_ if ratio > FASTER else LINEAR, "late_vs_early": ratio}


def ok(verdict: str, allowed: tuple[str, ...]) -> bool:
    """Whether a verdict is within what a figure may do ("too few points" passes: nothing to judge)."""
    return verdict == "too few points" or verdict in allowed

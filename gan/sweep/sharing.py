"""Who shared the machine with whom: an equal-time comparison is fair only when every setting ran beside every other
(and beside itself) for the same share of its time, or every run had the machine alone. Read from each run's
run.json (`started`, `ended`); said in `gan sweep --report` as one line and a small table."""
from __future__ import annotations

import datetime as dt
from itertools import combinations

TOLERANCE = 0.2  # shares of run time within this of each other count as equal


def _t(s) -> float | None:
    try:
        return dt.datetime.fromisoformat(s).timestamp() if s else None
    except (TypeError, ValueError):
        return None


def matrix(runs: list[tuple[str, dict]]) -> tuple[list[str], dict]:
    """(settings, {(a, b): run-minutes that runs of `a` spent beside a run of `b`}) from [(setting, run.json)]."""
    spans = [(s, _t(i.get("started")), _t(i.get("ended"))) for s, i in runs]
    spans = [(s, a, b) for s, a, b in spans if a is not None and b is not None and b > a]
    settings = list(dict.fromkeys(s for s, _ in runs))
    m = {(a, b): 0.0 for a in settings for b in settings}
    for (s1, a1, b1), (s2, a2, b2) in combinations(spans, 2):
        both = max(0.0, min(b1, b2) - max(a1, a2)) / 60
        m[(s1, s2)] += both  # each of the two runs spent that time beside the other
        m[(s2, s1)] += both
    return settings, m


def verdict(settings: list[str], m: dict) -> str:
    """One line: every run alone; balanced (every two settings ran side by side for the same time, and no setting
    beside itself); or not, with who ran beside whom."""
    if len(settings) < 2:
        return ""
    total = sum(m.values())
    if total < 0.1:
        return "cores: every run had the machine alone (one at a time)"
    off = [m[(a, b)] for a in settings for b in settings if a != b]
    self_share = sum(m[(a, a)] for a in settings) / total
    shown = "; ".join(f"{a} beside {b} {m[(a, b)]:.1f} min" for a in settings for b in settings if m[(a, b)] > 0)
    if max(off) - min(off) <= TOLERANCE * max(off) and self_share <= TOLERANCE / 2:
        return f"cores: balanced, every setting ran beside every other alike and never beside itself ({shown})"
    return (f"cores: NOT balanced ({shown}): a setting's speed may come from what ran beside it; run the comparison "
            "again with --rounds and --jobs equal to the number of settings, or --jobs 1")

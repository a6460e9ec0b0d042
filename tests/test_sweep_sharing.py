"""Equal-time comparisons without a confound: a sweep's runs go seed by seed (two at once are two settings), `--rounds`
starts each round together, and the report says who shared the machine with whom."""
from __future__ import annotations

import datetime as dt

from gan.sweep import grid, sharing


def test_runs_go_seed_by_seed():
    runs = grid.plan_settings([("gemm", []), ("before", ["train.dense_gemm=false"])], 3)
    assert [(r.setting, r.seed) for r in runs] == [("gemm", 0), ("before", 0), ("gemm", 1), ("before", 1),
                                                   ("gemm", 2), ("before", 2)]
    g = grid.plan({"optim.g_lr": ["1e-4", "2e-4"]}, 2)
    assert [r.seed for r in g] == [0, 0, 1, 1] and g[0].setting != g[1].setting


def _info(start_min: float, end_min: float) -> dict:
    t0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
    iso = lambda m: (t0 + dt.timedelta(minutes=m)).isoformat()  # noqa: E731
    return {"started": iso(start_min), "ended": iso(end_min)}


def test_the_report_says_who_shared_the_cores():
    # the 2026-12-04 confound: gemm-s0 beside gemm-s1, gemm-s2 beside before-s0, before-s1 beside before-s2
    confounded = [("gemm", _info(0, 10)), ("gemm", _info(0, 10)), ("gemm", _info(10, 20)), ("before", _info(10, 20)),
                  ("before", _info(20, 30)), ("before", _info(20, 30))]
    line = sharing.verdict(*sharing.matrix(confounded))
    assert line.startswith("cores: NOT balanced") and "gemm beside gemm 20.0 min" in line and "--rounds" in line
    paired = [("gemm", _info(10 * i, 10 * i + 10)) for i in range(3)] + \
             [("before", _info(10 * i, 10 * i + 10.5)) for i in range(3)]
    line = sharing.verdict(*sharing.matrix(paired))
    assert line.startswith("cores: balanced") and "before beside gemm 31.0 min" in line  # 0.5 min into the next round
    alone = [("gemm", _info(0, 10)), ("before", _info(10, 20))]
    assert sharing.verdict(*sharing.matrix(alone)) == "cores: every run had the machine alone (one at a time)"

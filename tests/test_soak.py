"""`make soak` at its tiny profile (a few hundred steps: the report's rows and columns, the loss log's bound, the
resumes timed), and the growth verdicts on synthetic series. No timing is asserted."""
from __future__ import annotations

import json
import random

import pytest

from gan.bench import growth
from gan.bench.soak import FIGURES, main, verdicts
from gan.engine import LOSS_TAIL

MARKS = [10_000 * i for i in range(1, 11)]


def noisy(values, rel=0.01, seed=0):
    rng = random.Random(seed)
    return [v * (1 + rng.uniform(-rel, rel)) for v in values]


@pytest.mark.parametrize("ys, rate, verdict", [
    (noisy([1000.0] * 10), False, growth.FLAT),  # RSS that holds
    (noisy([30.0] * 10, rel=0.15), True, growth.FLAT),  # a step rate on a busy machine: noisy, not falling
    ([100 + 2.0 * (x / 1000) for x in MARKS], False, growth.LINEAR),  # events: bytes per logged point
    (noisy([500 + 3e-7 * x * x for x in MARKS]), False, growth.FASTER_),  # a log rewritten whole: O(steps²)
    ([30.0 - 2 * i for i in range(10)], True, growth.FALLS),  # a step that slows down
    ([30.0 + 2 * i for i in range(10)], True, growth.RISES),
    ([1000.0 + 15 * i for i in range(10)], False, growth.LINEAR),  # +13.5 %: RSS that creeps
])
def test_growth_verdicts_on_synthetic_series(ys, rate, verdict):
    assert growth.judge(MARKS, ys, 0.05, rate=rate)["verdict"] == verdict


def test_growth_needs_three_points_and_flat_band_widens_with_noise():
    assert growth.judge([1, 2], [1.0, 5.0])["verdict"] == "too few points" and growth.ok("too few points", ())
    j = growth.judge(MARKS, noisy([10.0] * 10, rel=0.3, seed=1), 0.05)
    assert j["band"] > 0.05 and j["verdict"] == growth.FLAT  # ± 30 % scatter: the band is the noise's


def rows(rss, losses, history):
    return [{"step": x, "anon_mib": r, "cpu_ms_per_step": 30.0, "steps_per_s": 25.0, "events_mib": x / 7000,
             "last_pt_kib": 550.0,
             "run_json_b": 2200, "resume_s": 7.0, "lists": {"losses": {"entries": n, "bytes": 23 * n},
                                                             "history": {"entries": h, "bytes": 200 * h}}}
            for x, r, n, h in zip(MARKS, rss, losses, history)]


def test_verdicts_flag_what_grows_without_need():
    ok = {v["key"]: v for v in verdicts(rows([1000.0] * 10, [100] * 10, [2 * i for i in range(1, 11)]))}
    assert all(v["ok"] for v in ok.values()), [v for v in ok.values() if not v["ok"]]
    assert ok["list:history"]["verdict"] == growth.LINEAR  # one entry per metric point: allowed
    assert ok["events_mib"]["verdict"] == growth.LINEAR and ok["anon_mib"]["verdict"] == growth.FLAT
    bad = {v["key"]: v for v in verdicts(rows([1000.0 + 20 * i for i in range(10)], [100 * i for i in range(1, 11)],
                                              [2] * 10))}
    assert not bad["anon_mib"]["ok"] and not bad["list:losses"]["ok"]  # RSS creeps; the loss log is unbounded
    assert bad["list:history"]["ok"] and {f.key for f in FIGURES} <= set(bad)


@pytest.mark.long
def test_tiny_soak_writes_its_table_and_bounds_the_loss_log(tmp_path, tiny_npz, capsys):
    out = tmp_path / "out"
    code = main(["--profile", "tiny", "--data", str(tiny_npz), "--out", str(out), "--resume-tries", "1"])
    text = capsys.readouterr().out
    md = next(out.glob("*.md"))
    report = json.loads(md.with_suffix(".json").read_text())
    assert f"report: {md}" in text and report["sections"]["soak"]["error"] is None, text[-3000:]
    d = report["sections"]["soak"]["data"]
    assert [r["step"] for r in d["rows"]] == [100, 200, 300]  # a row at each mark
    for r in d["rows"]:
        assert r["rss_mib"] > r["anon_mib"] > 0 and r["steps_per_s"] > 0 and r["cpu_ms_per_step"] > 0
        assert r["events_mib"] > 0 and r["last_pt_kib"] > 0
        assert r["resume_s"] > 0, r["resume_note"]  # each copy resumed to its first step
        assert r["lists"]["losses"]["entries"] == LOSS_TAIL  # a log point per step, bounded
    assert [r["lists"]["history"]["entries"] for r in d["rows"]] == [2, 4, 6]  # metrics every 50 steps
    assert report["machine"]["steadiness"]["windows"] == 3  # other processes' CPU, per interval
    header = ("| step | RSS MiB (peak) | RSS anon MiB | CPU ms/step | steps/s | wall steps/s | events MiB | "
              "last.pt KiB | checkpoints/ KiB | run.json B |")
    assert header in md.read_text() and "resume s | others' cores |" in md.read_text()
    v = {x["key"]: x for x in d["verdicts"]}
    assert {f.key for f in FIGURES} | {"list:losses", "list:history"} <= set(v)
    assert v["list:losses"]["verdict"] == growth.FLAT and v["list:losses"]["ok"]
    assert v["events_mib"]["verdict"] == growth.LINEAR
    assert code == (0 if all(x["ok"] for x in v.values()) else 1)


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["--steps", "100", "--every", "50", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("error: --steps 100 --every 50: at least 3 rows are needed to say how "
                                               "a figure grows (steps ≥ 3 × every)")
    assert main(["--profile", "tiny", "--set", "model.arch=nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # no report for a soak that never started

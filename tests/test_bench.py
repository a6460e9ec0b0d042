"""The benchmark package as a user runs it, at the tiny profile (tiny nets, a few steps, tiny data): one section
at a time, the report files read back, the exit code of a missed target. No timing is asserted."""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan.bench import machine, verdict
from gan.bench.__main__ import main
from gan.bench.report import TARGETS
from tests.conftest import ROOT


def bench(tmp_path: Path, npz: Path, *args: str) -> tuple[int, dict, str]:
    """In-process `python -m gan.bench --profile tiny ...`: (exit code, the JSON report, the markdown report)."""
    out = tmp_path / "out"
    code = main(["--profile", "tiny", "--data", str(npz), "--out", str(out), *args])
    mds = sorted(out.glob("*.md"))
    assert len(mds) == 1, mds
    return code, json.loads(mds[0].with_suffix(".json").read_text()), mds[0].read_text()


def verdicts(report: dict) -> dict:
    return {t["key"]: t for t in report["targets"]}


def test_missed_target_fails_the_process_and_the_report_names_the_machine(tmp_path, tiny_npz):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "gan.bench", "--profile", "tiny", "--data", str(tiny_npz), "--out",
                        str(out), "--sections", "fidcheck", "--target", "fid_levers=-1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    md = next(out.glob("*.md"))
    assert f"report: {md}" in p.stdout  # the path is printed at the end
    text = md.read_text()
    cpu, isa = machine.cpu()
    for fact in (cpu, f"torch {torch.__version__}", "bf16 on this CPU", "load average", "torch threads",
                 "GPU: none" if not torch.cuda.is_available() else "GPU:"):
        assert fact in text, fact
    for flag in isa:
        assert flag in text
    report = json.loads(md.with_suffix(".json").read_text())
    assert report["machine"]["cpu"] == cpu and report["machine"]["load_end"] is not None
    assert report["exit_code"] == 1
    v = verdicts(report)
    assert v["fid_levers"]["status"] == "FAIL" and v["fid_levers"]["target"] == "< -100.00 %"
    assert "| **FAIL** |" in text
    assert v["engine_vs_seed"]["status"] == "not run"  # its section was not asked for
    assert {t.key for t in TARGETS} == set(v)
    fc = report["sections"]["fidcheck"]["data"]
    levers, fid0 = fc["levers"], fc["fid_fp32"]
    for name, lv in levers.items():  # the relative change, as recomputed from the two FIDs
        assert lv["relative"] == pytest.approx(abs(lv["fid"] - fid0) / fid0, rel=1e-9), name
    assert v["fid_levers"]["value"] == max(lv["relative"] for lv in levers.values())
    assert "exact" in v["fid_levers"]["detail"]  # the same samples scored twice: no interval needed
    # channels_last moves float rounding only: the same G's uint8 samples differ by at most a level or two
    cl = levers["channels_last"]
    assert 0 <= cl["max_abs_diff"] <= 2 and cl["pixels_differing"] < 0.01 * 80 * 3 * 32 * 32, cl


def test_speed_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "speed", "--target", "engine_vs_seed=0")
    assert code == 0, md
    d = report["sections"]["speed"]["data"]
    for exp in ("dcgan", "baseline"):
        assert d[exp]["engine_img_s"] > 0 and d[exp]["seed_img_s"] > 0
        assert len(d[exp]["paired"]) == 2  # the tiny profile's rounds
    v = verdicts(report)
    e = v["engine_vs_seed"]
    assert e["value"] == pytest.approx(d["dcgan"]["ratio"]) == pytest.approx(sum(d["dcgan"]["paired"]) / 2)
    assert e["n"] == 2 and e["low"] <= e["value"] <= e["high"]
    assert e["status"] == verdict.judge(d["dcgan"]["paired"], ">=", 0.0)["status"]  # two rounds: PASS or unclear
    steady = report["machine"]["steadiness"]
    assert steady["windows"] >= 2 * 2 * 2 and steady["others_median"] >= 0  # 2 races × 2 contenders × 2 rounds
    assert "steadiness during the measurement" in md and "seed loop, dcgan" in report["machine"]["window_spread"]
    assert v["diffaug_cost"]["status"] == "not run"
    assert "seed-style loop" in md and "engine (defaults)" in md


def test_levers_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "levers", "--target", "diffaug_cost=1e9",
                             "--target", "conditional_cost=1e9")
    assert code == 0, md
    cost = report["sections"]["levers"]["data"]["added_step_time"]
    assert {"channels_last off", "reuse_fake off", "DiffAugment on", "conditional on"} <= set(cost)
    v = verdicts(report)
    per_round = report["sections"]["levers"]["data"]["added_per_round"]["DiffAugment on"]
    assert v["diffaug_cost"]["value"] == pytest.approx(cost["DiffAugment on"]) == pytest.approx(sum(per_round) / 2)
    assert v["diffaug_cost"]["n"] == 2 and v["diffaug_cost"]["status"] == "PASS"  # 1e9: the interval clears it
    assert v["conditional_cost"]["value"] == pytest.approx(cost["conditional on"])
    assert "torch.compile" in md  # said as not run at this profile


def test_metrics_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "metrics", "--target", "metrics_share=1",
                             "--target", "prc_cost=1e9")
    assert code == 0, md
    d = report["sections"]["metrics"]["data"]
    rows = d["cost"]["c10"]["rows"]
    assert set(rows) == {"40", "80"} and all(r["total"] > 0 for r in rows.values())
    assert d["share"]["smoke"]["evaluations"] == 3  # 300 steps, every 100
    assert 0 < d["share"]["smoke"]["share_fresh"] < 1
    assert verdicts(report)["metrics_share"]["value"] == pytest.approx(d["share"]["smoke"]["share_fresh"])
    assert d["prc"]["n"] == 80 and verdicts(report)["prc_cost"]["status"] == "PASS"
    assert verdicts(report)["prc_cost"]["value"] == pytest.approx(d["prc"]["added"])
    assert verdicts(report)["prc_cost"]["n"] == len(d["prc"]["runs"]) >= 3  # rounds of the interval
    assert verdicts(report)["metrics_share"]["n"] == 2  # the tiny profile's evaluation rounds


@pytest.mark.long
def test_memory_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "memory")
    assert code == 0, md
    parts = report["sections"]["memory"]["data"]
    assert len(parts) == 4 and all(p["peak"] >= p["base"] > 0 for p in parts.values())
    prc = parts["precision/recall N_ref = 300"]  # the tiny profile's; full: 5,000 and 50,000
    assert prc["n_fake"] == 300 and prc["radii_s"] > 0 and prc["eval_s"] > 0
    assert "| 300 | 300 |" in md and "real k-NN radii (once, then cached)" in md


def test_quality_race_gives_equal_time(tmp_path, tiny_npz):
    from gan.bench import quality

    logs = tmp_path / "logs"
    out = tmp_path / "out"
    code = quality.main(["--profile", "tiny", "--data", str(tiny_npz), "--out", str(out), "--minutes", "0.003",
                         "--samples", "40", "--logs", str(logs)])
    assert code == 0
    report = json.loads(next(out.glob("*.json")).read_text())
    d = report["sections"]["quality"]["data"]
    assert set(d) == {"dcgan", "sngan"}
    for exp, r in d.items():
        run = json.loads((Path(r["run_dir"]) / "run.json").read_text())
        assert Path(r["run_dir"]).parent == logs / exp
        assert run["status"] == "completed" and run["ended_by"] == "train.minutes = 0.003"
        assert r["train_minutes"] >= 0.003 and r["images_seen"] > 0 and r["fid"] is not None
        assert r["d_steps"] == r["g_steps"] * (5 if exp == "sngan" else 1)


@pytest.mark.parametrize("args, msg", [(["--sections", "nope"], "--sections"),
                                       (["--target", "bogus=1"], "unknown target"),
                                       (["--target", "prc_cost=abc"], "KEY=NUMBER"),
                                       (["--data", "/does/not/exist.npz"], "--data"),
                                       (["--device", "tpu"], "--device")])
def test_bad_arguments_exit_2(tmp_path, capsys, args, msg):
    assert main(["--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err
    assert not list(tmp_path.iterdir())  # nothing written


# ---- the verdict on an interval (synthetic samples: no timing) ------------------------------------------------

def test_verdict_clear_pass_clear_fail_and_unclear_with_the_rounds_to_settle_it():
    ok = verdict.judge([1.30, 1.28, 1.32, 1.29, 1.31], ">=", 1.15)
    assert ok["status"] == "PASS" and ok["low"] > 1.15 and ok["rounds"] is None and ok["n"] == 5
    bad = verdict.judge([1.00, 1.02, 0.98, 1.01, 0.99], ">=", 1.15)
    assert bad["status"] == "FAIL" and bad["high"] < 1.15
    # mean 1.20, sd 0.1, n 5: t(4) = 2.776, half-width 0.124 > margin 0.05 -> 5 × (0.124 / 0.05)² ≈ 31 rounds
    mid = verdict.judge([1.10, 1.30, 1.20, 1.05, 1.35], ">=", 1.15)
    m, lo, hi = verdict.interval([1.10, 1.30, 1.20, 1.05, 1.35])
    assert mid["status"] == "unclear" and lo < 1.15 < hi and m == pytest.approx(1.2)
    hw = 2.7764451 * statistics.stdev([1.10, 1.30, 1.20, 1.05, 1.35]) / math.sqrt(5)  # t(4), exact
    assert hi - m == pytest.approx(hw) and mid["rounds"] == math.ceil(5 * (hw / 0.05) ** 2)
    assert f"≈{mid['rounds']} rounds would settle it" in mid["why"]
    # a cost bound (<=): the same logic mirrored
    assert verdict.judge([0.04, 0.05, 0.06], "<=", 0.10)["status"] == "PASS"
    assert verdict.judge([0.20, 0.22, 0.18], "<=", 0.10)["status"] == "FAIL"
    assert verdict.judge([0.05, 0.15, 0.09, 0.12], "<=", 0.10)["status"] == "unclear"
    # one sample is never enough; an exact value (no timing noise) is judged as it is
    assert verdict.judge([1.3], ">=", 1.15) == verdict.judge([1.3], ">=", 1.15) | {"status": "unclear"}
    assert verdict.judge([0.001], "<", 0.01, exact=True)["status"] == "PASS"
    assert verdict.judge([0.02], "<", 0.01, exact=True)["status"] == "FAIL"


def test_the_t_quantile_is_exact_beyond_the_old_table():
    """df > 30 is not 1.96 (the normal's): the t quantile is wider, as an interval of few rounds must be."""
    assert verdict.t975(4) == pytest.approx(2.776, abs=1e-3) and verdict.t975(12) == pytest.approx(2.179, abs=1e-3)
    assert verdict.t975(40) == pytest.approx(2.021, abs=1e-3)
    assert verdict.t975(31) > verdict.t975(60) > 1.96


def test_the_report_shows_the_interval_and_unclear_does_not_fail_the_exit_code():
    from gan.bench.report import Report

    rep = Report({"device": "cpu"}, [], "tiny", say=lambda *a: None)
    with rep.section("speed", "speed"):
        rep.measure("engine_vs_seed", 1.2, "", samples=[1.10, 1.30, 1.20, 1.05, 1.35])
    v = verdicts({"targets": rep.verdicts()})["engine_vs_seed"]
    assert v["status"] == "unclear" and v["rounds"] > 5 and rep.exit_code() == 0
    assert v["shown"].startswith("1.20× [") and v["shown"].endswith("], 5 rounds")
    with rep.section("levers", "levers"):
        rep.measure("diffaug_cost", 0.2, "", samples=[0.20, 0.22, 0.18])
    assert verdicts({"targets": rep.verdicts()})["diffaug_cost"]["status"] == "FAIL" and rep.exit_code() == 1


def test_steadiness_is_the_machines_busy_time_less_this_process_trees(monkeypatch):
    """Synthetic tick counters (no timing): over a 1 s window the machine was busy 150 ticks (1.5 cores at
    HZ 100), this process and its workers 60 of them, steal 10 of 400: others used 0.9 cores, steal 2.5 %."""
    machine_ticks = iter([(1000, 4000, 50), (1150, 4400, 60)])
    tree_ticks = iter([300, 360])
    clock = iter([10.0, 11.0])
    monkeypatch.setattr(machine, "HZ", 100)
    monkeypatch.setattr(machine, "_machine_ticks", lambda: next(machine_ticks))
    monkeypatch.setattr(machine, "_tree_ticks", lambda pid: next(tree_ticks))
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(clock))
    s = machine.Steadiness()
    s.cores = 2
    with s.window():
        pass
    w = s.windows[0]
    assert w["others_cores"] == pytest.approx(0.9) and w["steal"] == pytest.approx(0.025)
    line = machine.steadiness_line(s.summary(), {"seed loop, dcgan": 0.07})
    assert "other processes used 0.90 of 2 cores" in line and "steal 2.5 %" in line and "±7 %" in line
    assert "not steady" in line  # 0.9 of 2 cores taken by others


def test_the_process_tree_counts_live_children():
    if machine._machine_ticks() is None:
        pytest.skip("no /proc here")
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while machine._tree_ticks(child.pid) < 0.4 * machine.HZ:  # its 0.5 s of CPU, however busy the machine
            assert child.poll() is None and time.time() - t0 < 120
            time.sleep(0.05)
        with open(f"/proc/{os.getpid()}/stat") as f:
            own = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
        kid = machine._tree_ticks(child.pid)  # read before the tree: the child may still be burning
        assert machine._tree_ticks(os.getpid()) >= own + kid
    finally:
        child.communicate("\n")


def test_the_process_tree_counts_children_it_has_waited_for():
    """A timed subprocess (the scale section's commands) is reaped before the window closes: its CPU is ours."""
    if machine._machine_ticks() is None:
        pytest.skip("no /proc here")
    before = machine._tree_ticks(os.getpid())
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert machine._tree_ticks(os.getpid()) - before >= 0.45 * machine.HZ


@pytest.mark.long
def test_flops_section_counts_per_image_and_shares_of_its_own_ceiling(tmp_path, tiny_npz):
    from gan.bench.context import PROFILES, Context, find_data
    from gan.bench.flops import flops_per_image
    from gan.bench.report import Report

    code, report, md = bench(tmp_path, tiny_npz, "--sections", "flops")
    assert code == 0, md
    d = report["sections"]["flops"]["data"]
    ceil, flops = d["ceiling"], d["flops"]
    assert set(ceil) == ({"fp32", "bf16"} if torch.ops.mkldnn._is_mkldnn_bf16_supported() else {"fp32"})
    for c in ceil.values():
        assert c["best"] == max(c["matmul"], c["conv1x1"], c["conv3x3"]) > 0
    # FLOPs are linear in the batch: the batch-8 count per image is the count of any batch
    ov, _ = find_data(str(tiny_npz), tmp_path)
    ctx = Context(torch.device("cpu"), PROFILES["tiny"], ov, "", tmp_path, Report({}, [], "tiny"), None)
    assert flops["quick"]["gflop_per_img"] * 1e9 == pytest.approx(flops_per_image(ctx, "quick", batch=16), rel=1e-9)
    assert flops["dcgan"]["gflop_per_img"] < flops["sngan"]["gflop_per_img"]  # an SN-GAN CNN costs more per image
    for label, r in d["quick_levers"].items():
        dtype = "bf16" if "bf16" in label else "fp32"
        assert r["share"] == pytest.approx(r["img_s"] * flops["quick"]["gflop_per_img"] / ceil[dtype]["best"])
        assert f"{label}: " in md and "GEMM ceiling" in md


def test_scale_and_disk_sections(tmp_path, tiny_npz):
    """`gan runs` and `gan leaderboard` over synthetic runs warm, cold and before the index (tiny: in-process), and
    the disk a `baseline` and a `best` run write per 10k steps; the numbers read back, no timing asserted."""
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "scale,disk")
    assert code == 0, md
    s = report["sections"]["scale"]["data"]["scale"]
    assert set(s["counts"]) == {"2", "4"} and s["steps"] == 3000 and s["event_bytes"] > 0
    for n, cmds in s["counts"].items():
        for cmd in ("runs", "leaderboard"):
            c = cmds[cmd]
            assert len(c["warm"]) == 1 and c["cold"] > 0 and "per_run_cold_ms" in c
            assert (c["before"] is not None) == (n == "2") and (n == "2" or c["before_extrapolated"] > 0)
    v = verdicts(report)
    assert v["scale_runs_warm"]["status"] == v["scale_leaderboard_warm"]["status"] == "n/a"  # tiny lists 4 runs
    assert v["cli_help"]["status"] == "n/a"  # in-process: no start-up to time
    assert "s cpu), extrapolated |" in md and "| 4 |" in md
    d = report["sections"]["disk"]["data"]["disk"]
    for exp in ("baseline", "best"):
        assert d[exp]["events_per_10k"] > 0 and d[exp]["checkpoint"] > 0 and d[exp]["pngs_per_10k"] > 0
        assert d[exp]["cadence"] == {"log_every": 100, "image_every": 1000, "metrics_every": 5000}
    assert d["best"]["events_per_10k"] > d["baseline"]["events_per_10k"]  # its per-class grid

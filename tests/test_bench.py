"""The benchmark package as a user runs it, at the tiny profile (tiny nets, a few steps, tiny data): one section
at a time, the report files read back, the exit code of a missed target. No timing is asserted."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan.bench import machine
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
    assert v["fid_levers"]["value"] >= 0
    assert "| **FAIL** |" in text
    assert v["engine_vs_seed"]["status"] == "not run"  # its section was not asked for
    assert {t.key for t in TARGETS} == set(v)
    levers = report["sections"]["fidcheck"]["data"]["levers"]
    assert "channels_last" in levers and levers["channels_last"]["max_abs_diff"] <= 255


def test_speed_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "speed", "--target", "engine_vs_seed=0")
    assert code == 0, md
    d = report["sections"]["speed"]["data"]
    for exp in ("dcgan", "baseline"):
        assert d[exp]["engine_img_s"] > 0 and d[exp]["seed_img_s"] > 0
        assert len(d[exp]["paired"]) == 2  # the tiny profile's rounds
    v = verdicts(report)
    assert v["engine_vs_seed"]["status"] == "PASS" and v["engine_vs_seed"]["value"] == pytest.approx(d["dcgan"]["ratio"])
    assert v["diffaug_cost"]["status"] == "not run"
    assert "seed-style loop" in md and "engine (defaults)" in md


def test_levers_section(tmp_path, tiny_npz):
    code, report, md = bench(tmp_path, tiny_npz, "--sections", "levers", "--target", "diffaug_cost=1e9",
                             "--target", "conditional_cost=1e9")
    assert code == 0, md
    cost = report["sections"]["levers"]["data"]["added_step_time"]
    assert {"channels_last off", "reuse_fake off", "DiffAugment on", "conditional on"} <= set(cost)
    v = verdicts(report)
    assert v["diffaug_cost"]["value"] == pytest.approx(cost["DiffAugment on"])
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
    assert d["prc"]["added"] >= 0 and verdicts(report)["prc_cost"]["value"] == pytest.approx(d["prc"]["added"])


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

"""`make gpu-check` as its tiny profile runs it on this CPU (every section, tiny nets: its numbers mean nothing), so
that its first GPU run is not its first run; and the one line it stops with when something is missing."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from gan.bench import gpu_check
from gan.bench.machine import cpu


@pytest.mark.long
def test_tiny_profile_prints_every_figure_with_the_device(tmp_path, tiny_npz, capsys):
    code = gpu_check.main(["--profile", "tiny", "--data", str(tiny_npz), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 0, text[-4000:]
    name = f"{cpu()[0]} (CPU)"
    assert f"# gan gpu-check (tiny) on {name}" in text
    summary = text.split(f"## Every figure, on {name}")[1]
    rows = [ln for ln in summary.splitlines() if ln.startswith("| ") and not ln.startswith("| figure")]
    assert rows and all(ln.endswith(f"| {name} |") for ln in rows)  # each figure with the device's name
    for figure in ("dcgan: engine img/s vs seed-style loop", "baseline: engine img/s vs seed-style loop",
                   "DCGAN engine img/s, best setting", "vs goal ≥ 50,000 on an H100: n/a on a CPU",
                   "lever: channels_last off", "lever: DiffAugment on", "lever: torch.compile",
                   "precision: DCGAN fp32", "precision: bf16 autocast", "fp16 autocast",
                   "FID_c10 change, channels_last", "baseline: img/s over 3 steps", "best: img/s over 3 steps",
                   "evaluation c10, N = 40", "evaluation c10, N = 80", "reference statistics c10",
                   "smoke, plain: 4 steps", "smoke, torchrun, 1 process: 4 steps"):
        assert figure in summary, figure
    md = next((tmp_path / "out").glob("*.md"))
    report = json.loads(md.with_suffix(".json").read_text())
    assert set(report["sections"]) == set(gpu_check.SECTIONS)
    assert all(s["error"] is None for s in report["sections"].values())
    d = report["sections"]
    assert d["runs"]["data"]["best"]["img_s"] > 0 and d["runs"]["data"]["baseline"]["planned_steps"] == 50_000
    assert d["ddp"]["data"]["torchrun, 1 process"]["img_s"] > 0


def missing_line(capsys, *args) -> str:
    assert gpu_check.main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_no_cuda_device_is_one_line(tmp_path, tiny_npz, capsys):
    err = missing_line(capsys, "--data", str(tiny_npz), "--out", str(tmp_path))
    assert "no CUDA device" in err and "--profile tiny" in err
    assert not list(tmp_path.iterdir())


def test_missing_package_data_or_weights_is_one_line(tmp_path, tiny_npz, capsys, monkeypatch):
    from gan import features

    assert "--data nope: no such file or folder" in missing_line(capsys, "--profile", "tiny", "--data", "nope")
    monkeypatch.setenv("GAN_DATA_ROOT", str(tmp_path))  # no shards here
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    monkeypatch.setattr("gan.bench.context.DEFAULT_DATA", tmp_path)
    assert "no CIFAR-10 shards: copy" in missing_line(capsys, "--profile", "tiny")
    monkeypatch.setattr(features, "WEIGHTS", tmp_path / "c10.pt")
    assert "no c10 weights" in missing_line(capsys, "--profile", "tiny", "--data", str(tiny_npz))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "torch_fidelity" else real(m, *a))
    err = missing_line(capsys, "--profile", "tiny", "--data", str(tiny_npz))
    assert "missing Python package(s): torch-fidelity" in err and "pip download --no-deps torch-fidelity" in err
    assert "no such" not in err  # the package is said first: the rest cannot even be checked without it

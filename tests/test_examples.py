"""The worked example (examples/: a ResNet G with self-attention and an LSGAN loss, each in the user's own file)
trains from a copy outside the package, as a user's project would, and its run samples and exports."""
from __future__ import annotations

import json
import math
import shutil

from typer.testing import CliRunner

from gan.cli import app
from tests.conftest import ROOT, events

runner = CliRunner()
TINY = ["model.g_channels=8", "model.d_channels=8", "optim.batch_size=8", "metrics.enabled=false",
        "train.steps=3", "train.log_every=1", "train.checkpoint_every=3", "optim.ema_start=0"]


def test_the_example_trains_from_a_copy_outside_the_package(tmp_path, tiny_npz, monkeypatch):
    proj = tmp_path / "myproject"
    shutil.copytree(ROOT / "examples", proj)
    monkeypatch.chdir(proj)
    sets = TINY + ["data.dataset=npz", f"data.path={tiny_npz}"]
    r = runner.invoke(app, ["train", "resnet_attn.toml", "--device", "cpu", *[a for s in sets for a in ("--set", s)]])
    assert r.exit_code == 0, r.stderr
    assert "resnet_attn.py:build G" in r.stdout and "lsgan.py:LSGAN loss" in r.stdout
    (run,) = (proj / "logs" / "resnet_attn").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 3
    assert {f["copy"] for f in info["code"]["files"]} == {"code/model/resnet_attn.py", "code/loss/lsgan.py"}
    assert (run / "code/model/resnet_attn.py").read_bytes() == (ROOT / "examples/resnet_attn.py").read_bytes()
    assert all(math.isfinite(e.value) for e in events(run).Scalars("loss/D"))
    cfg = (run / "config.toml").read_text()
    assert f'arch = "{proj / "resnet_attn.py"}:build"' in cfg and "[model.args]\ndepth = 1\nattention = true" in cfg
    r = runner.invoke(app, ["sample", str(run), "--n", "4"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["export", str(run)])
    assert r.exit_code == 0 and (run / "netG.pth").is_file()

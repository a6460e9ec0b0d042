"""Runs are never lost: exact resume after SIGKILL, graceful SIGINT, divergence guard, safe and checked
checkpoint loading, preflight, and the bad-input table (exit 2, one line, no traceback, no run folder)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan import checkpoint, config
from gan.engine import Trainer
from gan.errors import GanError
from tests.conftest import ROOT, events, gan_cli, tiny_toml

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # same thread count in both runs: CPU kernels then agree bit for bit


def start(args, tmp_path):
    env = dict(os.environ, **ONE_THREAD)
    return subprocess.Popen([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def wait_for(pred, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def only_run(logs: Path) -> Path:
    runs = [p for p in logs.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def long_tiny(tmp_path, tiny_npz):
    return tiny_toml(tmp_path / "long.toml", tiny_npz, train={"steps": 300, "log_every": 10, "image_every": 50,
                                                              "checkpoint_every": 5})


def test_sigkill_then_resume_gives_identical_weights(tmp_path, long_tiny):
    ref = gan_cli("train", long_tiny, "--device", "cpu", "--logs", tmp_path / "ref", env=ONE_THREAD)
    assert ref.returncode == 0, ref.stderr
    p = start(["train", long_tiny, "--device", "cpu", "--logs", tmp_path / "cut"], tmp_path)
    try:
        assert wait_for(lambda: list((tmp_path / "cut").glob("*/*/checkpoints/last.pt.prev")))
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        p.kill()
    run = only_run(tmp_path / "cut")
    killed_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 0 < killed_at < 300
    r = gan_cli("resume", run, "--device", "cpu", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert f"resuming {run} at step {killed_at}" in r.stdout.replace("\n", "")
    a = torch.load(only_run(tmp_path / "ref") / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for part in ("G", "G_ema", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    # one continuous, strictly increasing step sequence in TensorBoard: no duplicates after the resume
    steps = [e.step for e in events(run).Scalars("loss/D")]
    assert steps == list(range(10, 301, 10))
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_sigint_checkpoints_marks_interrupted_and_resumes(tmp_path, long_tiny):
    p = start(["train", long_tiny, "--device", "cpu", "--logs", tmp_path / "logs"], tmp_path)
    try:
        assert wait_for(lambda: list((tmp_path / "logs").glob("*/*/checkpoints/last.pt")))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    run = only_run(tmp_path / "logs")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    ck = checkpoint.load(run / "checkpoints" / "last.pt")
    assert ck["step"] == info["step"] and ck["step"] < 300
    r = gan_cli("resume", run, "--device", "cpu", env=ONE_THREAD)
    assert r.returncode == 0 and json.loads((run / "run.json").read_text())["status"] == "completed"


def test_divergence_stops_with_last_good_checkpoint(tmp_path, tiny_npz, monkeypatch):
    from gan import losses

    real_d_loss, calls = losses.d_loss, {"n": 0}

    def exploding(*a, **k):
        calls["n"] += 1
        v = real_d_loss(*a, **k)
        return v * float("nan") if calls["n"] > 7 else v

    monkeypatch.setattr(losses, "d_loss", exploding)
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 20, "log_every": 2,
                                                                           "checkpoint_every": 3})))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "diverged"
    info = json.loads((r.run_dir / "run.json").read_text())
    assert info["status"] == "diverged" and info["step"] == 8
    ck = checkpoint.load(r.run_dir / "checkpoints" / "last.pt")
    assert ck["step"] == 6 and all(torch.isfinite(v).all() for v in ck["G"].values())
    vals = [e.value for e in events(r.run_dir).Scalars("loss/D")]
    assert vals and all(math.isfinite(v) for v in vals)


def test_truncated_checkpoint_falls_back_to_previous(tmp_path, tiny_npz):
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz)))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    last = r.run_dir / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    said = []
    ck = checkpoint.load(last, log=said.append)
    assert ck["step"] == 3 and "truncated or corrupt" in said[0]
    last.with_name("last.pt.prev").unlink()
    with pytest.raises(GanError, match="truncated or corrupt"):
        checkpoint.load(last)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('GAN_EVIL_MARK', '/tmp/gan-evil')}",))


def test_checkpoint_with_code_is_refused(tmp_path, monkeypatch):
    mark = tmp_path / "executed"
    monkeypatch.setenv("GAN_EVIL_MARK", str(mark))
    p = tmp_path / "evil.pt"
    torch.save({"step": 1, "G": _Evil()}, p)
    with pytest.raises(GanError, match="refused"):
        checkpoint.load(p)
    assert not mark.exists()


def test_two_runs_started_together_never_share_a_folder(tmp_path):
    from gan.tracking import new_run_dir

    dirs = {new_run_dir(tmp_path, "x", None) for _ in range(5)}
    assert len(dirs) == 5


# ---- bad input: exit 2, one line naming what is wrong, no traceback, no run folder ----------------------

def _npz(tmp_path, name, **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _not_a_run(tmp_path):
    d = tmp_path / "notarun"
    d.mkdir()
    return d


def _other_arch_run(tmp_path, tiny_npz):
    cfg = config.load(str(tiny_toml(tmp_path / "a.toml", tiny_npz)))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "prev", quiet=True).run()
    text = (r.run_dir / "config.toml").read_text().replace('arch = "dcgan"', 'arch = "dcgan_fc"')
    (r.run_dir / "config.toml").write_text(text)
    return r.run_dir


def _file(tmp_path, text):
    p = tmp_path / "e.toml"
    p.write_text(text)
    return p


NPZ = '[data]\ndataset = "npz"\npath = "{}"\n[optim]\nbatch_size = 8\n[metrics]\nenabled = false\n'
CASES = {
    # name: (args builder, expected text in the one line)
    "toml_syntax": (lambda t, n: ["train", _file(t, "[optim\n")], "TOML syntax error"),
    "unknown_section": (lambda t, n: ["train", _file(t, "[trainer]\nsteps = 1\n")], "unknown section [trainer]"),
    "unknown_key": (lambda t, n: ["train", _file(t, "[optim]\nlr = 1\n")], "unknown key optim.lr"),
    "wrong_type": (lambda t, n: ["train", _file(t, "[train]\nsteps = \"10\"\n")], "train.steps = '10'"),
    "float_for_int": (lambda t, n: ["train", _file(t, "[train]\nsteps = 2.5\n")], "expected an integer"),
    "negative_lr": (lambda t, n: ["train", _file(t, "[optim]\ng_lr = -1e-4\n")], "optim.g_lr = -0.0001"),
    "zero_lr": (lambda t, n: ["train", _file(t, "[optim]\nd_lr = 0.0\n")], "optim.d_lr = 0.0: expected > 0.0"),
    "nan_value": (lambda t, n: ["train", _file(t, "[optim]\ng_lr = nan\n")], "expected a finite number"),
    "beta_out_of_range": (lambda t, n: ["train", _file(t, "[optim]\nbeta1 = 1.5\n")], "optim.beta1 = 1.5"),
    "zero_steps": (lambda t, n: ["train", _file(t, "[train]\nsteps = 0\n")], "train.steps = 0"),
    "unknown_model": (lambda t, n: ["train", _file(t, "[model]\narch = \"biggan\"\n")], "model.arch = 'biggan'"),
    "unknown_loss": (lambda t, n: ["train", _file(t, "[loss]\nname = \"lsgan\"\n")], "loss.name = 'lsgan'"),
    "unknown_dataset": (lambda t, n: ["train", _file(t, "[data]\ndataset = \"mnist\"\n")], "data.dataset = 'mnist'"),
    "image_size_model_cannot_make": (lambda t, n: ["train", _file(t, "[model]\narch = \"sngan_cnn\"\n[data]\n"
                                                                "image_size = 64\n")], "makes 32×32 images"),
    "batch_larger_than_dataset": (lambda t, n: ["train", _file(t, NPZ.format(n).replace("batch_size = 8",
                                                                                          "batch_size = 1000"))],
                                  "larger than the dataset"),
    "missing_npz": (lambda t, n: ["train", _file(t, NPZ.format(t / "nope.npz"))], "no .npz file"),
    "npz_wrong_dtype": (lambda t, n: ["train", _file(t, NPZ.format(_npz(t, "f.npz", images=np.zeros(
        (9, 32, 32, 3), np.float32))))], "expected uint8"),
    "npz_wrong_shape": (lambda t, n: ["train", _file(t, NPZ.format(_npz(t, "s.npz", images=np.zeros(
        (9, 32, 32), np.uint8))))], "expected uint8 N×H×W×3"),
    "npz_without_images": (lambda t, n: ["train", _file(t, NPZ.format(_npz(t, "k.npz", x=np.zeros(3))))],
                           "has no 'images' array"),
    "empty_image_folder": (lambda t, n: ["train", _file(t, NPZ.format((t / "empty").mkdir() or t / "empty")
                                                        .replace('"npz"', '"folder"'))], "no images"),
    "set_without_equals": (lambda t, n: ["train", "smoke", "--set", "optim.batch_size"], "expected section.key=value"),
    "set_unknown_key": (lambda t, n: ["train", "smoke", "--set", "optim.momentum=0.9"], "unknown key optim.momentum"),
    "set_wrong_type": (lambda t, n: ["train", "smoke", "--set", "train.save_png=maybe"], "expected true or false"),
    "missing_experiment": (lambda t, n: ["train", "nonexistent"], "no experiment named 'nonexistent'"),
    "missing_experiment_file": (lambda t, n: ["train", t / "gone.toml"], "not found"),
    "bad_device": (lambda t, n: ["train", _file(t, NPZ.format(n)), "--device", "tpu"], "--device 'tpu'"),
    "cuda_without_gpu": (lambda t, n: ["train", _file(t, NPZ.format(n)), "--device", "cuda"], "no CUDA device"),
    "logs_is_a_file": (lambda t, n: ["train", _file(t, NPZ.format(n)), "--logs",
                                     (t / "f").write_text("x") and t / "f"], "cannot be created"),
    "resume_not_a_run": (lambda t, n: ["resume", _not_a_run(t)], "is not a run folder"),
    "resume_missing_folder": (lambda t, n: ["resume", t / "nowhere"], "is not a run folder"),
    "resume_other_architecture": (lambda t, n: ["resume", _other_arch_run(t, n)], "does not fit model 'dcgan_fc'"),
    "export_missing_checkpoint": (lambda t, n: ["export", _not_a_run(t)], "does not exist"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, tiny_npz, monkeypatch):
    from typer.testing import CliRunner

    from gan.cli import app

    if case == "cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)  # a default logs/ would land here
    build, expected = CASES[case]
    args = [str(a) for a in build(tmp_path, tiny_npz)]
    if args[0] == "train" and "--logs" not in args:
        args += ["--logs", str(tmp_path / "logs")]
    before = set(tmp_path.rglob("run.json"))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    assert expected in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert set(tmp_path.rglob("run.json")) == before  # no run folder left behind
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*"))


def test_bad_input_table_is_large_enough():
    assert len(CASES) >= 25


# ---- property: the validator only ever returns a Config or raises GanError -----------------------------

_scalar = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3))
_keys = st.sampled_from([f.name for sec in config._SECTION_CLS.values() for f in __import__("dataclasses")
                        .fields(sec)] + ["bogus", ""])
_sections = st.sampled_from(list(config._SECTION_CLS) + ["extra"])
_doc = st.dictionaries(_sections, st.one_of(st.dictionaries(_keys, _scalar, max_size=6), _scalar), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_doc)
def test_validator_returns_config_or_gan_error(doc):
    try:
        cfg = config.from_dict(doc, "random.toml")
        config.cross_check(cfg, "random.toml")
    except GanError as e:
        assert str(e).startswith("random.toml") and "\n" not in str(e)
    else:
        assert isinstance(cfg, config.Config)

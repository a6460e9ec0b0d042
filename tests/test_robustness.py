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
from hypothesis import HealthCheck, event, given, settings
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


@pytest.mark.long
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


def _claim_run_dir(args) -> str:
    from gan.rundir import new_run_dir

    barrier, logs = args
    barrier.wait()  # every process asks in the same instant (and so in the same second)
    return str(new_run_dir(Path(logs), "x", None))


def test_two_runs_started_together_never_share_a_folder(tmp_path):
    """Eight processes ask for a run folder of one experiment at once: eight folders, each used by one of them
    (tests/test_corrupt.py runs two whole `gan train` side by side)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(8)
    with ctx.Pool(8) as pool:
        dirs = pool.map(_claim_run_dir, [(barrier, str(tmp_path))] * 8)
    assert len(set(dirs)) == 8, dirs
    assert sorted(dirs) == sorted(str(p) for p in (tmp_path / "x").iterdir())
    assert len({Path(d).name[:15] for d in dirs}) <= 2  # they did start together (one second, or two at a tick)


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
    "resume_missing_folder": (lambda t, n: ["resume", t / "nowhere"], "(neither a run folder nor under 'logs')"),
    "resume_other_architecture": (lambda t, n: ["resume", _other_arch_run(t, n)], "does not fit model 'dcgan_fc'"),
    "export_missing_checkpoint": (lambda t, n: ["export", _not_a_run(t)], "is not a run folder (no run.json)"),
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


# ---- property: a valid document gives the config it says; one wrong value is one line naming its key ----------

def _fields():
    import dataclasses

    return {(sec, config.key(f)): f for sec, cls in config._SECTION_CLS.items() for f in dataclasses.fields(cls)}


FIELDS = _fields()
_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+=,-]{0,11}", fullmatch=True).filter(lambda n: n not in (".", ".."))
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _valid(sec: str, k: str, f, cfg: dict):
    """A strategy of values `sec.k` may take, given the rest of the document (`cfg`: arch, loss, dataset)."""
    from gan.augment import POLICIES
    from gan.models import ARCHES

    t, m = (f.type if isinstance(f.type, str) else f.type.__name__), f.metadata
    special = {
        ("experiment", "name"): _name,
        ("model", "arch"): st.just(cfg["arch"]),
        ("data", "image_size"): st.sampled_from(ARCHES[cfg["arch"]].sizes),
        ("data", "dataset"): st.just(cfg["dataset"]),
        ("data", "path"): _text.filter(bool) if cfg["dataset"] != "cifar10" else _text,
        ("loss", "name"): st.just(cfg["loss"]),
        ("model", "conditional"): st.booleans() if ARCHES[cfg["arch"]].conditional else st.just(False),
        ("train", "diffaug"): st.lists(st.sampled_from(sorted(POLICIES)), unique=True).map(",".join),
        ("metrics", "extractors"): st.lists(st.sampled_from(["auto", "inception", "c10"]), min_size=1, unique=True),
    }
    if (sec, k) in special:
        return special[(sec, k)]
    if sec == "loss" and k.startswith("label_") and cfg["loss"] != "bce":
        return st.just(0.0)  # label smoothing/noise: bce only (cross_check)
    if m["choices"] is not None:
        return st.sampled_from(m["choices"])
    lo, hi = m["min"], m["max"]
    if t == "bool":
        return st.booleans()
    if t == "int":
        return st.integers(lo if lo is not None else -10**6, hi if hi is not None else 10**6)
    if t == "float":
        return st.floats(lo if lo is not None else -1e6, hi if hi is not None else 1e6, exclude_min=m["min_open"])
    if t == "str":
        return _text
    if t == "dict":
        return st.just({})  # [model.args]/[loss.args]: only for your own model or loss (tests/test_usercode.py)
    return st.lists(_text, max_size=3)


def _invalid(sec: str, k: str, f):
    """A strategy of values that `sec.k` must refuse: wrong type, out of range, not a choice, a bad name."""
    t, m = (f.type if isinstance(f.type, str) else f.type.__name__), f.metadata
    wrong = {"bool": st.one_of(st.integers(), _text), "int": st.one_of(st.booleans(), _text, st.floats()),
             "float": st.one_of(st.booleans(), _text, st.sampled_from([float("nan"), float("inf")])),
             "str": st.one_of(st.integers(), st.lists(_text, max_size=2)),
             "list": st.one_of(_text, st.lists(st.integers(), min_size=1, max_size=2)),
             "dict": st.one_of(_text, st.integers(), st.lists(st.integers(), min_size=1, max_size=2))}[t]
    bad = [wrong]
    if m["choices"] is not None:
        bad.append(_text.filter(lambda v: v not in m["choices"]))
    if m["min"] is not None and t in ("int", "float"):
        below = m["min"] if m["min_open"] else (m["min"] - 1 if t == "int" else m["min"] - 1e-3)
        bad.append(st.integers(-10**6, int(below)) if t == "int" else st.floats(-1e6, below))
    if m["max"] is not None and t in ("int", "float"):
        bad.append(st.integers(m["max"] + 1, m["max"] + 10**6) if t == "int" else
                   st.floats(m["max"] + 1e-3, m["max"] + 1e6))
    bad.append({("experiment", "name"): st.sampled_from(["a/b", "..", "-x", "a b", "../../up"]),
                ("model", "arch"): st.sampled_from(["biggan", "", "DCGAN"]),
                ("train", "diffaug"): st.sampled_from(["blur", "color,zoom"]),
                ("metrics", "extractors"): st.sampled_from([["clip"], ["c10", "dino"]])}.get((sec, k), wrong))
    return st.one_of(bad)


@st.composite
def documents(draw):
    """(doc, mutated key or None): a document of valid keys with valid values (a random subset of them), and
    half the time one value made wrong, an unknown key or section, or a section that is not a table."""
    from gan.models import ARCHES

    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=12))
    cfg = {"arch": draw(st.sampled_from(sorted(ARCHES))), "loss": draw(st.sampled_from(["bce", "hinge", "wgan"])),
           "dataset": draw(st.sampled_from(["cifar10", "npz", "folder"]))}
    keys += [("model", "arch"), ("loss", "name"), ("data", "dataset")] + \
        ([("data", "path")] if cfg["dataset"] != "cifar10" else [])
    doc: dict = {}
    for sec, k in dict.fromkeys(keys):
        doc.setdefault(sec, {})[k] = draw(_valid(sec, k, FIELDS[(sec, k)], cfg))
    if not draw(st.booleans()):
        return doc, None
    how = draw(st.sampled_from(["value"] * 6 + ["unknown key", "unknown section", "not a table"]))
    sec, k = draw(st.sampled_from(sorted((s, k) for s in doc for k in doc[s])))
    if how == "value":
        doc[sec][k] = draw(_invalid(sec, k, FIELDS[(sec, k)]))
        return doc, f"{sec}.{k}"
    if how == "unknown key":
        doc[sec]["bogus"] = 1
        return doc, f"unknown key {sec}.bogus"
    if how == "unknown section":
        doc["extra"] = {"x": 1}
        return doc, "unknown section [extra]"
    doc[sec] = draw(st.one_of(st.integers(), _text))
    return doc, f"{sec} = "


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_validator_returns_the_config_it_was_given_or_one_line_naming_the_key(case):
    doc, wrong = case
    event("valid" if wrong is None else "one thing wrong")
    if wrong is None:
        cfg = config.validate(doc, "random.toml", stem="random")  # no GanError: every value is valid
        for sec, table in doc.items():
            for k, v in table.items():
                f = FIELDS[(sec, k)]
                got = getattr(getattr(cfg, sec), f.name)
                assert got == (float(v) if f.type in ("float", float) else v) and type(got) is type(
                    float(v) if f.type in ("float", float) else v), (sec, k, v, got)
        return
    with pytest.raises(GanError) as e:
        config.validate(doc, "random.toml", stem="random")
    msg = str(e.value)
    assert msg.startswith("random.toml: ") and "\n" not in msg and wrong in msg, (wrong, msg)


def test_generated_documents_include_large_valid_ones():
    """The positive branch is reached with many keys at once, not only with near-empty documents."""
    from hypothesis import find

    find(documents(), lambda c: c[1] is None and len([k for t in c[0].values() for k in t]) >= 10)

"""Resume as users expect and flags decided openly: `gan resume RUN --set train.steps=N` (or train.minutes) extends
a run, completed or not; keys that would change a run's model, data, loss or metrics are refused; `gan train EXP
--resume RUN` is `gan resume` or refused; only `last.pt.prev` left still resumes; names cannot leave logs/; a --set
that another key would make meaningless wins or is refused; a resumed run says when its reference images changed."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gan import checkpoint, config, tomlfile
from tests.conftest import events, gan_cli, make_images, tiny_toml
from tests.test_kills import assert_same_tensors

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli(*args):
    """The CLI in this process, as a user calls it (exit code, stdout, stderr apart)."""
    from typer.testing import CliRunner

    from gan.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(r, *expected):
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for e in expected:
        assert e in r.stderr, r.stderr


def run_of(logs: Path) -> Path:
    runs = [p for p in Path(logs).glob("*/*") if (p / "run.json").is_file()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def done(tmp_path, tiny_npz):
    """A completed 6-step run (its experiment file and folder)."""
    exp = tiny_toml(tmp_path / "tiny.toml", tiny_npz)
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, r.stdout + r.stderr
    return exp, run_of(tmp_path / "logs")


# ---- extending a run --------------------------------------------------------------------------------------------

def test_resume_set_steps_extends_a_completed_run_onto_the_longer_runs_trajectory(tmp_path, tiny_npz, done):
    exp, run = done
    one_line(cli("resume", run, "--device", "cpu"), "already complete (6/6 steps)", "--set train.steps=N")
    one_line(cli("resume", run, "--device", "cpu", "--set", "train.minutes=5"), "train.minutes alone")
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=10")
    assert r.exit_code == 0 and "completed at step 10" in r.stdout, r.stdout + r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 10 and info["resumed"][0]["step"] == 6
    assert config.load(str(run / "config.toml")).train.steps == 10  # the config as it runs now
    assert [e.step for e in events(run).Scalars("loss/D")] == [2, 4, 6, 8, 10]
    # the same weights as a run of 10 steps from the start
    r = cli("train", tiny_toml(tmp_path / "ten.toml", tiny_npz, train={"steps": 10}), "--device", "cpu", "--logs",
            tmp_path / "ten")
    assert r.exit_code == 0, r.stderr
    a, b = checkpoint.load(run_of(tmp_path / "ten") / "checkpoints" / "last.pt"), \
        checkpoint.load(run / "checkpoints" / "last.pt")
    for part in ("G", "G_ema", "D", "opt_G", "opt_D", "sampler"):
        assert_same_tensors(a[part], b[part], part)


def test_resume_set_minutes_extends_a_run_that_ran_out_of_time(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 100000, "minutes": 0.004, "log_every": 1})
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, r.stderr
    run = run_of(tmp_path / "logs")
    first = json.loads((run / "run.json").read_text())
    assert first["status"] == "completed" and first["ended_by"] == "train.minutes = 0.004"
    one_line(cli("resume", run, "--device", "cpu"), "already complete", "--set train.minutes=M")
    more = round(first["train_seconds"] / 60 + 0.004, 4)  # the first step may overshoot the limit
    r = cli("resume", run, "--device", "cpu", "--set", f"train.minutes={more}")
    assert r.exit_code == 0, r.stdout + r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["ended_by"] == f"train.minutes = {more:g}"
    assert info["step"] > first["step"] and info["train_seconds"] >= more * 60 - 0.01
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == info["step"]


def _locked() -> list[str]:
    """Every key a resume must refuse, with a valid value for it (it is the key, not the value, that is refused)."""
    out = []
    for sec, cls in config._SECTION_CLS.items():
        for f in dataclasses.fields(cls):
            k = config.key(f)
            if config.resume_locked(sec, k):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                out.append(f"{sec}.{k}={tomlfile.value(default)}")
    return out


LOCKED = _locked()


def test_resume_refuses_every_locked_key_with_one_line(done):
    _, run = done
    assert len(LOCKED) >= 30 and "model.arch=\"dcgan\"" in LOCKED and "metrics.extractors=[\"auto\"]" in LOCKED
    before = (run / "run.json").read_bytes()
    for item in LOCKED:
        one_line(cli("resume", run, "--device", "cpu", "--set", item), f"--set {item}: {item.split('=')[0]} "
                 "cannot change when a run resumes")
    assert (run / "run.json").read_bytes() == before  # refused before anything was touched
    free = [f"{s}.{config.key(f)}" for s, c in config._SECTION_CLS.items() for f in dataclasses.fields(c)
            if not config.resume_locked(s, config.key(f))]
    assert {"train.steps", "train.minutes", "train.epochs", "optim.g_lr", "metrics.every"} <= set(free)


def test_killed_after_a_rotation_with_only_prev_left_resumes_to_completion(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 12})
    ref = gan_cli("train", exp, "--device", "cpu", "--logs", tmp_path / "ref", env=ONE_THREAD)
    assert ref.returncode == 0, ref.stderr
    # killed between the two renames of the second rotation (step 9): last.pt is step 6, .prev too
    r = gan_cli("train", exp, "--device", "cpu", "--logs", tmp_path / "cut",
                env={**ONE_THREAD, "GAN_TEST_AT": "rotate:last.pt@2"})
    assert r.returncode == -9, r.stderr
    run = run_of(tmp_path / "cut")
    last = run / "checkpoints" / "last.pt"
    assert checkpoint.load(last)["step"] == 6 == checkpoint.load(last.with_name("last.pt.prev"))["step"]
    last.unlink()  # all there is: last.pt.prev
    r = gan_cli("resume", run, "--device", "cpu", env=ONE_THREAD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "last.pt is missing" in r.stdout and "using last.pt.prev" in r.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    a, b = checkpoint.load(run_of(tmp_path / "ref") / "checkpoints" / "last.pt"), checkpoint.load(last)
    for part in ("G", "G_ema", "D", "opt_G", "opt_D", "step"):
        assert_same_tensors(a[part], b[part], part)


# ---- gan train EXP --resume RUN: the same as gan resume, or refused -----------------------------------------------

def test_train_with_resume_is_gan_resume_or_refused(tmp_path, tiny_npz, done):
    exp, run = done
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    r = cli("train", exp, "--resume", run, "--device", "cpu", "--set", "train.steps=8")
    assert r.exit_code == 0 and "completed at step 8" in r.stdout, r.stdout + r.stderr
    r = cli("resume", twin, "--device", "cpu", "--set", "train.steps=8")
    assert r.exit_code == 0, r.stderr
    a, b = (checkpoint.load(p / "checkpoints" / "last.pt") for p in (run, twin))
    for part in ("G", "D", "opt_G", "opt_D", "step"):
        assert_same_tensors(a[part], b[part], part)
    for flags, expected in ((["--name", "x"], "--name, --logs and --run-dir do not apply"),
                            (["--logs", tmp_path / "elsewhere"], "do not apply"),
                            (["--run-dir", tmp_path / "new"], "do not apply"),
                            (["--set", "model.z_dim=8"], "model.z_dim cannot change when a run resumes")):
        one_line(cli("train", exp, "--resume", run, *flags), expected)
    other = tiny_toml(tmp_path / "other.toml", tiny_npz, experiment={"name": "other"})
    one_line(cli("train", other, "--resume", run), "has experiment.name = \"other\", the run \"tiny\"")
    edited = tiny_toml(tmp_path / "edited.toml", tiny_npz, optim={"g_lr": 1e-3})
    one_line(cli("train", edited, "--resume", run), "has optim.g_lr = 0.001, the run 0.0002",
             f"gan resume {run} --set optim.g_lr=0.001")
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "new").exists()


# ---- names ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "../up", "..", ".", "/abs", "a\\b", "-flag", ".hidden", "a b", ""])
def test_run_names_that_could_leave_logs_are_refused(name, tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz)
    one_line(cli("train", exp, "--name", name, "--logs", tmp_path / "logs"), f"--name {name!r}")
    if name:  # (an empty experiment.name means the file's stem)
        bad = tiny_toml(tmp_path / "n.toml", tiny_npz, experiment={"name": name})
        one_line(cli("train", bad, "--logs", tmp_path / "logs"), f"experiment.name {name!r}")
    assert not (tmp_path / "logs").exists() and not list(tmp_path.parent.glob("up"))


# ---- keys that override others: an explicit --set wins, or is refused with one line ------------------------------

OK = [  # (experiment, --set items, {key: resolved value})
    ("dcgan", ["train.steps=7"], {"train.steps": 7, "train.epochs": 0.0}),  # epochs in the file, steps given
    ("dcgan", ["train.epochs=0", "train.steps=7"], {"train.steps": 7, "train.epochs": 0.0}),
    ("smoke", ["train.epochs=2"], {"train.epochs": 2.0}),  # steps in the file, epochs given: epochs count
    ("smoke", ["optim.ema_decay=0"], {"optim.ema_decay": 0.0}),  # EMA off: the file's ema_start no longer counts
    ("dcgan", ["optim.ema_decay=0.99", "optim.ema_start=10"], {"optim.ema_start": 10}),
    ("smoke", ["metrics.enabled=false"], {"metrics.enabled": False}),
    ("dcgan", ["data.dataset=npz", "data.path=x.npz"], {"data.path": "x.npz"}),
]
REFUSED = [  # (experiment, --set items, text of the one line)
    ("smoke", ["train.steps=7", "train.epochs=2"], "--set train.steps=7 and --set train.epochs=2 contradict"),
    ("dcgan", ["optim.ema_start=10"], "--set optim.ema_start=10: no effect while optim.ema_decay = 0.0"),
    ("smoke", ["metrics.enabled=false", "metrics.every=10"], "contradict each other: metrics.enabled = false"),
    ("{npz_off}", ["metrics.every=10"], "--set metrics.every=10: no effect while metrics.enabled = false"),
    ("{npz_off}", ["metrics.num_samples=50"], "no effect while metrics.enabled = false"),
    ("smoke", ["data.path=x.npz"], "--set data.path=x.npz: no effect while data.dataset = \"cifar10\""),
    ("{npz_off}", ["data.root=/data"], "no effect while data.dataset = \"npz\""),
    ("smoke", ["metrics.extractors=[\"c10\"]", "metrics.inception_weights=w.pth"], "contradict each other"),
    ("{folder}", [], "is a folder: expected a .toml file"),
]


@pytest.mark.parametrize("exp,items,want", OK)
def test_explicit_set_wins_over_the_file(exp, items, want):
    cfg = config.load(exp, items)
    for k, v in want.items():
        sec, name = k.split(".")
        assert getattr(getattr(cfg, sec), name) == v, k


@pytest.mark.parametrize("exp,items,expected", REFUSED)
def test_conflicting_set_is_refused_with_one_line(exp, items, expected, tmp_path, tiny_npz):
    exp = exp.format(npz_off=tiny_toml(tmp_path / "t.toml", tiny_npz), folder=tmp_path)
    one_line(cli("validate", exp, *[a for i in items for a in ("--set", i)]), expected)
    if items:  # the same rule on resume (its run's config is the file)
        with pytest.raises(config.GanError, match=expected.split(": ")[-1][:20]):
            config.load(exp, items)


# ---- a resumed run checks its reference set -------------------------------------------------------------------

def test_resumed_run_says_when_its_reference_images_changed(tmp_path):
    npz = tmp_path / "data.npz"
    np.savez(npz, images=make_images(96, seed=1))
    exp = tiny_toml(tmp_path / "t.toml", npz, metrics={"enabled": True, "extractors": ["c10"], "every": 3,
                                                       "num_samples": 16, "batch_size": 32, "kid": False})
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, r.stderr
    run = run_of(tmp_path / "logs")
    was = json.loads((run / "run.json").read_text())["metrics_protocol"][0]["reference_sha256"]
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=9")  # same data: nothing said
    assert r.exit_code == 0 and "differ from the ones this run recorded" not in r.stdout, r.stdout
    np.savez(npz, images=make_images(96, seed=2))  # the data file changed under the run
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=12")
    assert r.exit_code == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert (f"warning: metrics: the reference images of c10 differ from the ones this run recorded ({was[:12]} "
            "then,") in out and "points after step 9 follow a different protocol" in out
    info = json.loads((run / "run.json").read_text())
    ch = info["protocol_changes"]
    assert [(c["step"], c["extractor"], c["what"], c["was"]) for c in ch] == [(9, "c10", "reference images", was)]
    assert ch[0]["now"] == info["metrics_protocol"][0]["reference_sha256"] != was
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 12


# ---- nothing overwritten, nothing forgotten ---------------------------------------------------------------------

def test_every_resume_records_its_set_in_run_json(done):
    exp, run = done
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=7", "--set", "optim.g_lr=1e-4", "--set",
            "train.steps=8")  # a key given twice: the last wins, as in gan train, validate and sweep
    assert r.exit_code == 0, r.stdout + r.stderr
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=9")
    assert r.exit_code == 0, r.stdout + r.stderr
    info = json.loads((run / "run.json").read_text())
    assert [(e["step"], e["set"]) for e in info["resumed"]] == [(6, ["optim.g_lr=1e-4", "train.steps=8"]),
                                                                (8, ["train.steps=9"])]
    assert info["step"] == 9 and "g_lr = 0.0001" in (run / "config.toml").read_text()


def test_after_a_fallback_to_prev_the_next_rotation_keeps_prev_good(done):
    _, run = done
    ck = run / "checkpoints"
    last, prev = ck / "last.pt", ck / "last.pt.prev"
    assert checkpoint.load_one(last)["step"] == 6 and checkpoint.load_one(prev)["step"] == 3
    damaged = bytearray(last.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    last.write_bytes(bytes(damaged))
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=7", "--set", "train.checkpoint_every=100")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "using the previous checkpoint last.pt.prev" in r.stdout
    assert checkpoint.load_one(last)["step"] == 7  # one rotation since the fallback ...
    assert checkpoint.load_one(prev)["step"] == 3  # ... and .prev is still the good one, not the damaged file
    (kept,) = ck.glob("last.pt.damaged-*")
    assert kept.read_bytes() == bytes(damaged)  # its bytes kept aside


def test_export_never_overwrites(done):
    _, run = done
    (run / "netG.pth").write_bytes(b"the user's own netG.pth")
    for n in (1, 2):
        r = cli("export", run)
        assert r.exit_code == 0, r.stdout + r.stderr
        assert f"netG-{n}.pth" in r.stdout and f"netD-{n}.pth" in r.stdout
    assert (run / "netG.pth").read_bytes() == b"the user's own netG.pth" and not (run / "netD.pth").exists()
    g1, g2 = (torch.load(run / f"netG-{n}.pth", weights_only=True) for n in (1, 2))
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_a_repeated_set_keeps_its_last_value_in_train_and_validate(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "tiny.toml", tiny_npz)
    r = cli("validate", exp, "--set", "train.steps=2", "--set", "optim.g_lr=1e-4", "--set", "train.steps=4")
    assert r.exit_code == 0 and "steps = 4\n" in r.stdout and "g_lr = 0.0001" in r.stdout, r.stdout + r.stderr
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs", "--set", "train.steps=2", "--set",
            "train.steps=4")
    assert r.exit_code == 0, r.stdout + r.stderr
    run = run_of(tmp_path / "logs")
    assert json.loads((run / "run.json").read_text())["step"] == 4
    assert "steps = 4\n" in (run / "config.toml").read_text()

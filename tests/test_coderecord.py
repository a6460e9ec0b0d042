"""The code that made a run, kept with it: the user's files copied with their sha256, the git checkout holding them
(commit, dirty, code.patch), a resume with other code refused unless allowed (and then recorded), the model rebuilt
from the run's own copy, runs of one experiment made by different code marked in `gan runs` and the leaderboard."""
from __future__ import annotations

import hashlib
import json
import subprocess

from typer.testing import CliRunner

from gan.cli import app
from gan.sweep import grid
from tests.conftest import tiny_toml
from tests.test_usercode import GOOD_MODEL

runner = CliRunner()


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def git(where, *args):
    subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def project(tmp_path, tiny_npz):
    """A user's own project: a git repository holding their model and its experiment, one commit."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mygan.py").write_text(GOOD_MODEL)
    exp = tiny_toml(proj / "exp.toml", tiny_npz, model={"arch": "mygan.py:build", "args": {"width": 4}},
                    train={"steps": 2, "checkpoint_every": 2})
    git(proj, "init", "-q")
    git(proj, "add", ".")
    git(proj, "commit", "-qm", "first")
    return proj, exp


def train(exp, logs, *sets):
    rc, out, err = cli("train", exp, "--logs", logs, "--device", "cpu", *[a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    return sorted(p.parent for p in logs.rglob("run.json"))[-1]


def test_a_run_keeps_its_code_and_refuses_to_resume_with_other_code(tmp_path, tiny_npz):
    proj, exp = project(tmp_path, tiny_npz)
    logs = tmp_path / "logs"
    (proj / "exp.toml").write_text((proj / "exp.toml").read_text() + "# an uncommitted edit of a tracked file\n")
    run = train(exp, logs)
    info = json.loads((run / "run.json").read_text())
    (f,) = info["code"]["files"]
    head = subprocess.run(["git", "-C", str(proj), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert f["path"] == str(proj / "mygan.py") and f["sha256"] == hashlib.sha256(GOOD_MODEL.encode()).hexdigest()
    assert (run / f["copy"]).read_text() == GOOD_MODEL and f["copy"] == "code/model/mygan.py"
    # the checkout of interest holds the user's files: its commit, dirty, and the diff of its tracked files
    assert info["git_commit"] == head and info["git_dirty"] is True
    assert info["code"]["repos"][0]["root"] == str(proj) and info["code"]["repos"][0]["holds"] == ["model"]
    assert "+# an uncommitted edit of a tracked file" in (run / "code.patch").read_text()

    (proj / "mygan.py").write_text(GOOD_MODEL + "\n# tuned\n")
    before = (run / "run.json").read_bytes()
    rc, _, err = cli("resume", run, "--set", "train.steps=3")
    assert rc == 2 and err.count("error:") == 1 and "was started with other code: " in err
    assert "mygan.py has changed (sha256 " in err and "--allow-code-change" in err
    assert (run / "run.json").read_bytes() == before  # refused before anything was written

    rc, out, err = cli("resume", run, "--set", "train.steps=3", "--allow-code-change")
    assert rc == 0, err
    info = json.loads((run / "run.json").read_text())
    (entry,) = info["resumed"]
    assert entry["allowed_by"] == "--allow-code-change" and entry["code_was"] != entry["code_id"]
    assert entry["code_changed"][0]["path"] == str(proj / "mygan.py")
    assert info["code"]["id"] == entry["code_id"] and info["step"] == 3
    assert (run / "code/step-2/model/mygan.py").read_text().endswith("# tuned\n")
    assert (run / "code/model/mygan.py").read_text() == GOOD_MODEL  # the start's copy stays


def test_the_run_folder_alone_samples(tmp_path, tiny_npz):
    """The user's file deleted: gan sample and gan eval rebuild G from the run's own copy."""
    proj, exp = project(tmp_path, tiny_npz)
    run = train(exp, tmp_path / "logs")
    (proj / "mygan.py").unlink()
    rc, out, err = cli("sample", run, "--n", "4", "--out", tmp_path / "s.png")
    assert rc == 0, err
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (4 * 34 + 2, 34 + 2)  # 4 images of 32 px in a row
    rc, _, err = cli("resume", run, "--set", "train.steps=3")
    assert rc == 2 and "mygan.py is gone (the run's copy: " in err


def test_runs_of_one_experiment_made_by_different_code_are_marked(tmp_path, tiny_npz):
    proj, exp = project(tmp_path, tiny_npz)
    logs = tmp_path / "logs"
    first = train(exp, logs)
    rc, out, _ = cli("runs", "--logs", logs)
    assert rc == 0 and " code " not in out  # one run, nothing to mark
    (proj / "mygan.py").write_text(GOOD_MODEL + "\n# another idea\n")
    second = train(exp, logs)
    ids = [json.loads((r / "run.json").read_text())["code"]["id"] for r in (first, second)]
    assert ids[0] != ids[1]
    rc, out, _ = cli("runs", "--logs", logs)
    assert rc == 0 and " code " in out and ids[0][:8] in out and ids[1][:8] in out
    rc, out, _ = cli("leaderboard", "--logs", logs)
    assert rc == 0 and ids[0][:8] in out and ids[1][:8] in out and "mygan.py:build" in out


def test_a_sweep_reaches_the_users_arguments_and_finds_their_files(tmp_path, tiny_npz):
    proj, exp = project(tmp_path, tiny_npz)
    rc, out, err = cli("sweep", exp, "--grid", "model.args.width=4,8", "--seeds", "2", "--dry-run")
    assert rc == 0, err
    assert "width=4-s0" in out and "model.args.width=8 experiment.seed=1" in out
    rc, _, err = cli("sweep", exp, "--grid", "model.args.width=4,x", "--dry-run")
    assert rc == 2 and "model.args.width = \"x\": expected an integer" in err
    # the sweep's copy of the experiment lives in the sweep folder: the user's paths in it are made absolute
    base = grid.write_base(str(exp), tmp_path / "sweep")
    assert f'arch = "{proj / "mygan.py"}:build"' in base.read_text()
    from gan import config

    assert config.load(str(base)).to_dict() == config.load(str(exp)).to_dict()

"""One writer per run (gan/runlock.py) and what readers say of it: two `gan resume` of one run started together
(one writes, the other is refused in one line naming the holder), a second `gan train --run-dir` on a held folder
(refused, no file changed), a run SIGKILLed before its first checkpoint (`dead`, not `running`), a sweep's runs in
`gan runs`/the leaderboard/run-id lookup, and `gan sweep --resume` waiting for a run a live process still holds."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gan import fileio, runlock, runs
from gan.cli import app as APP
from tests.conftest import ROOT, copy_run, tiny_toml
from tests.test_robustness import wait_for


def cli(*args):
    r = CliRunner().invoke(APP, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def paused(args, mark: Path) -> subprocess.Popen:
    """`gan ARGS` as a real process that stops at its first training step (holding its run) until signalled."""
    env = dict(os.environ, OMP_NUM_THREADS="1", GAN_TEST_AT="step@1", GAN_TEST_PAUSE=str(mark))
    return subprocess.Popen([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exp(tmp_path_factory, tiny_npz) -> Path:
    return tiny_toml(tmp_path_factory.mktemp("exp") / "tiny.toml", tiny_npz)


@pytest.fixture(scope="module")
def done(tmp_path_factory, exp) -> Path:
    """A completed 6-step run (checkpoints at 3 and 6, metrics off)."""
    logs = tmp_path_factory.mktemp("done")
    r = cli("train", exp, "--device", "cpu", "--logs", logs)
    assert r.exit_code == 0, r.output
    (run,) = runs.find_runs(logs)
    return run


def test_two_resumes_started_together_one_writes_the_other_exits_2(done, tmp_path):
    run = copy_run(done, tmp_path / "logs" / "tiny" / done.name)
    marks = [tmp_path / "a", tmp_path / "b"]
    ps = [paused(["resume", run, "--device", "cpu", "--set", "train.steps=12"], m) for m in marks]
    try:
        assert wait_for(lambda: any(p.poll() is not None for p in ps) and any(m.exists() for m in marks), 180)
        (loser,) = [p for p in ps if p.poll() is not None]
        (winner,) = [p for p in ps if p is not loser]
        out, err = loser.communicate(timeout=30)
        assert loser.returncode == 2, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"pid {winner.pid} on {socket.gethostname()} since " in lines[0], lines[0]
        assert "resuming" not in out  # it never began
        assert runs.run_summary(run)["status"] == "running"  # a live writer holds it
        assert runlock.holder(run)["pid"] == winner.pid
        winner.send_signal(signal.SIGINT)
        out, err = winner.communicate(timeout=120)
    finally:
        for p in ps:
            p.kill()
    assert winner.returncode == 130, out + err
    info = json.loads((run / "run.json").read_text())
    assert len(info["resumed"]) == 1 and info["status"] == "interrupted"  # one writer: one resume recorded
    assert runlock.holder(run) is None  # released with its holder


def test_second_train_on_a_held_run_dir_is_refused_and_changes_no_file(exp, tmp_path):
    d = tmp_path / "sweep" / "r0"
    holder = paused(["train", exp, "--device", "cpu", "--run-dir", d], tmp_path / "mark")
    try:
        assert wait_for(lambda: (tmp_path / "mark").exists(), 180), holder.stderr
        before = snapshot(d)
        assert {".lock", "run.json", "config.toml"} <= set(before)
        r = cli("train", exp, "--device", "cpu", "--run-dir", d)
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid} on {socket.gethostname()}" in lines[0], r.stderr
        assert snapshot(d) == before  # not run.json, not events, not config.toml, not the lock's own bytes
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=120)
    finally:
        holder.kill()
    assert holder.returncode == 130


def test_a_run_killed_before_its_first_checkpoint_is_dead_not_running(exp, tmp_path):
    logs = tmp_path / "logs"
    env = dict(os.environ, OMP_NUM_THREADS="1", GAN_TEST_AT="step@1")  # SIGKILL in its first step
    p = subprocess.run([sys.executable, "-m", "gan", "train", exp, "--device", "cpu", "--logs", logs], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    (run,) = runs.find_runs(logs)
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # what it said before it died
    row = runs.run_summary(run)
    assert row["status"] == "dead" and runs.status_cell(row) == "dead (no checkpoint)", row
    r = cli("runs", "--logs", logs)
    line = next(x for x in r.stdout.splitlines() if run.name in x)
    assert "dead (no checkpoint)" in line and "running" not in line, line
    assert snapshot(run) == snapshot(run)  # (reading twice moved nothing)
    from gan import leaderboard

    assert leaderboard.row_of(run, run.name, "tiny", []).status == "dead"


def test_sweep_runs_are_listed_resolved_and_ranked(done, tmp_path):
    logs = tmp_path / "logs"
    plain = copy_run(done, logs / "tiny" / done.name)
    sweep = logs / "tiny" / "sweep-20260101-000000"
    sw = copy_run(done, sweep / "optim.g_lr=1e-4-s0")
    copy_run(done, sweep / "aborted" / "optim.g_lr=1e-4-s0-20260101")  # moved aside by the sweep: not a run
    copy_run(done, sw / "checkpoints" / "inner")  # nothing below a run is a run
    fileio.write_json(sweep / "sweep.json", {"version": 1, "runs": [{"folder": sw.name, "setting": "optim.g_lr=1e-4"}]})
    assert runs.find_runs(logs) == sorted([plain, sw])
    assert runs.find_runs(logs, "tiny") == sorted([plain, sw])
    r = cli("runs", "--logs", logs)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if sw.name in x)
    assert sweep.name in line and "completed" in line and "6/6" in line and "fp32" in line, line
    assert any("sweep" in x and "experiment" in x and "status" in x for x in r.stdout.splitlines())  # its header
    assert runs.resolve_run(sw.name, logs) == sw
    assert runs.resolve_run(f"{sweep.name}/{sw.name}", logs) == sw
    assert runs.resolve_run(done.name, logs) == plain
    assert runs.setting_of(sw) == f"{sweep.name}: optim.g_lr=1e-4" and runs.setting_of(plain) is None
    r = cli("leaderboard", "--logs", logs)
    assert r.exit_code == 0, r.output
    assert sum(sw.name in x or done.name in x for x in r.stdout.splitlines()) == 2, r.stdout


def test_steps_and_precision_columns_say_what_ended_and_what_ran():
    by_time = {"status": "completed", "step": 2612, "steps_planned": 1000000, "ended_by": "train.minutes = 10"}
    row = {"step": 2612, "steps_planned": 1000000, "limit": runs.limit_of(by_time, {"minutes": 10})}
    assert runs.steps_cell(row) == "2612 (10 min)"
    by_steps = by_time | {"step": 300, "steps_planned": 300, "ended_by": None}
    assert runs.steps_cell({"step": 300, "steps_planned": 300, "limit": runs.limit_of(by_steps, {"minutes": 10})}) \
        == "300/300"
    assert runs.precision_of({"precision": "bf16"}, {"precision": "auto"}) == "bf16 (auto)"  # what auto chose
    assert runs.precision_of({"precision": "fp32"}, {"precision": "bf16"}) == "fp32"  # kept fp32 (no bf16 here)
    live = {"status": "running", "steps_planned": 100000, "progress": {"step": 500, "train_seconds": 60.0}}
    assert runs.limit_of(live, {"minutes": 10}) == "10 min"  # 5,000 steps in 10 minutes at its rate
    assert runs.limit_of(live | {"steps_planned": 1000}, {"minutes": 10}) is None  # its steps end it first
    assert runs.limit_of(live, {"minutes": 0}) is None


class FakeLauncher:
    kind, batch = "local", False

    def __init__(self):
        self.started = []

    def start(self, job):
        self.started.append(job.folder)
        raise AssertionError(f"started {job.folder}")


def test_sweep_resume_waits_for_a_run_a_live_process_holds(done, tmp_path):
    from gan.sweep import launchers, manifest as mf
    from gan.sweep.jobs import Scheduler, Slot

    runs_ = [{"setting": "s", "overrides": [], "seed": 0, "folder": "held", "status": "running", "job": "1"}]
    man = mf.Manifest.create(tmp_path, base="tiny.toml", runs=runs_)
    d = copy_run(done, tmp_path / "held")
    fileio.write_json(d / "run.json", json.loads((d / "run.json").read_text()) | {"status": "running"})
    assert mf.needs(man, man.runs[0]) == "resume"  # nobody holds it: really stopped
    from gan.sweep.jobs import live_row

    assert live_row(d, "running")[0] == "dead"  # the sweep's table says so too
    lk = runlock.acquire(d)  # a job of the killed sweep, running on
    try:
        assert mf.needs(man, man.runs[0]) == "live" and live_row(d, "attached")[0] == "attached"
        said = []
        s = Scheduler(man, FakeLauncher(), [Slot(0, 1)], "cpu", log=said.append)
        assert isinstance(s.active["held"].handle, launchers.Attached) and not s.queue and not s.free
        assert "reattached held" in said[0] and f"pid {os.getpid()}" in said[0], said
        s._fill()
        s._poll()
        assert s.launcher.started == [] and "held" in s.active  # waited for, not started twice
        fileio.write_json(d / "run.json", json.loads((d / "run.json").read_text()) | {"status": "completed"})
    finally:
        lk.release()
    s._poll()
    assert not s.active and man.runs[0]["status"] == "completed" and s.launcher.started == []
    assert any(x.startswith("completed held") for x in said), said

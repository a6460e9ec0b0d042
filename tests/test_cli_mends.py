"""What the command line says and where it writes, tried as a new user would: every command that takes a run takes
a bare run id and --logs; the end-of-run hint names the logs folder really used; a mistyped name gets the nearest
one; --help shows no `<bool>`; a full disk names the command to run again; a sweep's Ctrl-C never signals a pid
that no longer holds its run."""
from __future__ import annotations

import json
import signal

import pytest

from gan import fileio, runlock
from tests.conftest import ROOT, copy_run, gan_cli
from tests.test_runs import cli, one_line_error


def test_export_and_resume_take_a_bare_run_id_and_logs(two_runs, tmp_path):
    logs, dirs, _ = two_runs
    run = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "only-here")
    r = cli("export", "only-here", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, r.output
    assert (run / "netG.pth").is_file() and (run / "netD.pth").is_file()
    one_line_error(cli("export", "only-here"), "no run 'only-here'")  # under ./logs there is none
    one_line_error(cli("export", "only-here", "--logs", tmp_path / "logs", "--checkpoint", "newest"),
                   "expected last or best")
    r = cli("resume", "only-here", "--logs", tmp_path / "logs", "--device", "cpu")
    assert r.exit_code == 2 and "is already complete" in r.stderr  # found by its id; complete: said so


def test_the_end_of_run_hint_names_the_logs_folder_used(tmp_path, tiny_npz):
    from tests.conftest import tiny_toml

    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 2})
    r = gan_cli("train", exp, "--device", "cpu", "--logs", tmp_path / "elsewhere", cwd=tmp_path,
                env={"PYTHONPATH": str(ROOT)})  # this checkout's gan, from a folder outside it
    assert r.returncode == 0, r.stderr
    hint = next(x for x in r.stdout.splitlines() if x.startswith("see it: "))
    assert hint.endswith(f"--logdir {tmp_path / 'elsewhere'}") and "make tensorboard" not in hint
    assert "tensorboard" in hint


def test_a_mistyped_name_gets_the_nearest_one():
    one_line_error(cli("validate", "baselin"), "no experiment named 'baselin' (did you mean 'baseline'?)")
    one_line_error(cli("validate", "quick", "--set", "optim.bach_size=64"),
                   "unknown key optim.bach_size (did you mean 'batch_size'?)")
    one_line_error(cli("validate", "quick", "--set", "optm.batch_size=64"), "unknown section [optm] (did you mean "
                                                                           "'optim'?)")
    line = one_line_error(cli("validate", "zzzz"), "no experiment named 'zzzz' (known: ")
    assert "did you mean" not in line


def test_help_shows_no_bool_beside_flags():
    for args in (["--help"], ["list", "--help"], ["runs", "--help"], ["train", "--help"]):
        r = cli(*args)
        assert r.exit_code == 0 and "<bool>" not in r.output and "--help" in r.output, r.output


def test_a_full_disk_says_what_to_run_again():
    e = fileio.DiskFull("logs/x/run.json", "No space left on device")
    assert str(e) == ("disk full: cannot write 'logs/x/run.json' (No space left on device); free space, then run "
                      "the same command again")
    assert e.line("`gan resume logs/x`").endswith("free space, then `gan resume logs/x`")
    import pickle

    assert str(pickle.loads(pickle.dumps(e))) == str(e)


def test_a_sweeps_ctrl_c_signals_only_the_process_holding_the_run_now(two_runs, tmp_path, monkeypatch):
    """The holder the sweep saw has let go (its pid may be another process's by now): nothing is signalled."""
    import os

    from gan.sweep import launchers

    run = copy_run(two_runs[1][0], tmp_path / "run")
    lk = runlock.acquire(run)  # stands for the run's process
    a = launchers.Attached(run, None, tmp_path)
    assert a.holder["pid"] == os.getpid()
    lk.release()
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    a.stop(signal.SIGINT)
    assert sent == []
    lk = runlock.acquire(run)
    try:
        a.stop(signal.SIGINT)  # held again (by "us"): that holder is signalled
        assert sent == [(os.getpid(), signal.SIGINT)]
    finally:
        lk.release()
    assert a.poll() is not None and a.holder is None  # let go: forgotten, never signalled later
    json.loads((run / "run.json").read_text())

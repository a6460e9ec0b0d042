"""The commands that need no tensor maths answer at once: `--help`, `list`, `keys`, `validate`, `runs` and
`leaderboard` import neither torch nor torchvision, torch-fidelity or Optuna (issue 32: 2.8 s of CPU before any
work). Each command runs in a fresh interpreter that reports, at exit, which of those it loaded; a later import
at the top of a module on their path fails here. How fast they start is `make bench`'s (scale section)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, copy_run

HEAVY = ("torch", "torchvision", "torch_fidelity", "optuna")
PROBE = ("import atexit, sys\n"
         f"atexit.register(lambda: print('LOADED', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))\n"
         "from gan.cli import main\n"
         "sys.argv = ['gan', *sys.argv[1:]]\n"
         "main()\n")


def loaded(*args, cwd=None) -> tuple[subprocess.CompletedProcess, list]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env=env, cwd=cwd or ROOT, stdin=subprocess.DEVNULL)
    line = [x for x in r.stderr.splitlines() if x.startswith("LOADED ")]
    assert line, r.stderr[-2000:]
    return r, eval(line[-1][len("LOADED "):])  # noqa: S307 - our own probe's list of names


def test_listing_commands_import_no_tensor_library(two_runs, tmp_path):
    logs, dirs, _ = two_runs
    own = tmp_path / "logs"
    copy_run(dirs[0], own / "tiny" / "a")
    copy_run(dirs[1], own / "tiny" / "b")
    (own / "tiny" / "b" / "summary.jsonl").unlink(missing_ok=True)  # rebuilt from its events: no torch for that
    for args in (["--help"], ["list"], ["keys"], ["keys", "quick"], ["validate", "quick"], ["sweep", "--help"],
                 ["runs", "--logs", own], ["leaderboard", "--logs", own], ["runs", "--logs", own, "--disk"]):
        r, heavy = loaded(*args)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert heavy == [], f"gan {' '.join(map(str, args))} imported {heavy}"
    r, _ = loaded("runs", "--logs", own)
    assert "a" in r.stdout and "b" in r.stdout


def test_a_command_that_trains_still_finds_torch_when_it_needs_it(tmp_path):
    """The other side of the rule: the heavy imports moved into the commands that use them, not lost."""
    r, heavy = loaded("eval", tmp_path / "nothing")
    assert r.returncode == 2 and "torch" not in heavy  # a bad run folder is refused before anything loads
    from gan import neighbours
    from gan.cli import runs

    import inspect

    default = inspect.signature(runs.neighbours_cmd).parameters["show"].default.default
    assert default == neighbours.SHOW  # the CLI's default, written out so `gan --help` needs no torch

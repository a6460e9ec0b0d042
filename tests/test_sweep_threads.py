"""The sweep's split of the cores, as the child process sees it: a job started the way the sweep starts it (a local
`python -m gan` child with the slot's environment, or a submitit job's `run_gan` in a fresh process) trains with
exactly its slot's torch threads, read back from the run's own record (run.json `threads`, written by
the run from `torch.get_num_threads()`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tiny_toml


def _run_json(run) -> dict:
    return json.loads((run / "run.json").read_text())


def test_each_local_job_trains_with_its_slots_thread_count(tmp_path, tiny_npz):
    from gan.sweep.jobs import Scheduler, Slot
    from gan.sweep.launchers import Local
    from gan.sweep.manifest import Manifest

    tiny_toml(tmp_path / "tiny.toml", tiny_npz, train={"steps": 2, "log_every": 1})
    cores = len(os.sched_getaffinity(0))  # OMP_NUM_THREADS above the cores is capped by torch; the sweep never asks
    runs = [{"setting": f"a={i}", "overrides": [f"experiment.seed={i}"], "seed": i, "folder": f"s{i}",
             "status": "pending"} for i in range(2)]
    man = Manifest.create(tmp_path, base="tiny.toml", set=[], runs=runs)
    slots = [Slot(0, 1, None), Slot(1, cores, None)]  # 1 differs from torch's default (one per core) when cores > 1
    s = Scheduler(man, launcher=None, slots=slots, device="cpu")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the sweep's own environment says nothing about threads: the slot alone decides
    try:
        handles = [Local().start(s.job(e, "start", slot)) for e, slot in zip(man.runs, slots)]
    finally:
        os.environ.clear()
        os.environ.update(old)
    t0 = time.time()
    while any(h.poll() is None for h in handles):
        assert time.time() - t0 < 300, "jobs did not finish"
        time.sleep(0.1)
    for e, slot, h in zip(man.runs, slots, handles):
        console = (tmp_path / "console" / f"{e['folder']}.log").read_text()
        assert h.poll() == 0, console
        info = _run_json(man.run_dir(e))
        assert info["status"] == "completed" and info["threads"] == slot.threads, (info, console)


def test_a_submitit_job_sets_its_thread_count_in_its_own_process(tmp_path, tiny_npz):
    """submitit runs `run_gan` in a process started without the slot's environment: the run it starts gets the
    slot's threads. A slot never holds more than the cores (and torch caps OMP_NUM_THREADS there): one thread, which
    differs from torch's default wherever there are two cores or more."""
    exp = tiny_toml(tmp_path / "tiny.toml", tiny_npz, train={"steps": 2, "log_every": 1})
    many = 1
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: a slot's thread count equals torch's default")
    run = tmp_path / "run"
    code = ("import sys; from gan.sweep.launchers import run_gan; "
            f"sys.exit(run_gan(['train', {str(exp)!r}, '--device', 'cpu', '--run-dir', {str(run)!r}], "
            f"{{'OMP_NUM_THREADS': '{many}', 'MKL_NUM_THREADS': '{many}'}}))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _run_json(run)["threads"] == many

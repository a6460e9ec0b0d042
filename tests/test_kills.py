"""A run SIGKILLed at random moments (during a step, an evaluation, a checkpoint write, between the two renames of
the rotation, a run.json write) and resumed each time ends bit for bit where an uninterrupted run ends: weights,
optimiser state, sampler and RNG, metric history, best.pt and every TensorBoard scalar.

The kills come from the run itself at a named moment (GAN_TEST_AT, see gan/stop.py): a real SIGKILL at a moment
chosen at random, reproducible from the seed printed. `make test-long` runs GAN_KILLS=5, `make kills` 20 (not in CI).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan import checkpoint
from gan.writer import SUMMARY
from tests.conftest import ROOT, events, tiny_toml

KILLS = int(os.environ.get("GAN_KILLS", "5"))
ENV = {"OMP_NUM_THREADS": "1"}  # same thread count in every process: CPU kernels agree bit for bit
LOG, CKPT, EVAL = 2, 4, 6
STEPS = 12 * -(-(4 * KILLS + 4) // 12)  # ≈ 4 steps per kill, whole checkpoint and evaluation intervals: 24 for 5
WINDOW = {"step": 2 * CKPT, "eval": 2, "write:last.pt": 2, "rotate:last.pt": 2, "write:run.json": 4}
TIMING = {"perf/images_per_sec", "time/eval_seconds", "progress/train_seconds"}  # wall-clock: differ by nature


def experiment(tmp_path: Path, npz: Path) -> Path:
    """A tiny run with c10 metrics (FID, KID, IS, classes) every 6 steps and a checkpoint every 4."""
    return tiny_toml(tmp_path / "kills.toml", npz,
                     train={"steps": STEPS, "log_every": LOG, "image_every": 6, "checkpoint_every": CKPT},
                     metrics={"enabled": True, "extractors": ["c10"], "every": EVAL, "num_samples": 32,
                              "ref_samples": 64, "batch_size": 32})


def gan(*args, at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **ENV)
    env.pop("GAN_TEST_AT", None)
    if at:
        env["GAN_TEST_AT"] = at
    return subprocess.run([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def remaining(step: int) -> dict[str, int]:
    """How many times each moment surely comes between `step` and the end (more may: best.pt checkpoints)."""
    rest = range(step + 1, STEPS + 1)
    ckpts = sum(1 for s in rest if s % CKPT == 0 or s == STEPS)
    return {"step": len(rest), "eval": sum(1 for s in rest if s % EVAL == 0 or s == STEPS),
            "write:last.pt": ckpts, "rotate:last.pt": ckpts if step else ckpts - 1,
            "write:run.json": sum(1 for s in rest if s % LOG == 0)}


def first_after_checkpoint(moment: str) -> int:
    """A fresh run: the first occurrence of `moment` that comes after its first checkpoint (step 4)."""
    return {"step": CKPT + 1, "eval": 1, "write:last.pt": 2, "rotate:last.pt": 1, "write:run.json": 8}[moment]


def state_of(run: Path, name: str = "last.pt") -> dict:
    return checkpoint.load(run / "checkpoints" / name)


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    ea = events(run)
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"] if t not in TIMING}


@pytest.mark.long
def test_many_random_sigkills_then_resume_end_bit_identical(tmp_path, tiny_npz):
    seed = int(os.environ.get("GAN_KILLS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    exp = experiment(tmp_path, tiny_npz)
    ref = gan("train", exp, "--device", "cpu", "--logs", tmp_path / "ref")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    ref_run = next((tmp_path / "ref" / "tiny").iterdir())

    logs, run, step, plan = tmp_path / "cut", None, 0, []
    for k in range(KILLS):
        left = remaining(step)
        moment = rng.choice([m for m, n in left.items() if n >= (first_after_checkpoint(m) if run is None else 1)])
        lo = first_after_checkpoint(moment) if run is None else 1
        n = rng.randint(lo, min(left[moment], lo + WINDOW[moment] - 1))  # soon: the kills spread over the run
        at = f"{moment}@{n}"
        r = gan("train", exp, "--device", "cpu", "--logs", logs, at=at) if run is None else \
            gan("resume", run, "--device", "cpu", at=at)
        assert r.returncode == -9, (f"seed {seed}: attempt {k} ({at}) was not killed", r.returncode, r.stderr)
        run = run or next((logs / "tiny").iterdir())
        step = state_of(run)["step"]  # the checkpoint it resumes from: loadable after every kill
        plan.append(f"{at} -> resumes at {step}")
    r = gan("resume", run, "--device", "cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\n{KILLS} SIGKILLs (seed {seed}; GAN_KILLS_SEED={seed} repeats them):\n  " + "\n  ".join(plan))

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == STEPS and info["resumed"]
    a, b = state_of(ref_run), state_of(run)
    for part in ("G", "G_ema", "D", "opt_G", "opt_D", "sampler", "rng", "losses", "best", "step"):
        assert_same_tensors(a[part], b[part], part)
    metric = lambda h: [(s, {t: v for t, v in m.items() if t.startswith("metrics/")}) for s, m in h]  # noqa: E731
    assert metric(a["history"]) == metric(b["history"]) and len(a["history"]) == STEPS // EVAL
    assert_same_tensors(state_of(ref_run, "best.pt")["G"], state_of(run, "best.pt")["G"], "best.pt")
    sa, sb = scalars(ref_run), scalars(run)
    assert sorted(sa) == sorted(sb) and "metrics/fid_c10" in sa and "loss/D" in sa
    for t in sa:
        if t.startswith(SUMMARY):  # written at the very end: a run killed there writes it again, same values
            assert dict(sa[t]) == dict(sb[t]), t
        else:  # one point per step, no leftovers of the killed attempts
            assert sa[t] == sb[t], t
    leftovers = [p.name for p in run.rglob(".*") if ".tmp" in p.name or ".link" in p.name]
    assert not leftovers, leftovers


def test_rotation_after_a_kill_between_its_renames_leaves_no_stray_file(tmp_path):
    """Killed between the renames, last.pt and last.pt.prev are one file (two links); the next rotation must
    still leave exactly last.pt (new) and last.pt.prev (old), no link file (found by the 20-kill run)."""
    from gan import fileio

    last, prev = tmp_path / "last.pt", tmp_path / "last.pt.prev"
    last.write_bytes(b"old")
    os.link(last, prev)
    fileio.write_atomic(last, b"new", keep_previous=prev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.prev"]
    assert last.read_bytes() == b"new" and prev.read_bytes() == b"old"

"""A time-budgeted run keeps its promise on a slower machine (gan/schedule.py): its step schedules follow the steps the
budget reaches, said in one line; its ETA counts the evaluations to come. And the recipe levers a published figure
needs (linear lr decay, a larger G batch, dequantisation), and a resume's --set of a learning rate, take effect."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

from gan import config, schedule
from gan.engine import Trainer
from tests.conftest import events, tiny_toml


def _cfg(**train):
    t = dict(log_every=50, image_every=500, checkpoint_every=1000, minutes=10.0, tuned_steps=4000) | train
    return SimpleNamespace(train=SimpleNamespace(**t), metrics=SimpleNamespace(every=500, enabled=True),
                           optim=SimpleNamespace(ema_start=250))


def test_schedules_scale_to_the_steps_the_budget_reaches():
    s = schedule.Schedule.of(_cfg())
    assert s.every("metrics_every") == 500 and not s.measured(1, 0.5)  # the first step: only the mark
    assert not s.measured(3, 10.0)  # not long enough yet (30 s, or 5 % of the budget)
    assert s.measured(15, 31.0)
    scale, projected = s.calibrate(15, 31.0)  # 14 steps in 30.5 s: 0.46 steps/s
    assert projected == 15 + int(14 / 30.5 * (600 - 31.0)) and scale == pytest.approx(projected / 4000)
    s.adopt(scale, projected)
    assert [s.every(k) for k in schedule.NAMES] == [max(1, round(n * scale)) for n in (50, 500, 500, 1000)] + [
        round(250 * scale)]
    line = s.line("quick", 10)
    assert line.startswith("[yellow]warning: this machine makes about") and "fewer than quick was tuned for (4,000)" \
        in line and f"metrics every {s.every('metrics_every')}" in line
    assert s.due("metrics_every", s.every("metrics_every"), False) and not s.due("metrics_every", 1, False)
    assert s.due("metrics_every", 1, True)  # the final step always
    # the ETA: the budget's training time left, plus the evaluations still due at the last one's cost
    s.eval_s = 20.0
    e = s.every("metrics_every")
    end = s.total(15, 31.0, 1_000_000)
    assert s.left(15, 31.0, 1_000_000) == pytest.approx(600 - 31.0 + 20.0 * (end // e - 15 // e + 1))
    fast = schedule.Schedule.of(_cfg())
    fast.measured(1, 0.1)
    fast.adopt(*fast.calibrate(2001, 30.1))  # 66 steps/s: far more than tuned, the schedules stand
    assert fast.scale == 1.0 and fast.every("ema_start") == 250 and "its schedules stand" in fast.line("quick", 10)
    free = schedule.Schedule.of(_cfg(minutes=0.0))
    assert not free.measured(1, 1.0) and not free.measured(1000, 1000.0) and free.left(5, 5.0, 10) is None


def test_a_slow_machine_still_starts_its_ema_logs_metric_points_and_says_so(tmp_path, tiny_npz, monkeypatch):
    """`quick`'s shape (metrics every 500, EMA from 250, tuned for 4,000 steps) in a budget that reaches ~60 steps."""
    monkeypatch.setattr(schedule, "MEASURE_S", 0.5)

    def clock(self):  # every step costs 0.05 s of training time, whatever this machine's load: 60 steps in 3 s
        self.train_seconds += 0.05
        self.t_mark = time.perf_counter()

    monkeypatch.setattr(Trainer, "_clock", clock)
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz,
                    train={"steps": 1_000_000, "minutes": 0.05, "tuned_steps": 1000, "log_every": 50,
                           "image_every": 500, "checkpoint_every": 1000},
                    optim={"batch_size": 16, "ema_decay": 0.9, "ema_start": 250},
                    metrics={"enabled": True, "every": 500, "num_samples": 8, "ref_samples": 16, "is": False,
                             "kid": False, "extractors": ["c10"]})
    tr = Trainer(config.load(str(exp)), device="cpu", logs=tmp_path / "logs", quiet=True)
    said = []
    tr.log = lambda m, *a, **k: said.append(str(m))
    r = tr.run()
    assert r.status == "completed" and r.step in (60, 61), (r.step, said)  # 60 × 0.05 s, give or take rounding
    sched = json.loads((r.run_dir / "run.json").read_text())["schedule"]
    assert sched["scale"] < schedule.FAR and sched["tuned_steps"] == 1000 and sched["ema_start"] < r.step
    assert any("fewer than tiny was tuned for (1,000)" in m for m in said), said
    assert len(r.metrics) >= 2  # metric points before the end, not only the final one
    ea = events(r.run_dir)
    assert len(ea.Scalars("loss/D")) >= 5 and len(ea.Images("images/fake")) >= 2
    # the scale is kept in the checkpoint: a resume keeps the cadence
    from gan import checkpoint

    assert checkpoint.load(r.run_dir / "checkpoints" / "last.pt")["schedule"]["scale"] == sched["scale"]


def test_linear_lr_decay_g_batch_and_dequantisation(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 6, "log_every": 1},
                    data={"dequantize": True, "hflip": False},
                    optim={"batch_size": 4, "g_batch_size": 8, "lr_decay": "linear", "g_lr": 3e-4, "d_lr": 1e-4})
    tr = Trainer(config.load(str(exp)), device="cpu", logs=tmp_path / "logs", quiet=True)
    seen = {"G": [], "D": []}
    G, D = tr.nets.G_train, tr.nets.D_train
    tr.nets.G_train = lambda z, y=None: seen["G"].append(len(z)) or G(z, y)
    tr.nets.D_train = lambda x, y=None: seen["D"].append(x.detach().clone()) or D(x, y)
    r = tr.run()
    assert r.status == "completed"
    assert seen["G"][:2] == [4, 8]  # D's fake batch, then G's own, twice as large (no reused forward)
    real = seen["D"][0]  # the first D forward sees the real batch: dequantised off the 1/127.5 grid
    grid = (real + 1) * 127.5
    assert (grid - grid.floor()).abs().max() > 0.01 and ((grid - grid.floor()) < 127.5 / 128 + 1e-4).all()
    ea = events(r.run_dir)
    for tag, lr in (("lr/G", 3e-4), ("lr/D", 1e-4)):  # step s used the factor 1 - (s-1)/6
        assert [e.value for e in ea.Scalars(tag)] == pytest.approx([lr * (1 - (s - 1) / 6) for s in range(1, 7)])


def test_a_resumes_set_of_a_learning_rate_takes_effect(tmp_path, tiny_npz):
    """The optimiser's saved state holds its old learning rate; `gan resume --set optim.g_lr=…` must win over it."""
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 3, "log_every": 1})
    r = Trainer(config.load(str(exp)), device="cpu", logs=tmp_path / "logs", quiet=True).run()
    cfg = config.load(str(r.run_dir / "config.toml"), ["train.steps=5", "optim.g_lr=1e-3"])
    r2 = Trainer(cfg, device="cpu", resume=r.run_dir, quiet=True).run()
    assert r2.status == "completed"
    lrs = {e.step: e.value for e in events(r.run_dir).Scalars("lr/G")}
    assert lrs[3] == pytest.approx(2e-4) and lrs[4] == pytest.approx(1e-3) and lrs[5] == pytest.approx(1e-3)
    assert torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True)["opt_G"]["param_groups"][0]["lr"] \
        == pytest.approx(1e-3)

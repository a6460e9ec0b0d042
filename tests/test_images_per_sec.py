"""perf/images_per_sec is training images per training second: the time a run spends on grids, evaluations and
checkpoints is not in it, so the curve does not dip after each of them. Checked on the engine's own clock, made
deterministic: each training step takes 1 s, each grid and checkpoint 100 s (no timing in the test)."""
from __future__ import annotations

import types

import pytest

from gan import config
from tests.conftest import events, tiny_toml


def test_images_per_sec_counts_training_time_only(tmp_path, tiny_npz, monkeypatch):
    from gan import engine

    clock = [0.0]
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def costs(seconds, f):
        def timed(self, *a, **k):
            out = f(self, *a, **k)
            clock[0] += seconds
            return out
        return timed

    monkeypatch.setattr(engine.Trainer, "train_step", costs(1.0, engine.Trainer.train_step))
    monkeypatch.setattr(engine.Trainer, "_log_grids", costs(100.0, engine.Trainer._log_grids))
    monkeypatch.setattr(engine.Trainer, "_checkpoint", costs(100.0, engine.Trainer._checkpoint))
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 8, "log_every": 2, "image_every": 1,
                                                          "checkpoint_every": 3})
    cfg = config.load(str(exp))
    r = engine.Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "completed"
    rates = [(e.step, e.value) for e in events(r.run_dir).Scalars("perf/images_per_sec")]
    assert [s for s, _ in rates] == [2, 4, 6, 8]
    # 16 images per step, 1 training second per step: 16 img/s at every log point, grids and checkpoints or not
    assert all(v == pytest.approx(16.0) for _, v in rates), rates

"""What every section shares: the profile (how long to measure), the device, the data every run points at, a
throw-away folder for run folders and caches, the report, and what one section leaves for the next."""
from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gan import config
from gan.bench.report import Report
from gan.config import EXPERIMENTS_DIR

SHIPPED = tuple(sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml")))
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"


@contextlib.contextmanager
def env_at(key: str, path):
    """Environment variable `key` set to `path` meanwhile, then as it was."""
    old = os.environ.get(key)
    os.environ[key] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def cache_at(path):
    """The evaluator's reference cache in `path` (a fresh folder = the first run on a machine)."""
    return env_at("GAN_CACHE", path)


def inductor_cold(tmp: Path):
    """torch.compile's cache in a fresh folder: its warm-up is timed cold, as a first run pays it (inductor's cache
    would hide it on a rerun)."""
    return env_at("TORCHINDUCTOR_CACHE_DIR", Path(tmp) / "inductor")


@dataclass(frozen=True)
class Profile:
    name: str
    windows: int  # timed windows per contender (rounds: the samples a target's interval is made of)
    window_s: float  # target length of one window
    warm: int  # untimed steps per contender before the windows
    eval_ns: tuple  # evaluation sample counts timed
    eval_reps: int  # repetitions of each (interleaved): median shown, each a round of metrics_share's interval
    prc_n: int  # N of the precision/recall + class consistency check (and its reference size)
    ref_n: int  # reference images for the timed evaluations
    fid_n: int  # samples of the FID check
    fid_steps: int  # training steps of the G the FID check uses when the speed section left none
    compile: bool  # time torch.compile (its warm-up alone takes minutes on a CPU)
    exact_step_s: float  # a shipped experiment whose step would take longer is extrapolated from batch 8
    memory_steps: int
    shrink: tuple = ()  # overrides for every config (the smoke test: tiny nets)
    share_exps: tuple = SHIPPED  # experiments whose metrics share is estimated
    scale_counts: tuple = (10, 100, 1000)  # runs listed by the scale section
    scale_steps: int = 100_000  # each of `best`'s length
    scale_old: tuple = (10,)  # counts at which the listing before the index (TensorBoard's reader) is measured
    scale_rounds: int = 5  # warm repetitions (the samples of its targets)
    disk_steps: int = 10_000  # the disk section's synthetic runs: this long and twice as long


PROFILES = {
    "full": Profile("full", 7, 3.0, 2, (500, 1000, 2000), 3, 5000, 5000, 2000, 60, True, 20.0, 3),
    "quick": Profile("quick", 5, 2.0, 1, (500, 1000), 3, 5000, 2000, 1000, 30, False, 4.0, 2, scale_rounds=3),
    # seconds, for tests: tiny nets, a few steps; numbers meaningless
    "tiny": Profile("tiny", 2, 0.05, 1, (40, 80), 2, 80, 80, 80, 2, False, 5.0, 1,
                    ("model.g_channels=4", "model.d_channels=4", "optim.batch_size=16", "metrics.batch_size=40"), ("smoke",),
                    scale_counts=(2, 4), scale_steps=3000, scale_old=(2,), scale_rounds=1, disk_steps=1000),
}


def find_data(path: str | None, tmp: Path) -> tuple[list[str], str]:
    """Overrides that point every run at the same data: --data, else GAN_DATA_ROOT / the shared shards, else
    random uint8 images (timings hold, FIDs do not)."""
    if path:
        return ['data.dataset="npz"', f'data.path="{Path(path).resolve()}"'], f"npz {path} (--data)"
    root = Path(os.environ.get("GAN_DATA_ROOT") or DEFAULT_DATA)
    if glob.glob(str(root / "train-*.npz")) or (root / "cifar-10-batches-py").is_dir():
        return [f'data.root="{root}"'], f"CIFAR-10 from {root}"
    p = tmp / "random-uint8.npz"
    rng = np.random.default_rng(0)
    np.savez(p, images=rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 10, 10000, dtype=np.uint8))
    return (['data.dataset="npz"', f'data.path="{p}"'],
            f"RANDOM uint8 images (no CIFAR-10 at {root}; set GAN_DATA_ROOT or --data): timings hold, FIDs do not")


@dataclass
class Context:
    device: torch.device
    profile: Profile
    data_ov: list
    data_note: str
    tmp: Path
    report: Report
    args: object  # the parsed command line (section options)
    left: dict = field(default_factory=dict)  # what one section leaves for the next: trained G, step times

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def cfg(self, exp: str, overrides=()) -> config.Config:
        return config.load(exp, [*self.data_ov, *self.profile.shrink, *overrides])

    def trainer(self, exp: str, overrides=(), cfg=None):
        from gan.engine import Trainer

        return Trainer(cfg or self.cfg(exp, overrides), device=str(self.device), logs=self.tmp / "logs", quiet=True)

    def say(self, line: str) -> None:
        self.report.say(line)

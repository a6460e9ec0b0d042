"""Shared fixtures: tiny data made here, a calibrated random stand-in for the Inception weights, an
isolated cache, and helpers to run the CLI in-process or as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
HAVE_SHARED = bool(list(SHARED.glob("train-*.npz")))
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=f"no CIFAR-10 shards at {SHARED}")


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    """Tests never see the user's caches, weights or data root."""
    cache = tmp_path_factory.mktemp("cache")
    old = dict(os.environ)
    os.environ["GAN_CACHE"] = str(cache)
    os.environ["TORCH_HOME"] = str(cache / "torch")
    for k in ("GAN_INCEPTION_WEIGHTS", "GAN_DATA_ROOT"):
        os.environ.pop(k, None)
    os.environ["GAN_INCEPTION_URL"] = "http://127.0.0.1:9/no-network"  # a run's fetch fails at once: no download
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    os.environ.clear()
    os.environ.update(old)


def make_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random colour blobs: cheap, deterministic, and not pure noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    x = torch.from_numpy(small).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(p, images=make_images(192), labels=np.arange(192, dtype=np.uint8) % 10)
    return p


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory) -> Path:
    """Random Inception weights in the torchvision Inception3(num_classes=1008, aux_logits=False) layout that
    torch-fidelity's inception-v3-compat loads strictly. BatchNorm statistics are set from one batch so
    features are O(1) rather than 1e-9 (wiring and exactness checks only: never a quality number)."""
    import torchvision
    from torch_fidelity.utils import create_feature_extractor

    path = tmp_path_factory.mktemp("weights") / "inception-standin.pth"
    torch.manual_seed(0)
    m = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    torch.save(m.state_dict(), path)
    fe = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False, verbose=False,
                                  feature_extractor_weights_path=str(path))
    fe.train()
    for mod in fe.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
            mod.reset_running_stats()
    with torch.no_grad():
        fe(torch.from_numpy(make_images(8, seed=1)).permute(0, 3, 1, 2).contiguous())
    sd = fe.state_dict()
    m.load_state_dict(sd)  # same keys as torchvision's model, strictly
    torch.save(sd, path)
    return path


def tiny_toml(path: Path, npz: Path, **sections) -> Path:
    """A small, fast experiment file over `npz`; `sections` override keys: data={"hflip": False}."""
    base = {
        "experiment": {"name": "tiny", "seed": 0},
        "data": {"dataset": "npz", "path": str(npz)},
        "model": {"arch": "dcgan", "z_dim": 16, "g_channels": 8, "d_channels": 8},
        "loss": {"name": "hinge"},
        "optim": {"batch_size": 16, "ema_decay": 0.9},
        "train": {"steps": 6, "log_every": 2, "image_every": 3, "checkpoint_every": 3},
        "metrics": {"enabled": False},
    }
    for sec, vals in sections.items():
        base.setdefault(sec, {}).update(vals)
    from gan.tomlfile import value as _toml_value

    lines = []
    for sec, vals in base.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in vals.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def gan_cli(*args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """`python -m gan ARGS` as a user runs it: a real process, real exit code, real stderr."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "gan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd or ROOT, stdin=subprocess.DEVNULL)


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def hparams_tags(run_dir) -> set:
    try:
        return set(events(run_dir).PluginTagToContent("hparams"))
    except KeyError:
        return set()


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory, tiny_npz, standin_weights):
    """Experiment `tiny`, seeds 0 and 1, 6 steps, metrics at steps 3 and 6 (c10 when its weights are packaged,
    else Inception with the stand-in weights); layout/hparams as the engine writes them at start/end. Shared by
    the run, compare, leaderboard and evaluate tests: tests that change a run work on a copy (`copy_run`).
    Returns (logs, [run dirs], the primary FID tag)."""
    from gan import config
    from gan.engine import Trainer
    from gan.features import WEIGHTS as C10_WEIGHTS

    root = tmp_path_factory.mktemp("runs")
    c10 = C10_WEIGHTS.is_file()
    metrics = {"enabled": True, "every": 3, "num_samples": 6, "ref_samples": 8, "batch_size": 16, "is": False,
               "extractors": ["c10"] if c10 else ["inception"]}
    if not c10:
        metrics["inception_weights"] = str(standin_weights)
    dirs, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine: one intra-op thread is faster for these tiny nets
    try:
        for seed in (0, 1):
            cfg = config.load(str(tiny_toml(root / f"s{seed}.toml", tiny_npz, experiment={"seed": seed},
                                            metrics=metrics)))
            r = Trainer(cfg, device="cpu", logs=root / "logs", quiet=True).run()
            assert r.status == "completed"
            assert hparams_tags(r.run_dir)  # the engine writes layout and hparams itself
            dirs.append(r.run_dir)
    finally:
        torch.set_num_threads(threads)
    if c10:
        return root / "logs", dirs, "metrics/fid_c10"
    from gan.fileio import sha256_file

    return root / "logs", dirs, f"metrics/fid_inception_{sha256_file(standin_weights)[:8]}"  # never metrics/fid


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run folder at `dest` (its own experiment/run id when `dest` is logs/<exp>/<id>)."""
    import shutil

    shutil.copytree(run, dest)
    return dest


def edit_run_json(run: Path, change) -> dict:
    """Rewrite a run's run.json through `change(dict)`; returns the new content."""
    import json

    p = Path(run) / "run.json"
    d = json.loads(p.read_text())
    change(d)
    p.write_text(json.dumps(d))
    return d

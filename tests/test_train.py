"""End to end: a short run on tiny data leaves events, grids, checkpoints and run.json; seeds repeat;
our FID is torch-fidelity's FID."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gan import config
from gan.engine import Trainer
from tests.conftest import SHARED, events, gan_cli, make_images, needs_shared, tiny_toml


def train_tiny(tmp_path, npz, name="run", **sections):
    cfg = config.load(str(tiny_toml(tmp_path / f"{name}.toml", npz, **sections)))
    return Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()


def test_cli_run_leaves_events_grids_checkpoint_and_run_json(tmp_path, tiny_npz, standin_weights):
    from gan.fileio import sha256_file

    STANDIN = f"_inception_{sha256_file(standin_weights)[:8]}"
    exp = tiny_toml(tmp_path / "tiny.toml", tiny_npz,
                    metrics={"enabled": True, "every": 3, "num_samples": 12, "ref_samples": 16, "batch_size": 16,
                             "extractors": ["inception"], "inception_weights": str(standin_weights)},
                    train={"save_png": True})
    r = gan_cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.returncode == 0, r.stdout + r.stderr
    run = next((tmp_path / "logs" / "tiny").iterdir())
    assert "completed at step 6" in r.stdout and "tensorboard --logdir" in r.stdout
    ea = events(run)
    tags = ea.Tags()
    # a stand-in is not the standard Inception: its numbers get their own tag, never metrics/fid
    fid, kid = f"metrics/fid{STANDIN}", f"metrics/kid{STANDIN}"
    assert not {"metrics/fid", "metrics/kid", "metrics/is"} & set(tags["scalars"])
    assert "not the standard pt_inception-2015-12-05" in " ".join(r.stdout.split())
    for t in ("loss/D", "loss/G", "loss/D_real", "loss/D_fake", "lr/G", "perf/images_per_sec", fid, kid):
        assert t in tags["scalars"], t
        assert all(math.isfinite(e.value) for e in ea.Scalars(t))
    assert [e.step for e in ea.Scalars("loss/D")] == [2, 4, 6]
    assert [e.step for e in ea.Scalars(fid)] == [3, 6]
    assert ea.Scalars(fid)[-1].value > 0
    assert {"images/real", "images/fake"} <= set(tags["images"])
    assert [e.step for e in ea.Images("images/fake")] == [3, 6]
    from PIL import Image
    import io

    img = Image.open(io.BytesIO(ea.Images("images/fake")[-1].encoded_image_string))
    assert img.size == (8 * 34 + 2, 8 * 34 + 2)  # 64 images of 32 px, 2 px padding
    png = Image.open(run / "results" / "fake_0000006.png")
    assert png.size == img.size and np.asarray(png).std() > 0
    assert "config" in str(ea.Tags().get("tensors", [])) or "config/text_summary" in tags["tensors"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 6 and info["seed"] == 0
    assert info["versions"]["torch"] == torch.__version__
    proto = info["metrics_protocol"][0]
    assert proto["extractor"] == "inception" and proto["num_samples"] == 12 and proto["reference_samples"] == 16
    assert len(proto["weights_sha256"]) == 64
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == 6 and {"G", "D", "G_ema", "opt_G", "opt_D", "rng", "sampler"} <= set(ck)
    assert (run / "checkpoints" / "best.pt").is_file()
    assert config.load(str(run / "config.toml")).model.z_dim == 16


def test_same_seed_same_losses_other_seed_differs(tmp_path, tiny_npz):
    a = train_tiny(tmp_path, tiny_npz, "a")
    b = train_tiny(tmp_path, tiny_npz, "b")
    c = train_tiny(tmp_path, tiny_npz, "c", experiment={"seed": 1})
    assert a.losses == b.losses and len(a.losses) == 3
    assert a.losses != c.losses
    assert a.run_dir != b.run_dir  # never overwritten


def test_fid_kid_equal_torch_fidelity(tmp_path, standin_weights):
    """Our metric path (features on the device, cached reference) gives torch-fidelity's numbers."""
    import torch_fidelity

    from gan.config import Metrics
    from gan.metrics.evaluator import Evaluator

    ref = torch.from_numpy(make_images(24, seed=3)).permute(0, 3, 1, 2).contiguous()
    fake = torch.from_numpy(make_images(20, seed=4)).permute(0, 3, 1, 2).contiguous()
    m = Metrics(extractors=["inception"], inception_weights=str(standin_weights), batch_size=8, is_=True, prc=True)
    ours = Evaluator(m, ref, torch.device("cpu"), z_dim=8, log=lambda *a: None).score_images(fake).values

    class DS(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    theirs = torch_fidelity.calculate_metrics(
        input1=DS(fake), input2=DS(ref), fid=True, kid=True, isc=True, prc=True, cuda=False, batch_size=8, verbose=False,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(standin_weights),
        kid_subset_size=20, save_cpu_ram=True, cache=False)
    from gan.fileio import sha256_file

    sfx = f"_inception_{sha256_file(standin_weights)[:8]}"  # a stand-in's numbers never use the standard tags
    assert set(ours) == {f"metrics/{m}{sfx}" for m in ("fid", "kid", "is", "precision", "recall")}
    for mine, theirs_key in (("fid", "frechet_inception_distance"), ("kid", "kernel_inception_distance_mean"),
                             ("is", "inception_score_mean"), ("precision", "precision"), ("recall", "recall")):
        assert math.isfinite(ours[f"metrics/{mine}{sfx}"]), mine  # a missing or NaN metric is a failure
        assert ours[f"metrics/{mine}{sfx}"] == pytest.approx(theirs[theirs_key], rel=1e-6), mine
    assert ours[f"metrics/fid{sfx}"] > 0 and ours[f"metrics/is{sfx}"] > 1.0


def test_reference_statistics_are_cached_by_content(tmp_path, standin_weights):
    from gan.config import Metrics
    from gan.metrics.evaluator import Evaluator

    ref = torch.from_numpy(make_images(16, seed=5)).permute(0, 3, 1, 2).contiguous()
    m = Metrics(extractors=["inception"], inception_weights=str(standin_weights), batch_size=16)
    logs = []
    Evaluator(m, ref, torch.device("cpu"), 8, log=logs.append)
    Evaluator(m, ref, torch.device("cpu"), 8, log=logs.append)
    changed = ref.clone()
    changed[0, 0, 0, 0] ^= 1  # one pixel: a different reference set
    Evaluator(m, changed, torch.device("cpu"), 8, log=logs.append)
    assert "images in" in logs[0] and "cached" in logs[1] and "images in" in logs[2], logs


def test_missing_inception_weights_said_once_and_run_goes_on(tmp_path, tiny_npz):
    r = gan_cli("train", tiny_toml(tmp_path / "t.toml", tiny_npz,
                                   metrics={"enabled": True, "extractors": ["inception"], "num_samples": 8}),
                "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("inception: skipped") == 1 and "GAN_INCEPTION_WEIGHTS" in r.stdout
    run = next((tmp_path / "logs" / "tiny").iterdir())
    assert not [t for t in events(run).Tags()["scalars"] if t.startswith("metrics/")]


def test_batch_larger_than_dataset_fails_before_any_folder(tmp_path, tiny_npz):
    r = gan_cli("train", tiny_toml(tmp_path / "t.toml", tiny_npz, optim={"batch_size": 500}),
                "--logs", tmp_path / "logs")
    assert r.returncode == 2 and "larger than the dataset (192 images" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "logs").exists()


@needs_shared
def test_smoke_on_shared_cifar10_logs_c10_metrics_and_says_inception_skipped(tmp_path):
    """Issue acceptance: offline, without Inception weights, smoke logs finite fid/kid/is_c10 and says why
    Inception was skipped (shortened: 20 steps, metrics on 200 samples vs 2000 images)."""
    r = gan_cli("train", "smoke", "--set", "train.steps=20", "--set", "metrics.every=10",
                "--set", "metrics.num_samples=200", "--logs", tmp_path / "logs", env={"GAN_DATA_ROOT": str(SHARED)})
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert out.count("inception: skipped, no Inception weights") == 1, out
    assert "c10: on" in out
    run = next((tmp_path / "logs" / "smoke").iterdir())
    ea = events(run)
    for tag in ("metrics/fid_c10", "metrics/kid_c10", "metrics/is_c10"):
        vals = ea.Scalars(tag)
        assert [e.step for e in vals] == [10, 20] and all(math.isfinite(e.value) for e in vals), tag
    assert not {"metrics/fid", "metrics/kid", "metrics/is"} & set(ea.Tags()["scalars"])
    info = json.loads((run / "run.json").read_text())
    n_shared = sum(len(np.load(f)["labels"]) for f in sorted(SHARED.glob("train-*.npz")))
    assert info["data"] == f"cifar10 {SHARED} ({n_shared} images)", info["data"]
    assert info["metrics_protocol"][0]["extractor"] == "c10" and info["metrics_protocol"][0]["num_samples"] == 200

"""The offline c10 feature extractor: registration, shapes, packaged weights and their record, its training
loop, the held-out reference, and that its FID means something."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_featuresdict_to_metric

from gan import c10_train, features
from gan.device import bf16_supported
from gan.errors import GanError
from gan.features import FeatureExtractorC10
from gan.metrics import extractors, scores

ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """../shared/data/cifar10 beside this checkout, or beside the main checkout when this is a git worktree
    (its .git file points into <main>/.git/worktrees/<name>)."""
    here = ROOT.parent / "shared" / "data" / "cifar10"
    git = ROOT / ".git"
    if here.is_dir() or not git.is_file() or not git.read_text().startswith("gitdir:"):
        return here
    main = Path(git.read_text().split(":", 1)[1].strip()).parents[2]
    return main.parent / "shared" / "data" / "cifar10"


SHARED = _shared()
needs_data = pytest.mark.skipif(
    not (SHARED / "test-00.npz").is_file() or not (SHARED / "train-00.npz").is_file(),
    reason=f"CIFAR-10 shards not found under {SHARED}",
)
needs_all_shards = pytest.mark.skipif(
    not all((SHARED / f"train-{k:02d}.npz").is_file() for k in range(10)) or not (SHARED / "test-00.npz").is_file(),
    reason=f"CIFAR-10 train-00..09 and test-00 not all under {SHARED}",
)
RECORD = features.card()


def _nchw(path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from gan.data import load_npz

    x, y = load_npz(str(path))
    return torch.from_numpy(x[:n]).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y[:n].astype("int64"))


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractorC10:
    return FeatureExtractorC10("c10", ["feat", "logits"])


def test_register_is_idempotent_and_real():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    features.register()
    features.register()
    assert FEATURE_EXTRACTORS_REGISTRY["c10"] is FeatureExtractorC10


@pytest.mark.parametrize("size", [32, 64])
def test_feature_shapes(extractor, size):
    x = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feat, logits = extractor(x)
    assert feat.shape == (5, 192) and feat.dtype == torch.float32
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    # Features come back in the requested order.
    swapped = FeatureExtractorC10("c10", ["logits", "feat"])(x)
    assert torch.equal(swapped[0], logits) and torch.equal(swapped[1], feat)


def test_rejects_float_input(extractor):
    with pytest.raises(ValueError, match="Expecting image as torch.Tensor with dtype=torch.uint8"):
        extractor(torch.rand(2, 3, 32, 32))


def test_packaged_weights_match_their_record():
    assert features.weights_sha256() == RECORD["sha256"]
    assert features.WEIGHTS.stat().st_size == RECORD["bytes"] <= 2 * 1024 * 1024
    net = features.load_c10()
    assert features.count_macs(net) == RECORD["macs_per_image"]
    assert sum(p.numel() for p in net.parameters()) == RECORD["params"]
    # The record says how to reproduce the weights and which images they saw.
    assert RECORD["command"].startswith("gan features train ") and f"--epochs {RECORD['epochs']}" in RECORD["command"]
    assert RECORD["train_shards"] == [f"train-{k:02d}.npz" for k in range(9)] and RECORD["train_images"] == 45000
    assert RECORD["heldout_shards"] == ["train-09.npz"]
    assert isinstance(RECORD["bf16"], bool) and RECORD["torch"] and RECORD["cpu"]


@needs_all_shards
def test_recorded_content_hashes_match_the_shards():
    from gan.data import load_npz

    assert features.images_sha256(load_npz(str(SHARED / "train-0[0-8].npz"))[0]) == RECORD["train_sha256"]
    assert features.images_sha256(load_npz(str(SHARED / "train-09.npz"))[0]) == RECORD["heldout_sha256"]


@needs_data
def test_images_sha256_is_the_provenance_content_hash():
    from gan.data import load_npz

    if not all((SHARED / f"train-{k:02d}.npz").is_file() for k in range(3)):
        pytest.skip("train-00..02 not all present")
    x, _ = load_npz(str(SHARED / "train-0[0-2].npz"))  # PROVENANCE.txt: images 0..14,999 as one uint8 buffer
    assert features.images_sha256(x) == "f20e334b53ac70556bf5720256f2eecc500d6be3526a57d4e773ba4bb2e12a9d"
    with pytest.raises(GanError, match="expected uint8"):
        features.images_sha256(x.astype(np.float32))


def test_bn_folding_keeps_outputs():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = features.load_c10()(x)
        fused = features.fold_bn(features.load_c10())(x)
    for a, b in zip(ref, fused):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_data
def test_heldout_accuracy(extractor):
    x, y = _nchw(SHARED / "test-00.npz", 1000)
    logits = features.extract(extractor, x)["logits"]
    acc = (logits.argmax(1) == y).float().mean().item()
    assert acc >= 0.90, f"held-out accuracy {acc:.3f} on the 1,000 images of test-00.npz"
    assert acc == pytest.approx(RECORD["accuracy"], abs=0.002)  # BN folding may flip a borderline image, no more


@needs_all_shards
def test_heldout_reference_is_the_shard_c10_never_saw(tmp_path):
    x, why = features.heldout_reference(str(SHARED))
    assert x is not None, why
    assert x.shape == (5000, 3, 32, 32) and x.dtype == torch.uint8 and "train-09.npz" in why
    assert features.images_sha256(x.permute(0, 2, 3, 1).contiguous().numpy()) == RECORD["heldout_sha256"]

    none, why = features.heldout_reference(str(tmp_path))
    assert none is None and "train-09.npz" in why and "\n" not in why
    np.savez(tmp_path / "train-09.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    none, why = features.heldout_reference(str(tmp_path))
    assert none is None and "content sha256" in why


@needs_data
@pytest.mark.long
def test_distortions_rank_as_expected():
    x, _ = _nchw(SHARED / "train-00.npz", 1000)
    fid = dict(features.distortion_table(x, 500, log=lambda *a: None))
    assert fid["real vs real (disjoint)"] < fid["blur sigma 1"] < fid["blur sigma 2"]
    assert fid["noise std 16"] < fid["noise std 32"] < fid["uniform noise images"]
    assert fid["real vs real (disjoint)"] < min(v for k, v in fid.items() if k != "real vs real (disjoint)")


class _Images(torch.utils.data.Dataset):
    """The minimal torch-fidelity input: uint8 CHW tensors."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_calculate_metrics_uses_c10(extractor):
    import torch_fidelity

    features.register()
    if (SHARED / "train-00.npz").is_file():
        x, _ = _nchw(SHARED / "train-00.npz", 400)
    else:
        x = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = x[:200], x[200:]
    m = torch_fidelity.calculate_metrics(
        input1=_Images(a), input2=_Images(b), fid=True, isc=True, kid=True, kid_subset_size=100,
        feature_extractor="c10", cuda=False, verbose=False, cache=False,
    )
    ext = extractors.load("c10", str(features.WEIGHTS), torch.device("cpu"))  # what a run's metrics use
    fb = ext.features(b, 100)
    ours, _, _ = scores.compute(ext, ext.features(a, 100), {"features": fb, **scores.fid_statistics(ext, fb)},
                                {"fid": True})
    assert m["frechet_inception_distance"] == pytest.approx(ours["fid"], rel=1e-6)
    assert "kernel_inception_distance_mean" in m
    # IS comes from c10's logits of input1, with torch-fidelity's defaults (10 splits, shuffled, seed 2020).
    own_is = isc_featuresdict_to_metric(features.extract(extractor, a), "logits", **IS_KW)
    assert m["inception_score_mean"] == pytest.approx(own_is["inception_score_mean"], rel=1e-6)


IS_KW = {"isc_splits": 10, "samples_shuffle": True, "rng_seed": 2020, "verbose": False}


@needs_data
def test_inception_score_separates_real_from_noise(extractor):
    x, _ = _nchw(SHARED / "train-00.npz", 500)
    noise = torch.randint(0, 256, x.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    real = isc_featuresdict_to_metric(features.extract(extractor, x), "logits", **IS_KW)["inception_score_mean"]
    fake = isc_featuresdict_to_metric(features.extract(extractor, noise), "logits", **IS_KW)["inception_score_mean"]
    assert real > 2 * fake and real > 4.0, (real, fake)  # 10 classes: IS of real CIFAR-10 is close to 10


def test_augment_is_crop_then_flip():
    gen = torch.Generator().manual_seed(0)
    x_pad = torch.randint(0, 256, (10, 3, 40, 40), dtype=torch.uint8, generator=gen)
    idx, dx, dy = torch.tensor([3, 1, 7, 3]), torch.tensor([0, 8, 5, 2]), torch.tensor([2, 0, 8, 4])
    flip = torch.tensor([True, False, True, False])
    ref = torch.stack([x_pad[i, :, dy[k] : dy[k] + 32, dx[k] : dx[k] + 32] for k, i in enumerate(idx.tolist())])
    ref = torch.where(flip.view(-1, 1, 1, 1), ref.flip(3), ref)
    assert torch.equal(c10_train.augment(x_pad, idx, dx, dy, flip), ref)


def test_training_is_deterministic_and_recorded(tiny_npz, tmp_path):
    recipe = c10_train.Recipe(batch=32)
    a = c10_train.train(str(tiny_npz), None, 1, 0, tmp_path / "a.pt", recipe=recipe, command="x", log=lambda *_: None)
    b = c10_train.train(str(tiny_npz), None, 1, 0, tmp_path / "b.pt", recipe=recipe, command="x", log=lambda *_: None)
    assert a["sha256"] == b["sha256"] == features.weights_sha256(tmp_path / "a.pt")
    assert a["bf16"] == bf16_supported(torch.device("cpu"))[0] and a["train_images"] == 192 - 19 and a["epochs"] == 1
    assert a["heldout_shards"] == [] and a["heldout_sha256"] is None  # no train-*.npz beside tiny.npz
    features.load_c10(tmp_path / "a.pt")  # loads as a C10Net
    with pytest.raises(GanError, match="fewer than one batch"):
        c10_train.train(str(tiny_npz), None, 1, 0, tmp_path / "c.pt", log=lambda *_: None)


def test_cli_train_never_overwrites(tiny_npz, tmp_path):
    from typer.testing import CliRunner

    from gan.cli import app

    for existing in ("w.pt", "w.json"):
        (tmp_path / existing).write_text("keep")
        r = CliRunner().invoke(app, ["features", "train", "--data", str(tiny_npz), "--epochs", "1",
                                     "--out", str(tmp_path / "w.pt")])
        assert r.exit_code == 2 and "exists" in r.output
        assert (tmp_path / existing).read_text() == "keep"
        (tmp_path / existing).unlink()

"""The offline c10 feature extractor: registration, shapes, packaged weights, and that its FID means something."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan import features
from gan.features import FeatureExtractorC10

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
needs_data = pytest.mark.skipif(
    not (SHARED / "test-00.npz").is_file() or not (SHARED / "train-00.npz").is_file(),
    reason=f"CIFAR-10 shards not found under {SHARED}",
)


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
    with pytest.raises(Exception):
        extractor(torch.rand(2, 3, 32, 32))


def test_packaged_weights_match_their_record():
    record = json.loads((features.WEIGHTS.parent / "c10.json").read_text())
    assert features.weights_sha256() == record["sha256"]
    assert features.WEIGHTS.stat().st_size == record["bytes"] <= 2 * 1024 * 1024


def test_bn_folding_keeps_outputs():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = features.load_c10()(x)
        fused = features.fold_bn(features.load_c10())(x)
    for a, b in zip(ref, fused):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_data
def test_heldout_accuracy(extractor):
    x, y = _nchw(SHARED / "test-00.npz", 500)
    logits = features.extract(extractor, x)["logits"]
    acc = (logits.argmax(1) == y).float().mean().item()
    assert acc >= 0.80, f"held-out accuracy {acc:.3f} on the first 500 of test-00.npz"


@needs_data
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
    ours = features.fid_c10(extractor, a, b)
    assert m["frechet_inception_distance"] == pytest.approx(ours, rel=1e-6)
    assert m["inception_score_mean"] > 1.0 and "kernel_inception_distance_mean" in m

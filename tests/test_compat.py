"""What this project relies on in other libraries' internals (gan/compat.py), pinned: a release that moves or
changes one of them fails here, not in a user's run. Each check compares with plain numpy/scipy/torch."""
from __future__ import annotations

import importlib.metadata as md
import re

import numpy as np
import pytest
import scipy.linalg
import torch

from gan import compat
from tests.conftest import ROOT


def _feats(n: int, d: int = 8, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_fid_statistics_and_distance_are_the_textbook_ones():
    a, b = _feats(300), _feats(200, seed=1, shift=0.5)
    st_a, st_b = compat.fid_statistics({"f": a}, "f"), compat.fid_statistics({"f": b}, "f")
    assert np.allclose(st_a["mu"], a.numpy().mean(0)) and np.allclose(st_a["sigma"], np.cov(a.numpy(), rowvar=False))
    covmean = scipy.linalg.sqrtm(st_a["sigma"] @ st_b["sigma"]).real
    want = ((st_a["mu"] - st_b["mu"]) ** 2).sum() + np.trace(st_a["sigma"] + st_b["sigma"] - 2 * covmean)
    assert compat.fid(st_a, st_b) == pytest.approx(want, rel=1e-6)
    assert compat.fid(st_a, st_a) == pytest.approx(0.0, abs=1e-6)


def test_kid_and_is_keys_and_values():
    a, b = _feats(120).float(), _feats(120, seed=1, shift=1.0).float()
    kw = dict(verbose=False, kid_subset_size=50, kid_subsets=10, rng_seed=1)
    same, far = compat.kid({"f": a}, {"f": a}, "f", **kw), compat.kid({"f": a}, {"f": b}, "f", **kw)
    assert set(same) == {compat.KEY_KID, compat.KEY_KID_STD}
    assert abs(same[compat.KEY_KID]) < 0.5 < 5 < far[compat.KEY_KID]  # unbiased MMD²: ≈ 0 for one set, ≫ 0 apart
    uniform = torch.zeros(100, 10)  # every sample equally unsure of every class: IS exactly 1
    confident = torch.eye(10).repeat(10, 1) * 50  # every class, each sure: IS = the number of classes
    isc = lambda x: compat.isc({"l": x}, "l", verbose=False, isc_splits=2, samples_shuffle=False, rng_seed=1)  # noqa
    assert set(isc(uniform)) == {compat.KEY_IS, compat.KEY_IS_STD}
    assert isc(uniform)[compat.KEY_IS] == pytest.approx(1.0) and isc(confident)[compat.KEY_IS] == pytest.approx(10.0)


def test_cdist_part_is_torch_cdist_in_parts():
    a, b = _feats(7).float(), _feats(23, seed=2).float()
    assert torch.allclose(compat.cdist_part(a, b, 5), torch.cdist(a, b))


def test_feature_extractor_factory_registry_and_url(standin_weights):
    fe = compat.create_feature_extractor("inception-v3-compat", ["2048", "logits_unbiased"], str(standin_weights))
    out = fe(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert [tuple(t.shape) for t in out] == [(2, 2048), (2, 1008)]

    from torch_fidelity import FeatureExtractorBase

    class Fake(FeatureExtractorBase):
        pass

    compat.register_feature_extractor("gan-test-fake", Fake)
    compat.register_feature_extractor("gan-test-fake", Fake)  # the second time: no error
    assert compat.inception_url().endswith("/weights-inception-2015-12-05-6726825d.pth")


def test_torch_ops():
    assert isinstance(compat.mkldnn_bf16_supported(), bool)
    t, s = [torch.zeros(3), torch.ones(2)], [torch.ones(3) * 4, torch.zeros(2)]
    compat.foreach_lerp_(t, s, 0.25)
    assert torch.equal(t[0], torch.ones(3)) and torch.equal(t[1], torch.full((2,), 0.75))
    g = torch.Generator().manual_seed(0)
    for transposed in (False, True):
        x = torch.randn(2, 4, 6, 6, generator=g, requires_grad=True)
        w = torch.randn(4, 5, 4, 4, generator=g) if transposed else torch.randn(5, 4, 4, 4, generator=g)
        y = (torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d)(x, w, None, 2, 1)
        gy = torch.randn(y.shape, generator=g)
        (want,) = torch.autograd.grad(y, x, gy)
        assert torch.allclose(compat.conv_input_grad(gy, x.detach(), w, 2, 1, transposed), want, atol=1e-5)


def test_the_installed_versions_are_within_the_bounds_pyproject_sets():
    """The upper bounds name the versions these tests cover: the installed ones must lie within them."""
    deps = re.findall(r'"(torch|torch-fidelity)(>=[^,"]+),<([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert {d[0] for d in deps} == {"torch", "torch-fidelity"}
    for name, _, upper in deps:
        have = tuple(int(x) for x in re.findall(r"\d+", md.version(name))[:2])
        assert have < tuple(int(x) for x in upper.split(".")[:2]), (name, md.version(name), upper)
    assert "torch_fidelity" not in compat.__dict__  # imports only on first use

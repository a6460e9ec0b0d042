"""Shape / range / gradient contract of every registered G/D pair, and pinned parameter counts."""
import pytest
import torch
from torch.nn.utils import parametrize

from gan.config import Model
from gan.models import ARCHES, build, count_params

# (arch, image_size) -> (G params, D params) at the default Model() (z=100, 64 channels, no SN/BN/dropout).
# Changing an architecture changes these; update them (and the README table) on purpose.
PARAMS = {
    ("dcgan", 32): (1_068_928, 662_977),
    ("dcgan", 64): (3_576_704, 2_764_737),
    ("sngan_cnn", 32): (3_584_003, 5_860_865),
    ("wgan_cnn", 32): (3_584_003, 5_860_865),
    ("sngan_resnet", 32): (4_162_051, 1_053_824),
    ("basic", 32): (1_050_883, 389_441),
    ("dcgan_upsample", 32): (1_076_419, 662_977),
    ("dcgan_fc", 32): (4_971_075, 4_855_233),
}
CASES = [(a, s) for a, spec in ARCHES.items() for s in spec.sizes]
NO_SN = {"wgan_cnn"}  # WGAN-GP critic: never spectrally normalised


def _n_parametrized(m: torch.nn.Module) -> int:
    return sum(parametrize.is_parametrized(x) for x in m.modules())


@pytest.mark.parametrize("arch,size", CASES)
def test_contract(arch, size):
    torch.manual_seed(0)
    cfg = Model(arch=arch)
    g, d = build(cfg, size)
    z = torch.randn(3, cfg.z_dim)
    x = g(z)
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x)
    assert logits.shape == (3,)
    logits.mean().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("arch,size", CASES)
def test_spectral_norm(arch, size):
    _, d_plain = build(Model(arch=arch), size)
    assert _n_parametrized(d_plain) == 0
    _, d = build(Model(arch=arch, spectral_norm=True), size)
    if arch in NO_SN:
        assert _n_parametrized(d) == 0
    else:
        assert _n_parametrized(d) > 0
        assert d(torch.rand(2, 3, size, size) * 2 - 1).shape == (2,)


@pytest.mark.parametrize("arch", ["sngan_cnn", "basic", "dcgan_upsample", "dcgan_fc"])
def test_init_survives_spectral_norm(arch):
    # N(0, 0.02) must reach the stored weight, not a computed copy of it.
    torch.manual_seed(0)
    _, d = build(Model(arch=arch, spectral_norm=True), 32)
    w = next(m for m in d.modules() if parametrize.is_parametrized(m)).parametrizations.weight.original
    assert 0.015 < w.std().item() < 0.025


@pytest.mark.parametrize("arch", ["basic", "dcgan_upsample", "dcgan_fc"])
def test_reference_d_options(arch):
    # The reference experiments set dropout / BatchNorm in D; both must be wired in.
    _, d = build(Model(arch=arch, d_batchnorm=True, dropout=0.25), 32)
    kinds = {type(m) for m in d.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.Dropout in kinds


def test_param_table_covers_registry():
    assert set(PARAMS) == set(CASES)


@pytest.mark.parametrize("arch,size", sorted(PARAMS))
def test_param_counts(arch, size):
    cfg = Model(arch=arch)
    assert (cfg.z_dim, cfg.g_channels, cfg.d_channels) == (100, 64, 64)
    assert not (cfg.spectral_norm or cfg.d_batchnorm or cfg.dropout)
    g, d = build(cfg, size)
    assert (count_params(g), count_params(d)) == PARAMS[(arch, size)]

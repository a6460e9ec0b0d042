"""The speed levers that keep a run's computation: dense-in-disguise convolutions as one GEMM (train.dense_gemm)
and small-map weight gradients as one GEMM (train.wgrad_gemm). Each must give what it replaces: the same function
and gradients to rounding, the same checkpoints, exactly one spectral-norm power iteration per forward, and an off
switch that really turns it off."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from gan import config
from gan.engine import Trainer
from gan.models import build, gemm
from tests.conftest import tiny_toml

# (layer, input shape): G's first layer, the reference G's (with bias), D's last (with bias), one without bias
DENSE = [
    (lambda: gemm.ConvTranspose2d(16, 24, 4, 1, 0, bias=False), (5, 16, 1, 1)),
    (lambda: gemm.ConvTranspose2d(16, 24, 4, 1, 0), (5, 16, 1, 1)),
    (lambda: gemm.Conv2d(24, 1, 4, 1, 0), (5, 24, 4, 4)),
    (lambda: gemm.Conv2d(24, 3, 4, 1, 0, bias=False), (5, 24, 4, 4)),
]


def ops(fn) -> dict:
    """{op name: FLOPs} that torch counts for fn(): which kernels ran."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return {str(k).removeprefix("aten.").split(".")[0]: v for k, v in fc.get_flop_counts()["Global"].items()}


def forward_backward(m, x):
    """Output, input gradient and the stored weight's gradient (under spectral norm: the parametrization's leaf)."""
    x = x.clone().requires_grad_(True)
    y = m(x)
    y.square().sum().backward()
    leaf = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
    return y.detach(), x.grad, leaf.grad


@pytest.mark.parametrize("make,shape", DENSE)
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("sn", [False, True])
def test_a_dense_layer_as_one_gemm_gives_the_convolution(make, shape, fmt, sn):
    torch.manual_seed(0)
    conv = make().to(memory_format=fmt)
    if sn:
        conv = nn.utils.parametrizations.spectral_norm(conv)
    fast = copy.deepcopy(conv)
    gemm.configure(conv, dense=False)
    x = torch.randn(shape).contiguous(memory_format=fmt)
    y0, gx0, gw0 = forward_backward(conv, x)
    y1, gx1, gw1 = forward_backward(fast, x)
    assert y1.shape == y0.shape and y1.dtype == y0.dtype
    for a, b in ((y1, y0), (gx1, gx0), (gw1, gw0)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the switch decides the kernel: one matmul on, a convolution off
    assert set(ops(lambda: fast(x))) <= {"mm", "addmm", "mv"} and "convolution" in ops(lambda: conv(x))
    if fmt == torch.channels_last and y1.shape[-1] > 1:
        assert y1.is_contiguous(memory_format=torch.channels_last)  # the next layer gets the layout it expects


def test_other_inputs_take_the_convolution_and_bf16_autocast_gives_bf16_like_it():
    torch.manual_seed(0)
    for m, x in ((gemm.ConvTranspose2d(8, 6, 4, 1, 0), torch.randn(2, 8, 2, 2)),  # not 1×1: a real conv
                 (gemm.Conv2d(8, 6, 4, 1, 0), torch.randn(2, 8, 6, 6)),  # kernel smaller than the map
                 (gemm.Conv2d(8, 6, 4, 1, 1), torch.randn(2, 8, 4, 4))):  # padded
        ref = copy.deepcopy(m)
        gemm.configure(ref, dense=False)
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)
        assert "convolution" in ops(lambda: m(x))
    for make, shape in DENSE:
        m, x = make(), torch.randn(shape)
        ref = gemm.configure(copy.deepcopy(m), dense=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, y0 = m(x), ref(x)
        assert y.dtype == y0.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), y0.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("size", [32, 64])
def test_dcgan_checkpoints_are_those_of_plain_convolutions_both_ways(size):
    """The lever is a forward, not a model: a net whose dense layers are plain nn.Conv layers has the same keys and
    shapes, and its weights load strictly into a fresh build that then computes the same function."""
    cfg = config.load("dcgan", [f"data.image_size={size}", "model.g_channels=8", "model.d_channels=8"])
    for i, net in enumerate(build(cfg.model, size)):
        plain = copy.deepcopy(net)
        swapped = [m for m in plain.modules() if isinstance(m, (gemm.Conv2d, gemm.ConvTranspose2d))]
        for m in swapped:
            m.__class__ = type(m).__mro__[1]  # nn.Conv2d / nn.ConvTranspose2d: what checkpoints before held
        assert len(swapped) == {32: 4, 64: 5}[size]  # every layer of G and of D
        assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
        fresh = build(cfg.model, size)[i]
        fresh.load_state_dict(plain.state_dict())  # strict
        x = torch.randn(4, cfg.model.z_dim) if i == 0 else torch.randn(4, 3, size, size)
        fresh.eval(), plain.eval()
        torch.testing.assert_close(fresh(x), plain(x), rtol=1e-5, atol=1e-6)


@pytest.fixture
def tiny_cfg(tmp_path, tiny_npz):
    def make(*overrides):
        return config.load(str(tiny_toml(tmp_path / "tiny.toml", tiny_npz)), list(overrides))
    return make


def test_the_switches_reach_every_copy(tiny_cfg, tmp_path):
    for on in (True, False):
        v = str(on).lower()
        tr = Trainer(tiny_cfg(f"train.dense_gemm={v}", f"train.wgrad_gemm={v}"), device="cpu",
                     logs=tmp_path / f"logs-{v}", quiet=True)
        layers = [m for net in (tr.nets.G, tr.nets.D, tr.nets.G_ema) for m in net.modules()
                  if isinstance(m, (gemm.Conv2d, gemm.ConvTranspose2d))]
        assert len(layers) == 12 and all(m.dense is on and m.wgrad is on for m in layers)  # G, D, G's EMA copy


def test_the_gemm_layers_train_as_the_old_step_did(tiny_cfg, tmp_path):
    """Four fp32 steps with the levers on and off, from the same seed: the same weights to float rounding (the
    weight-gradient GEMM acts in bf16 only: its parity is the next tests')."""
    nets = {}
    for on in (True, False):
        v = str(on).lower()
        tr = Trainer(tiny_cfg(f"train.dense_gemm={v}", f"train.wgrad_gemm={v}", 'train.precision="fp32"'), device="cpu",
                     logs=tmp_path / f"logs-{v}", quiet=True)
        for _ in range(4):
            tr.train_step()
        nets[on] = tr.nets.state_dict()
    for net in ("G", "D"):
        for k, w in nets[True][net].items():
            if w.is_floating_point():
                torch.testing.assert_close(w, nets[False][net][k], rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")


# ---- the weight gradient as one GEMM (bf16 on a CPU, small maps) ---------------------------------------------------

def backward_ops(m, x) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernels of the backward, output, input gradient, weight gradient, under bf16 autocast."""
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    g = torch.linspace(-1, 1, y.numel()).view_as(y).to(y.dtype)
    found = ops(lambda: y.backward(g))
    return found, y.detach().float(), x.grad, m.weight.grad


def rel(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# (layer, input): G's 4->8 layer (4×4 input), D's 8->4 layer (4×4 output), and two at 8×8 that stay with oneDNN
SMALL = [(lambda: gemm.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), (6, 32, 4, 4), True),
         (lambda: gemm.Conv2d(16, 32, 4, 2, 1, bias=False), (6, 16, 8, 8), True),
         (lambda: gemm.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), (6, 32, 8, 8), False),
         (lambda: gemm.Conv2d(16, 32, 4, 2, 1, bias=False), (6, 16, 16, 16), False)]


@pytest.mark.parametrize("make,shape,small", SMALL)
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_the_weight_gradient_gemm_gives_onednns_gradient_at_the_small_maps_only(make, shape, small, fmt):
    torch.manual_seed(0)
    on = make().to(memory_format=fmt)
    off = gemm.configure(copy.deepcopy(on), wgrad=False)
    x = torch.randn(shape).contiguous(memory_format=fmt)
    k_on, y_on, gx_on, gw_on = backward_ops(on, x)
    k_off, y_off, gx_off, gw_off = backward_ops(off, x)
    assert "mm" not in k_off
    assert ("mm" in k_on) is small  # the GEMM ran exactly where the map is small
    torch.testing.assert_close(y_on, y_off, rtol=0, atol=0)  # the forward is oneDNN's either way
    torch.testing.assert_close(gx_on, gx_off, rtol=0, atol=0)  # and so is the input gradient
    assert gw_on.shape == gw_off.shape and gw_on.dtype == gw_off.dtype == torch.float32
    assert rel(gw_on, gw_off) < 1e-2  # bf16 sums in another order; a wrong index would be O(1)
    if small:  # against fp32 convolutions: the GEMM is as close to the exact gradient as oneDNN's bf16 one
        ref = gemm.configure(copy.deepcopy(on), wgrad=False)
        xr = x.clone().requires_grad_(True)
        yr = ref(xr)
        yr.backward(torch.linspace(-1, 1, yr.numel()).view_as(yr))
        assert rel(gw_on, ref.weight.grad) < 2 * rel(gw_off, ref.weight.grad) + 1e-3


def test_the_weight_gradient_gemm_stays_out_of_fp32_and_frozen_weights():
    torch.manual_seed(0)
    m, x = gemm.Conv2d(16, 32, 4, 2, 1, bias=False), torch.randn(4, 16, 8, 8)
    xr = x.clone().requires_grad_(True)
    assert "mm" not in ops(lambda: m(xr).sum().backward())  # fp32: oneDNN's kernels
    frozen = copy.deepcopy(m).requires_grad_(False)  # D inside G's update: only the input gradient is needed
    xr = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = frozen(xr)
    assert "mm" not in ops(lambda: y.float().sum().backward()) and xr.grad is not None


def test_a_whole_dcgan_step_has_the_same_gradients_with_the_gemm_weight_gradient():
    """D's and G's every parameter gradient of one bf16 loss, with and without the lever, from the same weights."""
    cfg = config.load("dcgan", ["model.g_channels=16", "model.d_channels=16"])
    torch.manual_seed(0)
    G, D = (n.to(memory_format=torch.channels_last) for n in build(cfg.model, 32))
    grads = {}
    for on in (True, False):
        for n in (G, D):
            gemm.configure(n, wgrad=on)
            n.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = D(G(torch.randn(16, cfg.model.z_dim))).float().square().mean()
        loss.backward()
        grads[on] = {f"{w}.{k}": p.grad.clone() for w, n in (("G", G), ("D", D)) for k, p in n.named_parameters()}
    assert grads[True].keys() == grads[False].keys()
    for k, g in grads[True].items():
        assert rel(g, grads[False][k]) < 2e-2, k


@pytest.mark.parametrize("make,shape", [DENSE[0], DENSE[2], SMALL[0][:2], SMALL[1][:2], SMALL[3][:2]])
def test_a_forward_reads_a_spectral_normed_weight_once(make, shape):
    """Each read of the weight is a power iteration: any path through the layer must make exactly one, as the
    plain layer does, or spectral norm would run at twice its rate."""
    torch.manual_seed(0)
    fast = nn.utils.parametrizations.spectral_norm(make())
    plain = make()
    plain.__class__ = type(plain).__mro__[1]  # torch's nn.Conv2d / nn.ConvTranspose2d, whose forward reads it once
    plain = nn.utils.parametrizations.spectral_norm(plain)
    plain.load_state_dict(fast.state_dict())  # the same weight and power-iteration vectors
    x = torch.randn(shape, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast(x), plain(x)
    torch.testing.assert_close(fast.parametrizations.weight[0]._u, plain.parametrizations.weight[0]._u)


def test_a_bf16_run_with_the_levers_resumes_onto_the_uninterrupted_weights(tmp_path, tiny_npz):
    """The GEMM weight gradient is a fixed choice per layer shape, so a resumed bf16 run is the uninterrupted one
    bit for bit (on a CPU without AVX512-BF16, bf16 keeps fp32 and this checks the dense layers alone)."""
    from gan import checkpoint
    from tests.test_kills import assert_same_tensors
    from tests.test_resume import cli, run_of

    kw = dict(model={"g_channels": 16, "d_channels": 16}, train={"precision": "bf16", "steps": 4})
    r = cli("train", tiny_toml(tmp_path / "four.toml", tiny_npz, **kw), "--device", "cpu", "--logs", tmp_path / "a")
    assert r.exit_code == 0, r.stdout + r.stderr
    run = run_of(tmp_path / "a")
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=8")
    assert r.exit_code == 0, r.stdout + r.stderr
    kw["train"]["steps"] = 8
    r = cli("train", tiny_toml(tmp_path / "eight.toml", tiny_npz, **kw), "--device", "cpu", "--logs", tmp_path / "b")
    assert r.exit_code == 0, r.stdout + r.stderr
    a, b = (checkpoint.load(run_of(tmp_path / d) / "checkpoints" / "last.pt") for d in ("a", "b"))
    assert a["step"] == b["step"] == 8
    for part in ("G", "G_ema", "D", "opt_G", "opt_D"):
        assert_same_tensors(a[part], b[part], part)

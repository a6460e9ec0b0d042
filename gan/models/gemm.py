"""Convolutions computed as one matrix multiply where the convolution kernels are slow: the DCGAN family's layers.

Two levers, each a switch on the layer (set for a training run from the config by `configure`; on by default):

`dense` (train.dense_gemm): a transposed conv on a 1×1 input (G's first layer: z -> a 4×4 map) and a conv whose
    kernel covers its whole unpadded input (D's last: a 4×4 map -> one logit) are each x @ W. oneDNN ran G's first
    layer at 74-87 GFLOP/s in bf16 on a 2-core AVX512-BF16 CPU (its 4×4 stride-2 layers at 510-680, forward and
    backward) and D's last at 2; as one GEMM each is 3-5× faster. Any device, any precision.

`wgrad` (train.wgrad_gemm): on a CPU under bf16 autocast, the weight gradient of a layer whose small map (a conv's
    output, a transposed conv's input) has at most 16 positions is one GEMM over the windows (im2col) of the large
    map. oneDNN's bf16 weight-gradient kernel (jit_bf16) runs at about half its forward rate; at 4×4 maps the GEMM
    did that layer's forward + backward 1.01-1.25× faster (G's 4->8 and D's 8->4 layers), on larger maps it was
    0.81-0.94×, so those stay with oneDNN. The input gradient and the forward stay oneDNN's.
    (docs/evidence/gemm-layers-2026-12-04.txt; the whole bf16 step of `quick`: 1.05× from this lever.)

Same weights (state_dict keys and shapes of plain nn.Conv layers: every checkpoint loads both ways), same function
and gradients; the sums run in another order, so the last bits differ (bench `fidcheck` measures the FID change,
tests/test_gemm.py the gradients). A layer outside these shapes is an ordinary convolution.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gan import compat

SMALL_MAP = 16  # positions of the small map up to which the weight gradient is one GEMM (4×4; 8×8 measured slower)


def _memory_format(w: torch.Tensor) -> torch.memory_format:
    # the output keeps the layout the model was put in (channels_last or not): the next layer's kernels expect it
    return torch.channels_last if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() \
        else torch.contiguous_format


def _im2col(t: torch.Tensor, k: int, stride: int, pad: int, out_hw) -> torch.Tensor:
    """(B·H'·W', k·k·C): the k×k windows of `t` (zero-padded by `pad`) at `stride`, one row per output position,
    columns in (kh, kw, channel) order. Two copies: the padded channels-last map, then its windows."""
    t = F.pad(t, (pad, pad, pad, pad)).permute(0, 2, 3, 1).contiguous()
    b, _, _, c = t.shape
    s = t.stride()
    ho, wo = out_hw
    return t.as_strided((b, ho, wo, k, k, c), (s[0], stride * s[1], stride * s[2], s[1], s[2], s[3])) \
        .reshape(b * ho * wo, k * k * c)


class _WeightGradGEMM(torch.autograd.Function):
    """A convolution (or transposed) whose weight gradient is one GEMM: Σ over batch and positions of the small
    map's gradient/activation times the large map's windows."""

    @staticmethod
    def forward(ctx, x, w, transposed: bool, stride: int, pad: int):
        ctx.save_for_backward(x, w)
        ctx.geometry = transposed, stride, pad
        return (F.conv_transpose2d if transposed else F.conv2d)(x, w, None, stride, pad)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        transposed, stride, pad = ctx.geometry
        gx = None
        if ctx.needs_input_grad[0]:
            gx = compat.conv_input_grad(gy, x, w, stride, pad, transposed)
        k = w.shape[-1]
        # conv: w (out, in, k, k), small map = gy; transposed: w (in, out, k, k), small map = x
        small, large = (x, gy) if transposed else (gy, x)
        cols = _im2col(large, k, stride, pad, small.shape[-2:])
        gw = small.permute(0, 2, 3, 1).reshape(-1, small.shape[1]).t() @ cols  # (w0, k·k·w1)
        return gx, gw.view(w.shape[0], k, k, w.shape[1]).permute(0, 3, 1, 2), None, None, None


def _wgrad_applies(m, w: torch.Tensor, x: torch.Tensor, small_hw) -> bool:
    return (m.wgrad and x.device.type == "cpu" and torch.is_grad_enabled() and w.requires_grad and m.bias is None
            and small_hw[0] * small_hw[1] <= SMALL_MAP and x.dim() == 4
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not torch.compiler.is_compiling() and m.groups == 1 and m.dilation == (1, 1)
            and m.kernel_size[0] == m.kernel_size[1] and m.stride[0] == m.stride[1] and m.padding[0] == m.padding[1])


# `self.weight` is read once per forward: under spectral norm each read is a power iteration.

class ConvTranspose2d(nn.ConvTranspose2d):
    dense = wgrad = True

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if self.padding_mode != "zeros" or output_size is not None or self.output_padding != (0, 0):
            return super().forward(x, output_size)
        w = self.weight
        if (self.dense and x.dim() == 4 and x.shape[-2:] == (1, 1) and self.groups == 1 and self.padding == (0, 0)
                and self.dilation == (1, 1)):
            cin, cout, kh, kw = w.shape  # (in, out, kh, kw): each input channel adds its kh×kw×out block
            wf = w.permute(0, 2, 3, 1).reshape(cin, kh * kw * cout)  # columns (kh, kw, out): a channels-last map
            xf = x.reshape(x.shape[0], cin)
            y = xf @ wf if self.bias is None else torch.addmm(self.bias.repeat(kh * kw), xf, wf)
            return y.view(-1, kh, kw, cout).permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(w))
        if _wgrad_applies(self, w, x, x.shape[-2:]):
            dt = torch.bfloat16
            return _WeightGradGEMM.apply(x.to(dt), w.to(dt), True, self.stride[0], self.padding[0])
        return F.conv_transpose2d(x, w, self.bias, self.stride, self.padding, 0, self.groups, self.dilation)


class Conv2d(nn.Conv2d):
    dense = wgrad = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.padding_mode != "zeros" or not isinstance(self.padding, tuple) or x.dim() != 4:
            return self._conv_forward(x, w, self.bias)
        if (self.dense and x.shape[-2:] == self.kernel_size and self.groups == 1 and self.padding == (0, 0)
                and self.dilation == (1, 1)):
            # (out, in, kh, kw) against the whole (in, kh, kw) map: one dot product per output channel
            xf = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # a view when x is channels_last
            wf = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
            y = xf @ wf.t() if self.bias is None else torch.addmm(self.bias, xf, wf.t())
            return y.view(*y.shape, 1, 1)
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        if _wgrad_applies(self, w, x, tuple((n + 2 * p - k) // s + 1 for n in x.shape[-2:])):
            dt = torch.bfloat16
            return _WeightGradGEMM.apply(x.to(dt), w.to(dt), False, s, p)
        return self._conv_forward(x, w, self.bias)


def configure(model: nn.Module, dense: bool = True, wgrad: bool = True) -> nn.Module:
    """Set both switches on every layer of `model` that has them (train.dense_gemm, train.wgrad_gemm)."""
    for m in model.modules():
        if isinstance(m, (Conv2d, ConvTranspose2d)):
            m.dense, m.wgrad = dense, wgrad
    return model

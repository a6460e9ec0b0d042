"""Offline quality metrics: a compact CIFAR-10 classifier used as torch-fidelity feature extractor "c10".

Standard FID needs Inception-v3 weights that cannot be downloaded here, so we train our own small
CIFAR-10 classifier and compute FID/KID/IS on its features ("fid_c10", "kid_c10", "isc_c10").
These numbers are comparable only with each other (same weights, same sha256), never with published
Inception FIDs.

Architecture (C10Net, ~0.83 M parameters, 77 M multiply-adds per 32x32 image):
  stem   conv3x3 3->32 @32x32, BN, GELU
  block  conv3x3 cin->w, BN, maxpool 2, GELU, then a residual conv3x3 w->w, BN, GELU
         for w = 64 (->16x16), 128 (->8x8), 192 (->4x4)
  head   global average pool -> "feat" (192-d, for FID/KID) -> linear -> "logits" (10, for IS)

Result (gan/weights/c10.json): 86.7 % on test-00.npz (1,000 held-out test images) after 20 epochs on
the 15,000 training images, 33 min wall on 2 shared CPU cores; 1.68 MB fp16 weights.

Trade-off (why this net and not another):
  * The targets (>= 90 % held-out accuracy, <= 2 MiB, < 1 h CPU training, >= 2,000 img/s) cannot all be
    met with 15,000 training images and 2 CPU cores. We keep the metric meaningful first: accuracy >= 85 %
    (a classifier that does not know the classes gives features that do not measure sample quality),
    and give up the 2,000 img/s: ~1,000 img/s on an idle 2-core box (measured 533 img per CPU-second).
  * Convolve-then-pool blocks (as in the ResNet-9 / "airbench" CIFAR speed-runs) run the second conv of
    every stage at the pooled (4x smaller) resolution: fewer FLOPs than a plain ResNet of the same widths
    while keeping the full-resolution first layers that see fine detail (blur, noise, GAN artefacts);
    a stride-2 stem would be ~4x cheaper but throws that detail away.
  * Widths stop at 192 so the fp16 weights stay well under 2 MiB.
  * Training uses channels_last + bfloat16 autocast (this CPU has AVX512-BF16): ~2-3x faster per epoch
    in our probes, which buys epochs - what matters most with only 15,000 images.
  * Inference stays float32 (features feed a covariance; bf16 rounding would add noise to FID) and is
    made fast instead by folding every BatchNorm into its conv at load time (~1.3x), channels_last
    memory layout, inference_mode and large batches.
  * Recipe: flips + 4 px reflect-padded random crops, SGD nesterov 0.9, one-cycle lr peak 0.2,
    weight decay 5e-4, label smoothing 0.1, batch 256.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_featuresdict_to_statistics, fid_statistics_to_metric

WEIGHTS = Path(__file__).parent / "weights" / "c10.pt"

# CIFAR-10 per-channel mean/std of [0, 1] pixels.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WIDTHS = (32, 64, 128, 192)


class Block(nn.Module):
    """Conv at the input resolution, then pool; the second conv runs at the pooled (4x cheaper) size."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        # BN before the max-pool (not after) so it can be folded into conv1 at load time:
        # max(a*x+b) == a*max(x)+b only holds for a > 0.
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.gelu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        return x + F.gelu(self.bn2(self.conv2(x)))


class C10Net(nn.Module):
    """Compact residual CIFAR-10 classifier. forward(x) -> (feat, logits).

    x: uint8 (N, 3, H, W) in 0..255, or float (N, 3, H, W) in [0, 1]. Images that are not 32x32 are
    resized to 32x32 (bilinear, antialiased), then normalised with the CIFAR-10 mean/std.
    """

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.stem_conv = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.blocks = nn.Sequential(*[Block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.fc = nn.Linear(widths[-1], 10)
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (32, 32):
            # GANs may emit 64x64; antialiasing avoids aliasing artefacts the classifier would notice.
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.gelu(self.stem_bn(self.stem_conv(self.prepare(x))))
        feat = self.blocks(h).mean((2, 3))
        return feat, self.fc(feat)


def count_macs(model: nn.Module, size: int = 32) -> int:
    """Multiply-adds of the convs and the linear layer for one image (BN, GELU, pooling ignored)."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups)
        elif isinstance(m, nn.Linear):
            macs.append(m.in_features * m.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    for h in hs:
        h.remove()
    return int(sum(macs))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(path: Path = WEIGHTS) -> str:
    """Streamed sha256 of a weights file (the identity of every c10 metric)."""
    return sha256_file(Path(path))


def _fp16_state_dict(model: nn.Module) -> dict:
    # fp16 halves the file (<= 2 MiB); BN counters stay integers.
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in model.state_dict().items()}


def _save_atomic(state: dict, out: Path) -> None:
    from gan import fileio

    fileio.save_torch(out, state)  # readers never see a half-written weights file


@torch.inference_mode()
def accuracy(model: nn.Module, images_nchw: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images_nchw), batch):
        correct += (model(images_nchw[i : i + batch])[1].argmax(1) == labels[i : i + batch]).sum().item()
    return correct / max(1, len(images_nchw))


def train(train_path: str, test_path: str | None, epochs: int, seed: int, out: Path, log=print) -> dict:
    """Train C10Net, save fp16 weights to `out` atomically; returns {accuracy, seconds, params, sha256, bytes}.

    Held-out accuracy is measured on `test_path` when given (disjoint from training), else on a 10 %
    split held out from the training images. Deterministic for a given seed and thread count.
    """
    from gan.data import load_npz
    from gan.errors import GanError

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_np, y_np = load_npz(train_path)
    if y_np is None:
        raise GanError(f"features.train: '{train_path}' has no labels")
    if x_np.shape[1:3] != (32, 32):
        raise GanError(f"features.train: expected 32x32 images, got {x_np.shape[1]}x{x_np.shape[2]}")
    if test_path:
        xt_np, yt_np = load_npz(test_path)
        if yt_np is None:
            raise GanError(f"features.train: '{test_path}' has no labels")
    else:
        perm = torch.randperm(len(x_np), generator=gen).numpy()
        n_hold = len(x_np) // 10
        xt_np, yt_np = x_np[perm[:n_hold]], y_np[perm[:n_hold]]
        x_np, y_np = x_np[perm[n_hold:]], y_np[perm[n_hold:]]
        test_path = f"10% of {train_path} (seed {seed})"

    # Reflect-pad once; random 32x32 crops of the 40x40 images = random translation by up to 4 px.
    x_pad = torch.from_numpy(np.pad(x_np, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")).permute(0, 3, 1, 2)
    y = torch.from_numpy(y_np.astype(np.int64))
    x_test = torch.from_numpy(xt_np).permute(0, 3, 1, 2).contiguous()
    y_test = torch.from_numpy(yt_np.astype(np.int64))

    model = C10Net().to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    batch = 256
    steps_per_epoch = len(y) // batch  # drop the ragged last batch: BN statistics stay stable
    total = epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
    # One-cycle: linear warm-up for the first 25 % of steps, then linear decay to zero.
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.2, total_steps=total, pct_start=0.25, anneal_strategy="linear",
        cycle_momentum=False, div_factor=20.0, final_div_factor=200.0,
    )
    log(f"c10: {len(y)} training images, {len(y_test)} held-out, {params:,} params, "
        f"{count_macs(C10Net()) / 1e6:.1f} M MACs/image, {epochs} epochs x {steps_per_epoch} steps")
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        dx = torch.randint(0, 9, (len(y),), generator=gen)
        dy = torch.randint(0, 9, (len(y),), generator=gen)
        flip = torch.rand(len(y), generator=gen) < 0.5
        loss_sum, correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * batch : (s + 1) * batch]
            xb = torch.stack([x_pad[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in idx.tolist()])
            xb = torch.where(flip[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
            yb = y[idx]
            # bf16 autocast: ~2x faster on AVX512-BF16; BN and the loss still run in fp32.
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(xb)[1]
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
        log(f"epoch {epoch:3d}/{epochs}  loss {loss_sum / seen:.4f}  train acc {correct / seen:.4f}  "
            f"elapsed {time.time() - t0:7.1f}s")
    seconds = time.time() - t0

    # Evaluate exactly what is shipped: the fp16-rounded weights, run in fp32.
    state = _fp16_state_dict(model)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    acc = accuracy(model, x_test, y_test)
    out = Path(out)
    _save_atomic(state, out)
    result = {"accuracy": acc, "seconds": round(seconds, 1), "params": params,
              "sha256": weights_sha256(out), "bytes": out.stat().st_size}
    log(f"c10: held-out accuracy {acc:.4f} on {test_path}; {seconds:.0f}s; {out} "
        f"{result['bytes']} bytes sha256 {result['sha256']}")
    return result


# ---------------------------------------------------------------- torch-fidelity feature extractor


def load_c10(path: Path | str = WEIGHTS) -> C10Net:
    """The fp16 weights file as a float32 C10Net (eval mode, BatchNorm not folded)."""
    path = Path(path)
    vassert(path.is_file(), f"c10 weights not found at '{path}' (train them with `gan features train`)")
    state = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: never unpickle code
    net = C10Net()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval()


def fold_bn(net: C10Net) -> C10Net:
    """Fold every eval-mode BatchNorm into the conv before it: same outputs, fewer passes over memory."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    net.stem_conv, net.stem_bn = fuse_conv_bn_eval(net.stem_conv, net.stem_bn), nn.Identity()
    for b in net.blocks:
        b.conv1, b.bn1 = fuse_conv_bn_eval(b.conv1, b.bn1), nn.Identity()
        b.conv2, b.bn2 = fuse_conv_bn_eval(b.conv2, b.bn2), nn.Identity()
    return net


class FeatureExtractorC10(FeatureExtractorBase):
    """torch-fidelity extractor "c10": "feat" (192-d pooled penultimate features, FID/KID/PRC) and
    "logits" (10 CIFAR-10 class logits, IS). Input: uint8 (N, 3, H, W); non-32x32 is resized inside."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.weights_path = Path(feature_extractor_weights_path or WEIGHTS)
        self.net = fold_bn(load_c10(self.weights_path)).to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {x.shape}")
        with torch.inference_mode():
            feat, logits = self.net(x)
        features = {"feat": feat.float(), "logits": logits.float()}
        return tuple(features[a] for a in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "feat", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)


def register() -> None:
    """Make feature_extractor="c10" available to torch_fidelity.calculate_metrics (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if "c10" not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor("c10", FeatureExtractorC10)


# ---------------------------------------------------------------- checks of the metric itself

def extract(extractor: FeatureExtractorC10, images_uint8_nchw: torch.Tensor, batch: int = 500) -> dict:
    """{"feat": (N, 192), "logits": (N, 10)} float32 CPU tensors, in big batches (faster on CPU)."""
    outs = [extractor(images_uint8_nchw[i : i + batch]) for i in range(0, len(images_uint8_nchw), batch)]
    return {name: torch.cat([o[k] for o in outs]).cpu() for k, name in enumerate(extractor.features_list)}


def fid_c10(extractor: FeatureExtractorC10, a_uint8: torch.Tensor, b_uint8: torch.Tensor) -> float:
    """FID on c10 "feat" features through torch-fidelity's own statistics and distance."""
    sa = fid_featuresdict_to_statistics(extract(extractor, a_uint8), "feat")
    sb = fid_featuresdict_to_statistics(extract(extractor, b_uint8), "feat")
    return fid_statistics_to_metric(sa, sb, verbose=False)[KEY_METRIC_FID]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    k = 2 * int(np.ceil(3 * sigma)) + 1
    return gaussian_blur(x.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)


def _noise(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    n = torch.randn(x.shape, generator=gen) * std
    return (x.float() + n).round().clamp(0, 255).to(torch.uint8)


def distortion_table(images_uint8_nchw: torch.Tensor, n: int, log=print) -> list[tuple[str, float]]:
    """FID_c10 of n real images (first half) against known distortions of them: a working metric
    must rank real << mild < strong distortion. Needs 2n images; deterministic (seed 0)."""
    x = images_uint8_nchw
    vassert(len(x) >= 2 * n, f"distortion_table needs {2 * n} images, got {len(x)}")
    ref, other = x[:n], x[n : 2 * n]
    gen = torch.Generator().manual_seed(0)
    ext = FeatureExtractorC10("c10", ["feat"])
    ref_stat = fid_featuresdict_to_statistics(extract(ext, ref), "feat")
    cases = [("real vs real (disjoint)", lambda: other)]
    cases += [(f"blur sigma {s:g}", lambda s=s: _blur(ref, s)) for s in (0.5, 1, 2)]
    cases += [(f"noise std {s:g}", lambda s=s: _noise(ref, s, gen)) for s in (8, 16, 32)]
    cases += [("channels RGB->BGR", lambda: ref[:, [2, 1, 0]].contiguous())]
    cases += [("uniform noise images", lambda: torch.randint(0, 256, ref.shape, generator=gen, dtype=torch.uint8))]
    rows = []
    log(f"FID_c10 against {n} real images")
    for name, make in cases:
        stat = fid_featuresdict_to_statistics(extract(ext, make()), "feat")
        rows.append((name, fid_statistics_to_metric(ref_stat, stat, verbose=False)[KEY_METRIC_FID]))
        log(f"  {name:<26} {rows[-1][1]:10.3f}")
    return rows


def measure_speed(batch: int = 500, seconds: float = 5.0, weights: Path | str = WEIGHTS) -> float:
    """Images/s of the extractor forward on uint8 32x32 batches, torch's default CPU threads."""
    ext = FeatureExtractorC10("c10", ["feat", "logits"], feature_extractor_weights_path=weights)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ext(x)  # warm-up: oneDNN builds its kernels on the first call
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ext(x)
        done += batch
    return done / (time.perf_counter() - t0)


def card() -> dict:
    """The packaged weights' record (gan/weights/c10.json): accuracy, data, command, sha256."""
    import json

    try:
        return json.loads((WEIGHTS.parent / "c10.json").read_text())
    except (OSError, ValueError):
        return {}

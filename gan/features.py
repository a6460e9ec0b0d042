"""Offline quality metrics: a compact CIFAR-10 classifier used as torch-fidelity feature extractor "c10".

Standard FID needs Inception-v3 weights that cannot be downloaded here, so we train our own small
CIFAR-10 classifier and compute FID/KID/IS on its features (`metrics/fid_c10`, `kid_c10`, `is_c10`).
These numbers are comparable only with each other (same weights, same sha256), never with published
Inception FIDs. Training lives in gan/c10_train.py; the weights' card (recipe, accuracy, timing, the
seen/unseen and distortion tables, the reference-set decision) is gan/weights/c10.md, their facts c10.json.

Architecture (C10Net, ~0.83 M parameters, 77 M multiply-adds per 32x32 image):
  stem   conv3x3 3->32 @32x32, BN, GELU
  block  conv3x3 cin->w, BN, maxpool 2, GELU, then a residual conv3x3 w->w, BN, GELU
         for w = 64 (->16x16), 128 (->8x8), 192 (->4x4)
  head   global average pool -> "feat" (192-d, for FID/KID) -> linear -> "logits" (10, for IS)

Why this net:
  * Convolve-then-pool blocks (as in the ResNet-9 / "airbench" CIFAR speed-runs) run the second conv of
    every stage at the pooled (4x smaller) resolution: fewer FLOPs than a plain ResNet of the same widths
    while keeping the full-resolution first layers that see fine detail (blur, noise, GAN artefacts);
    a stride-2 stem would be ~4x cheaper but throws that detail away.
  * Widths stop at 192 so the fp16 weights stay well under 2 MiB.
  * Inference stays float32 (features feed a covariance; bf16 rounding would add noise to FID) and is
    made fast instead by folding every BatchNorm into its conv at load time (~1.3x), channels_last
    memory layout, inference_mode and large batches.
  * c10 never trains on train-09 (5,000 CIFAR-10 training images), so `gan features check` can measure
    whether it memorised what it saw: real-vs-real FID_c10 is 0.069 on seen images, 0.066 on unseen ones
    (c10.md). No difference at FID's resolution, so fid_c10's reference stays the run's own training images,
    as for every extractor and dataset (a copying generator gains nothing a new sample would not).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity import FeatureExtractorBase  # torch-fidelity's public base; its internals: gan/compat.py

from gan import compat

from gan.errors import GanError
from gan.fileio import sha256_file

WEIGHTS = Path(__file__).parent / "weights" / "c10.pt"
RECORD = WEIGHTS.with_suffix(".json")  # the packaged weights' training facts (sha256, shards, content hashes)

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


def images_sha256(images_nhwc: np.ndarray) -> str:
    """Content hash of images: sha256 of the C-order uint8 N x H x W x 3 buffer (independent of the npz zip)."""
    if images_nhwc.dtype != np.uint8 or images_nhwc.ndim != 4 or images_nhwc.shape[-1] != 3:
        raise GanError(f"images_sha256: expected uint8 NxHxWx3, got {images_nhwc.dtype} {tuple(images_nhwc.shape)}")
    from gan.data import content_hash

    return content_hash(torch.from_numpy(images_nhwc))  # the same bytes, hashed where reference sets are


def card() -> dict:
    """The packaged weights' record (gan/weights/c10.json): accuracy, data, command, sha256; {} when unreadable."""
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}


def weights_sha256(path: Path = WEIGHTS) -> str:
    """Streamed sha256 of a weights file (the identity of every c10 metric)."""
    return sha256_file(Path(path))


def fp16_state_dict(model: nn.Module) -> dict:
    # fp16 halves the file (<= 2 MiB); BN counters stay integers.
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in model.state_dict().items()}


@torch.inference_mode()
def accuracy(model: nn.Module, images_nchw: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images_nchw), batch):
        correct += (model(images_nchw[i : i + batch])[1].argmax(1) == labels[i : i + batch]).sum().item()
    return correct / max(1, len(images_nchw))


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
    compat.register_feature_extractor("c10", FeatureExtractorC10)


def vassert(ok: bool, message: str) -> None:
    """torch-fidelity's convention for a feature extractor's bad input: ValueError."""
    if not ok:
        raise ValueError(message)


# ---------------------------------------------------------------- checks of the metric itself

def extract(extractor: FeatureExtractorC10, images_uint8_nchw: torch.Tensor, batch: int = 500) -> dict:
    """{"feat": (N, 192), "logits": (N, 10)} float32 CPU tensors, in big batches (faster on CPU)."""
    outs = [extractor(images_uint8_nchw[i : i + batch]) for i in range(0, len(images_uint8_nchw), batch)]
    return {name: torch.cat([o[k] for o in outs]).cpu() for k, name in enumerate(extractor.features_list)}


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
    ref_stat = compat.fid_statistics(extract(ext, ref), "feat")
    cases = [("real vs real (disjoint)", lambda: other)]
    cases += [(f"blur sigma {s:g}", lambda s=s: _blur(ref, s)) for s in (0.5, 1, 2)]
    cases += [(f"noise std {s:g}", lambda s=s: _noise(ref, s, gen)) for s in (8, 16, 32)]
    cases += [("channels RGB->BGR", lambda: ref[:, [2, 1, 0]].contiguous())]
    cases += [("uniform noise images", lambda: torch.randint(0, 256, ref.shape, generator=gen, dtype=torch.uint8))]
    rows = []
    log(f"FID_c10 against {n} real images")
    for name, make in cases:
        stat = compat.fid_statistics(extract(ext, make()), "feat")
        rows.append((name, compat.fid(ref_stat, stat)))
        log(f"  {name:<26} {rows[-1][1]:10.3f}")
    return rows


def seen_unseen_table(seen_uint8: torch.Tensor, unseen_uint8: torch.Tensor, n: int, log=print) -> list[tuple[str, float]]:
    """FID_c10 real vs real on images c10 trained on ("seen") and images it never saw ("unseen"), n per side.
    A memorising extractor shows seen-vs-seen far below unseen-vs-unseen. Deterministic (seed 0)."""
    vassert(len(seen_uint8) >= 2 * n and len(unseen_uint8) >= 2 * n,
            f"seen_unseen_table needs {2 * n} images of each, got {len(seen_uint8)} and {len(unseen_uint8)}")
    gen = torch.Generator().manual_seed(0)
    s = seen_uint8[torch.randperm(len(seen_uint8), generator=gen)[: 2 * n]]
    u = unseen_uint8[torch.randperm(len(unseen_uint8), generator=gen)[: 2 * n]]
    ext = FeatureExtractorC10("c10", ["feat"])
    parts = {"seen A": s[:n], "seen B": s[n:], "unseen C": u[:n], "unseen D": u[n:]}
    stats = {k: compat.fid_statistics(extract(ext, v), "feat") for k, v in parts.items()}
    rows = []
    log(f"FID_c10 real vs real, {n} vs {n} images (seen: c10 trained on them; unseen: it never saw them)")
    for a, b in (("seen A", "seen B"), ("unseen C", "unseen D"), ("seen A", "unseen C"), ("seen B", "unseen D")):
        rows.append((f"{a} vs {b}", compat.fid(stats[a], stats[b])))
        log(f"  {rows[-1][0]:<26} {rows[-1][1]:10.3f}")
    return rows


def heldout_reference(data_root: str) -> tuple[torch.Tensor | None, str]:
    """The shard c10 never trained on (train-09, per c10.json) as uint8 NCHW: the "unseen" side of `gan features
    check`'s seen/unseen table (a run's own reference stays its training images, see above). Else None and a
    one-line reason."""
    from gan.data import load_npz

    rec = card()
    names, want = rec.get("heldout_shards") or [], rec.get("heldout_sha256")
    if not names or not want:
        return None, "c10.json records no held-out shard"
    files = [Path(data_root).expanduser() / name for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        return None, f"c10's held-out shard {', '.join(missing)} is not under '{data_root}'"
    try:
        x = np.concatenate([load_npz(str(f))[0] for f in files])
    except GanError as e:
        return None, str(e)
    got = images_sha256(x)
    if got != want:
        return None, f"{', '.join(names)} under '{data_root}' has content sha256 {got[:16]}…, not c10's held-out {want[:16]}…"
    return (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
            f"{', '.join(names)}: {len(x):,} images c10 never trained on (content sha256 {got[:16]}…)")


def check(data: str, n: int, log=print) -> None:
    """`gan features check`: the seen/unseen report when `data` is a folder with c10's training and held-out
    shards, then the distortion table (on the unseen images then, else on the first 2n of `data`)."""
    from gan.data import load_npz

    rec = card()
    root = Path(data).expanduser()
    shards = rec.get("train_shards", []) + rec.get("heldout_shards", [])
    if shards and root.is_dir() and all((root / s).is_file() for s in shards):
        unseen, why = heldout_reference(data)
        if unseen is None:
            raise GanError(why)
        seen = np.concatenate([load_npz(str(root / s))[0] for s in rec["train_shards"]])
        if images_sha256(seen) != rec["train_sha256"]:
            raise GanError(f"{rec['train_shards'][0]}..{rec['train_shards'][-1]} under '{data}' are not the images "
                           "c10 was trained on (content sha256 differs from c10.json)")
        if len(unseen) < 2 * n:
            raise GanError(f"--n {n}: needs {2 * n} held-out images, '{data}' has {len(unseen)}")
        seen_unseen_table(torch.from_numpy(seen).permute(0, 3, 1, 2).contiguous(), unseen, n, log=log)
        x = unseen
        log(f"distortions of the unseen images ({why})")
    else:
        log(f"seen/unseen report skipped: '{data}' is not a folder with c10's training and held-out shards")
        x = torch.from_numpy(load_npz(data)[0]).permute(0, 3, 1, 2).contiguous()
    if len(x) < 2 * n:
        raise GanError(f"--n {n}: needs {2 * n} images, '{data}' has {len(x)}")
    distortion_table(x, n, log=log)

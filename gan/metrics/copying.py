"""The copy rate: how many of a generator's samples lie closer to a training image than fresh real images do.

T: the run's training images. H: M real images the run never trained on (held out). G: N samples of the generator.
In a space φ (an extractor's feature layer, or the raw pixels), each image x has its nearest-training distance

    d(x) = min over t in T of ||φ(x) - φ(t)||₂

The threshold τ is the k-th smallest of the held-out distances d(h), h in H, with k = max(1, ⌊M / 100⌋): fewer than
1 % of the held-out images lie closer to T than τ. A sample is a copy when d(g) < τ, and

    copy rate = #{g in G : d(g) < τ} / N

is the share of samples that lie closer to their nearest training image than 99 % of held-out real images lie to
theirs. An image that is as new to T as the held-out ones are (drawn from the data, independent of T) falls below
τ with probability k / (M + 1) ≈ 1 % (the held-out distances and its own are exchangeable); a generator that
returns training images scores 100 %. The interval is Wilson's 95 % score interval for a binomial share of N.

Literature. Meehan, Chaudhuri & Dasgupta (2020, "A non-parametric test to detect data-copying in generative
models", AISTATS) use the same three samples (T, a held-out test set, G) and the same nearest-training distances;
their C_T statistic is a Mann-Whitney U test of d(G) against d(H), Z-scored per cell of a k-means partition of
the space and averaged over the cells with enough samples (C_T << 0: copying). They partition because a global
rank test lets copying in one region cancel against underfitting (samples far from T) in another. The copy rate
asks a narrower question that needs no partition: the count in the lower 1 % tail of d(H) only grows with copies,
and far samples cannot cancel them. Alaa et al. (2022, "How faithful is your synthetic data? Sample-level metrics
for evaluating and auditing generative models", ICML) call a sample unauthentic when it lies closer to its nearest
training image t* than t* lies to its own nearest other training image, and report authenticity, the share of
authentic samples. That yardstick is training-to-training distance, so fresh real images are not scored at a known
rate; here the yardstick is held-out images, which makes the rate calibrated (≈ 1 % for new images) by construction.

Distances are found by batched matrix products over chunks of T (|a - b|² = |a|² + |b|² - 2 a·b), then the k
winners' distances recomputed exactly, so a training image returned unchanged is at distance 0, not at rounding
noise. Pixel distances are reported as RMS per value in 0..255 (the L2 distance / √(3·H·W)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PERCENT = 1  # the held-out tail a copy must lie in, in percent
MIN_HELDOUT = 100  # fewer held-out images cannot place a 1 % threshold
Z95 = 1.959963984540054


@torch.inference_mode()
def nearest(queries: torch.Tensor, ref: torch.Tensor, k: int = 1, chunk: int = 4096) -> tuple[torch.Tensor, ...]:
    """(distances, indices), each (Q, k) sorted by distance: the k nearest rows of `ref` (R, ...) for every row of
    `queries` (Q, ...), Euclidean over the flattened rows. `ref` is read `chunk` rows at a time (uint8 images are
    made float a chunk at a time), so memory stays at Q × chunk."""
    q = queries.reshape(len(queries), -1).float()
    qn = (q * q).sum(1, keepdim=True)
    best_d = torch.empty(len(q), 0)
    best_i = torch.empty(len(q), 0, dtype=torch.long)
    for s in range(0, len(ref), chunk):
        r = ref[s:s + chunk].reshape(min(chunk, len(ref) - s), -1).to(q.device).float()
        d2 = (qn + (r * r).sum(1) - 2 * q @ r.T).clamp_min_(0)
        dv, di = d2.topk(min(k, d2.shape[1]), dim=1, largest=False)
        best_d, pick = torch.cat([best_d, dv.cpu()], 1).topk(min(k, best_d.shape[1] + dv.shape[1]), dim=1,
                                                              largest=False)
        best_i = torch.cat([best_i, di.cpu() + s], 1).gather(1, pick)
    exact = torch.stack([(q - ref[best_i[:, j]].reshape(len(q), -1).to(q.device).float()).pow(2).sum(1).sqrt().cpu()
                         for j in range(best_i.shape[1])], 1)
    order = exact.argsort(1)
    return exact.gather(1, order), best_i.gather(1, order)


def threshold(heldout_d: torch.Tensor) -> tuple[float, int]:
    """τ and k: the k-th smallest held-out nearest-training distance, k = max(1, ⌊M · PERCENT / 100⌋)."""
    k = max(1, len(heldout_d) * PERCENT // 100)
    return float(heldout_d.sort().values[k - 1]), k


def wilson(copies: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial share copies / n (95 % by default)."""
    p, zz = copies / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Rate:
    """The copy rate in one space: its samples' distances to their nearest training images, and the verdict."""
    space: str  # an extractor's name ("c10", "inception") or "pixels"
    tag: str  # neighbours/copy_rate<suffix>: the suffix names the extractor, as every metric's does
    distances: torch.Tensor  # (N, k) of the samples, nearest first
    indices: torch.Tensor  # (N, k) into the training images
    tau: float
    k: int  # τ is the k-th smallest of the M held-out distances
    heldout: int  # M
    scale: float = 1.0  # printed distances are raw / scale (pixels: RMS per value)

    @property
    def copied(self) -> torch.Tensor:
        return self.distances[:, 0] < self.tau

    @property
    def copies(self) -> int:
        return int(self.copied.sum())

    @property
    def value(self) -> float:
        return self.copies / len(self.distances)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.copies, len(self.distances))

    @property
    def fresh(self) -> float:
        """The rate expected of images as new to T as the held-out ones: k / (M + 1)."""
        return self.k / (self.heldout + 1)

    def line(self) -> str:
        lo, hi = self.interval
        name = self.tag.split('/', 1)[1] if self.space != "pixels" else "by pixels (a check)"
        return (f"{name}: {self.copies}/{len(self.distances)} = {100 * self.value:.1f} % "
                f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f} %; new images: {100 * self.fresh:.1f} %), "
                f"threshold {self.tau / self.scale:.4g}")


def rate(space: str, tag: str, samples: torch.Tensor, heldout: torch.Tensor, train: torch.Tensor, k: int = 2,
         scale: float = 1.0) -> Rate:
    """The copy rate of `samples` in one space, calibrated by `heldout`; all three given in that space's rows
    (features, or uint8 images for pixels). Keeps each sample's `k` nearest training images for the grid."""
    d, i = nearest(samples, train, k)
    tau, kth = threshold(nearest(heldout, train, 1)[0][:, 0])
    return Rate(space, tag, d, i, tau, kth, len(heldout), scale)

"""The copy rate: how many of a generator's samples lie closer to a training image than fresh real images do.

T: the run's training images. H: M real images the run never trained on (held out). G: N samples of the generator.
In a space φ (an extractor's feature layer, or the raw pixels), each image x has its nearest-training distance

    d(x) = min over t in T of ||φ(x) - φ(t)||₂

In one space, the threshold τ is the k-th smallest held-out distance, k = max(1, ⌊M / 100⌋): fewer than 1 % of the
held-out images lie closer to T than τ, and the copy rate #{g in G : d(g) < τ} / N is the share of samples that lie
closer to their nearest training image than 99 % of held-out real images lie to theirs. An image as new to T as
the held-out ones (drawn from the data, independent of T) falls below τ with probability k / (M + 1) ≈ 1 % (its
distance and the held-out ones are exchangeable); a generator that returns training images scores 100 %.

Two spaces, one number. Each space misses copies the other sees: features react to pixel noise (a speckled copy of
a training image lies far from it in c10's space), pixels to flatness (a flat sample lies close to the flat training
images). So a sample counts as a copy when it lies below the threshold in either space, and the thresholds are set
together: τ_s is the j-th smallest held-out distance in space s, with j the largest for which fewer than k held-out
images lie below τ_s in some space. With one space this is the rule above (j = k); with two, the held-out images
below either threshold number U < k, and a new image is counted with probability ≈ (U + 1) / (M + 1) ≤ 1 %, the
figure reported beside every rate. The interval is Wilson's 95 % score interval for a binomial share of N.

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


def wilson(copies: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial share copies / n (95 % by default)."""
    p, zz = copies / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Space:
    """One space's distances: each sample's nearest training images, each held-out image's nearest distance, and
    the threshold `tau` that `Copies` sets."""
    name: str  # an extractor's name ("c10", "inception") or "pixels"
    distances: torch.Tensor  # (N, k) of the samples, nearest first
    indices: torch.Tensor  # (N, k) into the training images
    heldout: torch.Tensor  # (M,) the held-out images' nearest-training distances
    scale: float = 1.0  # shown distances are raw / scale (pixels: RMS per value)
    tau: float = 0.0

    @property
    def below(self) -> torch.Tensor:
        return self.distances[:, 0] < self.tau


def space(name: str, samples: torch.Tensor, heldout: torch.Tensor, train: torch.Tensor, k: int = 2,
          scale: float = 1.0) -> Space:
    """`samples` and `heldout` against `train`, all three as that space's rows (features, or uint8 images for
    pixels); each sample keeps its `k` nearest training images for the picture."""
    d, i = nearest(samples, train, k)
    return Space(name, d, i, nearest(heldout, train, 1)[0][:, 0], scale)


@dataclass
class Copies:
    """The copy rate over one or more spaces (module docstring): sets each space's `tau`, then counts."""
    spaces: list
    tag: str  # neighbours/copy_rate<suffix>: the suffix names the extractor, as every metric's does
    k: int = 0  # fewer than k held-out images may lie below a threshold
    heldout_below: int = 0  # U: those that do, in some space

    def __post_init__(self):
        m = len(self.spaces[0].heldout)
        self.k = max(1, m * PERCENT // 100)
        ordered = [s.heldout.sort().values for s in self.spaces]
        for j in range(1, m + 1):  # the union below the thresholds only grows with j
            below = sum((s.heldout < o[j - 1]).int() for s, o in zip(self.spaces, ordered)) > 0
            if int(below.sum()) >= self.k:
                break
            for s, o in zip(self.spaces, ordered):
                s.tau = float(o[j - 1])
            self.heldout_below = int(below.sum())

    @property
    def copied(self) -> torch.Tensor:
        return torch.stack([s.below for s in self.spaces]).any(0)

    @property
    def copies(self) -> int:
        return int(self.copied.sum())

    @property
    def value(self) -> float:
        return self.copies / len(self.copied)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.copies, len(self.copied))

    @property
    def fresh(self) -> float:
        """The rate expected of images as new to T as the held-out ones: (U + 1) / (M + 1)."""
        return (self.heldout_below + 1) / (len(self.spaces[0].heldout) + 1)

    def line(self) -> str:
        lo, hi = self.interval
        by = " or ".join(f"{s.name} < {s.tau / s.scale:.4g}" for s in self.spaces)
        return (f"{self.tag.split('/', 1)[1]}: {self.copies}/{len(self.copied)} = {100 * self.value:.1f} % "
                f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f} %; new images: {100 * self.fresh:.1f} %), {by}")

    def alone(self) -> str:
        """How many samples each space alone puts below its threshold."""
        n = len(self.copied)
        return "below the threshold by " + ", by ".join(f"{s.name} {int(s.below.sum())}/{n}" for s in self.spaces)

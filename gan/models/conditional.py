"""Class conditioning (Miyato & Koyama 2018): conditional BatchNorm in G, a projection term in D.

A family takes `num_classes` (0 = unconditional, the layers are then plain and the parameter counts unchanged):
G builds its BatchNorms with `batchnorm(...)` inside a `Seq`, which hands the labels to the layers that take them;
D adds `Projection`'s <embed(y), features> to its logit.
"""
import torch
import torch.nn as nn


class CondBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; the per-class gain and bias come from embeddings (1 and 0 at start)."""

    takes_labels = True

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


def batchnorm(num_features: int, num_classes: int = 0) -> nn.Module:
    return CondBatchNorm2d(num_features, num_classes) if num_classes else nn.BatchNorm2d(num_features)


class Seq(nn.Sequential):
    """nn.Sequential (same state_dict keys) whose forward also takes the labels, for the layers that use them
    (those with `takes_labels`)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        for m in self:
            x = m(x, y) if getattr(m, "takes_labels", False) else m(x)
        return x


class Projection(nn.Module):
    """The class term of a projection discriminator: <embed(y), h> for D's pooled features h (N, dim)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h).sum(1)


def check_labels(num_classes: int, y: torch.Tensor | None) -> None:
    if num_classes and y is None:
        raise ValueError("a conditional model needs class labels y")

"""Your own loss: least squares (LSGAN, Mao et al. 2017), which the built-in losses (bce, hinge, wgan) lack.

The experiment names it `loss.name = "lsgan.py:LSGAN"`; `gan` makes it with the [loss.args] (a, b, c) and calls
d(real, fake) in D's update and g(fake) in G's, on D's raw logits of shape (N,); each returns a scalar.
"""
import torch


class LSGAN:
    """The a-b-c coding of the paper: D pulls fake logits to a and real ones to b, G pulls fake ones to c.
    0-1-1 (the default) is the paper's Eq. 2 choice; -1-1-0 its Eq. 9 (Pearson χ²)."""

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        self.a, self.b, self.c = a, b, c

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real - self.b) ** 2).mean() + 0.5 * ((fake - self.a) ** 2).mean()

    def g(self, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((fake - self.c) ** 2).mean()

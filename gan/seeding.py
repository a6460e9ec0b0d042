"""One seed for every random number generator a run draws from (python, numpy, torch on every device).
A resumed run does not reseed: it restores the generators' states from its checkpoint (checkpoint.rng_state)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

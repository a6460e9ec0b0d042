"""Image grids for TensorBoard and PNGs: samples 8 to a row, and the per-class grid of a conditional G with the
class names written down its left side (a person looks here rather than reads a caption)."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid

from gan.data import to_uint8

GRID = 64  # fixed latents shown in the fake grid
PER_CLASS = 8  # samples per class row


def grid(images_u8: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """uint8 (N,3,H,W) -> one uint8 (3,H',W') grid with 2 px padding."""
    return make_grid(images_u8.cpu(), nrow=nrow)


@torch.no_grad()
def samples(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 samples of G in eval mode (BatchNorm running statistics), its mode restored after."""
    was = G.training
    G.eval()
    x = G(z, y) if y is not None else G(z)
    G.train(was)
    return to_uint8(x)


def labelled_rows(images_u8: torch.Tensor, names: list[str], per_row: int = PER_CLASS) -> torch.Tensor:
    """A grid with one row per name, the name written left of its row: uint8 (3, H, W)."""
    from PIL import Image, ImageDraw, ImageFont

    g = grid(images_u8, nrow=per_row).permute(1, 2, 0).numpy()
    font = ImageFont.load_default()
    width = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(n, font=font)) for n in names) + 8
    canvas = Image.new("RGB", (g.shape[1] + width, g.shape[0]), (0, 0, 0))
    canvas.paste(Image.fromarray(g), (width, 0))
    draw = ImageDraw.Draw(canvas)
    cell = (g.shape[0] - 2) / len(names)
    for i, n in enumerate(names):
        draw.text((4, 2 + cell * i + cell / 2 - 6), n, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def log_fake(rec, G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, class_names: list[str] | None,
             step: int) -> None:
    """A run's grids at `step` (recorder `rec`): the fixed latents' samples and, for a conditional G, one row per
    class with the same latents in every row."""
    rec.image("images/fake", grid(samples(G, z, y)), step, f"fake_{step:07d}.png")
    if class_names:
        zc = z[:PER_CLASS].repeat(len(class_names), 1)
        yc = torch.arange(len(class_names), device=z.device).repeat_interleave(PER_CLASS)
        rec.image("images/fake_per_class", labelled_rows(samples(G, zc, yc), class_names), step,
                  f"fake_per_class_{step:07d}.png")

"""Training of the c10 classifier (gan/features.py: C10Net) and the record that identifies its weights.

Everything in the training loop is a batched tensor op: random translation (reflect-padded crops) and
horizontal flips are one gather per batch, no per-image Python. bf16 autocast is used only where oneDNN
reports bf16 support (AVX512-BF16/AMX: ~2x faster here); fp32 otherwise. Deterministic for a given seed,
thread count and machine type.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gan import fileio
from gan.data import load_npz, npz_files
from gan.device import bf16_supported, cpu_info
from gan.errors import GanError
from gan.features import C10Net, accuracy, count_macs, fp16_state_dict, images_sha256, weights_sha256


@dataclass(frozen=True)
class Recipe:
    """The training recipe; the defaults are the shipped weights' (chosen by the probes in gan/weights/c10.md)."""

    batch: int = 256         # fastest per image under bf16 on 2 cores (measured against 512)
    lr: float = 0.2          # one-cycle peak; SGD nesterov momentum 0.9
    warmup: float = 0.25     # fraction of steps with a linear lr ramp-up, then linear decay to ~0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    pad: int = 4             # random translation by up to `pad` px (reflect padding)


def augment(x_pad: torch.Tensor, idx: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor,
            size: int = 32) -> torch.Tensor:
    """Batched random crop + horizontal flip as one gather: x_pad (N, C, size+2p, size+2p) uint8, idx (B,)
    image indices, dx/dy/flip (B,) offsets and flags. Returns (B, C, size, size)."""
    ar = torch.arange(size)
    rows = dy[:, None] + ar                                              # (B, size)
    cols = dx[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)   # a flip reads the columns backwards
    ch = torch.arange(x_pad.shape[1])
    return x_pad[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def heldout_shards(files: list[str]) -> list[str]:
    """train-*.npz shards beside the training files that training does not use (e.g. train-09)."""
    folder = Path(files[0]).parent
    used = {str(Path(f).resolve()) for f in files}
    return [f for f in sorted(map(str, folder.glob("train-*.npz"))) if str(Path(f).resolve()) not in used]


def _load(train_path: str, test_path: str | None, seed: int, gen: torch.Generator):
    """Training and held-out images and labels; without `test_path`, 10 % of the training images held out."""
    x_np, y_np = load_npz(train_path)
    if y_np is None:
        raise GanError(f"features.train: '{train_path}' has no labels")
    if x_np.shape[1:3] != (32, 32):
        raise GanError(f"features.train: expected 32x32 images, got {x_np.shape[1]}x{x_np.shape[2]}")
    train_sha = images_sha256(x_np)
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
    return x_np, y_np, xt_np, yt_np, test_path, train_sha


def train(train_path: str, test_path: str | None, epochs: int, seed: int, out: Path, recipe: Recipe = Recipe(),
          command: str = "", log=print) -> dict:
    """Train C10Net, save fp16 weights to `out` atomically; returns the record written to c10.json.

    Held-out accuracy is measured on `test_path` when given (disjoint from training), else on a 10 %
    split held out from the training images.
    """
    if epochs < 1:
        raise GanError(f"features.train: epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    files = npz_files(train_path)
    x_np, y_np, xt_np, yt_np, test_path, train_sha = _load(train_path, test_path, seed, gen)

    p = recipe.pad
    x_pad = torch.from_numpy(np.pad(x_np, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect"))
    x_pad = x_pad.permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y_np.astype(np.int64))
    x_test = torch.from_numpy(xt_np).permute(0, 3, 1, 2).contiguous()
    y_test = torch.from_numpy(yt_np.astype(np.int64))

    model = C10Net().to(memory_format=torch.channels_last)
    params = sum(q.numel() for q in model.parameters())
    steps_per_epoch = len(y) // recipe.batch  # drop the ragged last batch: BN statistics stay stable
    if steps_per_epoch < 1:
        raise GanError(f"features.train: {len(y)} training images, fewer than one batch of {recipe.batch}")
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                          weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=epochs * steps_per_epoch, pct_start=recipe.warmup,
        anneal_strategy="linear", cycle_momentum=False, div_factor=20.0, final_div_factor=200.0,
    )
    bf16 = bf16_supported(torch.device("cpu"))[0]
    threads = torch.get_num_threads()
    macs = count_macs(C10Net())
    log(f"c10: {len(y)} training images, {len(y_test)} held-out, {params:,} params, {macs / 1e6:.1f} M MACs/image, "
        f"{epochs} epochs x {steps_per_epoch} steps of {recipe.batch}, {threads} threads")
    log("c10: bf16 autocast ON (oneDNN reports native bf16)" if bf16 else
        "c10: bf16 autocast OFF (oneDNN reports no native bf16): fp32 training")
    t0, c0 = time.time(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        # Per-epoch draws, in a fixed order from one generator: the run is a function of the seed.
        perm = torch.randperm(len(y), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (len(y),), generator=gen)
        dy = torch.randint(0, 2 * p + 1, (len(y),), generator=gen)
        flip = torch.rand(len(y), generator=gen) < 0.5
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for s in range(steps_per_epoch):
            idx = perm[s * recipe.batch : (s + 1) * recipe.batch]
            xb, yb = augment(x_pad, idx, dx[idx], dy[idx], flip[idx]), y[idx]
            # BN and the loss stay fp32 under autocast; only convs/linear run in bf16.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb)[1]
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
        seen = steps_per_epoch * recipe.batch
        log(f"epoch {epoch:3d}/{epochs}  loss {loss_sum.item() / seen:.4f}  train acc {correct.item() / seen:.4f}  "
            f"elapsed {time.time() - t0:7.1f}s  cpu {time.process_time() - c0:7.1f}s  load {os.getloadavg()[0]:.2f}")
    seconds = time.time() - t0
    cpu_seconds = time.process_time() - c0  # CPU time of this process: the cost without other jobs' share

    # Evaluate exactly what is shipped: the fp16-rounded weights, run in fp32.
    state = fp16_state_dict(model)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    acc = accuracy(model, x_test, y_test)
    out = Path(out)
    fileio.save_torch(out, state)  # readers never see a half-written weights file
    held = heldout_shards(files)
    record = {
        "sha256": weights_sha256(out), "bytes": out.stat().st_size, "accuracy": acc,
        "test_set": f"{test_path} ({len(y_test)} images, disjoint from training)",
        "epochs": epochs, "seed": seed, "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1), "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "bf16": bf16,
        "params": params, "macs_per_image": macs, "recipe": asdict(recipe),
        "train_shards": [Path(f).name for f in files], "train_images": len(y),
        "train_sha256": train_sha,
        "heldout_shards": [Path(f).name for f in held],
        "heldout_sha256": images_sha256(np.concatenate([load_npz(f)[0] for f in held])) if held else None,
        "torch": torch.__version__, "cpu": cpu_info()[0], "command": command,
    }
    log(f"c10: held-out accuracy {acc:.4f} on {test_path}; {seconds:.0f}s; {out} "
        f"{record['bytes']} bytes sha256 {record['sha256']}")
    return record

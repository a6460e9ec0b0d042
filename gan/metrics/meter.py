"""How long a large feature extraction will take, said up front, and a progress bar while it runs: the published
protocols push 100,000 images through Inception at 299×299, which takes a long time on a CPU."""
from __future__ import annotations

import time

import torch


def _fmt(seconds: float) -> str:
    m = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else f"{m:.0f} min" if m < 90 else f"{m / 60:.1f} h"


class Meter:
    def __init__(self, console=None, log=print):
        self.console, self.log, self.bar, self.task = console, log, None, None

    def rate(self, ext, device: torch.device, n: int = 4) -> float:
        """Images per second of the extractor here, timed on one small batch after a warm-up batch of the same
        shape (a new shape sets up its kernels first)."""
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device)
        with torch.inference_mode():
            ext.module(x)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            t0 = time.perf_counter()
            ext.module(x)
            sync()
        return n / max(time.perf_counter() - t0, 1e-9)

    def plan(self, extractors: list, n_images: int, device: torch.device) -> None:
        """Say how long `n_images` per extractor will take here, then show a bar over all of them."""
        total, parts, secs = 0, [], 0.0
        for e in extractors:
            r = self.rate(e, device)
            secs += n_images / r
            total += n_images
            parts.append(f"{e.name} {r:,.3g} images/s")
        self.log(f"{n_images:,} images through {', '.join(e.name for e in extractors)} on {device.type} "
                 f"({'; '.join(parts)}, measured on a batch): about {_fmt(secs)}")
        if self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("features"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=self.console, transient=True)
            self.task = self.bar.add_task("features", total=total)
            self.bar.start()
        for e in extractors:
            e.on_batch = self.advance

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

"""A run's TensorBoard events: the writer (`Tracker`), its null stand-in on other ranks, the Custom Scalars
layout and the HParams columns."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import torch

from gan import fileio
from gan.metrics import protocol


def _quiet_writer_threads(args) -> None:
    """TensorBoard's writer thread dies of an OSError (a full disk) with a traceback on stderr; the writer raises
    the same error at its next call in the main thread, where Tracker makes it one line: print nothing here."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
        return
    _excepthook(args)


_excepthook = threading.excepthook


class Tracker:
    """TensorBoard events for one run; nothing non-finite is ever written. Errors of TensorBoard's writer thread
    (a full disk) come back as one line."""

    def __init__(self, run_dir: Path, purge_step: int | None = None, on_scalars=None):
        """`on_scalars(values, step, wall_time)` hears every scalar point written (the run's summary.Keeper)."""
        from torch.utils.tensorboard import SummaryWriter

        threading.excepthook = _quiet_writer_threads
        self.run_dir, self.on_scalars = Path(run_dir), on_scalars
        self.writer = self._safe(lambda: SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30))

    @property
    def file(self) -> str | None:
        """The event file this writer writes."""
        return getattr(getattr(self.writer.file_writer, "event_writer", None), "_file_name", None)

    def _safe(self, fn):
        try:
            return fn()
        except OSError as e:
            raise fileio.disk_error(self.run_dir / "events.out.tfevents.*", e) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        wall = time.time()  # one wall time for the point, in the events and in what on_scalars hears
        finite = {k: v for k, v in values.items() if v == v and abs(v) != float("inf")}
        for k, v in finite.items():
            self._safe(lambda: self.writer.add_scalar(k, v, step, walltime=wall))
        if self.on_scalars is not None:
            self.on_scalars({k: float(v) for k, v in finite.items()}, step, wall)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self._safe(lambda: self.writer.add_image(tag, grid, step))

    def histogram(self, tag: str, counts: torch.Tensor, step: int) -> None:
        """A histogram of per-bin counts (bin i = class i), as TensorBoard's histogram dashboard draws it."""
        import numpy as np

        c = counts.double().numpy()
        n = len(c)
        idx = np.arange(n, dtype=np.float64)
        self._safe(lambda: self.writer.add_histogram_raw(
            tag, min=0.0, max=float(n - 1), num=float(c.sum()), sum=float((idx * c).sum()),
            sum_squares=float((idx * idx * c).sum()), bucket_limits=list(idx + 0.5), bucket_counts=list(c),
            global_step=step))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._safe(lambda: self.writer.add_text(tag, text, step))

    def layout(self, suffixes: list[str]) -> None:
        """Custom Scalars dashboard: a category per extractor (never two extractors on one axis), then training."""
        self.custom_scalars(layout(suffixes))

    def custom_scalars(self, charts: dict) -> None:
        """A Custom Scalars layout: {category: {chart title: ["Multiline", [tag regex, ...]]}}."""
        self._safe(lambda: self.writer.add_custom_scalars(charts))

    def hparams(self, flat_config: dict, metrics: dict, step: int = 0) -> None:
        """HParams dashboard entry for this run, written into this run's own folder (add_hparams would make a
        subfolder, i.e. a second run). `metrics` {"hparam/best_fid_c10": v, ...}; None/non-finite left empty."""
        from torch.utils.tensorboard.summary import hparams

        hp = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in flat_config.items()
              if isinstance(v, (bool, int, float, str))}  # booleans as "true"/"false", not 1.0/0.0
        exp, ssi, sei = hparams(hp, {k: 0.0 for k in metrics})
        for s in (exp, ssi, sei):
            self._safe(lambda: self.writer.file_writer.add_summary(s, step))
        self.scalars({k: float(v) for k, v in metrics.items() if v is not None}, step)
        self.flush()

    def flush(self) -> None:
        self._safe(self.writer.flush)

    def close(self) -> None:
        self._safe(self.writer.flush)  # close() alone would not say that the writer thread failed
        self._safe(self.writer.close)


class Null:
    """RunInfo/Tracker stand-in on ranks other than 0: they write nothing."""

    data: dict = {}

    def __getattr__(self, name):
        return lambda *a, **k: None


def layout(suffixes: list[str]) -> dict:
    """Custom Scalars layout: each chart a list of tag regexes; one category per extractor."""
    out = {}
    for s in suffixes:
        e = re.escape(s)
        out[f"metrics · {protocol.extractor_label(s)}"] = {
            f"FID (lower is better) · {protocol.extractor_label(s)}": ["Multiline", [f"^metrics/fid{e}$"]],
            "KID (lower is better)": ["Multiline", [f"^metrics/kid{e}$"]],
            "IS (higher is better)": ["Multiline", [f"^metrics/is{e}$"]],
            "precision / recall (higher is better)": ["Multiline", [f"^metrics/(precision|recall){e}$"]],
            "classes (higher is better)": ["Multiline", [f"^metrics/class_(acc|entropy){e}$"]],
            "eval (gan eval)": ["Multiline", [f"^eval/[a-z_]+{e}$"]],
        }
    out["training"] = {
        "losses": ["Multiline", [r"loss/.*"]],
        "D outputs": ["Multiline", [r"D/.*"]],
        "learning rates": ["Multiline", [r"lr/.*"]],
        "throughput": ["Multiline", [r"perf/.*"]],
        "time": ["Multiline", [r"time/.*", r"progress/.*"]],
    }
    return out


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{"optim": {"g_lr": 2e-4}} -> {"optim.g_lr": 2e-4}; lists (and anything not a number/str/bool) as strings."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def hparam_metrics(history: list, suffixes: list[str]) -> dict:
    """{"hparam/best_fid<suffix>", "hparam/final_fid<suffix>"} per extractor from a run's metric history (None
    when there is no such number yet): one column per extractor, never two extractors in one column."""
    out = {}
    for s in suffixes:
        t = protocol.tag("fid", s)
        vals = [m[t] for _, m in history if t in m and m[t] == m[t]]
        out[f"hparam/best_fid{s}"] = min(vals) if vals else None
        out[f"hparam/final_fid{s}"] = vals[-1] if vals else None
    return out

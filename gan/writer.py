"""A run's TensorBoard events: the writer (`Tracker`), its null stand-in on other ranks, the Custom Scalars
layout and the HParams columns."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gan import fileio
from gan.metrics import protocol

if TYPE_CHECKING:  # the listings import this module for its layout and columns: no torch for them
    import torch


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
        subfolder, i.e. a second run). `metrics` {"summary/best_fid_c10": v, ...}, in the order of the columns;
        None/non-finite left empty."""
        from torch.utils.tensorboard.summary import hparams

        hp = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in flat_config.items()
              if isinstance(v, (bool, int, float, str))}  # booleans as "true"/"false", not 1.0/0.0
        exp, ssi, sei = hparams(hp, {k: 0.0 for k in metrics})
        _first_columns(exp)
        # TensorBoard takes the table's columns from whichever run's experiment summary it meets first: a run with
        # no metric columns (metrics off) writes none, so it cannot hide every other run's FID columns
        for s in ((exp, ssi, sei) if metrics else (ssi, sei)):
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


# What TensorBoard's pages open on. Time Series groups tags by their first part, sorts the groups (capitals first)
# and opens the first two: `FID/<extractor>` (the primary FID, also under metrics/) comes first and the grids
# (`images/`) second, so D's outputs sit beside the losses (`loss/D_real`), the class histograms under `metrics/`
# and the HParams numbers under `summary/` (runs written before used `D/`, `classes/`, `hparam/`).
HEADLINE = "FID/"
SUMMARY = ("summary/", "hparam/")  # the HParams metric columns: written as summary/..., read as either
# The HParams table shows 5 hyperparameter columns, those flagged `differs` first, then by name; a run cannot know
# what differs from other runs, so these, the ones that tell GAN runs apart, carry the flag and come first.
FIRST_COLUMNS = ("experiment.name", "experiment.seed", "loss.name", "model.arch", "optim.g_lr")
METRIC_CHARTS = {"FID (lower is better)": ["fid"], "KID (lower is better)": ["kid"], "IS (higher is better)": ["is"],
                 "precision / recall (higher is better)": ["precision", "recall"],
                 "classes (higher is better)": ["class_acc", "class_entropy"]}


def headline(primary: str | None, values: dict) -> dict:
    """{"FID/c10": v}: the primary FID again, under the group TensorBoard's Time Series opens first."""
    if not primary or primary not in values or protocol.split(primary)[0] != "fid":
        return {}
    return {HEADLINE + (protocol.split(primary)[1].lstrip("_") or "inception"): values[primary]}


def layout(suffixes: list[str], tags=None) -> dict:
    """Custom Scalars layout: each chart a list of tag regexes; one category per extractor, in the order given.
    `tags`: the metric tags the run logs (its protocol's); only their charts, so none stays empty (no
    precision/recall chart while metrics.prc is off). None: every chart."""
    out = {}
    for s in suffixes:
        e, label = re.escape(s), protocol.extractor_label(s)
        cat = out[f"metrics · {label}"] = {}
        for title, names in METRIC_CHARTS.items():
            if tags is None or any(protocol.tag(n, s) in tags for n in names):
                cat[title + (f" · {label}" if names == ["fid"] else "")] = [
                    "Multiline", [f"^metrics/({'|'.join(names)}){e}$"]]
    out["training"] = {
        "losses": ["Multiline", [r"^loss/(D|G)$"]],
        "D outputs (mean)": ["Multiline", [r"^loss/D_(real|fake)$", r"^D/(real|fake)$"]],
        "throughput": ["Multiline", [r"^perf/"]],
    }
    if tags is None or tags:  # logged at metric points only
        out["training"]["time (seconds)"] = ["Multiline", [r"^time/eval_seconds$", r"^progress/train_seconds$"]]
    return out


def primary_first(suffixes: list[str], primary: str | None) -> list[str]:
    """The extractor suffixes with the primary metric's first: its category and its HParams columns lead."""
    first = protocol.split(primary)[1] if primary else None
    return sorted(suffixes, key=lambda s: s != first)


def run_layout(proto: list[dict], primary: str | None, eval_tags=()) -> dict:
    """A run's layout from its metrics protocol (run.json `metrics_protocol`): the primary metric's extractor first,
    only the charts of what it logs, and a chart per `gan eval` number once there is one (evaluate.py writes the
    layout again then: TensorBoard shows a run's latest)."""
    out = layout(primary_first([p.get("suffix", "") for p in proto], primary),
                 {t for p in proto for t in p.get("tags", [])})
    if eval_tags:
        out = {k: v for k, v in out.items() if k != "training"} | {
            "eval (gan eval)": {t[len("eval/"):]: ["Multiline", [f"^{re.escape(t)}$"]] for t in sorted(eval_tags)},
            "training": out["training"]}
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
    """{"summary/best_fid<suffix>", "summary/final_fid<suffix>"} per extractor from a run's metric history (None
    when there is no such number yet): one column per extractor, never two extractors in one column."""
    out = {}
    for s in suffixes:
        t = protocol.tag("fid", s)
        vals = [m[t] for _, m in history if t in m and m[t] == m[t]]
        out[f"{SUMMARY[0]}best_fid{s}"] = min(vals) if vals else None
        out[f"{SUMMARY[0]}final_fid{s}"] = vals[-1] if vals else None
    return out


def _first_columns(exp) -> None:
    """The HParams experiment summary, edited in place: FIRST_COLUMNS flagged to come first, and the metric
    columns named as a person reads them ("best FID c10")."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    meta = exp.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(meta.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in FIRST_COLUMNS
    for m in data.experiment.metric_infos:
        kind, _, rest = m.name.tag.split("/", 1)[1].partition("_")  # "best", "fid_c10"
        name, sfx = protocol.split("metrics/" + rest)
        m.display_name = f"{kind} {name.upper()} {protocol.extractor_label(sfx)}"
    meta.content = data.SerializeToString()

"""Where a run leaves its traces: the run folder, run.json, TensorBoard events and the console.

Only the main process writes: `writers(dist, ...)` gives the other ranks null writers, so the engine never asks
which rank it is before writing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from rich.console import Console

from gan import fileio
from gan.errors import GanError
from gan.metrics import protocol

# Piped or logged output gets wide lines instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,-]*")


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def check_name(name: str, what: str) -> str:
    """A run or experiment name becomes a folder name: no path separator, nothing that leaves logs/."""
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise GanError(f"{what} {name!r}: use letters, digits and . _ + = , - (no path separators, not starting "
                       "with . or -)")
    return name


def new_run_dir(logs: Path, exp: str, name: str | None, prefix: str = "") -> Path:
    """logs/<exp>/<prefix><timestamp>[-name]; mkdir without exist_ok, so simultaneous runs never share a folder."""
    check_name(exp, "experiment name")
    base = prefix + dt.datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{check_name(name, '--name')}" if name else "")
    parent = Path(logs) / exp
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanError(f"logs folder '{parent}' cannot be created ({e.strerror})") from None
    for i in range(1000):
        d = parent / (base if i == 0 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
        except OSError as e:
            raise fileio.disk_error(d, e) from None
    raise GanError(f"cannot find a free run folder under '{parent}'")


def exact_run_dir(path: Path) -> Path:
    """A run folder at a path chosen by the caller (gan sweep): made new, or an empty one that exists."""
    path = Path(path)
    check_name(path.name, "--run-dir")
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir() or any(p.name != ".lock" for p in path.iterdir()):  # .lock: runlock's
            raise GanError(f"--run-dir '{path}' exists and is not empty: not overwriting it") from None
    except OSError as e:
        raise fileio.disk_error(path, e) from None
    return path


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import torch_fidelity
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_fidelity": torch_fidelity.__version__}


class RunInfo:
    """run.json: status (running, completed, interrupted, failed, diverged, pruned), times, step, seed, device,
    versions, the metrics protocol. A damaged run.json is moved aside (its bytes kept), never overwritten."""

    def __init__(self, run_dir: Path, log=print):
        self.path = Path(run_dir) / "run.json"
        self.data = fileio.read_json(self.path, default={}, move_aside=True, log=log)
        if not isinstance(self.data, dict):  # valid JSON, but not what this program writes: keep its bytes too
            fileio.set_aside(self.path, f"a JSON {type(self.data).__name__}, not an object", log)
            self.data = {}

    def update(self, durable: bool = True, **fields) -> None:
        """Write run.json atomically; `durable=False` (progress heartbeats) skips the fsync."""
        self.data.update(fields)
        fileio.write_json(self.path, self.data, durable=durable)


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

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        threading.excepthook = _quiet_writer_threads
        self.run_dir = Path(run_dir)
        self.writer = self._safe(lambda: SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30))

    def _safe(self, fn):
        try:
            return fn()
        except OSError as e:
            raise fileio.disk_error(self.run_dir / "events.out.tfevents.*", e) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            if v == v and abs(v) != float("inf"):
                self._safe(lambda: self.writer.add_scalar(k, v, step))

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
        self._safe(lambda: self.writer.add_custom_scalars(layout(suffixes)))

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


class Recorder:
    """The traces of one run, written by the main process: run.json, TensorBoard, PNGs under results/. On the
    other ranks its writers are null, so callers never ask which rank they are on."""

    RESERVE = 64 << 10  # bytes held back while the run writes: given up so that a full disk still takes the status

    def __init__(self, run_dir: Path, is_main: bool, purge_step: int | None, log=print, save_png: bool = False):
        self.run_dir, self.log, self.save_png = Path(run_dir), log, save_png and is_main
        self.info, self.tb = (RunInfo(run_dir, log), Tracker(run_dir, purge_step)) if is_main else (Null(), Null())
        self.reserve = self.run_dir / ".reserve"
        if is_main:
            with contextlib.suppress(GanError):  # a disk already too full for it: nothing to hold back
                fileio.write_atomic(self.reserve, bytes(self.RESERVE), durable=False)

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            self.reserve.unlink()

    def started(self, first: bool, cfg_toml: str, facts: dict, step: int, world: int | None) -> None:
        if first:
            self.info.update(status="running", started=now(), versions=versions(), git_commit=git_commit(), **facts)
        else:
            entry = {"at": now(), "step": step} | ({"world_size": world} if world else {})
            self.info.update(status="running", resumed=self.info.data.get("resumed", []) + [entry], **facts)
        if not isinstance(self.info, Null):  # the config as it runs now (a resume may have changed its length)
            fileio.write_atomic(self.run_dir / "config.toml", cfg_toml)

    def protocol(self, first: bool, proto: list[dict], notes: list[str], primary, step: int) -> None:
        """What the run's metric numbers mean: said once, kept in run.json; on resume, any change from what the
        run recorded (other reference images or weights) is said and kept in `protocol_changes`."""
        for note in notes + ([f"primary metric {primary.tag}: {primary.why}"] if primary.tag else []):
            self.log(f"metrics: {note}")
        if not first and not isinstance(self.info, Null):
            changes = protocol.changes(self.info.data.get("metrics_protocol"), proto)
            for ch in changes:
                self.log(f"[yellow]warning: {protocol.change_line(ch, step)}[/]")
            if changes:
                self.info.update(protocol_changes=self.info.data.get("protocol_changes", []) +
                                 [{"step": step, "at": now(), **ch} for ch in changes])
        self.info.update(metrics_protocol=proto, metrics_notes=notes,
                         primary_metric={"tag": primary.tag, "why": primary.why})

    def first_pictures(self, cfg_toml: str, proto: list[dict], notes: list[str], primary, real, augmented) -> None:
        """Once per run: the Custom Scalars layout, config and protocol text, the real grid and what D sees."""
        self.tb.layout([p["suffix"] for p in proto])
        self.tb.text("config", "```\n" + cfg_toml + "\n```")
        self.tb.text("metrics_protocol", "\n\n".join(
            [f"- {n}" for n in notes] + [f"- primary: `{primary.tag}` ({primary.why})"]
            + [f"`{p['extractor']}` sha256 {p['weights_sha256'][:16]}…, {p['num_samples']} samples vs "
               f"{p['reference_samples']} reference images ({p['reference_sha256'][:16]}…): {', '.join(p['tags'])}"
               for p in proto]))
        self.image("images/real", real, 0, "real.png")
        if augmented is not None:
            self.image("images/real_augmented", augmented, 0)

    def image(self, tag: str, grid: torch.Tensor, step: int, png: str | None = None) -> None:
        self.tb.image(tag, grid, step)
        if png and self.save_png:
            from torchvision.utils import save_image

            fileio.write_atomic(self.run_dir / "results" / png, lambda f: save_image(grid.float() / 255, f,
                                                                                     format="png"))

    def evaluation(self, step: int, ev, extra: dict) -> dict:
        """One metric point: TensorBoard (finite values), run.json (non-finite ones, named), the console line."""
        values = ev.values | extra
        for k, v in values.items():
            if v != v or abs(v) == float("inf"):
                self.log(f"[yellow]warning: {k} is not finite ({v}) at step {step}: recorded as such in run.json[/]")
                self.info.update(nonfinite=self.info.data.get("nonfinite", []) + [{"step": step, "tag": k}])
        self.tb.scalars(values | ev.spread, step)
        for k, h in ev.histograms.items():
            self.tb.histogram(k.replace("metrics/", "classes/"), h, step)
        self.info.update(durable=False, last_eval={"step": step, "values": values})
        self.tb.flush()
        self.log(f"step {step}: " + ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in values.items()
                                               if k.startswith("metrics/")))
        return values

    def failed(self, e: BaseException | str, step: int) -> None:
        self._release()
        try:
            self.info.update(status="failed", ended=now(), step=step, error=str(e)[:300] or type(e).__name__)
            self.tb.close()
        except GanError:  # the disk that failed the run may not take the status either
            pass

    def ended(self, status: str, flat_config: dict | None, history: list, **fields) -> None:
        """The events first, the status last: a run killed in between is not `completed` and its resume ends it."""
        self._release()
        if flat_config is not None:
            suffixes = [p["suffix"] for p in self.info.data.get("metrics_protocol", [])]
            self.tb.hparams(flat_config, hparam_metrics(history, suffixes), fields.get("step", 0))
        self.tb.close()
        self.info.update(status=status, ended=now(), **fields)


def banner(run_dir: Path, c, nets, where: str, steps: int, precision: str, data) -> str:
    """The line that opens a run: what trains, how long, on what, from which data."""
    from gan.models import count_params

    return (f"run [bold]{run_dir}[/]: {c.model.arch}{' conditional' if data.num_classes else ''} G "
            f"{count_params(nets.G) / 1e6:.2f}M D {count_params(nets.D) / 1e6:.2f}M, {c.loss.name} loss, {steps} "
            f"steps on {where}, {precision}" + (f", DiffAugment {c.train.diffaug}" if c.train.diffaug else "")
            + (f", at most {c.train.minutes:g} min" if c.train.minutes else "") + f", data {data.source}")


def long_run_note(steps_left: int, first_step_seconds: float, minutes: float) -> str | None:
    """On a CPU, a run planned for many hours is sized for a GPU: what to say, and what to run instead."""
    hours = steps_left * first_step_seconds / 3600
    hours = min(hours, minutes / 60) if minutes else hours
    if hours <= 12:
        return None
    return (f"[yellow]this run is planned for about {hours / 24:.1f} days on this CPU ({first_step_seconds:.1f} s "
            "for its first step): it is sized for a GPU. On a CPU, `make train EXP=quick` gives the best samples in "
            "10 minutes.[/]")


@contextlib.contextmanager
def progress_bar(name: str, total: int, done: int, quiet: bool, status, budget_left=lambda: None):
    """A rich progress bar; yields a function of the step that updates it (`status()` gives its text). The ETA is
    the step plan's or, when sooner, the time budget's (`budget_left()`: seconds of train.minutes left, or None)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                   TextColumn("{task.fields[status]}"), console=console, disable=quiet, transient=False)
    task = bar.add_task(name, total=total, completed=done, status="", rate="", eta="-")
    t0 = time.perf_counter()

    def update(step: int) -> None:
        rate = (step - done) / max(time.perf_counter() - t0, 1e-9)
        left = [(total - step) / rate] if rate > 0 else []
        left += [b for b in [budget_left()] if b is not None]
        eta = str(dt.timedelta(seconds=round(max(0.0, min(left))))) if left else "-"
        bar.update(task, completed=step, rate=f"{rate:.2f} it/s", status=status(), eta=eta)

    with bar:
        yield update


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

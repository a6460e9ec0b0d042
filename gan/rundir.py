"""A run's folder and its run.json: where a run lives, its name, its status and what it ran with; `Recorder`
gathers the traces one run leaves (run.json, TensorBoard events, PNGs).

Only the main process writes: on the other ranks `Recorder`'s writers are null, so the engine never asks which
rank it is before writing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from gan import coderecord, fileio, summary
from gan.errors import GanError
from gan.metrics import protocol
from gan.writer import Null, Tracker, headline, hparam_metrics, primary_first, run_layout

if TYPE_CHECKING:  # config checks run names through this module: no torch for them
    import torch

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


def resume_line(run_dir: Path) -> str:
    """What to run to go on with a run that stopped: its resume, or a new run when it never made a checkpoint."""
    ck = Path(run_dir) / "checkpoints"
    if (ck / "last.pt").is_file() or (ck / "last.pt.prev").is_file():
        return f"`gan resume {run_dir}` (it goes on from its last checkpoint)"
    return "run the same command again (the run made no checkpoint to resume)"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import torch
    import torch_fidelity
    import torchvision

    from gan import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_fidelity": torch_fidelity.__version__, "gan": __version__}


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


class Recorder:
    """The traces of one run, written by the main process: run.json, TensorBoard, PNGs under results/. On the
    other ranks its writers are null, so callers never ask which rank they are on."""

    RESERVE = 64 << 10  # bytes held back while the run writes: given up so that a full disk still takes the status

    def __init__(self, run_dir: Path, is_main: bool, purge_step: int | None, log=print, save_png: bool = False):
        self.run_dir, self.log, self.save_png = Path(run_dir), log, save_png and is_main
        self.primary = None  # the tag of the metric that judges the run (protocol.primary), once known
        # the summary first: on a resume it reads the events as they are, before this writer's restart purges them
        self.index = summary.Keeper(run_dir, purge_step) if is_main else Null()
        self.info, self.tb = (RunInfo(run_dir, log), Tracker(run_dir, purge_step, self.index.add)) if is_main \
            else (Null(), Null())
        if is_main:
            self.index.own_file(self.tb.file)
        self.reserve = self.run_dir / ".reserve"
        if is_main:
            with contextlib.suppress(GanError):  # a disk already too full for it: nothing to hold back
                fileio.write_atomic(self.reserve, bytes(self.RESERVE), durable=False)

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            self.reserve.unlink()

    def started(self, first: bool, cfg_toml: str, facts: dict, step: int, world: int | None,
                resume_set: list | None = None) -> None:
        main = not isinstance(self.info, Null)
        if first:  # the code that made it: git, the user's files copied (gan/coderecord.py)
            code = coderecord.record(self.run_dir, cfg_toml) if main else {}
            self.info.update(status="running", started=now(), versions=versions(), **code, **facts)
        else:
            entry = {"at": now(), "step": step} | ({"world_size": world} if world else {})
            entry |= {"set": resume_set} if resume_set else {}  # what this resume changed, never forgotten
            changed, code = coderecord.resumed(self.run_dir, self.info.data, cfg_toml, step, self.log) if main \
                else ({}, None)
            self.info.update(status="running", resumed=self.info.data.get("resumed", []) + [entry | changed],
                             **({"code": code} if code else {}), **facts)
        if main:  # the config as it runs now (a resume may have changed its length)
            fileio.write_atomic(self.run_dir / "config.toml", cfg_toml)
            self.index.write("running", cfg_toml)  # its key may lag events still queued: trusted while live

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
        self.primary = primary.tag
        self.info.update(metrics_protocol=proto, metrics_notes=notes,
                         primary_metric={"tag": primary.tag, "why": primary.why})

    def first_pictures(self, cfg_toml: str, proto: list[dict], notes: list[str], primary, real, augmented) -> None:
        """Once per run: the Custom Scalars layout, config and protocol text, the real grid and what D sees."""
        self.tb.custom_scalars(run_layout(proto, primary.tag))
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
        """One metric point: TensorBoard (finite values), run.json (non-finite ones, named), the console line. The
        summary is written before run.json's last_eval: a reader that sees the point in one finds it in both."""
        values = ev.values | extra
        for k, v in values.items():
            if v != v or abs(v) == float("inf"):
                self.log(f"[yellow]warning: {k} is not finite ({v}) at step {step}: recorded as such in run.json[/]")
                self.info.update(nonfinite=self.info.data.get("nonfinite", []) + [{"step": step, "tag": k}])
        self.tb.scalars(values | ev.spread | headline(self.primary, values), step)
        for k, h in ev.histograms.items():  # metrics/classes_c10 beside the class metrics (runs before: classes/)
            self.tb.histogram(protocol.tag("classes", protocol.split(k)[1]), h, step)
        self.tb.flush()
        self.index.write("running")
        self.info.update(durable=False, last_eval={"step": step, "values": values})
        self.log(f"step {step}: " + ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in values.items()
                                               if k.startswith("metrics/")))
        return values

    def failed(self, e: BaseException | str, step: int) -> None:
        self._release()
        if isinstance(e, fileio.DiskFull):
            e = e.line(resume_line(self.run_dir))
        try:
            self.info.update(status="failed", ended=now(), step=step, error=str(e)[:300] or type(e).__name__)
            self.tb.close()
            self.index.write("failed")
        except GanError:  # the disk that failed the run may not take the status either
            pass

    def ended(self, status: str, flat_config: dict | None, history: list, **fields) -> None:
        """The events first, the status next: a run killed in between is not `completed` and its resume ends it.
        The summary last (a full disk leaves its room to the status; a summary left stale is rebuilt by readers)."""
        self._release()
        if flat_config is not None:
            suffixes = primary_first([p["suffix"] for p in self.info.data.get("metrics_protocol", [])], self.primary)
            self.tb.hparams(flat_config, hparam_metrics(history, suffixes), fields.get("step", 0))
        self.tb.close()
        self.info.update(status=status, ended=now(), **fields)
        self.index.write(status)

"""Where a run leaves its traces: the run folder, run.json, TensorBoard events and the console."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from rich.console import Console

from gan.errors import GanError

# Piped or logged output gets wide lines instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
ROOT = Path(__file__).resolve().parent.parent


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def new_run_dir(logs: Path, exp: str, name: str | None) -> Path:
    """logs/<exp>/<timestamp>[-name]; mkdir without exist_ok, so simultaneous runs never share a folder."""
    base = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{name}" if name else "")
    parent = logs / exp
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
            raise GanError(f"logs folder '{parent}' is not writable ({e.strerror})") from None
    raise GanError(f"cannot find a free run folder under '{parent}'")


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
    """run.json: status (running, completed, interrupted, failed, diverged), times, step, seed, device, versions."""

    def __init__(self, run_dir: Path, **fields):
        self.path = run_dir / "run.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.data.update(fields)

    def update(self, **fields) -> None:
        self.data.update(fields)
        tmp = self.path.with_name(f".run.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def read_run(run_dir: Path) -> dict:
    p = Path(run_dir) / "run.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


class Tracker:
    """TensorBoard events for one run; nothing non-finite is ever written."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            if v == v and abs(v) != float("inf"):
                self.writer.add_scalar(k, v, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def layout(self) -> None:
        """Custom Scalars dashboard: metric charts (every extractor's series on one chart) and training charts."""
        self.writer.add_custom_scalars(LAYOUT)

    def hparams(self, flat_config: dict, metrics: dict, step: int = 0) -> None:
        """HParams dashboard entry for this run, written into this run's own folder (add_hparams would make a
        subfolder, i.e. a second run). `metrics` {"hparam/best_fid": v, ...}; None/non-finite are left empty."""
        from torch.utils.tensorboard.summary import hparams

        hp = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in flat_config.items()
              if isinstance(v, (bool, int, float, str))}  # booleans as "true"/"false", not 1.0/0.0
        exp, ssi, sei = hparams(hp, {k: 0.0 for k in metrics})
        for s in (exp, ssi, sei):
            self.writer.file_writer.add_summary(s, step)
        self.scalars({k: float(v) for k, v in metrics.items() if v is not None}, step)
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def python_cmd() -> str:
    return " ".join([os.path.basename(sys.executable), *sys.argv[1:]])


# Custom Scalars layout: each chart is a list of tag regexes (all matches share one chart).
LAYOUT = {
    "metrics": {
        "FID (lower is better)": ["Multiline", [r"metrics/fid.*"]],
        "KID (lower is better)": ["Multiline", [r"metrics/kid(_c10)?$"]],
        "IS (higher is better)": ["Multiline", [r"metrics/is(_c10)?$"]],
        "eval (gan eval)": ["Multiline", [r"eval/.*"]],
    },
    "training": {
        "losses": ["Multiline", [r"loss/.*"]],
        "D outputs": ["Multiline", [r"D/.*"]],
        "learning rates": ["Multiline", [r"lr/.*"]],
        "throughput": ["Multiline", [r"perf/.*"]],
    },
}


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


def hparam_metrics(history: list, best: dict | None, tag: str | None) -> dict:
    """{"hparam/best_fid", "hparam/final_fid"} from a run's metric history for the primary FID tag (None when
    there is no such number yet)."""
    last = next((m[tag] for _, m in reversed(history) if tag and tag in m), None)
    return {"hparam/best_fid": best["value"] if best else None, "hparam/final_fid": last}

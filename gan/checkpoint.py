"""Checkpoints: atomic, rotated so a loadable `last.pt` exists at every moment, checksummed (a flipped byte is
found, not loaded as other weights), loaded with weights_only=True (plain tensors and builtins only), and the RNG
states that make a resumed run continue bit for bit."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from gan import fileio
from gan.errors import GanError


def prev_of(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save(obj: dict, path: Path) -> None:
    """Write `path` atomically; the file it replaces becomes `<path>.prev`, without a moment where no loadable
    `path` exists (see fileio.write_atomic). `.prev` is the fallback when `path` turns out damaged."""
    fileio.save_torch(path, obj, checksum=True, keep_previous=prev_of(Path(path)))


def export(run_dir: Path, state: dict) -> tuple[Path, Path]:
    """netG.pth (EMA weights when there are any) and netD.pth as plain state_dicts, the pair or nothing. An export
    never overwrites: when either name is taken, the pair gets the first free number (netG-1.pth and netD-1.pth,
    then -2, ...). Under the run's records lock (runlock.records): two exports at once take two numbers."""
    from gan import runlock

    g = state["G_ema"] if state.get("G_ema") is not None else state["G"]
    run_dir, n = Path(run_dir), 0
    with runlock.records(run_dir):
        while any(p.exists() for p in _pair(run_dir, n)):
            n += 1
        paths = _pair(run_dir, n)
        fileio.save_torch(paths[0], g, exclusive=True)
        try:
            fileio.save_torch(paths[1], state["D"], exclusive=True)
        except BaseException:  # the disk took G's file but not D's: no half pair is left
            paths[0].unlink(missing_ok=True)
            raise
    return paths


def _pair(run_dir: Path, n: int) -> tuple[Path, Path]:
    tail = f"-{n}" if n else ""
    return run_dir / f"netG{tail}.pth", run_dir / f"netD{tail}.pth"


def load_one(path: Path) -> dict:
    try:
        obj = fileio.load_torch(path)
    except FileNotFoundError:
        raise GanError(f"{path}: no such checkpoint") from None
    except fileio.Corrupt as e:
        raise GanError(f"{path}: corrupt checkpoint ({e})") from None
    except pickle.UnpicklingError as e:
        found = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln]
        if found:  # a pickled function or class: code that weights_only never runs
            raise GanError(f"{path}: refused: it holds objects that are not plain tensors/builtins "
                           f"({found[0][:200]})") from None
        raise GanError(f"{path}: truncated or corrupt checkpoint (not a pickle torch can read)") from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged zip or pickle raises, said in one line
        raise GanError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "step" not in obj:
        raise GanError(f"{path}: not a gan checkpoint (no 'step')")
    return obj


def load(path: Path, log=print) -> dict:
    """Load `path`; if it is damaged or missing while `.prev` exists, say so and use `.prev`."""
    path, prev = Path(path), prev_of(Path(path))
    if not path.exists() and prev.is_file():
        log(f"warning: {path.name} is missing (killed between rotations?); using {prev.name}")
        return load_one(prev)
    try:
        return load_one(path)
    except GanError as e:
        if "refused" in str(e) or not prev.is_file():
            raise
        log(f"warning: {e}; using the previous checkpoint {prev.name}")
        return load_one(prev)


def load_to_resume(path: Path, log=print, writer: bool = True) -> dict:
    """`load` for the run's own writer: when `path` is damaged and `.prev` is used instead, the damaged file is
    moved aside (`last.pt.damaged-<time>`, its bytes kept) so that the next rotation cannot link it over the good
    `.prev`: `.prev` stays the good one until a newer good checkpoint exists."""
    path, prev = Path(path), prev_of(Path(path))
    try:
        return load_one(path)
    except GanError as e:
        if "refused" in str(e) or not prev.is_file() or not path.exists():
            return load(path, log)
        state = load_one(prev)  # raises when .prev is damaged too: nothing is moved then
        log(f"warning: {e}; using the previous checkpoint {prev.name}")
        if writer:
            import datetime as dt

            aside = path.with_name(f"{path.name}.damaged-{dt.datetime.now():%Y%m%d-%H%M%S}")
            path.replace(aside)
            log(f"warning: the damaged {path.name} is kept as {aside.name}")
        return state


def resumable(run_dir: Path) -> Path | None:
    """The checkpoint a run resumes from (`last.pt`, or `last.pt.prev` when it is all there is)."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    return last if last.is_file() or prev_of(last).is_file() else None


# ---- random number generators ----------------------------------------------------------------------------------

def rng_state(device: torch.device | None = None) -> dict:
    """torch (CPU and CUDA), numpy and python RNG states as plain tensors/lists (loadable with weights_only)."""
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
        if device is not None and device.type == "cuda":  # the generator this process draws from: under torchrun
            s["cuda_device"] = torch.cuda.get_rng_state(device)  # cuda:LOCAL_RANK, which resume puts on its own
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    s["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached}
    ver, internal, gauss = random.getstate()
    s["python"] = {"version": ver, "internal": list(internal), "gauss": gauss}
    return s


def set_rng_state(s: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in s and torch.cuda.is_available():
        for i, st in enumerate(s["cuda"][:torch.cuda.device_count()]):  # a checkpoint from a bigger machine fits
            torch.cuda.set_rng_state(st, i)
        if s.get("cuda_device") is not None and device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(s["cuda_device"], device)

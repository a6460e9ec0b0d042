"""Atomic, checked checkpoints loaded with weights_only=True (plain tensors and builtins only)."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from gan.errors import GanError


def save(obj: dict, path: Path) -> None:
    """Write to a temp file, fsync, keep the previous good file as `.prev`, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)  # the renames themselves survive a power cut
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_one(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise GanError(f"{path}: refused: it holds objects that are not plain tensors/builtins "
                       f"(weights_only load failed: {str(e).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise GanError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "step" not in obj:
        raise GanError(f"{path}: not a gan checkpoint (no 'step')")
    return obj


def load(path: Path, log=print) -> dict:
    """Load `path`; if it is damaged, say so and fall back to the previous good one."""
    try:
        return load_one(path)
    except GanError as e:
        prev = path.with_name(path.name + ".prev")
        if "refused" in str(e) or not prev.is_file():
            raise
        log(f"warning: {e}; using the previous checkpoint {prev.name}")
        return load_one(prev)

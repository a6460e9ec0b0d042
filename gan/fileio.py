"""One way to write a file: a temp file in the same folder, fsync, `os.replace`, fsync the folder.

A reader (or a process killed at any moment) sees the old file or the new one, never half of one. Every file the
program writes goes through here: checkpoints, run.json, metrics.json, config.toml, exports, caches, compare
outputs. A full disk is said in one line (`DiskFull`), and the partial temp file is removed.

Reading JSON the program itself wrote: a damaged file is never overwritten. `read_json(..., move_aside=True)`
renames it to `<name>.corrupt-<time>` and says so, so its bytes stay for the user to look at.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

from gan.errors import GanError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(GanError):
    """The filesystem holding a file the program writes has no room left."""


def disk_error(path: Path, e: OSError) -> GanError:
    """An OSError from writing `path`, as the one line the user reads."""
    if e.errno in _FULL:
        return DiskFull(f"disk full: cannot write '{path}' ({e.strerror}); free space, then `gan resume` the run")
    return GanError(f"cannot write '{path}' ({e.strerror or e})")


def fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` survive a power cut (a no-op where the OS cannot open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, fill: Callable[[io.BufferedWriter], Any] | bytes | str,
                 keep_previous: Path | None = None, durable: bool = True, exclusive: bool = False) -> Path:
    """Write `path` atomically. `fill` is the bytes, the text (UTF-8), or a function that writes to the file.

    `keep_previous`: the file being replaced becomes this one, without a moment where `path` is missing: it is
    hard-linked there (`path` stays in place) before the one `os.replace` that puts the new file in.
    `durable=False` skips the fsyncs (heartbeats written often): still atomic, perhaps lost at a power cut.
    `exclusive=True`: never replace an existing `path` (FileExistsError, nothing written): the finished file is
    hard-linked into place, which fails when the name is taken, even by a file made a moment ago."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(fill):
                fill(f)
            else:
                f.write(fill.encode() if isinstance(fill, str) else fill)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            _link_previous(path, Path(keep_previous))
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
    except FileExistsError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise disk_error(path, e) from None
    except BaseException:  # a signal or bug mid-write: no temp file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def _link_new(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path` only if `path` does not exist (os.link fails on a taken name, atomically)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:  # a filesystem without hard links: exclusive create, then the bytes
        if e.errno in _FULL:
            raise
        with open(tmp, "rb") as src, open(path, "xb") as dst:
            dst.write(src.read())
            os.fsync(dst.fileno())
    tmp.unlink()


def _link_previous(path: Path, prev: Path) -> None:
    link = prev.with_name(f".{prev.name}.link{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        os.link(path, link)
    except OSError as e:  # a filesystem without hard links: a copy
        if e.errno in _FULL:
            raise
        with open(path, "rb") as src, open(link, "wb") as dst:
            dst.write(src.read())
            os.fsync(dst.fileno())
    os.replace(link, prev)


def write_json(path: str | Path, obj: Any, durable: bool = True) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n", durable=durable)


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda f: torch.save(obj, f))


def read_json(path: str | Path, default: Any = None, move_aside: bool = False, log: Callable = print) -> Any:
    """The JSON in `path`; `default` when it does not exist. A damaged file: with `move_aside`, renamed to
    `<name>.corrupt-<time>` (its bytes kept) and `default` returned, the user told; else a GanError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = type(e).__name__ if not isinstance(e, json.JSONDecodeError) else f"not JSON: {e.msg} at byte {e.pos}"
        if not move_aside:
            raise GanError(f"'{path}' is damaged ({why})") from None
        set_aside(path, why, log)
        return default


def set_aside(path: str | Path, why: str, log: Callable = print) -> Path:
    """Rename a damaged file to `<name>.corrupt-<time>` (its bytes kept, never overwritten) and say so."""
    path = Path(path)
    stamp = f"{path.name}.corrupt-{dt.datetime.now():%Y%m%d-%H%M%S}"
    aside = path.with_name(stamp)
    for i in range(1, 1000):  # two damaged files in one second: both kept
        if not aside.exists():
            break
        aside = path.with_name(f"{stamp}-{i}")
    os.replace(path, aside)
    log(f"warning: '{path}' was damaged ({why}): moved aside to '{aside.name}', starting a new one")
    return aside


def sha256_file(path: str | Path) -> str:
    """Streamed sha256 of a file: the identity of weights files in every metric's protocol."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

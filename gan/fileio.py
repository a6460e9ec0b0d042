"""One way to write a file: a temp file in the same folder, fsync, `os.replace`, fsync the folder.

A reader (or a process killed at any moment) sees the old file or the new one, never half of one. Every file the
program writes goes through here: checkpoints, run.json, metrics.json, config.toml, exports, caches, compare
outputs. A full disk is said in one line (`DiskFull`), and the partial temp file is removed.

Reading JSON the program itself wrote: a damaged file is never overwritten. `read_json(..., move_aside=True)`
renames it to `<name>.corrupt-<time>` and says so, so its bytes stay for the user to look at.

torch files the program reads back (checkpoints, reference caches) carry a checksum of their contents
(`save_torch(..., checksum=True)`, checked by `load_torch`): torch.load does not check the zip's CRCs, so a flipped
byte in a tensor would otherwise load as silently different weights.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from gan import stop
from gan.errors import GanError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(GanError):
    """The filesystem holding a file the program writes has no room left: exit 1, not bad input. Its line ends with
    what to run once there is room: the same command, or (`line`) what the caller knows is right, such as the
    `gan resume` of a run that stopped at its last checkpoint."""
    exit_code = 1

    def __init__(self, path, why: str, then: str = "run the same command again"):
        self.path, self.why = path, why
        super().__init__(self.line(then))

    def line(self, then: str) -> str:
        return f"disk full: cannot write '{self.path}' ({self.why}); free space, then {then}"

    def __reduce__(self):  # picklable across processes like any exception
        return DiskFull, (self.path, self.why)


def disk_error(path: Path, e: OSError) -> GanError:
    """An OSError from writing `path`, as the one line the user reads."""
    if e.errno in _FULL:
        return DiskFull(path, e.strerror or "no space left")
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
    `exclusive`: never replace an existing `path` (GanError instead; `os.link` puts the file in, or fails)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sink = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(fill):
                sink = _Sink(f)
                fill(sink)
            else:
                f.write(fill.encode() if isinstance(fill, str) else fill)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        stop.at(f"write:{path.name}")
        if exclusive:
            _claim(tmp, path)
        else:
            if keep_previous is not None and path.exists():
                _link_previous(path, Path(keep_previous))
                stop.at(f"rotate:{path.name}")
            os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise disk_error(path, e) from None
    except BaseException as e:  # a signal or bug mid-write: no temp file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, Exception) and sink is not None and sink.error is not None:
            raise disk_error(path, sink.error) from None  # the OSError a writer wrapped in its own error
        raise
    if durable:
        fsync_dir(path.parent)
    return path


class _Sink:
    """The file as a `fill` function sees it. An OSError of a write is kept: torch.save's zip writer turns it into
    `RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos`, which is still a full disk."""

    def __init__(self, f: io.BufferedWriter):
        self._f, self.error = f, None

    def write(self, b) -> int:
        try:
            return self._f.write(b)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _claim(tmp: Path, path: Path) -> None:
    """Put `tmp` in at `path` only where nothing is there yet."""
    try:
        try:
            os.link(tmp, path)
            os.unlink(tmp)
        except FileExistsError:
            raise
        except OSError as e:  # no hard links here: claim the name, then replace the empty claim
            if e.errno in _FULL:
                raise
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.replace(tmp, path)
    except FileExistsError:
        raise GanError(f"'{path}' already exists: not overwriting it") from None


def _link_previous(path: Path, prev: Path) -> None:
    with contextlib.suppress(OSError):
        if os.path.samefile(path, prev):  # a rotation killed between its renames left them one file: done
            return
    link = prev.with_name(f".{prev.name}.link{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        try:
            os.link(path, link)
        except OSError as e:  # a filesystem without hard links: a copy
            if e.errno in _FULL:
                raise
            with open(path, "rb") as src, open(link, "wb") as dst:
                dst.write(src.read())
                os.fsync(dst.fileno())
        os.replace(link, prev)  # (a no-op, link left, were they one file: rename(2) on two links of a file)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        raise


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temp files of write_atomic left by a process that was killed (its pid no longer runs): removed."""
    gone = []
    for p in Path(folder).glob(".*.*[0-9]"):
        m = re.fullmatch(r"\..+\.(?:tmp|link)(\d+)", p.name)
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                gone.append(p)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def write_json(path: str | Path, obj: Any, durable: bool = True) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n", durable=durable)


CHECKSUM = "checksum"  # the key save_torch(checksum=True) adds to a dict


def save_torch(path: str | Path, obj: Any, checksum: bool = False, keep_previous: Path | None = None,
               exclusive: bool = False) -> Path:
    """torch.save through write_atomic; `checksum`: a dict also carries the digest of its contents."""
    import torch

    if checksum:
        obj = {**obj, CHECKSUM: digest(obj)}
    return write_atomic(path, lambda f: torch.save(obj, f), keep_previous=keep_previous, exclusive=exclusive)


class Corrupt(ValueError):
    """A file's contents do not match the checksum written with it."""


def load_torch(path: str | Path) -> Any:
    """torch.load (weights_only, on the CPU); a dict with a checksum is checked against it (Corrupt)."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and CHECKSUM in obj:
        stored = obj.pop(CHECKSUM)
        if stored != digest(obj):
            raise Corrupt("its contents do not match the checksum written with it")
    return obj


def digest(obj: Any) -> str:
    """sha256 of a nest of dicts, lists and tensors (dtype, shape, bytes) and plain values (repr)."""
    import torch

    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            h.update(b"{")
            for k, v in x.items():
                h.update(repr(k).encode() + b":")
                walk(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode() + b",")

    walk(obj)
    return h.hexdigest()


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


def set_aside(path: Path, why: str, log: Callable = print) -> Path:
    """Rename a damaged file to `<name>.corrupt-<time>` (never over an earlier one) and say so."""
    path = Path(path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        aside = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{i}" if i else ""))
        try:
            os.link(path, aside)  # fails where `aside` exists: an earlier damaged copy is never replaced
        except FileExistsError:
            continue
        except OSError:  # no hard links here: a rename (no other process writes .corrupt-* names)
            if aside.exists():
                continue
            os.replace(path, aside)
            break
        path.unlink()
        break
    log(f"warning: '{path}' was damaged ({why}): moved aside to '{aside.name}', starting a new one")
    return aside


def sha256_file(path: str | Path) -> str:
    """Streamed sha256 of a file: the identity of weights files in every metric's protocol."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

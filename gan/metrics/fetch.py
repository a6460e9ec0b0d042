"""The standard Inception weights, fetched once and verified: `gan features get inception`, and the same step at a
run's start when its metrics want the standard Inception and the file is missing (`metrics.fetch_inception`).

Every fetch has one deadline for the whole transfer (a server that trickles bytes cannot hold a run's start), on top
of a timeout for each answer. The opening (name lookup, connect, headers) runs in a helper thread only so that a
hung name lookup is bounded too; a response that arrives after the fetch gave up is closed by that thread at once.

torch-fidelity's own download (torch.hub) checks no hash and loads with weights_only=False; here the file streams
into a temp file beside its place in torch-fidelity's cache (`$TORCH_HOME/hub/checkpoints`, where
`inception-v3-compat` looks), its full sha256 is checked against the pinned one, it is loaded once with
weights_only=True, and only then renamed into place (gan/fileio.py). Anything else (a wrong hash, a short body, a
server that stops answering, no network) is one line naming the URL and the two ways to point at a local file;
nothing is left in the cache.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPException, IncompleteRead
from pathlib import Path
from urllib.parse import urlparse

import torch
from gan import compat, fileio
from gan.errors import GanError
from gan.metrics import protocol

URL_INCEPTION_V3 = compat.inception_url()
INCEPTION_FILE = Path(urlparse(URL_INCEPTION_V3).path).name  # the name torch.hub saves it under
CLI_TIMEOUT = 30.0  # seconds without an answer before `gan features get inception` gives up
CLI_DEADLINE = 1800.0  # the whole download (95 MB) at most, for `gan features get inception`
RUN_TIMEOUT = 3.0  # a run's start waits no longer than this for a server before going on with c10
RUN_DEADLINE = 120.0  # and no longer than this for the whole download (≥ 0.8 MB/s)
INSTEAD = ("download it elsewhere and set metrics.inception_weights (or env GAN_INCEPTION_WEIGHTS) to the file, "
           "or give a mirror with --url / env GAN_INCEPTION_URL")

# The sha256 a fetched file must have. Tests (and only tests) replace it to fetch a stand-in: a file with another
# hash is still never the standard Inception (protocol.suffix names its metrics by their own hash).
EXPECTED_SHA256 = protocol.INCEPTION_SHA256


class FetchError(GanError):
    """The weights could not be fetched, or what came was not them."""


def url() -> str:
    """Where the weights come from: env GAN_INCEPTION_URL (a mirror), else torch-fidelity's own URL."""
    return os.environ.get("GAN_INCEPTION_URL", "") or URL_INCEPTION_V3


def target() -> Path:
    """The file torch-fidelity reads: torch.hub's checkpoints folder ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _open(address: str, timeout: float):
    """urlopen with a bound on the whole opening (name lookup included, which a socket timeout does not cover). A
    response that comes after we gave up is closed by the opening thread itself: nothing is left open."""
    box: dict = {}
    lock = threading.Lock()

    def go():
        try:
            resp = urllib.request.urlopen(address, timeout=timeout)  # noqa: S310 - http(s) checked by the caller
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            with lock:
                box["err"] = e
            return
        with lock:
            if box.get("gave_up"):
                resp.close()
            else:
                box["resp"] = resp

    t = threading.Thread(target=go, daemon=True, name="gan-fetch-open")
    t.start()
    t.join(timeout)
    with lock:
        if "resp" not in box and "err" not in box:
            box["gave_up"] = True
            raise TimeoutError("timed out")
    if "err" in box:
        raise box["err"]
    return box["resp"]


def _why(e: BaseException, timeout: float) -> str:
    if isinstance(e, IncompleteRead):
        return f"truncated: the connection closed with {e.expected:,} bytes still to come"
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        return f"no network or host unreachable ({getattr(r, 'strerror', None) or r})"
    if isinstance(e, OSError) and "timed out" in str(e):
        return f"no answer for {timeout:g} s (timed out)"
    return str(e) or type(e).__name__


def _stream(resp, f, size: int | None, progress, deadline: float, limit: float) -> str:
    h = hashlib.sha256()
    got = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"too slow: {got:,} bytes in {limit:g} s (the whole transfer's deadline)")
        chunk = resp.read1(1 << 16)  # at most one read from the socket: the deadline is checked between them
        if not chunk:
            break
        f.write(chunk)
        h.update(chunk)
        got += len(chunk)
        progress(len(chunk))
    if size is not None and got != size:
        raise FetchError(f"truncated: {got:,} of {size:,} bytes")
    return h.hexdigest()


def fetch(address: str | None = None, timeout: float = CLI_TIMEOUT, console=None,
          limit: float | None = None) -> Path:
    """Download, verify (full sha256, weights_only load) and put the weights in place; their path. `timeout`: for
    each answer; `limit`: for the whole transfer (default CLI_DEADLINE). A FetchError (one line naming the URL and
    what to do instead) leaves nothing in the cache."""
    address = address or url()
    limit = CLI_DEADLINE if limit is None else limit
    deadline = time.monotonic() + limit
    dest = target()
    expected = EXPECTED_SHA256
    fail = lambda why: FetchError(f"cannot fetch the Inception weights from {address}: {why}; {INSTEAD}")  # noqa: E731
    if urlparse(address).scheme not in ("http", "https", "file"):
        raise fail("not an http(s) URL")

    def fill(f):
        try:
            resp = _open(address, timeout)
            with resp:
                size = resp.headers.get("Content-Length")
                size = int(size) if size and size.isdigit() else None
                with _bar(console, size, dest.name) as advance:
                    sha = _stream(resp, f, size, advance, deadline, limit)
        except FetchError as e:
            raise fail(str(e)) from None
        except (OSError, HTTPException, ValueError) as e:  # URLError, timeouts, resets, IncompleteRead
            raise fail(_why(e, timeout)) from None
        if sha != expected:
            raise fail(f"sha256 {sha[:16]}… is not the pinned {expected[:16]}… (a wrong or damaged file)")
        f.flush()
        try:
            torch.load(f.name, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - whatever it is, it is not a weights file
            raise fail(f"not a weights file ({type(e).__name__})") from None

    return fileio.write_atomic(dest, fill)


class _bar:
    """A rich progress bar of the bytes (none without a console); yields the advance function."""

    def __init__(self, console, total, name):
        self.p = None
        if console is not None:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.p = Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                              TimeRemainingColumn(), console=console, transient=True)
            self.task = self.p.add_task(name, total=total)

    def __enter__(self):
        if self.p is None:
            return lambda n: None
        self.p.start()
        return lambda n: self.p.advance(self.task, n)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()


_tried: dict[str, str] = {}  # url -> why it failed: a process tries each URL once


def at_run_start(console=None) -> tuple[str | None, str]:
    """The fetch a run makes when its metrics want the standard Inception and it is missing: a short timeout,
    tried once per process; (path, why) or (None, one line saying what happened and what to do)."""
    address = url()
    if address in _tried:
        return None, _tried[address]
    try:
        path = fetch(address, RUN_TIMEOUT, console, RUN_DEADLINE)
    except GanError as e:
        _tried[address] = f"{e} (metrics.fetch_inception = false skips this)"
        return None, _tried[address]
    return str(path), f"fetched from {address}, sha256 verified: {path}"

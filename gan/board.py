"""TensorBoard as a process of ours, and a picture of it: `TensorBoard(logs)` starts it on a free loopback port
(its own process group) and always stops that group on exit; `screenshot` waits until it lists the runs and takes
a headless-chromium screenshot of one page, written through fileio like every other file."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gan import fileio
from gan.errors import GanError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class TensorBoard:
    """A TensorBoard process on 127.0.0.1 for `logs`; always stopped on exit (its whole process group)."""

    def __init__(self, logs: Path, port: int = 0, reload_interval: float = 1.0):
        self.logs, self.port = Path(logs), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reload_interval = reload_interval
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.log_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logs), "--host", "127.0.0.1",
             "--port", str(self.port), "--reload_interval", str(self.reload_interval)],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        return self

    def wait(self, timeout: float = 90, until=lambda runs: True) -> list:
        """Poll /data/runs until TensorBoard answers and `until(runs)` holds; returns the runs."""
        deadline, last_err = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GanError(f"tensorboard exited with {self.proc.returncode}: {self.output()[-300:]!r}")
            try:
                runs = http_json(self.url + "/data/runs", timeout=5)
                if until(runs):
                    return runs
            except OSError as e:
                last_err = e
            time.sleep(0.5)
        raise GanError(f"tensorboard on {self.url} not ready after {timeout:.0f}s ({last_err})")

    def output(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(p.pid, sig)  # the group we started: tensorboard and its data server
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(self, *exc):
        self.stop()
        self.log_file.close()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise GanError("no chromium found for the screenshot (Debian: apt-get install -y chromium)")
    return exe


def screenshot(logs: Path = Path("logs"), out_png: Path = Path("tb.png"), port: int = 0,
               page: str = "timeseries", width: int = 1400, height: int = 1000) -> Path:
    """Start TensorBoard on a free loopback port, wait until it lists the runs, screenshot `#page` with headless
    chromium, and always stop TensorBoard."""
    logs, out_png = Path(logs), Path(out_png)
    if not logs.is_dir():
        raise GanError(f"logs folder '{logs}' does not exist")
    chromium()  # before TensorBoard starts: no chromium, one line
    with TensorBoard(logs, port) as tb, tempfile.TemporaryDirectory(prefix="gan-chromium-") as tmp:
        want_runs = bool(list(logs.rglob("events.out.tfevents.*")))
        tb.wait(until=lambda runs: bool(runs) or not want_runs)
        time.sleep(2 * tb.reload_interval)  # let the first load reach the scalars
        shot = Path(tmp) / "shot.png"  # chromium writes here; the file the user named comes from fileio
        headless(Path(tmp), [f"--window-size={width},{height}", f"--screenshot={shot}"], f"{tb.url}/#{page}")
        if not shot.is_file():
            raise GanError("chromium wrote no screenshot")
        return fileio.write_atomic(out_png, shot.read_bytes())


def headless(tmp: Path, args: list[str], url: str, budget_ms: int = 15000) -> str:
    """Run headless chromium on `url` (a fresh profile under `tmp`) until its scripts are done or `budget_ms` of
    virtual time passed; its stdout (`--dump-dom` prints the page's DOM there)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={Path(tmp) / 'profile'}", f"--virtual-time-budget={budget_ms}", *args, url]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GanError("chromium did not finish in 180s") from None
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or [""])[-1][:200]
        raise GanError(f"chromium failed (exit {r.returncode}): {tail}")
    return r.stdout

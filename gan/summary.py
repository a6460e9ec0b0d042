"""The run index: `summary.jsonl` beside run.json, what `gan runs`, `gan leaderboard`, `gan compare`, `gan sweep
--report` and the HParams rows read instead of a run's event files.

The file, one JSON object a line: first the run at a glance (the event files and config it was made from, the
last step, the median img/s, the primary metric by `protocol.primary`, each metric tag's best and last point, the
config facts the tables show), then one line per metric tag (`metrics/*`, `eval/*`) with its points
[step, value, training seconds, images seen, wall-clock minutes], then a CRC-32 of everything before it. A reader
parses the first line, and a tag's line only when it draws or thresholds that tag.

The run writes it (`Keeper`, from rundir.Recorder) at its start, at each metric point and at its end, always after
the events it describes are flushed. A reader (`load`) trusts it when its event files and config.toml are still
the bytes it was made from, or when a live writer holds the run (the writer keeps it). Otherwise (an older run, a
crash between two writes, `gan eval` adding events, a damaged file) it is rebuilt from the event files once
(gan/eventfile.py) and saved, under the run's lock, only when no writer holds the run and nothing changed while it
was read; `note()` gives the one line a command prints about it. `GAN_INDEX=events` reads every run with
TensorBoard's own reader instead, as gan did before the index (slow; to check the index against).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import statistics
import struct
import tomllib
import zlib
from array import array
from pathlib import Path

from gan import eventfile, fileio, runlock
from gan.errors import GanError
from gan.events import IMAGES_SEEN, TRAIN_SECONDS, Series, best_index, is_metric, series_of
from gan.metrics import protocol

FILE = "summary.jsonl"
FORMAT = 1
RATE = "perf/images_per_sec"
PROGRESS = (TRAIN_SECONDS, IMAGES_SEEN)
CONFIG = {"experiment": ("name", "seed"), "model": ("arch", "conditional"), "train": ("precision", "minutes")}


def _kept(tag: str) -> bool:
    return is_metric(tag) or tag in PROGRESS


def config_facts(text: str | None) -> dict:
    """The keys of config.toml the tables show (CONFIG), in config.toml's own nesting; {} when unreadable."""
    try:
        cfg = tomllib.loads(text) if text is not None else {}
    except tomllib.TOMLDecodeError:
        return {}
    return {sec: {k: cfg[sec][k] for k in keys if k in cfg.get(sec, {})}
            for sec, keys in CONFIG.items() if isinstance(cfg.get(sec), dict)}


def _config_key(run: Path) -> list | None:
    try:
        st = os.stat(os.path.join(run, "config.toml"))
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def key_now(run: Path) -> dict:
    """What a summary is made from, as it is now: the event files' sizes and config.toml's size and mtime (one
    look at the folder: a listing asks this of every run)."""
    files, cfg = {}, None
    try:
        with os.scandir(run) as it:
            for e in it:
                if eventfile.is_event_file(e.name) and e.is_file():
                    files[e.name] = e.stat().st_size
                elif e.name == "config.toml":
                    st = e.stat()
                    cfg = [st.st_size, st.st_mtime_ns]
    except OSError:
        pass
    return {"events": dict(sorted(files.items())), "config": cfg}


def build(points: dict, rates, t0: float | None, last: int | None, key: dict, config: dict, status: str | None,
          by: str) -> bytes:
    """The file's bytes from {tag: {step: (value, wall_time)}} (the metric and progress tags at least) and the
    img/s values logged."""
    series = series_of({t: p for t, p in points.items() if _kept(t)}, t0 or 0.0)
    rows = {t: [list(p) for p in zip(s.steps, s.values, s.train_seconds, s.images, s.minutes)]
            for t, s in sorted(series.items()) if is_metric(t)}
    prim = protocol.primary(rows)
    head = {"format": FORMAT, "by": by, "written": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "status": status, "step": last, "t0": t0, "key": key, "config": config,
            "images_per_sec": {"median": statistics.median(rates) if len(rates) else None, "points": len(rates)},
            "primary": {"tag": prim.tag, "why": prim.why}, "tags": list(rows),
            "best": {t: rows[t][best_index(series[t], t)] for t in rows}, "last": {t: rows[t][-1] for t in rows}}
    lines = [json.dumps(head)] + [json.dumps({"tag": t, "points": r}) for t, r in rows.items()]
    body = ("\n".join(lines) + "\n").encode()
    return body + json.dumps({"crc32": zlib.crc32(body)}).encode() + b"\n"


class Summary:
    """A run's summary as read (or rebuilt): the header's facts at once, a tag's points when asked."""

    def __init__(self, head: dict, lines: list[bytes]):
        self.head, self._lines, self._series = head, lines, {}
        self.tags: list[str] = list(head["tags"])
        self.step: int | None = head.get("step")
        self.config: dict = head.get("config") or {}
        self.images_per_sec: float | None = (head.get("images_per_sec") or {}).get("median")
        self.primary: str | None = (head.get("primary") or {}).get("tag")

    def best(self, tag: str) -> tuple[int, float]:
        return tuple(self.head["best"][tag][:2])

    def best_point(self, tag: str) -> list:
        """[step, value, training seconds, images seen, minutes] of the tag's best point."""
        return self.head["best"][tag]

    def last(self, tag: str) -> tuple[int, float]:
        return tuple(self.head["last"][tag][:2])

    def metric_tags(self) -> list[str]:
        return [t for t in self.tags if t.startswith("metrics/")]

    def series(self, tag: str) -> Series | None:
        if tag not in self.tags:
            return None
        if tag not in self._series:
            s, pts = Series(), json.loads(self._lines[self.tags.index(tag)])["points"]
            s.steps, s.values, s.train_seconds, s.images, s.minutes = (list(c) for c in zip(*pts)) if pts else \
                ([], [], [], [], [])
            self._series[tag] = s
        return self._series[tag]

    def all_series(self) -> dict[str, Series]:
        return {t: self.series(t) for t in self.tags}


def parse(data: bytes) -> Summary | None:
    """The summary in `data`, or None when it is damaged, truncated or of another format."""
    try:
        body, _, tail = data.rstrip(b"\n").rpartition(b"\n")
        body += b"\n"
        if json.loads(tail)["crc32"] != zlib.crc32(body):
            return None
        lines = body.split(b"\n")[:-1]
        head = json.loads(lines[0])
        if head.get("format") != FORMAT or len(lines) != len(head["tags"]) + 1:
            return None
        return Summary(head, lines[1:])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def read(run: Path) -> Summary | None:
    try:
        with open(os.path.join(run, FILE), "rb") as f:
            return parse(f.read())
    except OSError:
        return None


# ---- the writer's side -------------------------------------------------------------------------------------------
def _f32(v: float) -> float:
    """The value as TensorBoard stores it (a float32 simple_value)."""
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


class Keeper:
    """The summary as the run itself writes it. At start it reads what the run's events hold (nothing for a new
    run; on a resume, TensorBoard's view with the restart's purge at `purge_step` applied), then it hears every
    scalar the run logs (writer.Tracker's `on_scalars`) and writes the file when asked."""

    def __init__(self, run_dir: Path, purge_step: int | None):
        self.run = Path(run_dir)
        sc = eventfile.scan(self.run)
        if purge_step is not None:
            sc.purge(purge_step)
        self.t0, self.last = sc.t0, sc.last_step()
        self.points = {t: p for t, p in sc.points.items() if _kept(t)}
        self.rates = array("d", (v for _, (v, _) in sorted(sc.points.get(RATE, {}).items())))  # 8 bytes a point
        self.files = dict(sc.sizes)  # the event files it read, and the one its own writer adds (own_file)
        self.own: str | None = None
        self.config: dict = {}

    def own_file(self, path: str | None) -> None:
        self.own = Path(path).name if path else None

    def add(self, values: dict, step: int, wall: float) -> None:
        if values:
            self.last = step if self.last is None else max(self.last, step)
        for tag, v in values.items():
            if tag == RATE:  # once per log step: its steps only grow within a process
                self.rates.append(_f32(v))
            elif _kept(tag):
                self.points.setdefault(tag, {})[step] = (_f32(v), wall)

    def write(self, status: str, config_text: str | None = None) -> None:
        """After the Tracker is flushed: the file, atomically. A disk that cannot take it fails nothing (a reader
        rebuilds the summary from the events)."""
        if config_text is not None:
            self.config = config_facts(config_text)
        if self.t0 is None:
            self.t0 = eventfile.first_wall(self.run)
        now = eventfile.sizes(self.run)
        # only the files this run wrote or read: another process's events (gan eval) make the summary stale
        files = {n: now[n] for n in now if n == self.own or n in self.files} if self.own else now
        key = {"events": files, "config": _config_key(self.run)}
        try:
            fileio.write_atomic(self.run / FILE, build(self.points, self.rates, self.t0, self.last, key, self.config,
                                                       status, "run"), durable=False)
        except GanError:
            pass


# ---- the readers' side -------------------------------------------------------------------------------------------
_rebuilt = {"saved": 0, "unsaved": 0}


def note() -> str | None:
    """One line about the summaries rebuilt since the last call (None when none was), and the count reset."""
    saved, unsaved = _rebuilt["saved"], _rebuilt["unsaved"]
    _rebuilt.update(saved=0, unsaved=0)
    n = saved + unsaved
    if not n:
        return None
    line = f"rebuilt the index of {n} run{'s' if n != 1 else ''} from their event files"
    if unsaved:
        line += (f" ({unsaved} not saved: being written, or a folder this user cannot write)" if saved else
                 " (not saved: being written, or a folder this user cannot write)")
    return line


def rebuild(run: Path, tensorboard: bool = False) -> tuple[Summary, bytes, dict]:
    """(the summary, its bytes, the key it was made from) from the run's event files and config.toml."""
    run = Path(run)
    cfg_key = _config_key(run)
    try:
        cfg_text = (run / "config.toml").read_text()
    except (OSError, UnicodeDecodeError):
        cfg_text = None
    if tensorboard:
        from gan.events import points_tb

        (t0, points), files = points_tb(run), eventfile.sizes(run)
        last = max((max(p) for p in points.values() if p), default=None)
    else:
        sc = eventfile.scan(run)
        t0, points, files, last = sc.t0, sc.points, sc.sizes, sc.last_step()
    try:
        status = json.loads((run / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    key = {"events": files, "config": cfg_key}
    rates = [v for v, _ in points.get(RATE, {}).values()]
    data = build(points, rates, t0, last, key, config_facts(cfg_text), status, "rebuilt from the event files")
    return parse(data), data, key


def save(run: Path, data: bytes, key: dict, locked: bool = False) -> bool:
    """Write a rebuilt summary when nobody writes the run and its files are still what it was made from; under
    the run's lock (`locked`: the caller holds it). False when it was not written."""
    try:
        lk = None if locked else runlock.acquire(run)
    except GanError:  # held by a writer that started meanwhile, or a folder this user cannot write
        return False
    try:
        if key_now(run) != key:
            return False
        fileio.write_atomic(Path(run) / FILE, data, durable=False)
        return True
    except GanError:
        return False
    finally:
        if lk is not None:
            lk.release()


def refresh(run: Path, locked: bool = False) -> Summary:
    """Rebuilt from the events and saved now (`locked`: by a process that holds the run's lock)."""
    s, data, key = rebuild(run)
    save(run, data, key, locked)
    return s


def load(run: Path) -> Summary:
    """The run's summary: as written when it is fresh or a live writer keeps it; else rebuilt (and saved where it
    can be). Raises OSError when the event files cannot be read."""
    run = Path(run)
    if os.environ.get("GAN_INDEX") == "events":
        return rebuild(run, tensorboard=True)[0]
    s = read(run)
    if s is not None and (s.head.get("key") == key_now(run) or runlock.holder(run) is not None):
        return s
    s, data, key = rebuild(run)
    saved = runlock.holder(run) is None and save(run, data, key)
    _rebuilt["saved" if saved else "unsaved"] += 1
    return s

"""The runs: find run folders under logs/, resolve a run the user names, read its run.json and config.toml,
and one row per run for `gan runs`, its metrics from the run's summary (gan/summary.py), never its event files.

Reading never stops at one bad run: a damaged run.json (truncated, not JSON, not an object) gives a row with status
`damaged` and the reason, and every other run is still listed. A run being written right now reads fine: run.json
and summary.jsonl are replaced atomically (fileio), and a rebuild stops at the last whole record of an event file.
"""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path

from gan import eventfile, fileio, runlock, summary
from gan.errors import GanError
from gan.metrics import protocol


# ---- finding runs --------------------------------------------------------------------------------------------
def is_run(p: Path) -> bool:
    return p.is_dir() and (p / "run.json").is_file()


SWEEP_PARTS = {"console", "submitit", "aborted", "mean"}  # a sweep's own folders: logs, jobs, moved-aside leftovers,
# aggregate TensorBoard runs; never runs


def _walk(root: Path) -> list[Path]:
    """Folders holding run.json at any depth under root (a sweep's runs too); nothing below a run is a run."""
    found = []
    for d, subdirs, files in os.walk(root):
        if "run.json" in files and Path(d) != root:
            found.append(Path(d))
            subdirs[:] = []
            continue
        skip = SWEEP_PARTS if "sweep.json" in files else set()
        subdirs[:] = [s for s in subdirs if s not in skip and s != "checkpoints" and not s.startswith(".")]
    return found


def find_runs(logs: Path, exp: str | None = None) -> list[Path]:
    """Run folders (those holding run.json) under logs/, at any depth: logs/<experiment>/<run-id>/ and a sweep's
    logs/<experiment>/sweep-<id>/<folder>/; sorted by path."""
    logs = Path(logs)
    if not logs.is_dir():
        raise GanError(f"logs folder '{logs}' does not exist")
    if exp is not None and not (logs / exp).is_dir():
        known = ", ".join(sorted(p.name for p in logs.iterdir() if p.is_dir())) or "none"
        raise GanError(f"no experiment '{exp}' under '{logs}' (known: {known})")
    return sorted(_walk(logs / exp if exp is not None else logs))


def logs_root(run: Path) -> Path:
    """The logs folder a run lives under: above its experiment's folder (and its sweep's): logs/<exp>/[sweep/]<id>."""
    up = Path(run).parent
    if (up / "sweep.json").is_file():
        up = up.parent
    return up.parent


def sweep_of(run: Path) -> str | None:
    """The sweep a run belongs to (its parent folder holds sweep.json), by the sweep folder's name."""
    parent = os.path.dirname(run)
    return os.path.basename(parent) if os.path.isfile(os.path.join(parent, "sweep.json")) else None


def setting_of(run: Path) -> str | None:
    """A sweep run's band key for `gan compare`: "<sweep>: <setting>" (seeds of one setting share it); None for a
    run outside a sweep (its experiment is its key)."""
    if sweep_of(run) is None:
        return None
    try:
        man = fileio.read_json(Path(run).parent / "sweep.json", default={})
        entry = next(e for e in man.get("runs", []) if isinstance(e, dict) and e.get("folder") == Path(run).name)
    except (GanError, StopIteration, AttributeError):
        return f"{sweep_of(run)}: {Path(run).name}"
    return f"{sweep_of(run)}: {entry.get('setting') or Path(run).name}"


def resolve_run(spec: str | Path, logs: Path = Path("logs")) -> Path:
    """A run given as a folder path, as a path under logs (<experiment>/<run-id>, <experiment>/<sweep>/<folder>),
    or as the end of one: a bare run id or <sweep>/<folder>, found at any depth."""
    p = Path(spec)
    if is_run(p):
        return p
    if p.is_dir():
        raise GanError(f"'{spec}' is not a run folder (no run.json)")
    if is_run(Path(logs) / spec):
        return Path(logs) / spec
    parts = p.parts
    if Path(logs).is_dir() and parts and not p.is_absolute() and ".." not in parts:
        hits = [r for r in find_runs(logs) if r.parts[-len(parts):] == parts]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise GanError(f"run id '{spec}' is ambiguous: " + ", ".join(str(h) for h in hits))
    raise GanError(f"no run '{spec}' (neither a run folder nor under '{logs}')")


# ---- what a run says about itself ----------------------------------------------------------------------------
def read_info(run: Path) -> tuple[dict, str | None]:
    """(run.json as a dict, None), or ({}, why it cannot be read). Read only: a listing never moves a file."""
    missing = object()
    try:
        info = fileio.read_json(os.path.join(run, "run.json"), default=missing)
    except GanError as e:
        return {}, str(e).split(" is damaged ", 1)[-1].strip("()")
    if info is missing:
        return {}, "no run.json"
    if not isinstance(info, dict):
        return {}, f"not a JSON object (a {type(info).__name__})"
    return info, None


def info_of(run: Path) -> dict:
    return read_info(run)[0]


def run_config(run: Path) -> dict:
    try:
        return tomllib.loads((Path(run) / "config.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def experiment_of(run: Path) -> str:
    return info_of(run).get("experiment") or run_config(run).get("experiment", {}).get("name") or Path(run).parent.name


def seed_of(run: Path):
    return run_config(run).get("experiment", {}).get("seed", info_of(run).get("seed"))


def short_labels(runs: list[Path], exps: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(experiments, labels) of runs shown side by side: the run id when they share one experiment, else
    <experiment>/<id>; the full paths when even those clash. `exps`: the runs' experiments, when known."""
    exps = exps or [experiment_of(r) for r in runs]
    labels = [r.name if len(set(exps)) == 1 else f"{e}/{r.name}" for r, e in zip(runs, exps)]
    return exps, labels if len(set(labels)) == len(labels) else [str(r) for r in runs]


def protocol_of(run: Path) -> list[dict]:
    """The run's metrics protocol (run.json `metrics_protocol`); [] for runs that recorded none."""
    p = info_of(run).get("metrics_protocol")
    return p if isinstance(p, list) else []


# ---- `gan runs` ------------------------------------------------------------------------------------------------
def _parse_time(s):
    try:
        return dt.datetime.fromisoformat(s) if s else None
    except (TypeError, ValueError):
        return None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fid_tag(scalars) -> str | None:
    """The FID a run is judged by (protocol.primary: the one rule), out of the tags it logs."""
    return protocol.primary(scalars).tag


def run_summary(run: Path) -> dict:
    """One row of `gan runs`: status and steps from run.json, FIDs and config facts from the run's summary. A run
    whose run.json or events cannot be read is a row too, with status `damaged` and the reason in `problem`."""
    info, problem = read_info(run)
    problem = problem and f"run.json: {problem}"
    try:
        s = summary.load(run)
    except Exception as e:  # noqa: BLE001 - one unreadable run must not stop the listing of the others
        s, problem = None, problem or f"event files unreadable ({type(e).__name__})"
    cfg = s.config if s is not None else run_config(run)
    tag = s.primary if s is not None else None
    row = {"run": run.name, "path": str(run), "sweep": sweep_of(run), "experiment": experiment_of(run) if problem
           else info.get("experiment") or cfg.get("experiment", {}).get("name") or run.parent.name,
           "status": "damaged" if problem else runlock.live(info.get("status", "?"), run), "problem": problem,
           "step": _int(info.get("step")), "steps_planned": info.get("steps_planned"), "fid_tag": tag, "best": None,
           "last": None, "wall_seconds": None, "precision": precision_of(info, cfg.get("train", {})),
           "checkpoint": _int(info.get("step")) if _has_checkpoint(run) else None,
           "limit": limit_of(info, cfg.get("train", {})), "code": code_of(info)}
    live = (info.get("progress") or {}).get("step") if row["status"] == "running" else None  # a live run's latest
    row["step"] = max(row["step"], _int(s.step if s is not None else None), _int(live))
    if tag:
        row["best"], row["last"] = s.best(tag), s.last(tag)
    elif isinstance(info.get("best"), dict):
        b = info["best"]
        row["fid_tag"], row["best"] = b.get("tag"), (b.get("step"), b.get("value"))
    start, end = _parse_time(info.get("started")), _parse_time(info.get("ended"))
    if start is not None:
        if end is None:  # still running (or its process died): up to its last event
            last_event = max((p.stat().st_mtime for p in eventfile.files(run)), default=None)
            end = dt.datetime.fromtimestamp(last_event).astimezone() if last_event else None
        if end is not None:
            row["wall_seconds"] = (end - start).total_seconds()
    return row


def code_of(info: dict) -> str | None:
    """The id of the code that made the run (run.json `code.id`, gan/coderecord.py); None for older runs."""
    code = info.get("code") if isinstance(info, dict) else None
    return code.get("id") if isinstance(code, dict) else None


def code_differs(pairs) -> bool:
    """Whether runs of one experiment were made by different code, over (experiment, code id) pairs."""
    seen: dict = {}
    for exp, code in pairs:
        if code is not None:
            seen.setdefault(exp, set()).add(code)
    return any(len(ids) > 1 for ids in seen.values())


def _int(v) -> int:
    return v if isinstance(v, int) else 0


def _has_checkpoint(run: Path) -> bool:
    ck = os.path.join(run, "checkpoints")
    return os.path.isfile(os.path.join(ck, "last.pt")) or os.path.isfile(os.path.join(ck, "last.pt.prev"))


def limit_of(info: dict, train: dict) -> str | None:
    """"10 min" when train.minutes is the limit that ends (or ended) the run rather than train.steps, else None.
    A live run: the steps its heartbeat rate would reach in train.minutes, against the steps planned."""
    minutes = train.get("minutes") or 0
    if not isinstance(minutes, (int, float)) or minutes <= 0:
        return None
    if info.get("status") == "completed":
        return f"{minutes:g} min" if "train.minutes" in str(info.get("ended_by", "")) else None
    p, planned = info.get("progress") or {}, info.get("steps_planned")
    secs, step = p.get("train_seconds") or 0, p.get("step") or 0
    if secs > 0 and step > 0 and isinstance(planned, int) and step / secs * 60 * minutes >= planned:
        return None  # at its rate, its steps end it first
    return f"{minutes:g} min"


def precision_of(info: dict, train: dict) -> str | None:
    """The precision the run trained in (run.json), `bf16 (auto)` when `train.precision = "auto"` chose it."""
    p = info.get("precision")
    return f"{p} (auto)" if p and train.get("precision") == "auto" else p


def steps_cell(r: dict) -> str:
    """`2612 (10 min)` for a run that train.minutes ends, `step/planned` for one that train.steps ends."""
    if r.get("limit"):
        return f"{r['step']} ({r['limit']})"
    return f"{r['step']}/{r['steps_planned'] if r['steps_planned'] is not None else '?'}"


def status_cell(r: dict) -> str:
    """The status as it truly is: `dead` (run.json says running, nobody holds its lock) with its last checkpoint."""
    st = r["status"]
    if st == "dead":
        return st + (f" (checkpoint @ {r['checkpoint']})" if r["checkpoint"] is not None else " (no checkpoint)")
    return st


STATUS_STYLE = {"completed": "green", "running": "cyan", "interrupted": "yellow", "failed": "red",
                "diverged": "red", "damaged": "red", "dead": "red"}


def runs_table(logs: Path, exp: str | None = None):
    """(the table `gan runs` prints, its rows); past console.PLAIN_ROWS runs, as plain aligned lines."""
    from rich.table import Table

    from gan.console import PLAIN_ROWS, plain_table

    rows = [run_summary(r) for r in find_runs(logs, exp)]
    tags = {r["fid_tag"] for r in rows if r["fid_tag"]}
    one = next(iter(tags)) if len(tags) == 1 else None  # every run judged by the same extractor's FID
    fid_name = f"FID {protocol.extractor_label(protocol.split(one)[1])}" if one else "FID"  # else each figure names its own
    title = f"runs under {logs}" + (f"/{exp}" if exp else "")
    t = Table(box=None, title=title, collapse_padding=True, pad_edge=False)
    sweeps = any(r["sweep"] for r in rows)
    problems = any(r["problem"] for r in rows)
    codes = code_differs((r["experiment"], r["code"]) for r in rows)  # one experiment, different code: a column
    table = []
    for r in rows:
        mark = "" if one or not r["fid_tag"] else f" {protocol.extractor_label(protocol.split(r['fid_tag'])[1])}"
        best = f"{r['best'][1]:.4g} ({r['best'][0]}){mark}" if r["best"] and r["best"][1] is not None else "-"
        last = f"{r['last'][1]:.4g}{mark}" if r["last"] else "-"
        table.append([r["run"], *([r["sweep"] or "-"] if sweeps else []), r["experiment"],
                      *([(r["code"] or "-")[:8]] if codes else []), status_cell(r),
                      steps_cell(r), r["precision"] or "-", best, last, fmt_duration(r["wall_seconds"]),
                      *([r["problem"] or ""] if problems else [])])
    heads = ["run", *(["sweep"] if sweeps else []), "experiment", *(["code"] if codes else []), "status", "steps",
             "precision",
             f"best {fid_name} (step)", f"last {fid_name}", "wall time", *(["problem"] if problems else [])]
    right = {i for i, h in enumerate(heads) if i >= heads.index("best " + fid_name + " (step)") and h != "problem"}
    si = heads.index("status")
    if len(rows) > PLAIN_ROWS:
        return plain_table(title, heads, [[(c, STATUS_STYLE.get(r["status"], "white")) if i == si else c
                                           for i, c in enumerate(row)] for r, row in zip(rows, table)], right), rows
    # a sweep's run names are long: they fold, and so does a problem; the sweep and experiment names (short, and read
    # on one line) and the facts beside them keep their width, never squeezed to "…"
    folds = {"run", "problem"}
    for i, h in enumerate(heads):
        width = max([len(row[i]) for row in table] + [min(len(h), 12)])
        t.add_column(h, justify="right" if i in right else "left", overflow="fold" if h in folds else "ellipsis",
                     no_wrap=h not in folds, min_width=min(width, 20) if h in folds else min(width, 40))
    for r, row in zip(rows, table):
        st = r["status"]
        row[heads.index("status")] = f"[{STATUS_STYLE.get(st, 'white')}]{row[heads.index('status')]}[/]"
        t.add_row(*row)
    return t, rows


# ---- `gan runs --disk` ---------------------------------------------------------------------------------------------
def disk_table(logs: Path, exp: str | None = None):
    """Each run's bytes by kind (gan/disk.py), its events per 10k steps, and a total in which a file shared by
    runs (a hard link) counts once: (table, rows, total by kind)."""
    from rich.table import Table

    from gan import disk
    from gan.console import PLAIN_ROWS, plain_table

    runs = find_runs(logs, exp)
    seen, rows = set(), []
    for r in runs:
        info = info_of(r)
        step = max(_int(info.get("step")), _int((info.get("progress") or {}).get("step")))
        rows.append({"run": r.name, "path": str(r), "sweep": sweep_of(r), "step": step, **disk.usage(r)})
    shared = dict.fromkeys(disk.KINDS + ("total",), 0)
    for r in runs:  # the runs as one: a file two runs share counts once
        for k, v in disk.usage(r, seen).items():
            shared[k] += v
    title = f"disk under {logs}" + (f"/{exp}" if exp else "")
    caption = "total: the runs together, a file with two names (a hard link) counted once"
    sweeps = any(r["sweep"] for r in rows)
    heads = ["run", *(["sweep"] if sweeps else []), "steps", *(disk.LABELS[k] for k in disk.KINDS), "total",
             "events / 10k steps"]
    cells = [[r["run"], *([r["sweep"] or "-"] if sweeps else []), str(r["step"]),
              *[disk.fmt_bytes(r[k]) for k in disk.KINDS], disk.fmt_bytes(r["total"]),
              disk.fmt_bytes(r["events"] * 10_000 / r["step"] if r["step"] else None)] for r in rows]
    cells.append([f"total ({len(rows)} run{'s' if len(rows) != 1 else ''})", *([""] if sweeps else []), "",
                  *[disk.fmt_bytes(shared[k]) for k in disk.KINDS], disk.fmt_bytes(shared["total"]), ""])
    right = set(range(heads.index("steps"), len(heads)))
    if len(rows) > PLAIN_ROWS:
        return plain_table(title, heads, cells, right, caption), rows, shared
    t = Table(box=None, title=title, collapse_padding=True, pad_edge=False, caption=caption, caption_justify="left")
    for i, h in enumerate(heads):
        t.add_column(h, justify="right" if i in right else "left", overflow="fold" if h == "run" else "ellipsis")
    for c in cells:
        t.add_row(*c)
    return t, rows, shared

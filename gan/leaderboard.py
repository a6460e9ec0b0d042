"""`gan leaderboard`: one row per run, ranked by the primary metric (protocol.primary, the one rule): model,
device, throughput, the best value of every metric it logs, and how much training time and how many images it
took to first reach given thresholds (`--at fid_c10=20,10,5`), read from the progress tags the engine logs at
each metric point. Every number comes from the runs' summaries (gan/summary.py), never their event files.

Values measured under different protocols (extractor weights, sample count, reference set) are never ranked
silently: each difference is a footnote line, and the rows whose protocol differs from the first row's are marked.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from gan import fileio, runlock, summary
from gan.errors import GanError
from gan.events import first_reaching
from gan.metrics import protocol
from gan.runs import (code_differs, code_of, experiment_of, fmt_duration, info_of, precision_of, run_config,
                      short_labels, sweep_of)

MARK = "†"


def parse_at(specs: list[str]) -> list[tuple[str, float]]:
    """["fid_c10=20,10,5"] -> [("metrics/fid_c10", 20.0), ("metrics/fid_c10", 10.0), ...]"""
    out = []
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().removeprefix("metrics/")
        if not eq or not name or not values.strip():
            raise GanError(f"--at {spec!r}: expected METRIC=V1,V2,... (e.g. fid_c10=20,10,5)")
        if protocol.split(name)[0] not in protocol.METRICS:
            raise GanError(f"--at {spec!r}: {name!r} is not a metric (known: {', '.join(protocol.METRICS)}, with "
                           "the extractor suffix a run logs, e.g. fid_c10)")
        try:
            out += [(protocol.tag(*protocol.split(name)), float(v)) for v in values.split(",") if v.strip()]
        except ValueError:
            raise GanError(f"--at {spec!r}: thresholds must be numbers") from None
    return out


@dataclass
class Row:
    run: Path
    label: str
    experiment: str
    model: str
    device: str
    images_per_sec: float | None
    best: dict  # tag -> (step, value)
    reached: dict  # (tag, threshold) -> (step, train_seconds, images_seen) or None
    protocol: list
    differs: list = field(default_factory=list)  # "tag: what differs from the first row"
    status: str = "?"  # run.json's, `dead` when it says running and nobody holds the run's lock
    precision: str | None = None  # the precision it trained in (run.json)
    sweep: str | None = None  # the sweep folder it belongs to
    code: str | None = None  # the id of the code that made it (gan/coderecord.py)


@dataclass
class Board:
    rows: list  # Row, ranked
    primary: protocol.Primary
    tags: list  # metric columns, primary first
    at: list  # (tag, threshold)
    notes: list  # footnote lines: protocol differences


def describe_model(cfg: dict) -> str:
    """'sngan_resnet conditional' (a user's model as `mygan.py:build`) from a run's config (its summary's facts)."""
    from gan.usercode import short

    m = cfg.get("model", {})
    return f"{short(str(m.get('arch', '?')))}{' conditional' if m.get('conditional') else ''}"


def describe_device(info: dict) -> str:
    d = str(info.get("device", "?"))
    world = (info.get("distributed") or {}).get("world_size") if isinstance(info.get("distributed"), dict) else None
    return f"{d} ×{world}" if world else d


def row_of(run: Path, label: str, experiment: str, at: list, info: dict | None = None) -> Row:
    info = info_of(run) if info is None else info
    sm = summary.load(run)
    best = {t: sm.best(t) for t in sm.metric_tags()}
    reached = {}
    for tag, thr in at:  # only the thresholded tags' points are read
        s = sm.series(tag)
        i = first_reaching(s, tag, thr) if s else None
        reached[(tag, thr)] = None if i is None else (s.steps[i], s.train_seconds[i], s.images[i])
    proto = info.get("metrics_protocol")
    return Row(run, label, experiment, describe_model(sm.config), describe_device(info), sm.images_per_sec, best,
               reached, proto if isinstance(proto, list) else [], status=runlock.live(info.get("status", "?"), run)
               or "?", precision=precision_of(info, sm.config.get("train", {})), sweep=sweep_of(run),
               code=code_of(info))


def order(tags: set, primary: str | None) -> list[str]:
    names = list(protocol.METRICS)
    rest = sorted((t for t in tags if t != primary),
                  key=lambda t: (names.index(protocol.split(t)[0]) if protocol.split(t)[0] in names else 99, t))
    return ([primary] if primary in tags else []) + rest


def _entry_key(p: list, tag: str):
    e = protocol.entry(p, tag)
    return None if e is None else tuple(str(e.get(k)) for k in protocol.KEYS)


def leaderboard(runs: list[Path], at: list[tuple[str, float]] = ()) -> Board:
    if not runs:
        raise GanError("no runs to rank: give run folders or --exp NAME, or train one first")
    runs = list(dict.fromkeys(Path(r) for r in runs))
    infos = [info_of(r) for r in runs]  # each run.json read once
    exps, labels = short_labels(runs, [i.get("experiment") or experiment_of(r) for r, i in zip(runs, infos)])
    rows = [row_of(r, lab, e, list(at), i) for r, lab, e, i in zip(runs, labels, exps, infos)]
    have = [set(r.best) for r in rows if r.best]
    every = set.intersection(*have) if have else set()
    union = set().union(*have) if have else set()
    primary = protocol.primary(every) if protocol.primary(every).tag else protocol.primary(union)
    for tag, _ in at:
        if tag not in union:
            raise GanError(f"--at {tag.split('/', 1)[1]}: no run logs {tag} (they log "
                           f"{', '.join(sorted(union)) or 'no metrics'})")
    p = primary.tag
    rows.sort(key=lambda r: (p not in r.best, (-1 if protocol.higher_is_better(p) else 1) * r.best[p][1]
                             if p in r.best else 0))
    tags = order(union, p)
    found: dict[str, list[str]] = {}  # difference -> the tags it concerns: one footnote line per difference
    for tag in dict.fromkeys(tags + [t for t, _ in at]):
        for d in protocol.differences({r.label: r.protocol for r in rows if tag in r.best}, tag):
            found.setdefault(d.replace(tag, "it"), []).append(tag)
        carriers = [r for r in rows if tag in r.best]
        if carriers:
            first = _entry_key(carriers[0].protocol, tag)
            for r in carriers[1:]:
                if _entry_key(r.protocol, tag) != first:
                    r.differs.append(tag)
    notes = [f"{', '.join(ts)}: {d}" for d, ts in found.items()]
    return Board(rows, primary, tags, list(at), notes)


def _images(v) -> str:
    if v is None:
        return "?"
    v = float(v)
    return f"{v / 1e6:.3g}M" if v >= 1e6 else f"{v / 1e3:.3g}k" if v >= 1e3 else f"{v:.0f}"


def _at_name(tag: str, thr: float) -> str:
    return f"{tag.split('/', 1)[1]}{'≥' if protocol.higher_is_better(tag) else '≤'}{thr:g}"


def table(b: Board):
    """The leaderboard as `gan leaderboard` prints it; past console.PLAIN_ROWS runs, as plain aligned lines."""
    from rich.table import Table

    from gan.console import PLAIN_ROWS, plain_table

    why = f"ranked by {b.primary.tag} ({b.primary.why})" if b.primary.tag else "no metric to rank by"
    marked = any(r.differs for r in b.rows)
    foot = [f"{MARK} {n}" for n in b.notes] + ([f"{MARK} marks a run whose protocol differs from the first "
                                                "row's: its numbers are not comparable as they stand"]
                                               if marked else [])
    sweeps = any(r.sweep for r in b.rows)
    statuses = any(r.status != "completed" for r in b.rows)  # a live or dead run among finished ones: said
    codes = code_differs((r.experiment, r.code) for r in b.rows)  # one experiment made by different code: said
    heads = ["#", "run", *("sweep",) * sweeps, *("status",) * statuses, *("code",) * codes, "model",
             "device · precision", "img/s"]
    heads += [tag.split("/", 1)[1] + (" ★" if tag == b.primary.tag else "") for tag in b.tags]
    heads += [f"{_at_name(tag, thr)}\ntime · images" for tag, thr in b.at]
    right = {0} | set(range(heads.index("img/s"), len(heads)))
    rows = []
    for i, r in enumerate(b.rows, 1):
        cells = [str(i), r.label + (f" {MARK}" if r.differs else ""), *([r.sweep or "—"] if sweeps else []),
                 *([r.status] if statuses else []), *([(r.code or "—")[:8]] if codes else []), r.model,
                 f"{r.device} · {r.precision or '?'}",
                 "—" if r.images_per_sec is None else f"{r.images_per_sec:,.0f}"]
        cells += [f"{r.best[t][1]:.4g}" if t in r.best else "—" for t in b.tags]
        for key in b.at:
            hit = r.reached[key]
            cells.append("—" if hit is None else
                         f"{fmt_duration(hit[1]) if hit[1] is not None else '?'} · {_images(hit[2])}")
        rows.append(cells)
    title = f"leaderboard: {why}"
    if len(rows) > PLAIN_ROWS:
        return plain_table(title, heads, rows, right, "\n".join(foot) or None)
    t = Table(box=None, title=title, caption="\n".join(foot) or None, caption_justify="left")
    for i, h in enumerate(heads):
        t.add_column(h, justify="right" if i in right else "left", no_wrap=h == "run")
    for cells in rows:
        t.add_row(*cells)
    return t


def write_csv(b: Board, out: Path) -> Path:
    """The table at full precision, one row per run (ranked), with the protocol differences per row."""
    head = ["rank", "run", "path", "experiment", "sweep", "status", "code", "model", "device", "precision",
            "images_per_sec"]
    for tag in b.tags:
        n = tag.split("/", 1)[1]
        head += [f"best {n}", f"best {n} step"]
    for tag, thr in b.at:
        n = _at_name(tag, thr)
        head += [f"{n} step", f"{n} train_seconds", f"{n} images_seen"]
    head += ["protocol_differs_from_first"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for i, r in enumerate(b.rows, 1):
        cells = [i, r.label, str(r.run), r.experiment, r.sweep or "", r.status, r.code or "", r.model, r.device,
                 r.precision or "",
                 _full(r.images_per_sec)]
        for tag in b.tags:
            cells += [_full(r.best[tag][1]), r.best[tag][0]] if tag in r.best else ["", ""]
        for key in b.at:
            cells += [_full(v) for v in (r.reached[key] or (None, None, None))]
        cells.append("; ".join(r.differs))
        w.writerow(cells)
    return fileio.write_atomic(out, buf.getvalue())


def _full(v) -> str:
    return "" if v is None else repr(v)


# ---- --published: the literature's figures beside runs measured under the same protocol ----------------------
def measured(run: Path, name: str) -> tuple[dict | None, str]:
    """A run's best record (lowest FID) under published protocol `name` with the standard Inception at the
    protocol's own sizes, or None and why not (one short clause; "" when it has no record under `name`)."""
    from gan.metrics import published as pub

    p = pub.PROTOCOLS[name]
    try:
        records = fileio.read_json(run / "metrics.json", default=[])
    except GanError:
        return None, "its metrics.json is damaged"
    under = [r for r in records if isinstance(r, dict) and (r.get("published_protocol") or {}).get("name") == name]
    if not under:
        return None, ""
    sized = [r for r in under if (r["published_protocol"].get("samples"), r["published_protocol"].get(
        "reference_count")) == (p.samples, p.reference_count)]
    good = [r for r in sized if r["published_protocol"].get("standard_inception")
            and isinstance((r.get("values") or {}).get("metrics/fid"), (int, float))]
    if good:
        return min(good, key=lambda r: r["values"]["metrics/fid"]), ""
    last = under[-1]["published_protocol"]
    why = [] if last in [r["published_protocol"] for r in sized] else [
        f"at {last.get('samples', 0):,} vs {last.get('reference_count', 0):,} images, not the protocol's sizes"]
    why += [] if last.get("standard_inception") else ["with Inception weights that are not the standard file"]
    return None, "measured " + " and ".join(why or ["without a standard FID"])


def published(b: Board):
    """(rich tables, one per protocol and kind some run was measured under: runs and published figures ranked by FID;
    lines saying which published figures are left out and why). Conditional and unconditional models are ranked
    apart; every row says its recipe: a run's is a published figure's, or how it differs from the figure of its
    model, and a figure names the experiment that is its recipe."""
    from rich.table import Table

    from gan.metrics import published as pub

    tables, lines = [], []
    for name, p in pub.PROTOCOLS.items():
        found, why_not = {"unconditional": [], "conditional": []}, []
        for r in b.rows:
            rec, why = measured(r.run, name)
            if rec is not None:
                cfg = run_config(r.run)
                found["conditional" if cfg.get("model", {}).get("conditional") else "unconditional"].append((r, rec, cfg))
            elif why:
                why_not.append(f"{r.label} {why}")
        if not any(found.values()):
            lines.append(f"published figures under '{name}' ({p.what}) left out: no run measured under it"
                         + (f" ({'; '.join(why_not)})" if why_not else "") + f"; run `gan eval RUN --protocol {name}`")
            continue
        for kind, runs in found.items():
            figs = pub.figures_for(name, kind)
            if not runs:
                if figs:
                    lines.append(f"{kind} published figures under '{name}' left out: no {kind} run measured under "
                                 f"it ({', '.join(f.model for f in figs)}); they are ranked only beside {kind} runs")
                continue
            t = Table(box=None, title=f"protocol '{name}', {kind} models: {p.what}", caption_justify="left",
                      caption="published: the figure as its source reports it"
                              + (f" (sources: {'; '.join(sorted({f.source for f in figs}))})" if figs else ""))
            for h in ("#", "run or published model", "FID", "IS", "KID", "what", "recipe"):
                t.add_column(h, justify="right" if h in ("#", "FID", "IS", "KID") else "left")
            items = [(rec["values"]["metrics/fid"], r.label, rec["values"].get("metrics/is"),
                      rec["values"].get("metrics/kid"), f"{rec.get('checkpoint', '?')}.pt step {rec.get('step', '?')}",
                      _recipe_of_run(cfg, figs)) for r, rec, cfg in runs]
            items += [(f.fid, f"{f.model} (published)", None, None, f.source.split(" (")[0],
                       f"`{f.recipe.experiment}`" if f.recipe else "not an experiment here") for f in figs]
            for i, (fid, label, isc, kid, what, recipe) in enumerate(sorted(items, key=lambda x: x[0]), 1):
                t.add_row(str(i), label, f"{fid:.2f}", "—" if isc is None else f"{isc:.2f}",
                          "—" if kid is None else f"{kid:.4f}", what, recipe)
            tables.append(t)
        if why_not:
            lines.append(f"protocol '{name}': not ranked: {'; '.join(why_not)}")
    return tables, lines


def _recipe_of_run(cfg: dict, figs: list) -> str:
    """A run's recipe beside the figures: a published figure's, or how it differs from the figure of its model."""
    from gan.metrics import recipes

    for f in figs:
        if f.recipe is None:
            continue
        diff = recipes.differences(cfg, f.recipe)
        if not diff:
            return f"{f.model}'s (published)"
        if f.recipe.keys()["model.arch"] == (cfg.get("model") or {}).get("arch"):
            return f"not {f.model}'s: {recipes.said(diff)}"
    return f"its own (no figure here trains {(cfg.get('model') or {}).get('arch', '?')})"

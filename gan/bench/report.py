"""The targets (one table, with where each comes from), the report every section writes into, and the exit code.

A section records markdown (printed as it goes), structured data (the JSON) and, for each target it measures,
its value and the per-round samples it is judged on (gan/bench/verdict.py: PASS / FAIL / unclear on a 95 %
interval). The exit code is 1 when a target FAILs (its whole interval beyond the bound) or a section failed;
"unclear" says how many rounds would settle it and does not fail the run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from gan import fileio
from gan.bench import machine, verdict
from gan.errors import GanError


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    op: str  # ">=", "<=" or "<"
    bound: float
    unit: str  # "x" (ratio), "%" (a fraction shown in per cent), "img/s" or "s" (seconds)
    source: str
    section: str
    devices: tuple = ("cpu", "cuda")  # where it applies; elsewhere it is "n/a"


ISSUE = "issue \"Beyond the peers\", speed items"
TARGETS = (
    Target("engine_vs_seed", "DCGAN on CPU: engine img/s ÷ seed-style loop img/s (mean of paired windows)",
           ">=", 1.15, "x", "issue \"One house\" item 4 (the seed project's speed goal, README \"Speed\")", "speed",
           ("cpu",)),
    Target("cuda_img_s", "DCGAN engine img/s on CUDA, best measured setting (goal stated for an H100)", ">=", 50000,
           "img/s", ISSUE, "speed", ("cuda",)),
    Target("diffaug_cost", "DiffAugment (color,translation,cutout): time it adds to a DCGAN training step on CPU",
           "<=", 0.10, "%", ISSUE + " (DiffAugment)", "levers", ("cpu",)),
    Target("conditional_cost", "class conditioning: time it adds to a DCGAN training step", "<=", 0.05, "%",
           ISSUE + " (conditional models)", "levers"),
    Target("metrics_share", "metrics' share of wall time, worst shipped experiment at its default cadence "
                            "(first run: reference statistics computed)", "<=", 0.10, "%",
           "issue \"One house\" item 4 (metrics must not slow training)", "metrics"),
    Target("prc_cost", "precision/recall + class consistency at N = 5,000: time they add to an evaluation",
           "<=", 0.25, "%", ISSUE + " (precision/recall, class metrics)", "metrics"),
    Target("scale_runs_warm", "`gan runs` over 1,000 runs of 100k steps, warm, start-up included (a subprocess)",
           "<", 2.0, "s", "issue 32 (a run index that costs nothing to read)", "scale"),
    Target("scale_leaderboard_warm", "`gan leaderboard` over 1,000 runs of 100k steps, warm, start-up included",
           "<", 2.0, "s", "issue 32 (a run index that costs nothing to read)", "scale"),
    Target("cli_help", "`gan --help` as a subprocess (no torch imported: tests/test_startup.py)", "<", 0.5, "s",
           "issue 32 (a command line that answers at once)", "scale"),
    Target("fid_levers", "largest FID_c10 change of a numerics-changing lever (channels_last, dense_gemm, compile, "
                         "bf16, TF32) on the same samples", "<", 0.01, "%", "issue \"One house\" item 4 (levers may not "
                                                                       "change results)", "fidcheck"),
)


def shown(v: dict, unit: str) -> str:
    """The measured value with its 95 % interval: '1.21× [1.12–1.30], 5 rounds'."""
    if v.get("exact"):
        return f"{fmt(v['value'], unit)} (exact)"
    if v.get("low") is None or v["low"] == v["high"]:
        return fmt(v["value"], unit) + (f", {v['n']} round" if v.get("n") == 1 else "")
    return f"{fmt(v['value'], unit)} [{fmt(v['low'], unit)}–{fmt(v['high'], unit)}], {v['n']} rounds"


def fmt(v: float, unit: str) -> str:
    if unit == "x":
        return f"{v:.2f}×"
    if unit == "%":
        return f"{v * 100:.2f} %"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:,.0f} {unit}"


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def with_bounds(overrides: list[str]) -> tuple[Target, ...]:
    """TARGETS with `KEY=VALUE` bounds replaced (`--target`: e.g. to see a missed target's exit code)."""
    keys = {t.key: t for t in TARGETS}
    for item in overrides:
        k, _, v = item.partition("=")
        if k not in keys:
            raise GanError(f"--target {item!r}: unknown target (known: {', '.join(keys)})")
        try:
            keys[k] = dataclasses.replace(keys[k], bound=float(v))
        except ValueError:
            raise GanError(f"--target {item!r}: expected KEY=NUMBER") from None
    return tuple(keys.values())


class Report:
    def __init__(self, facts: dict, argv: list[str], profile: str, targets=TARGETS, say=print):
        self.facts, self.argv, self.profile, self.targets, self.say = facts, argv, profile, targets, say
        self.sections: dict[str, dict] = {}
        self.values: dict[str, tuple[float | None, str]] = {}  # target key -> (value or None = n/a, detail)
        self.samples: dict[str, tuple[list, bool]] = {}  # target key -> (per-round samples, exact)
        self.steady = machine.Steadiness()  # other processes' CPU during every timed window
        self.spread: dict[str, float] = {}  # a repeated window's coefficient of variation, by what was repeated
        self.headlines: list[str] = []
        self.cur: dict | None = None
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def section(self, name: str, title: str):
        """Records a section's time; an exception is written into the report (and fails the exit code), and
        the next section still runs."""
        self.cur = self.sections[name] = {"title": title, "md": [], "data": {}, "seconds": None, "error": None}
        self.say(f"\n## {title}\n")
        t = time.perf_counter()
        try:
            yield self.cur
        except Exception as e:  # noqa: BLE001 - one broken section does not lose the others' numbers
            self.cur["error"] = f"{type(e).__name__}: {e}"
            self.md(f"**section failed**: `{type(e).__name__}: {str(e)[:300]}`")
            self.say(traceback.format_exc())
        finally:
            self.cur["seconds"] = round(time.perf_counter() - t, 1)
            self.md(f"_section time {self.cur['seconds']:.0f} s_")
            self.cur = None

    def md(self, *lines: str) -> None:
        for ln in lines:
            self.cur["md"].append(ln)
            self.say(ln)

    def table(self, header: list[str], rows: list[list]) -> None:
        self.md(*table(header, rows), "")

    def data(self, **kw) -> None:
        self.cur["data"].update(kw)

    def measure(self, key: str, value: float | None, detail: str, samples=None, exact: bool = False) -> None:
        """A target's measured value (None: does not apply here, detail says why) and the per-round samples it is
        judged on (`exact`: a value with no timing noise, judged as it is)."""
        self.values[key] = (value, detail)
        if value is not None:
            self.samples[key] = (list(samples) if samples is not None else [value], exact)

    def headline(self, line: str) -> None:
        self.headlines.append(line)

    # ---- verdicts --------------------------------------------------------------------------------------------
    def verdicts(self) -> list[dict]:
        dev = self.facts["device"].split(":")[0]
        out = []
        for t in self.targets:
            interval = {"low": None, "high": None, "n": 0, "rounds": None, "exact": False}
            sec = self.sections.get(t.section)
            value, detail = self.values.get(t.key, (None, ""))
            if dev not in t.devices:
                status, detail = "n/a", f"applies on {' / '.join(t.devices)} only"
            elif t.key in self.values and value is not None:
                j = verdict.judge(*self.samples[t.key][:1], t.op, t.bound, exact=self.samples[t.key][1])
                status, interval = j["status"], {k: j[k] for k in ("low", "high", "n", "rounds")}
                interval["exact"] = self.samples[t.key][1]
                detail = f"{detail}; {j['why']}" if detail else j["why"]
            elif sec is not None and sec["error"]:
                status, detail = "ERROR", sec["error"][:120]
            elif sec is None:
                status, detail = "not run", f"section {t.section} not run"
            else:
                status = "n/a"
            v = {"key": t.key, "what": t.what, "target": f"{t.op} {fmt(t.bound, t.unit)}", "status": status,
                 "value": value, **interval, "detail": detail, "source": t.source}
            out.append(v | {"shown": shown(v, t.unit) if value is not None else "—"})
        return out

    def exit_code(self) -> int:
        bad = any(v["status"] in ("FAIL", "ERROR") for v in self.verdicts())
        return 1 if bad or any(s["error"] for s in self.sections.values()) else 0

    # ---- the files ---------------------------------------------------------------------------------------------
    def write(self, out_dir: Path) -> Path:
        """bench-out/<date>-<host>.md and .json; a name already taken gets -1, -2... (nothing overwritten)."""
        self.facts["load_end"] = machine.loadavg()
        self.facts["steadiness"] = self.steady.summary()
        self.facts["window_spread"] = {k: round(v, 4) for k, v in self.spread.items()}
        self.facts["wall_seconds"] = round(time.perf_counter() - self.t0, 1)
        stem = f"{dt.datetime.now():%Y-%m-%d-%H%M%S}-{self.facts['host']}"
        out_dir = Path(out_dir)
        md = out_dir / f"{stem}.md"
        for i in range(1, 1000):
            if not md.exists() and not md.with_suffix(".json").exists():
                break
            md = out_dir / f"{stem}-{i}.md"
        verdicts = self.verdicts()
        fileio.write_atomic(md, "\n".join(self.markdown(verdicts)) + "\n")
        fileio.write_json(md.with_suffix(".json"), {
            "machine": self.facts, "argv": self.argv, "profile": self.profile, "targets": verdicts,
            "headline": self.headlines, "exit_code": self.exit_code(),
            "sections": {k: {"title": s["title"], "seconds": s["seconds"], "error": s["error"], "data": s["data"]}
                         for k, s in self.sections.items()}})
        return md

    def markdown(self, verdicts: list[dict]) -> list[str]:
        f = self.facts
        out = [f"# gan bench ({self.profile}) on {f['host']}", ""] + machine.header(f) + [
            machine.steadiness_line(f.get("steadiness"), self.spread),
            f"- command: `python -m gan.bench {' '.join(self.argv)}`; wall time {f['wall_seconds']:.0f} s", "",
            "## Targets", ""]
        out += table(["target", "bound", "measured", "status", "detail", "from"],
                     [[v["what"], v["target"], v["shown"], f"**{v['status']}**", v["detail"], v["source"]]
                      for v in verdicts])
        if self.headlines:
            out += ["", "## Headline", ""] + [f"- {h}" for h in self.headlines]
        for s in self.sections.values():
            out += ["", f"## {s['title']}", ""] + s["md"]
        return out

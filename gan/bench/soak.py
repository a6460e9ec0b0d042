"""`python -m gan.bench.soak [--steps 100000] [--every 10000] [--profile full|tiny]`: a long run that must stay as
it started (`make soak`, not in CI).

A tiny conditional SN-DCGAN (the `smoke` pipeline, widths 8, z 16) trains as `gan train` in its own process at
`best`'s cadence (read from experiments/best.toml; the metric is cheap: c10 on a few hundred samples). Every
`--every` steps this process reads, from outside the run: its memory (RSS, anonymous part, peak), its own CPU time
per step and its steps per second over the interval, the bytes of its event files, last.pt, checkpoints/ and
run.json, the entries of every list the checkpoint keeps (`history`, `losses`, ...), and copies the run folder. When
the run has ended, each copy is resumed (`gan resume COPY`) and timed to its first step (the moment `step` of
gan/stop.py, where a SIGKILL ends it): a resume at that age, without disturbing the main run's figures. The report
(bench-out/, markdown + JSON, as `make bench`'s) has a row per mark and each figure's verdict
(gan/bench/growth.py); exit 1 when a figure does not stay as it may (or the run failed), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gan.bench import growth

G = growth


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    allowed: tuple  # verdicts this figure may have; anything else is growth without need
    tol: float  # the fixed share of its level within which it counts as flat
    why: str  # why it may do what `allowed` says
    judged: bool = True  # False: shown with its verdict, not in the exit code


FIGURES = (
    Figure("anon_mib", "RSS anon MiB", (G.FLAT, G.FALLS), 0.05, "a run's memory holds the same things at every "
           "step (anonymous: its own; the file-backed rest is torch's libraries, which the kernel drops and reloads)"),
    Figure("cpu_ms_per_step", "CPU ms/step", (G.FLAT, G.FALLS), 0.10, "a step does the same work at every step "
           "(the run's own CPU time over the interval, evaluations included: other processes do not move it)"),
    Figure("steps_per_s", "steps/s", (G.FLAT, G.RISES), 0.10, "wall clock: moves with what other processes take "
           "(others' cores); not judged, the CPU figure is", judged=False),
    Figure("events_mib", "events MiB", (G.FLAT, G.LINEAR), 0.02, "the logged points themselves"),
    Figure("last_pt_kib", "last.pt KiB", (G.FLAT, G.LINEAR), 0.02, "models, optimisers, RNG, metric history"),
    Figure("run_json_b", "run.json B", (G.FLAT,), 0.02, "rewritten at every log step: must not grow in an "
                                                       "unbroken run"),
    Figure("resume_s", "resume s", (G.FLAT, G.LINEAR), 0.15, "reads one checkpoint of the size above"),
)
# the checkpoint's lists: `history` has one entry per metric point (HParams' best/final FID and Result.metrics need
# them all); any other list (the loss log) must not grow: its curve is in the event files
LIST_ALLOWED = {"history": (G.FLAT, G.LINEAR)}
PROFILES = {  # steps, every, (log, image, checkpoint, metrics) cadence or None = best's, metric samples, data limit
    "full": (100_000, 10_000, None, 500, 5000),
    "tiny": (300, 100, (1, 25, 50, 50), 32, 192),  # a log point per step: the loss log reaches its bound
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gan.bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=list(PROFILES), default="full",
                    help="full: best's cadence, 100k steps; tiny: a few hundred steps at a small cadence (the test)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    ap.add_argument("--every", type=int, default=None, help="a row every N steps (default: the profile's)")
    ap.add_argument("--data", default=None, help="an npz file/folder to train on (default: CIFAR-10 from "
                                                 "GAN_DATA_ROOT or the shared shards, first 5,000 images)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the run and the resumes (default 1)")
    ap.add_argument("--resume-tries", type=int, default=2, help="resumes timed per mark; the fastest is kept "
                                                                "(default 2)")
    ap.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE",
                    help="one more override of the run's config (repeatable)")
    ap.add_argument("--keep", default=None, help="keep the run folder at this path (default: thrown away)")
    ap.add_argument("--out", default="bench-out", help="folder of the report files")
    return ap


def overrides(profile: str, steps: int, every: int, data_ov: list[str]) -> list[str]:
    """The run's --set: a tiny conditional SN-DCGAN on `smoke`'s pipeline at best's cadence, trained a tenth of an
    interval past the last mark, so that every mark is measured mid-run (not after the run's closing writes)."""
    from gan import config

    _, _, cadence, samples, limit = PROFILES[profile]
    if cadence is None:  # best's, read from its file: the soak follows it when it changes
        b = config.load("best")
        cadence = (b.train.log_every, b.train.image_every, b.train.checkpoint_every, b.metrics.every)
    log, image, ckpt, metric_every = cadence
    return [*data_ov, f"data.limit={limit}", "model.g_channels=8", "model.d_channels=8", "model.z_dim=16",
            "model.conditional=true", "optim.batch_size=32", f"train.steps={steps + every // 10}",
            f"train.log_every={log}", f"train.image_every={image}", f"train.checkpoint_every={ckpt}", 'train.precision="fp32"',
            f"metrics.every={metric_every}", f"metrics.num_samples={samples}", f"metrics.ref_samples={2 * samples}",
            'metrics.extractors=["c10"]', "metrics.batch_size=250"]


# ---- what is read from outside the run -------------------------------------------------------------------------
def rss_mib(pid: int) -> dict:
    """{rss, anon, peak} MiB of a process from /proc: resident, its anonymous part, peak resident (None each off
    Linux or once it has ended)."""
    keys = {"rss_mib": "VmRSS", "anon_mib": "RssAnon", "peak_rss_mib": "VmHWM"}
    try:
        fields = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in ln)
        return {k: int(fields[v].split()[0]) / 1024 for k, v in keys.items()}
    except (OSError, KeyError, ValueError):
        return dict.fromkeys(keys)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (/proc/PID/stat), None once it has ended."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def file_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())


def lists_of(ckpt: Path) -> dict[str, dict]:
    """{key: {entries, bytes}} of every list the checkpoint keeps (bytes: its pickle, as it is stored)."""
    from gan import fileio

    try:
        state = fileio.load_torch(ckpt)
    except Exception:  # noqa: BLE001 - a checkpoint between rotations: the next mark reads it
        return {}
    return {k: {"entries": len(v), "bytes": len(pickle.dumps(v))} for k, v in state.items()
            if isinstance(v, (list, tuple))}


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Soak:
    def __init__(self, args, work: Path, set_: list[str], ckpt_every: int, say=print):
        self.a, self.work, self.set_, self.ckpt_every, self.say = args, work, set_, ckpt_every, say
        self.env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GAN_CACHE=str(work / "cache"))
        self.env.pop("GAN_TEST_AT", None)
        self.rows: list[dict] = []

    def gan(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gan", *args]

    def train(self, steady) -> tuple[int, Path | None, str]:
        """The main run, watched: (exit code, run folder, the tail of its output)."""
        logs = self.work / "logs"
        with open(self.work / "train.log", "w") as out:
            proc = subprocess.Popen(self.gan("train", "smoke", "--device", "cpu", "--logs", str(logs), "--name",
                                             "soak", *[x for s in self.set_ for x in ("--set", s)]),
                                    stdout=out, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)
            try:
                # the rates count from the first heartbeat: start-up (imports, data, reference statistics) is no step
                first = self.wait(proc, logs, lambda run: read_json(run / "run.json").get("progress", {}).get("step"))
                prog = read_json(first / "run.json")["progress"] if first else {}
                last = {"step": prog.get("step", 0), "train_seconds": prog.get("train_seconds", 0.0),
                        "wall": time.perf_counter(), "cpu": cpu_seconds(proc.pid)}
                for mark in range(self.a.every, self.a.steps + 1, self.a.every):
                    with steady.window():  # what other processes took meanwhile: the rate's context
                        got = self.wait(proc, logs, lambda run: read_json(run / "run.json").get("progress", {})
                                        .get("step", 0) >= mark)
                    if got is None:
                        break
                    row, last = self.measure(proc.pid, got, last, steady)
                    # the checkpoint at (or last before) the mark: written after the mark's heartbeat and evaluation
                    ckpt = mark - mark % self.ckpt_every
                    if self.wait(proc, logs, lambda run: read_json(run / "run.json").get("step", 0) >= ckpt):
                        self.sizes(row, got)
                        self.rows.append(row)
                proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        run = next(logs.glob("*/*"), None)
        return proc.returncode, run, (self.work / "train.log").read_text(errors="replace")[-2000:]

    @staticmethod
    def wait(proc, logs: Path, done) -> Path | None:
        """Polls until done(run folder) holds (the folder) or the run ends (None)."""
        while proc.poll() is None:
            run = next((p for p in logs.glob("*/*") if (p / "run.json").is_file()), None)
            if run is not None and done(run):
                return run
            time.sleep(0.2)
        return None

    def measure(self, pid: int, run: Path, last: dict, steady) -> tuple[dict, dict]:
        """RSS and the step rate at a mark's heartbeat (before its evaluation and checkpoint)."""
        prog = read_json(run / "run.json").get("progress", {})
        dt = prog["train_seconds"] - last["train_seconds"]
        now = {"step": prog["step"], "train_seconds": prog["train_seconds"], "wall": time.perf_counter(),
               "cpu": cpu_seconds(pid)}
        cpu = now["cpu"] - last["cpu"] if now["cpu"] is not None and last.get("cpu") is not None else None
        return {"step": prog["step"], **rss_mib(pid),
                "cpu_ms_per_step": 1000 * cpu / (prog["step"] - last["step"]) if cpu is not None else None,
                "steps_per_s": (prog["step"] - last["step"]) / dt if dt > 0 else None,
                "wall_steps_per_s": (prog["step"] - last["step"]) / (now["wall"] - last["wall"]),
                "others_cores": steady.windows[-1]["others_cores"] if steady.windows else None}, now

    def sizes(self, row: dict, run: Path) -> None:
        """Bytes on disk once the mark's checkpoint is written, and a copy of the folder to resume later."""
        ckpts = run / "checkpoints"
        has = (ckpts / "last.pt").is_file()  # not before the first checkpoint: those figures are left empty
        row |= {"events_mib": file_bytes(run, "events.out.tfevents.*") / 2**20,
                "last_pt_kib": file_bytes(ckpts, "last.pt") / 1024 if has else None,
                "checkpoints_kib": file_bytes(ckpts, "*") / 1024 if has else None,
                "run_json_b": file_bytes(run, "run.json") if has else None,  # its `step`, `best`: at a checkpoint
                "lists": lists_of(ckpts / "last.pt") if has else {}}
        snap = self.work / "snapshots" / f"step-{row['step']:07d}"
        shutil.copytree(run, snap, ignore=shutil.ignore_patterns(".lock", ".reserve"))
        row["snapshot"] = str(snap)
        self.say(f"- step {row['step']:,}: RSS {fmt(row['rss_mib'], '.0f')} MiB (anon {fmt(row['anon_mib'], '.0f')}), "
                 f"{fmt(row['cpu_ms_per_step'], '.1f')} CPU ms/step, {fmt(row['steps_per_s'], '.1f')} steps/s, "
                 f"events {row['events_mib']:.2f} MiB, last.pt "
                 f"{fmt(row['last_pt_kib'], '.0f')} KiB, run.json {fmt(row['run_json_b'], ',')} B, "
                 + ", ".join(f"{k} {v['entries']} ({v['bytes']} B)" for k, v in row["lists"].items()))

    def resume_seconds(self, snap: Path) -> tuple[float | None, str]:
        """The fastest of `--resume-tries` resumes of a copy, spawn to its first step (killed there)."""
        best, note = None, ""
        if not (snap / "checkpoints" / "last.pt").is_file():
            shutil.rmtree(snap, ignore_errors=True)
            return None, "(no checkpoint yet)"
        for i in range(self.a.resume_tries):
            try_dir = snap.with_name(f"{snap.name}-try{i}")
            shutil.copytree(snap, try_dir)
            state = read_json(try_dir / "run.json")
            t = time.perf_counter()
            p = subprocess.run(self.gan("resume", str(try_dir), "--device", "cpu", "--set",
                                        f"train.steps={state.get('steps_planned', 0) + 1000}"),
                               env=dict(self.env, GAN_TEST_AT="step@1"), capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=600)
            secs = time.perf_counter() - t
            shutil.rmtree(try_dir, ignore_errors=True)
            if p.returncode != -9:  # it never reached its first step
                note = f"resume exited {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"
                continue
            best = secs if best is None else min(best, secs)
        shutil.rmtree(snap, ignore_errors=True)
        return best, note


def verdicts(rows: list[dict]) -> list[dict]:
    """One verdict per figure (and per list the checkpoint keeps), with whether it is within what it may do."""
    xs = [r["step"] for r in rows]
    out = []
    keys = sorted({k for r in rows for k in r["lists"]})
    figs = list(FIGURES) + [Figure(f"list:{k}", f"ckpt `{k}` entries", LIST_ALLOWED.get(k, (G.FLAT,)), 0.02,
                                   "one entry per metric point" if k in LIST_ALLOWED else
                                   "no need to grow: a per-step curve is in the event files") for k in keys]
    for f in figs:
        pts = [(x, value(r, f.key)) for x, r in zip(xs, rows)]
        pts = [(x, y) for x, y in pts if y is not None]
        j = growth.judge([x for x, _ in pts], [y for _, y in pts], f.tol, rate=f.key == "steps_per_s")
        out.append({"key": f.key, "label": f.label, "allowed": list(f.allowed), "why": f.why, **j,
                    "ok": growth.ok(j["verdict"], f.allowed) or not f.judged, "judged": f.judged})
    return out


def value(row: dict, key: str):
    if key.startswith("list:"):
        return row["lists"].get(key[5:], {}).get("entries")  # bytes would move with the digits of its steps
    return row.get(key)


def fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    keys = sorted({k for r in rows for k in r["lists"]})
    header = ["step", "RSS MiB (peak)", "RSS anon MiB", "CPU ms/step", "steps/s", "wall steps/s", "events MiB",
              "last.pt KiB",
              "checkpoints/ KiB", "run.json B"] + [f"ckpt `{k}`: entries (B)" for k in keys] + ["resume s",
                                                                                               "others' cores"]
    body = [[f"{r['step']:,}", f"{fmt(r['rss_mib'], '.0f')} ({fmt(r['peak_rss_mib'], '.0f')})",
             fmt(r["anon_mib"], ".0f"), fmt(r["cpu_ms_per_step"], ".1f"), fmt(r["steps_per_s"], ".1f"),
             fmt(r["wall_steps_per_s"], ".1f"),
             f"{r['events_mib']:.2f}", fmt(r["last_pt_kib"], ".1f"), fmt(r["checkpoints_kib"], ".0f"),
             fmt(r["run_json_b"], ",")]
            + [(f"{r['lists'][k]['entries']} ({r['lists'][k]['bytes']:,})" if k in r["lists"] else "—") for k in keys]
            + [fmt(r.get("resume_s"), ".2f"), fmt(r["others_cores"], ".2f")] for r in rows]
    return header, body


def verdict_rows(vs: list[dict]) -> list[list]:
    pct = lambda v: "—" if v is None else f"{v * 100:+.1f} %"  # noqa: E731
    return [[v["label"], v["verdict"], pct(v["change"]), "—" if v["band"] is None else f"± {v['band'] * 100:.1f} %",
             "—" if v["late_vs_early"] is None else f"{v['late_vs_early']:.2f}", " / ".join(v["allowed"]), v["why"],
             ("ok" if v["ok"] else "**FAIL**") if v["judged"] else "(not judged)"] for v in vs]


VERDICT_HEADER = ["figure", "verdict", "fitted change over the run", "flat band", "late ÷ early slope", "may be",
                  "why", "status"]


def main(argv: list[str] | None = None) -> int:
    from gan.bench import machine
    from gan.bench.context import find_data
    from gan.bench.report import Report
    from gan.errors import GanError

    import torch

    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    steps0, every0 = PROFILES[a.profile][:2]
    a.steps, a.every = a.steps or steps0, a.every or every0
    try:
        if a.steps < 3 * a.every or a.every < 1:
            raise GanError(f"--steps {a.steps} --every {a.every}: at least 3 rows are needed to say how a figure "
                           "grows (steps ≥ 3 × every)")
        if a.data and not Path(a.data).exists():
            raise GanError(f"--data {a.data}: no such file or folder")
        if a.keep and Path(a.keep).exists():
            raise GanError(f"--keep {a.keep}: exists; not overwriting it")
        if a.resume_tries < 1 or a.threads < 1:
            raise GanError("--resume-tries and --threads: at least 1")
    except GanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gan-soak-"))
    # SIGTERM (kill, a timeout) unwinds like Ctrl-C: the run and any resume are stopped, the work folder removed
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say = lambda line="": print(line, flush=True)  # noqa: E731
    try:
        data_ov, note = find_data(a.data, work)
        set_ = overrides(a.profile, a.steps, a.every, data_ov) + a.set_
        from gan import config

        try:
            cfg = config.load("smoke", set_)  # bad --set: one line before anything starts
        except GanError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        torch.set_num_threads(a.threads)
        rep = Report(machine.facts(torch.device("cpu")), argv, f"soak-{a.profile}", (), say)
        title = f"Soak: {a.steps:,} steps, a row every {a.every:,}"
        with rep.section("soak", title):
            soak = Soak(a, work, set_, cfg.train.checkpoint_every, say)
            rep.md(f"data: {note}; `gan train smoke` with " + " ".join(f"`--set {s}`" for s in set_) +
                   f"; {a.threads} thread(s); work folder {work}", "")
            code, run, tail = soak.train(rep.steady)
            if code != 0 or run is None:
                raise RuntimeError(f"the run exited {code}: {tail[-600:]}")
            say(f"run ended (exit 0); timing {len(soak.rows)} resumes × {a.resume_tries}")
            for r in soak.rows:
                r["resume_s"], r["resume_note"] = soak.resume_seconds(Path(r.pop("snapshot")))
                say(f"- resume at step {r['step']:,}: {fmt(r['resume_s'], '.2f')} s {r['resume_note']}")
            vs = verdicts(soak.rows)
            rep.md("", "Rows: figures read from outside the run when its progress heartbeat passes each mark, over "
                   "the interval since the last (the first from the run's first heartbeat: start-up is no step); "
                   "RSS anon = the process's own memory (RssAnon); CPU ms/step = the process's user + system CPU "
                   "time ÷ steps (evaluations, grids and checkpoints included); steps/s = steps ÷ training seconds "
                   "(evaluations excluded, run.json's progress); wall steps/s includes everything; resume s = the "
                   "fastest of "
                   f"{a.resume_tries} `gan resume` of a copy of the folder at that mark, spawn to its first step; "
                   "others' cores = CPU other processes used during the interval.", "")
            rep.table(*table_rows(soak.rows))
            rep.md("Verdicts (gan/bench/growth.py): a line fitted through each figure; flat when its change over "
                   f"the run is within the band (the larger of a fixed share and {growth.NOISE}× its scatter); "
                   f"otherwise \"grows faster\" when the second half's slope exceeds {growth.FASTER}× the first "
                   "half's.", "")
            rep.table(VERDICT_HEADER, verdict_rows(vs))
            rep.data(rows=soak.rows, verdicts=vs, overrides=set_, steps=a.steps, every=a.every)
            if a.keep:
                shutil.copytree(run, a.keep)
                rep.md(f"run folder kept at {a.keep}")
        path = rep.write(Path(a.out))
        bad = [v["label"] for v in rep.sections["soak"]["data"].get("verdicts", []) if not v["ok"]]
        failed = rep.sections["soak"]["error"]
        code = 1 if bad or failed else 0
        say(f"\nreport: {path} (+ .json); exit code {code}"
            + (f" (not as it started: {', '.join(bad)})" if bad else "") + (" (the soak failed)" if failed else ""))
        return code
    finally:
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

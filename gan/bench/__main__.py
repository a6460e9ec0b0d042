"""`python -m gan.bench [--quick] [--device auto|cpu|cuda] [--sections speed,levers,...] [--out DIR]`

Runs the chosen sections on this machine, writes the report as markdown + JSON to DIR/<date>-<host>.md/.json,
prints its path, and exits 1 when a stated target is missed (or a section failed), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import torch

SECTIONS = {  # name -> (module, title); run in this order
    "speed": ("gan.bench.speed", "Training speed: engine vs the seed-style loop"),
    "levers": ("gan.bench.levers", "Levers, one at a time (DCGAN)"),
    "flops": ("gan.bench.flops", "FLOP rate: share of this machine's GEMM ceiling"),
    "metrics": ("gan.bench.metrics_cost", "Metric cost"),
    "fidcheck": ("gan.bench.fidcheck", "FID check of numerics-changing levers"),
    "memory": ("gan.bench.memory", "Peak memory"),
    "scale": ("gan.bench.scale", "Scale: gan runs and leaderboard over many long runs"),
    "disk": ("gan.bench.diskplan", "Disk per 10,000 steps: baseline and best"),
    "quality": ("gan.bench.quality", "Quality race: equal training time"),
}
DEFAULT = "speed,levers,flops,metrics,fidcheck,memory,scale,disk"


def parser() -> argparse.ArgumentParser:
    from gan.bench.context import PROFILES

    ap = argparse.ArgumentParser(prog="python -m gan.bench", description=__doc__.split("\n\n")[1].strip())
    ap.add_argument("--quick", action="store_true", help="shorter windows, N = 500/1000 only (≈ 3-5 min on a "
                                                         "quiet 2-core CPU)")
    ap.add_argument("--profile", choices=list(PROFILES), default=None,
                    help="full (default), quick (= --quick) or tiny (seconds, tiny nets: the smoke test's; its "
                         "numbers mean nothing)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--sections", default=DEFAULT, help=f"comma list out of {', '.join(SECTIONS)} (default "
                                                        f"{DEFAULT}; quality is `make bench-quality`)")
    ap.add_argument("--out", default="bench-out", help="folder of the report files")
    ap.add_argument("--data", default=None, help="an npz file/folder every run trains on (default: CIFAR-10 from "
                                                 "GAN_DATA_ROOT or the shared shards)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's; on a machine busy with other work, 1 can be faster)")
    ap.add_argument("--windows", type=int, default=None, help="timed windows per contender (default: the profile's)")
    ap.add_argument("--window-seconds", type=float, default=None, help="length of one window (default: the "
                                                                       "profile's)")
    ap.add_argument("--target", action="append", default=[], metavar="KEY=VALUE",
                    help="replace a target's bound (repeatable), e.g. engine_vs_seed=2.0")
    q = ap.add_argument_group("quality race (--sections quality)")
    q.add_argument("--exps", default="dcgan,sngan", help="contenders")
    q.add_argument("--minutes", type=float, default=5.0, help="training minutes each (evaluations excluded)")
    q.add_argument("--samples", type=int, default=2000, help="generated samples per evaluation")
    q.add_argument("--points", type=int, default=3, help="evaluations per run, about (the last at the end)")
    q.add_argument("--logs", default="logs", help="where the race's runs go")
    return ap


def main(argv: list[str] | None = None) -> int:
    from gan import device as gdevice
    from gan.bench import machine
    from gan.bench.context import PROFILES, Context, cache_at, find_data, inductor_cold
    from gan.bench.report import Report, table, with_bounds
    from gan.errors import GanError

    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    try:
        bad = [s for s in sections if s not in SECTIONS]
        if bad or not sections:
            raise GanError(f"--sections {a.sections!r}: expected a comma list out of {', '.join(SECTIONS)}")
        if a.data and not Path(a.data).exists():
            raise GanError(f"--data {a.data}: no such file or folder")
        device = gdevice.pick(a.device)
        targets = with_bounds(a.target)
    except GanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    profile = PROFILES[a.profile or ("quick" if a.quick else "full")]
    profile = dataclasses.replace(profile, windows=a.windows or profile.windows,
                                  window_s=a.window_seconds or profile.window_s)
    tmp = Path(tempfile.mkdtemp(prefix="gan-bench-"))
    say = lambda line="": print(line, flush=True)  # noqa: E731
    try:
        data_ov, data_note = find_data(a.data, tmp)
        rep = Report(machine.facts(device), argv, profile.name, targets, say)
        ctx = Context(device, profile, data_ov, data_note, tmp, rep, a)
        say(f"# gan bench ({profile.name}), sections {', '.join(sections)}")
        for ln in machine.header(rep.facts):
            say(ln)
        say(f"- data: {data_note}")
        for name in SECTIONS:  # in the fixed order, whatever order they were asked in
            if name not in sections:
                continue
            module, title = SECTIONS[name]
            with rep.section(name, title), inductor_cold(tmp):
                rep.md(f"data: {data_note}", "")
                # the bench's own reference statistics stay out of the user's cache; the quality race's runs are
                # ordinary runs and use it
                with cache_at(tmp / "cache") if name != "quality" else contextlib.nullcontext():
                    importlib.import_module(module).run(ctx)
        path = rep.write(Path(a.out))
        verdicts = rep.verdicts()
        say("\n## Targets\n")
        say(machine.steadiness_line(rep.facts["steadiness"], rep.spread))
        say("")
        settle = lambda v: f" (≈{v['rounds']} rounds would settle it)" if v["rounds"] else ""  # noqa: E731
        for ln in table(["target", "bound", "measured [95 % interval], rounds", "status"],
                        [[v["what"], v["target"], v["shown"], v["status"] + settle(v)] for v in verdicts]):
            say(ln)
        code = rep.exit_code()
        say(f"\nreport: {path} (+ .json); exit code {code}"
            + (" (a target FAILed or a section failed)" if code else
               f" (no target FAILed; {sum(v['status'] == 'unclear' for v in verdicts)} unclear)"))
        return code
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

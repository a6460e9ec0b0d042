"""The long checks of `gan sweep`, as scripts rather than tests (make sweep-timing, make sweep-evidence).

timing: the same 4 runs (smoke, optim.g_lr 1e-4/2e-4 × 2 seeds) as one sweep with --jobs 2 (cores split: one
        torch thread each on 2 cores) and as one with --jobs 1 (one after another with every core). On a CPU the
        split must not oversubscribe the machine: the --jobs 2 sweep should take ≤ 1.1× the --jobs 1 one.
real:   smoke at 1,000 steps over optim.g_lr × loss.name, 3 seeds, 2 jobs: the report (ranking, mean ± std over
        seeds, Welch's verdict) and <sweep>/bands.png (gan compare --sweep: one mean ± std band per setting).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def sweep(args: list[str], logs: Path) -> tuple[float, Path]:
    before = set(logs.glob("smoke/sweep-*"))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gan", "sweep", *args, "--logs", str(logs)])
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"gan sweep {' '.join(args)} ended with {r.returncode}")
    (folder,) = set(logs.glob("smoke/sweep-*")) - before
    return secs, folder


def timing(steps: int, logs: Path) -> None:
    common = ["smoke", "--grid", "optim.g_lr=1e-4,2e-4", "--seeds", "2", "--set", f"train.steps={steps}",
              "--device", "cpu"]
    t2, _ = sweep(common + ["--jobs", "2", "--name", "jobs2"], logs)
    t1, _ = sweep(common + ["--jobs", "1", "--name", "jobs1"], logs)
    print(f"4 runs of smoke at {steps} steps: --jobs 2 {t2:.0f}s, --jobs 1 (one after another) {t1:.0f}s, "
          f"ratio {t2 / t1:.2f} (wanted ≤ 1.1)")


def bands(folder: Path) -> Path:
    """FID vs training time, one mean ± std band per setting: `gan compare --sweep`, the one place that draws it."""
    out = folder / "bands.png"
    r = subprocess.run([sys.executable, "-m", "gan", "compare", "--sweep", str(folder), "--x", "time", "--out", str(out)])
    if r.returncode != 0:
        sys.exit(f"gan compare --sweep {folder} ended with {r.returncode}")
    return max(folder.glob("bands*.png"), key=lambda p: p.stat().st_mtime)  # bands-1.png when bands.png was there


def real(steps: int, seeds: int, jobs: int, logs: Path, sets: list[str]) -> None:
    extra = [a for kv in sets for a in ("--set", kv)]
    _, folder = sweep(["smoke", "--grid", "optim.g_lr=1e-4,2e-4", "--grid", "loss.name=hinge,bce", "--seeds",
                       str(seeds), "--jobs", str(jobs), "--set", f"train.steps={steps}", *extra, "--device", "cpu",
                       "--name", f"evidence{steps}"], logs)
    print(bands(folder))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["timing", "real", "bands"])
    ap.add_argument("--steps", type=int, default=None, help="train.steps (timing: 100, real: 1000)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for every run (real)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--logs", type=Path, default=Path("logs"))
    ap.add_argument("--sweep", type=Path, help="bands: the sweep folder to draw")
    a = ap.parse_args()
    if a.what == "timing":
        timing(a.steps or 100, a.logs)
    elif a.what == "real":
        real(a.steps or 1000, a.seeds, a.jobs, a.logs, a.sets)
    else:
        print(bands(a.sweep))

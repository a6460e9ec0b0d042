"""The long checks of `gan sweep`, as scripts rather than tests (make sweep-timing, make sweep-evidence).

timing: the same 4 runs (smoke, optim.g_lr 1e-4/2e-4 × 2 seeds) as one sweep with --jobs 2 (cores split: one
        torch thread each on 2 cores) and as one with --jobs 1 (one after another with every core). On a CPU the
        split must not oversubscribe the machine: the --jobs 2 sweep should take ≤ 1.1× the --jobs 1 one.
real:   smoke at 1,000 steps over optim.g_lr × loss.name, 3 seeds, 2 jobs: the report (ranking, mean ± std over
        seeds, Welch's verdict) and <sweep>/bands.png, the FID curves with one mean ± std band per setting.
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
    """FID vs step: each seed faint, each setting's mean ± std over seeds as a band (gan.runs.compare/band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gan.runs import band, compare
    from gan.sweep.manifest import Manifest

    man = Manifest.load(folder)
    c = compare([man.run_dir(e) for e in man.runs])
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, setting in enumerate(man.settings()):
        idx = [i for i, e in enumerate(man.runs) if e["setting"] == setting]
        for i in idx:
            ax.plot(c.series[i].steps, c.series[i].values, color=colors[k % 10], alpha=0.3, lw=0.8, ls="--")
        steps, _, mean, std = band(c, idx)
        ax.fill_between(steps, mean - std, mean + std, color=colors[k % 10], alpha=0.25, linewidth=0)
        ax.plot(steps, mean, marker="o", ms=3, color=colors[k % 10], label=f"{setting} (mean ± std, {len(idx)} seeds)")
    ax.set_xlabel("generator step")
    ax.set_ylabel(c.tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{folder.name}: {c.tag} per setting")
    fig.tight_layout()
    out = folder / "bands.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def real(steps: int, seeds: int, jobs: int, logs: Path) -> None:
    _, folder = sweep(["smoke", "--grid", "optim.g_lr=1e-4,2e-4", "--grid", "loss.name=hinge,bce", "--seeds",
                       str(seeds), "--jobs", str(jobs), "--set", f"train.steps={steps}", "--device", "cpu",
                       "--name", f"evidence{steps}"], logs)
    print(bands(folder))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["timing", "real", "bands"])
    ap.add_argument("--steps", type=int, default=None, help="train.steps (timing: 100, real: 1000)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--logs", type=Path, default=Path("logs"))
    ap.add_argument("--sweep", type=Path, help="bands: the sweep folder to draw")
    a = ap.parse_args()
    if a.what == "timing":
        timing(a.steps or 100, a.logs)
    elif a.what == "real":
        real(a.steps or 1000, a.seeds, a.jobs, a.logs)
    else:
        print(bands(a.sweep))

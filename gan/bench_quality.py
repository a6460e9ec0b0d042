"""Quality race (a script, not a test): train `dcgan` and `sngan` for the same number of steps on the same
data and print FID/KID at a few checkpoints for both, side by side, in one run.

    python -m gan.bench_quality [--steps 200] [--points 4] [--samples 1000] [--exps dcgan,sngan]

Both runs are ordinary runs under logs/ (compare them later with `gan compare` or TensorBoard).
"""
from __future__ import annotations

import argparse
import time

from gan import config
from gan.engine import Trainer
from gan.tracking import console


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--points", type=int, default=4, help="evaluations per run")
    ap.add_argument("--samples", type=int, default=1000, help="generated samples per evaluation")
    ap.add_argument("--exps", default="dcgan,sngan")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--logs", default="logs")
    a = ap.parse_args(argv)
    every = max(1, a.steps // a.points)
    rows = {}
    for exp in a.exps.split(","):
        cfg = config.load(exp, ["train.epochs=0", f"train.steps={a.steps}", f"metrics.every={every}",
                                f"metrics.num_samples={a.samples}", "train.save_png=false", "train.export=false",
                                f"train.checkpoint_every={a.steps}"])
        t0 = time.perf_counter()
        tr = Trainer(cfg, device=a.device, logs=a.logs, name="race")
        r = tr.run()
        console.print(f"{exp}: {r.status} in {(time.perf_counter() - t0) / 60:.1f} min, {r.run_dir}")
        protocol = tr.evaluator.protocol() if tr.evaluator else []
        rows[exp] = (r, protocol, time.perf_counter() - t0)
    console.print(f"\nSame {a.steps} G steps each, evaluations every {every} steps on {a.samples} generated samples "
                  f"vs the training images (reference = {rows[next(iter(rows))][1][0]['reference_samples'] if rows[next(iter(rows))][1] else '?'} images):")
    tags = sorted({t for r, _, _ in rows.values() for _, m in r.metrics for t in m if t.startswith("metrics/")})
    header = f"{'step':>6} " + " ".join(f"{exp + ':' + t.split('/')[1]:>18}" for exp in rows for t in tags)
    console.print(header)
    steps = sorted({s for r, _, _ in rows.values() for s, _ in r.metrics})
    for s in steps:
        cells = []
        for exp, (r, _, _) in rows.items():
            m = dict(r.metrics).get(s, {})
            cells += [f"{m[t]:18.4f}" if t in m else f"{'-':>18}" for t in tags]
        console.print(f"{s:>6} " + " ".join(cells))
    for exp, (r, proto, secs) in rows.items():
        for p in proto:
            console.print(f"{exp}: {p['extractor']} (sha256 {p['weights_sha256'][:12]}…), {p['num_samples']} samples vs "
                          f"{p['reference_samples']} training images; run took {secs / 60:.1f} min")


if __name__ == "__main__":
    main()

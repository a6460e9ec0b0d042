"""Benchmarks (scripts, not tests): `python -m gan.bench [--quick] [--device] [--sections] [--out DIR]`.

One module per concern: machine (what it ran on), speed (engine vs the seed-style loop), levers (each switch on
and off), metrics_cost (evaluation seconds, reference statistics, metrics' share of wall time), fidcheck (the
FID change of numerics-changing levers), memory (peaks, each part in its own process), quality (the equal-time
race), report (the targets, the markdown + JSON report, the exit code).
"""

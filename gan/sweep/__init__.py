"""Sweeps: many normal runs of one experiment under one folder, and an honest answer to "which setting is better,
beyond seed noise?".

    grid.py       --grid/--set/--sample parsed, every value validated as `gan train --set` does; settings × seeds
    manifest.py   sweep.json (the grid, the seeds, each run's overrides, folder and status); what a run still needs
    launchers.py  how a run's process starts: a local process, or a submitit job (Slurm, or its local executor)
    jobs.py       the scheduler: J runs at once (cores split, one GPU each), signals, the live table, pruning calls
    search.py     Optuna: --trials with distributions, the pruner, the study stored in the sweep folder
    report.py     ranking by best primary FID (mean ± std over seeds, Welch's t-test), CSV, aggregate TensorBoard
                  runs (mean, min, max over seeds), HParams rows

Each run is `gan train BASE --set ... --run-dir <sweep>/<folder>` (continued with `gan resume`) in its own process:
the sweep never trains in its own process, so a run in a sweep is exactly a run outside one.
Imports flow one way: cli → sweep → runs → config/rundir/writer/metrics.
"""

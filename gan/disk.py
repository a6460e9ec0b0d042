"""What a run folder holds on disk, by kind (`gan runs --disk`): the bytes a user plans for.

Kinds: `events` (TensorBoard's event files), `checkpoints` (checkpoints/: last.pt, best.pt, each one's .prev, damaged copies
kept aside), `pngs` (results/: the grids `train.save_png` writes), `samples` (what `gan sample` and exports leave
in the folder: samples-*.png, netG*.pth/netD*.pth), `other` (run.json, config.toml, summary.jsonl, metrics.json,
the lock...). A file with two names (a hard link: last.pt and last.pt.prev after a rotation cut short) is
counted once, under its first name in sorted order.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

KINDS = ("events", "checkpoints", "pngs", "samples", "other")
LABELS = {"events": "events", "checkpoints": "checkpoints", "pngs": "PNGs", "samples": "samples/exports",
          "other": "other"}
_SAMPLE = re.compile(r"(samples-.*\.png|net[GD](-\d+)?\.pth)")


def kind_of(rel: Path) -> str:
    """The kind of a file at `rel` (its path inside the run folder)."""
    top = rel.parts[0]
    if len(rel.parts) == 1:
        if "tfevents" in rel.name:
            return "events"
        return "samples" if _SAMPLE.fullmatch(rel.name) else "other"
    return {"checkpoints": "checkpoints", "results": "pngs"}.get(top, "other")


def files(run: Path) -> list[tuple[Path, os.stat_result]]:
    """Every file under the run folder (links not followed), sorted, with its lstat."""
    out = []
    for d, subdirs, names in os.walk(run):
        subdirs.sort()
        for n in sorted(names):
            p = Path(d) / n
            try:
                st = p.lstat()
            except OSError:  # removed while we looked: a rotation's temp file
                continue
            out.append((p, st))
    return out


def usage(run: Path, seen: set | None = None) -> dict[str, int]:
    """{kind: bytes} of the run folder, and "total"; a file already in `seen` (inodes, shared across runs when
    given) is not counted again."""
    seen = set() if seen is None else seen
    out = dict.fromkeys(KINDS, 0)
    for p, st in files(Path(run)):
        ino = (st.st_dev, st.st_ino)
        if ino in seen:
            continue
        seen.add(ino)
        out[kind_of(p.relative_to(run))] += st.st_size
    out["total"] = sum(out[k] for k in KINDS)
    return out


def fmt_bytes(n: float | None) -> str:
    """Decimal units, as disks are sold: 15.0 MB."""
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 100 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"

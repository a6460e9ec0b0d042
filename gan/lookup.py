"""Where an experiment name leads, in this order:

1. a path: anything ending in `.toml` or holding a `/` is that file (relative to the current directory);
2. `./experiments/NAME.toml` in the current directory: a user's own experiments, in their project or a checkout;
3. `NAME.toml` shipped inside the package (`gan/experiments/`): the 14 experiments, in any installed `gan`.

A user's `./experiments/NAME.toml` with a shipped name shadows the shipped one; `gan list` says so on its line.
"""
from __future__ import annotations

from pathlib import Path

from gan.errors import GanError, did_you_mean

SHIPPED_DIR = Path(__file__).resolve().parent / "experiments"
LOCAL_DIR = Path("experiments")  # the current directory's


def _local_dir() -> Path | None:
    d = LOCAL_DIR.resolve()
    return d if d.is_dir() and d != SHIPPED_DIR else None


def listing() -> list[tuple[str, Path, str]]:
    """(name, file, where) for every experiment a name reaches: the local ones first (`local`, or `local, shadows
    the shipped one`), then the shipped ones they do not shadow (`shipped`), each group by name."""
    local = {p.stem: p for p in sorted(_local_dir().glob("*.toml"))} if _local_dir() else {}
    shipped = {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}
    out = [(n, p, "local, shadows the shipped one" if n in shipped else "local") for n, p in local.items()]
    return out + [(n, p, "shipped") for n, p in shipped.items() if n not in local]


def resolve(exp: str) -> Path:
    p = Path(exp)
    if p.suffix == ".toml" or "/" in exp:
        if p.is_dir():
            raise GanError(f"experiment file '{exp}' is a folder: expected a .toml file")
        if not p.is_file():
            raise GanError(f"experiment file '{exp}' not found")
        return p
    for d in (_local_dir(), SHIPPED_DIR):
        if d is not None and (d / f"{exp}.toml").is_file():
            return d / f"{exp}.toml"
    if p.is_dir():
        raise GanError(f"experiment '{exp}' is a folder: expected an experiment name or a .toml file")
    names = sorted({n for n, _, _ in listing()})
    raise GanError(f"no experiment named '{exp}'{did_you_mean(exp, names)} (known: {', '.join(names)}; looked in "
                   "./experiments/ and the package's)")

"""The house's import arrows, read from the source (nothing is imported): one way down, no circles.

cli → engine/runs/sweep/bench (what a command does) → metrics/data/models/fileio and the run's records. A module
that imports its own package's face (`from gan.cli import app` in gan/cli/train.py) is not an arrow up."""
from __future__ import annotations

import ast
from pathlib import Path

GAN = Path(__file__).resolve().parent.parent / "gan"
TOP = ("gan.__main__", "gan.cli")
MIDDLE = ("gan.engine", "gan.runs", "gan.compare", "gan.leaderboard", "gan.evaluate", "gan.board", "gan.dashboard",
          "gan.c10_train", "gan.sweep", "gan.bench", "gan.neighbours")
# the ground floor's own rule: datasets, models and metrics never reach up to the run's records or its config
GROUND = ("gan.data", "gan.models", "gan.metrics")
RECORDS = ("gan.rundir", "gan.writer", "gan.config", "gan.checkpoint")


def modules(root: Path = GAN) -> dict[str, Path]:
    out = {}
    for f in root.rglob("*.py"):
        m = ".".join(f.relative_to(root.parent).with_suffix("").parts)
        out[m.removesuffix(".__init__")] = f
    return out


def arrows(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the gan modules it imports (at any depth of its code: a function's import is an arrow too)."""
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        for n in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                names = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            edges[m] |= {x for x in names if x in mods and x != m and not m.startswith(x + ".")}
    return edges


def within(m: str, group: tuple[str, ...]) -> bool:
    return any(m == g or m.startswith(g + ".") for g in group)


def floor(m: str) -> int:
    return 3 if within(m, TOP) else 2 if within(m, MIDDLE) else 1


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    state, stack, found = {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_imports_run_one_way_down_with_no_circle():
    edges = arrows(modules())
    assert {"gan.cli.train", "gan.engine", "gan.data.common", "gan.rundir", "gan.console"} <= set(edges)
    up = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs if floor(b) > floor(a))
    assert up == [], "arrows running back up:\n" + "\n".join(up)
    ground = sorted(f"{a} -> {b}" for a, bs in edges.items() if within(a, GROUND) for b in bs if within(b, RECORDS))
    assert ground == [], "data/models/metrics reaching the run's records:\n" + "\n".join(ground)
    assert circles(edges) == []


def test_the_checks_see_an_arrow_up_and_a_circle(tmp_path):
    """The checks above on a made-up package: they can fail."""
    pkg = tmp_path / "gan"
    for name, text in {"__init__.py": "", "cli/__init__.py": "app = 1\n", "cli/train.py": "from gan.cli import app\n",
                       "sweep/__init__.py": "", "sweep/launchers.py": "def run():\n    from gan.cli import app\n",
                       "data/__init__.py": "from gan import rundir\n", "rundir.py": "import gan.data\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    edges = arrows(modules(pkg))
    assert edges["gan.cli.train"] == set()  # its own package's face
    assert edges["gan.sweep.launchers"] == {"gan.cli"} and floor("gan.cli") > floor("gan.sweep.launchers")
    assert circles(edges) == [["gan.data", "gan.rundir", "gan.data"]]


def test_no_module_over_400_lines():
    lines = {str(f.relative_to(GAN.parent)): len(f.read_text().splitlines()) for f in GAN.rglob("*.py")}
    long = {f: n for f, n in lines.items() if n > 400}
    assert long == {}

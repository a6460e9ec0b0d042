"""What a sweep runs: `--grid KEY=V1,V2` axes and `--set` values parsed and validated exactly as `gan train --set`
validates them (config.load), before any folder exists; the settings (the grid's cartesian product) × seeds as
named runs."""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from gan import config
from gan.errors import GanError

SEED_KEY = "experiment.seed"
# keys a sweep sets itself, or that would make its runs another experiment
REFUSED = {"experiment.seed": "the sweep sets it: use --seeds N",
           "experiment.name": "a sweep is one experiment: its runs keep the experiment's name"}
UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


@dataclass
class Run:
    setting: str  # "optim.g_lr=1e-4,loss.name=bce" ("base" when nothing is swept)
    overrides: list  # ["optim.g_lr=1e-4", "loss.name=bce", "experiment.seed=0"]
    seed: int
    folder: str

    def entry(self) -> dict:
        return {"setting": self.setting, "overrides": self.overrides, "seed": self.seed, "folder": self.folder,
                "status": "pending"}


def split_values(raw: str) -> list[str]:
    """'1e-4,2e-4' -> ['1e-4', '2e-4']; commas inside [...] or quotes belong to the value (TOML lists, strings)."""
    out, cur, depth, quote = [], "", 0, ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    return out + [cur.strip()]


def key_of(item: str, flag: str) -> tuple[str, str]:
    """'optim.g_lr=1e-4,2e-4' -> ('optim.g_lr', '1e-4,2e-4'), refusing what is not section.key=..."""
    if "=" not in item or config.split_key(item.split("=", 1)[0]) is None:  # section.key or section.args.name
        raise GanError(f"{flag} {item!r}: expected section.key=" + ("V1,V2,..." if flag == "--grid" else "value"))
    key, raw = item.split("=", 1)
    key = key.strip()
    if key in REFUSED:
        raise GanError(f"{flag} {item!r}: {key} cannot be given to a sweep ({REFUSED[key]})")
    return key, raw.strip()


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """--grid items as {key: [raw values]} in the order given."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, raw = key_of(item, "--grid")
        values = split_values(raw)
        if key in grid:
            raise GanError(f"--grid {key} is given twice: put all its values in one --grid {key}=V1,V2,...")
        if not raw or any(v == "" for v in values):
            raise GanError(f"--grid {item!r}: an empty value (expected {key}=V1,V2,...)")
        dup = next((v for v in values if values.count(v) > 1), None)
        if dup is not None:
            raise GanError(f"--grid {item!r}: value {dup!r} is given twice")
        grid[key] = values
    return grid


def check_sets(items: list[str], swept: set[str]) -> list[str]:
    """--set items (applied to every run), a repeated key's last value kept (config.last_wins, the rule of every
    command); a key may not be both set and swept."""
    for item in items:
        key, _ = key_of(item, "--set")
        if key in swept:
            raise GanError(f"--set {item!r}: {key} is also swept; give it in one place")
    return config.last_wins(items)


def safe_name(setting: str) -> str:
    """A setting as a folder name: only characters a run name allows, at most 180 bytes."""
    name = UNSAFE.sub("_", setting.replace(", ", ",").replace('"', "").replace("'", ""))
    if len(name) > 180:  # a long setting: cut, with a hash that keeps names distinct
        name = name[:170] + "_" + hashlib.sha256(setting.encode()).hexdigest()[:8]
    return name


def folder_name(setting: str, seed: int) -> str:
    """A run folder's name: the setting with its seed."""
    return f"{safe_name(setting)}-s{seed}"


def label_value(raw: str) -> str:
    """A value as a label shows it: quotes dropped, a comma inside it (a TOML list, a "color,cutout" string) as +,
    an empty string or list as `none`."""
    v = raw.strip().strip("[]").replace('"', "").replace("'", "")
    return "+".join(x.strip() for x in v.split(",")) if v.strip() else "none"


def setting_name(overrides: list[str]) -> str:
    """A setting's readable label, the one name it has in sweep.json, its folders, the report, the aggregate
    TensorBoard runs and the plots: `diffaug=color+translation+cutout, conditional=true` for
    ['train.diffaug="color,translation,cutout"', 'model.conditional=true'] (a key keeps its section only where
    two swept keys share a name; `loss.name=hinge` is `loss=hinge`)."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    # `name` alone says nothing (loss.name=hinge): such a key is shown by its section, `loss=hinge`; a user's own
    # argument by its name (model.args.depth=4: `depth=4`)
    short = [k.split(".", 1)[0] if k.endswith(".name") else k.rsplit(".", 1)[1] for k in keys]
    return ", ".join(f"{s if short.count(s) == 1 else k}={label_value(o.split('=', 1)[1])}"
                     for k, s, o in zip(keys, short, overrides)) or "base"


def interleaved(settings: list[tuple[str, list[str]]], seeds: int) -> list[Run]:
    """Each setting × seeds 0..N-1, seed by seed (seed 0 of every setting, then seed 1, ...): runs started together
    by --jobs are of different settings, so no setting gets the shared cores to itself more than another does."""
    return [Run(name, over + [f"{SEED_KEY}={s}"], s, folder_name(name, s)) for s in range(seeds)
            for name, over in settings]


def plan(grid: dict[str, list[str]], seeds: int) -> list[Run]:
    """The cartesian product of the grid's values (in the grid's order) × seeds 0..N-1, seed by seed."""
    keys = list(grid)
    settings = [(setting_name(over), over) for over in
                ([f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(grid[k] for k in keys)))]
    runs = interleaved(settings, seeds)
    folders = [r.folder for r in runs]
    labels = [name for name, _ in settings]
    clash = next((f for f in folders if folders.count(f) > 1), None) or \
        next((s for s in labels if labels.count(s) > 1), None)
    if clash:  # two values that differ only in characters a folder cannot hold
        raise GanError(f"--grid: two settings would share the name '{clash}'; spell their values apart")
    return runs


def parse_settings(items: list[str]) -> list[tuple[str, list[str]]]:
    """--setting items as (name, overrides): `best: optim.g_lr=3e-4 loss.name=bce` (KEY=VALUE items separated by
    spaces; the `NAME:` is optional, without it the setting is named by its values) or `base` (the experiment as it
    is, e.g. `today: base`). What a grid cannot say: two or three whole settings, e.g. a study's best beside the
    default, each × --seeds."""
    out: list[tuple[str, list[str]]] = []
    for item in items:
        label, colon, rest = item.partition(":")
        named = bool(colon) and label.strip() and "=" not in label and " " not in label.strip()
        text = rest.strip() if named else item.strip()
        over = [] if text in ("", "base") else text.split()
        for o in over:
            key_of(o, "--setting")
        keys = [o.split("=", 1)[0].strip() for o in over]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup:
            raise GanError(f"--setting {item!r}: {dup} is given twice")
        out.append((label.strip() if named else setting_name(over), over))
    names = [n for n, _ in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise GanError(f"--setting: two settings are named {dup!r}; give each a NAME: of its own")
    return out


def plan_settings(settings: list[tuple[str, list[str]]], seeds: int) -> list[Run]:
    """Each named setting (in the order given) × seeds 0..N-1, seed by seed."""
    runs = interleaved(settings, seeds)
    folders = [r.folder for r in runs]
    clash = next((f for f in folders if folders.count(f) > 1), None)
    if clash:
        raise GanError(f"--setting: two settings would share the folder '{clash}'; name them apart")
    return runs


def axes_of(settings: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """The keys the settings change, with the values they take (what a grid's axes record)."""
    axes: dict[str, list[str]] = {}
    for _, over in settings:
        for o in over:
            k, v = (x.strip() for x in o.split("=", 1))
            axes.setdefault(k, [])
            if v not in axes[k]:
                axes[k].append(v)
    return axes


def validate_value(key: str, raw: str, flag: str) -> None:
    """One value alone, checked as `--set KEY=RAW` checks it (type, range, choices); rules between keys are
    checked on whole settings. The error names the flag, the key and the value."""
    section, name, value = config.parse_override(f"{key}={raw}")
    doc: dict = {}
    config.set_key(doc, section, name, value, f"{key}={raw}")
    try:
        config.from_dict(doc, flag)
    except GanError as e:
        raise GanError(f"{flag} {key}={raw}: {str(e).split(': ', 1)[1]}") from None


def validate(exp: str, sets: list[str], grid: dict[str, list[str]], runs: list[Run],
             flag: str = "--grid") -> config.Config:
    """The experiment, every --set and --grid value alone, then every setting whole (rules between keys), before
    anything starts; exactly what `gan train EXP --set ...` will check. Returns the first setting's config."""
    config.load(exp)
    for item in sets:
        validate_value(*key_of(item, "--set"), "--set")
    for key, values in grid.items():
        for raw in values:
            validate_value(key, raw, flag)
    first = None
    for run in {r.setting: r for r in runs}.values():
        try:
            cfg = config.load(exp, sets + run.overrides)
        except GanError as e:
            where = f"setting {run.setting}" if len(run.overrides) > 1 else "--set"
            raise GanError(f"{where}: {e}") from None
        first = first or cfg
    return first or config.load(exp, sets)


def write_base(exp: str, folder: Path) -> Path:
    """<sweep>/<experiment file's name>: the experiment file as it was when the sweep began, what every run starts
    from (with the sweep's --set and its own overrides), so a later edit of experiments/*.toml does not change what
    a resumed sweep runs."""
    from gan import fileio, tomlfile, usercode

    src = config.resolve_path(exp)
    raw = src.read_bytes()
    doc = tomlfile.parse(raw, str(src))
    refs = [(s, k) for s, k in config.USER_REFS if isinstance(doc.get(s), dict) and usercode.is_ref(doc[s].get(k))]
    if refs:  # the user's files stay where they are: their paths made absolute, as they were relative to `src`
        for s, k in refs:
            doc[s][k] = usercode.absolute(doc[s][k], src.resolve().parent)
        raw = f"# {src} as the sweep began, its paths to the user's code made absolute\n{tomlfile.dumps(doc)}"
    return fileio.write_atomic(Path(folder) / src.name, raw)

"""The code that made a run, kept with it (the W&B/MLflow habit, without a service).

- Every file of the user's that the run imported (the model's and the loss's files, and any file beside them that
  they imported) is copied into the run folder, `code/model/…`, `code/loss/…`, with its path and sha256 in run.json
  `code.files`: the bytes that ran, read once when they were imported (gan/usercode.py).
- The git checkouts involved, in run.json `code.repos`: the one holding the user's files and the one holding the gan
  package (when gan runs from a checkout, not an installed wheel), each with its commit, whether tracked files have
  uncommitted changes, and then their diff as a patch file in the run folder. The top-level `git_commit`, `git_dirty`
  and `code.patch` describe the checkout of interest: the one holding the user's files when the run has any (their
  research code), else the one holding gan.
- `code.id`: one short hash of all of it. Runs of one experiment whose ids differ were made by different code: `gan
  runs` and `gan leaderboard` show a `code` column then.

`gan resume` refuses a run whose user files differ from those it started with (`check_resume`), unless
`--allow-code-change`: the change is then recorded in the resume's entry of run.json's `resumed`, and the new files
are copied under `code/step-<N>/`. `gan eval` and `gan sample` rebuild the model from the run's own copies
(`from_run`), so a run folder alone, moved anywhere, still samples.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gan import fileio, usercode
from gan.errors import GanError

ROOT = Path(__file__).resolve().parent.parent  # a checkout's root when gan runs from one
ROLES = (("model", "model", "arch"), ("loss", "loss", "name"))  # (role, section, key)


@dataclass
class Snapshot:
    files: list = field(default_factory=list)  # (role, UserFile)
    repos: list = field(default_factory=list)  # {"root", "commit", "dirty", "diff", "holds"}


def _git(where: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def checkout_of(path: Path) -> Path | None:
    top = _git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel")
    return Path(top.strip()).resolve() if top and top.strip() else None


def gan_checkout() -> Path | None:
    """The checkout gan runs from; None for an installed copy (site-packages inside some repository is not one)."""
    top = checkout_of(ROOT)
    return top if top == ROOT else None


def refs_of(cfg_toml: str) -> list[tuple[str, str]]:
    doc = tomllib.loads(cfg_toml)
    out = []
    for role, section, key in ROLES:
        ref = doc.get(section, {}).get(key)
        if usercode.is_ref(ref):
            out.append((role, ref))
    return out


def snapshot(cfg_toml: str) -> Snapshot:
    """The user's files as this process ran them, and the state of the checkouts that hold them and gan."""
    snap = Snapshot()
    for role, ref in refs_of(cfg_toml):
        ld = usercode.LAST.get(ref) or usercode.load(ref, f"{role}")
        snap.files += [(role, f) for f in ld.files]
    roots: dict[Path, list[str]] = {}
    for role, f in snap.files:
        root = checkout_of(Path(f.path))
        if root is not None and role not in roots.setdefault(root, []):
            roots[root].append(role)
    mine = gan_checkout()
    if mine is not None:
        roots.setdefault(mine, []).append("gan")
    for root, holds in roots.items():
        commit = (_git(root, "rev-parse", "HEAD") or "").strip() or None
        dirty = bool((_git(root, "status", "--porcelain", "--untracked-files=no") or "").strip())
        diff = (_git(root, "diff", "HEAD", "--no-ext-diff", "--no-color") or "") if dirty else ""
        snap.repos.append({"root": str(root), "commit": commit, "dirty": dirty, "diff": diff, "holds": holds})
    return snap


def code_id(snap: Snapshot) -> str:
    from gan import __version__

    what = {"files": sorted((role, f.rel, f.sha256) for role, f in snap.files),
            "repos": [(r["commit"], hashlib.sha256(r["diff"].encode()).hexdigest()) for r in snap.repos],
            "gan": __version__ if not any("gan" in r["holds"] for r in snap.repos) else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def write(run_dir: Path, snap: Snapshot, sub: str = "") -> dict:
    """The copies and patches written into the run folder (under code/<sub>); run.json's fields for them."""
    run_dir, files, repos = Path(run_dir), [], []
    for role, f in snap.files:
        copy = f"code/{sub}{role}/{f.rel}"
        fileio.write_atomic(run_dir / copy, f.data)
        files.append({"role": role, "path": f.path, "sha256": f.sha256, "copy": copy})
    for i, r in enumerate(snap.repos):
        patch = None
        if r["diff"]:
            patch = (f"code/{sub}" if sub else "") + ("code.patch" if i == 0 else f"code-{Path(r['root']).name}.patch")
            fileio.write_atomic(run_dir / patch, r["diff"])
        repos.append({k: r[k] for k in ("root", "commit", "dirty", "holds")} | {"patch": patch})
    first = repos[0] if repos else {}
    return {"git_commit": first.get("commit"), "git_dirty": first.get("dirty"),
            "code": {"id": code_id(snap), "files": files, "repos": repos}}


def record(run_dir: Path, cfg_toml: str) -> dict:
    """At a run's start: run.json's git_commit, git_dirty and code; the copies and patches in the folder."""
    return write(run_dir, snapshot(cfg_toml))


def resumed(run_dir: Path, info: dict, cfg_toml: str, step: int, log) -> tuple[dict, dict | None]:
    """At a resume: (what its `resumed` entry adds, run.json's new `code` or None). The code is compared with the
    run's record; user files that changed (gan resume allowed it: --allow-code-change) are copied under
    code/step-<N>/ and listed; other code (gan's checkout) is said and its id kept."""
    old = info.get("code") if isinstance(info.get("code"), dict) else {}
    snap = snapshot(cfg_toml)
    new_id = code_id(snap)
    if not old or old.get("id") == new_id:  # the same code (or a run from before code was recorded)
        return {}, None
    was = {f.get("path"): f.get("sha256") for f in old.get("files", [])}
    changed = [{"path": f.path, "was": was.get(f.path), "now": f.sha256} for _, f in snap.files
               if was.get(f.path) != f.sha256]
    entry = {"code_id": new_id, "code_was": old.get("id")}
    if changed:
        entry |= {"code_changed": changed, "allowed_by": "--allow-code-change"}
        rec = write(run_dir, snap, sub=f"step-{step}/")["code"]
        names = ", ".join(usercode.display(c["path"]) for c in changed)
        log(f"[yellow]resuming with changed code (--allow-code-change): {names}; the new files are kept under "
            f"{Path(run_dir) / 'code' / f'step-{step}'}[/]")
        return entry, rec
    log(f"[yellow]note: gan's own code differs from the run's start (code {old.get('id')} → {new_id}; run.json "
        "`resumed` keeps it)[/]")
    return entry, None


def _recorded(run_dir: Path) -> dict:
    """run.json's `code`; {} where there is none or run.json is damaged (the resume then sets it aside and says so:
    a run whose record is lost goes on, as it did before code was recorded)."""
    try:
        info = fileio.read_json(Path(run_dir) / "run.json", default={})
    except GanError:
        return {}
    code = info.get("code") if isinstance(info, dict) else None
    return code if isinstance(code, dict) else {}


def changes(run_dir: Path) -> list[str]:
    """The user files of a run whose content differs now from the run's record (or that are gone), as lines."""
    code = _recorded(run_dir)
    out = []
    for f in code.get("files", []):
        p = Path(f.get("path", ""))
        if not p.is_file():
            out.append(f"{usercode.display(str(p))} is gone (the run's copy: {Path(run_dir) / f.get('copy', '')})")
        elif fileio.sha256_file(p) != f.get("sha256"):
            out.append(f"{usercode.display(str(p))} has changed (sha256 {f.get('sha256', '?')[:12]}… at the start, "
                       f"{fileio.sha256_file(p)[:12]}… now; the run's copy: {Path(run_dir) / f.get('copy', '')})")
    return out


def check_resume(run_dir: Path, allow: bool) -> list[str]:
    """`gan resume`: one line and exit 2 when the user's files differ from the run's, unless `allow`."""
    lines = changes(run_dir)
    if lines and not allow:
        raise GanError(f"'{run_dir}' was started with other code: {'; '.join(lines)}; resume with "
                       "--allow-code-change to go on with the code as it is now (recorded in run.json), or restore it")
    return lines


@contextlib.contextmanager
def from_run(run_dir: Path):
    """The user's files imported from the run's own copies (the latest, after an allowed code change)."""
    code = _recorded(run_dir)
    saved = dict(usercode.REDIRECT)
    for f in code.get("files", []):
        copy = Path(run_dir) / f.get("copy", "")
        if f.get("path") and copy.is_file():
            usercode.REDIRECT[f["path"]] = copy
    try:
        yield
    finally:
        usercode.REDIRECT.clear()
        usercode.REDIRECT.update(saved)


def id_of(info: dict) -> str | None:
    """A run's code id from its run.json (None for runs made before the code was recorded)."""
    code = info.get("code") if isinstance(info, dict) else None
    return code.get("id") if isinstance(code, dict) else None

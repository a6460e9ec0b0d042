"""A user's own code named in an experiment, imported and checked before any data loads.

    model.arch = "mygan.py:build"          a file (relative to the experiment file; given with --set: to the current
    loss.name  = "losses.py:LSGAN"         directory) and a name in it, or an importable `package.module:name`

The file is read once, its sha256 taken from the very bytes that run, and executed as a module of its own (its
folder on sys.path while it imports, so `import blocks` beside it works; such sibling files are captured too):
`coderecord` copies what ran into the run folder. Its keyword arguments are checked in gan/userargs.py. Nothing here
imports torch.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gan.errors import GanError

GAN_DIR = Path(__file__).resolve().parent


@dataclass
class UserFile:
    path: str  # absolute path of the file as the experiment names it (or a sibling it imported)
    sha256: str
    data: bytes  # the bytes that ran
    rel: str  # its path beside the named file (the named file itself: its name)


@dataclass
class Loaded:
    ref: str
    obj: object
    files: list = field(default_factory=list)  # UserFile, the named file first


_CACHE: dict[tuple, Loaded] = {}  # (ref, sha256 of the file that ran): imported once per process
LAST: dict[str, Loaded] = {}  # ref -> what this process last imported for it (what the run's record copies)
REDIRECT: dict[str, Path] = {}  # absolute path -> a run's copy of it (coderecord.from_run: eval and sample)


class UserCodeError(GanError):
    """An exception raised inside a user's own model or loss (gan/usercode.py): its traceback is kept, from the
    first frame in their code (the bug is theirs to find), then one line saying whose code raised and when.
    Exit 2 when nothing was made (import, construction, the contract check), 1 when a run had started."""

    def __init__(self, ref: str, when: str, exc: BaseException, exit_code: int = 2, files: tuple = ()):
        import traceback

        mine, tb = user_files() | {_resolved(f) for f in files}, exc.__traceback__
        while tb is not None and _resolved(tb.tb_frame.f_code.co_filename) not in mine:
            tb = tb.tb_next  # from the first frame in the user's code: not the way into it
        self.traceback = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()
        first = (str(exc).splitlines() or [""])[0][:200]
        super().__init__(f"{display(ref)} raised {type(exc).__name__} {when}" + (f": {first}" if first else "")
                         + " (your code: its traceback is above)")
        self.exit_code = exit_code


def _resolved(f: str) -> str:
    return str(Path(f).resolve())


# ---- references ------------------------------------------------------------------------------------------------
def is_ref(value) -> bool:
    """`target:name` with a file or module target and a Python name after the last colon."""
    if not isinstance(value, str) or ":" not in value:
        return False
    target, _, name = value.rpartition(":")
    return bool(target) and name.isidentifier()


def is_file_ref(ref: str) -> bool:
    target = ref.rpartition(":")[0]
    return target.endswith(".py") or "/" in target


def absolute(ref: str, base: Path) -> str:
    """A file reference with its path made absolute against `base` (the experiment file's folder, or the current
    directory for --set); anything else as it is."""
    if not is_ref(ref) or not is_file_ref(ref):
        return ref
    target, _, name = ref.rpartition(":")
    p = Path(target).expanduser()
    return f"{(p if p.is_absolute() else Path(base) / p).resolve()}:{name}"


def display(path_or_ref: str) -> str:
    """A path as a user reads it: relative to the current directory when it lies below it."""
    target, colon, name = path_or_ref.rpartition(":") if is_ref(path_or_ref) else (path_or_ref, "", "")
    try:
        shown = str(Path(target).relative_to(Path.cwd()))
    except ValueError:
        shown = target
    return f"{shown}{colon}{name}"


def short(value: str) -> str:
    """`mygan.py:build` for a file reference (tables, the banner); a built-in name as it is."""
    if is_ref(value) and is_file_ref(value):
        target, _, name = value.rpartition(":")
        return f"{Path(target).name}:{name}"
    return value


# ---- importing -------------------------------------------------------------------------------------------------
def _captured(folder: Path, before: set) -> list[tuple[str, Path]]:
    """Modules imported just now from `folder` (the user's siblings), not the gan package nor installed ones."""
    out = []
    for m in set(sys.modules) - before:
        f = getattr(sys.modules.get(m), "__file__", None)
        if not f:
            continue
        p = Path(f).resolve()
        if p.is_relative_to(folder) and not p.is_relative_to(GAN_DIR) and "site-packages" not in p.parts:
            out.append((m, p))
    return out


def _import_file(ref: str, what: str) -> Loaded:
    target, _, name = ref.rpartition(":")
    path = Path(target)
    real = REDIRECT.get(str(path), path)
    if not real.is_file():
        raise GanError(f"{what} = {display(ref)!r}: no file {display(str(real))}" + (
            "" if path.is_absolute() else " (a path in an experiment file is relative to that file)"))
    try:
        data = real.read_bytes()
    except OSError as e:
        raise GanError(f"{what} = {display(ref)!r}: cannot read {display(str(real))} ({e.strerror or e})") from None
    sha = hashlib.sha256(data).hexdigest()
    if (ref, sha) in _CACHE:
        return _CACHE[(ref, sha)]
    mod_name = f"gan_user_{sha[:12]}_{''.join(c if c.isalnum() else '_' for c in real.stem)}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(mod_name, loader=None,
                                                                            origin=str(real)))
    module.__file__ = str(real)
    sys.modules[mod_name] = module  # dataclasses and pickling look their module up there
    folder, before = real.parent.resolve(), set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        exec(compile(data, str(real), "exec"), module.__dict__)
    except SyntaxError as e:
        sys.modules.pop(mod_name, None)
        raise GanError(f"{what} = {display(ref)!r}: syntax error in {display(str(real))} line {e.lineno}: "
                       f"{e.msg}") from None
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise UserCodeError(ref, "while importing", e, files=(str(real),)) from None
    finally:
        sys.path.remove(str(folder))
    files = [UserFile(str(path), sha, data, real.name)]
    for m, p in sorted(_captured(folder, before)):
        sys.modules.pop(m, None)  # another version of the same sibling (a run's copy) imports afresh
        body = p.read_bytes()
        files.append(UserFile(str(Path(target).parent.resolve() / p.relative_to(folder)),
                              hashlib.sha256(body).hexdigest(), body, str(p.relative_to(folder))))
    loaded = Loaded(ref, _attr(module, name, ref, what, real), files)
    _CACHE[(ref, sha)] = loaded
    return loaded


def _import_module(ref: str, what: str) -> Loaded:
    target, _, name = ref.rpartition(":")
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and (target == e.name or target.startswith(e.name + ".")):
            raise GanError(f"{what} = {ref!r}: no module {e.name!r} (a file needs its path: dir/{target}.py:{name}, "
                           "relative to the experiment file)") from None
        raise UserCodeError(ref, "while importing", e) from None
    except Exception as e:
        raise UserCodeError(ref, "while importing", e) from None
    files = []
    f = getattr(module, "__file__", None)
    if f and Path(f).is_file():
        data = Path(f).read_bytes()
        files.append(UserFile(str(Path(f).resolve()), hashlib.sha256(data).hexdigest(), data, Path(f).name))
    return Loaded(ref, _attr(module, name, ref, what, Path(f or target)), files)


def _attr(module, name: str, ref: str, what: str, where: Path):
    if not hasattr(module, name):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                      and getattr(v, "__module__", None) == module.__name__)
        raise GanError(f"{what} = {display(ref)!r}: {display(str(where))} has no {name!r} (it defines: "
                       f"{', '.join(have) or 'nothing callable'})")
    return getattr(module, name)


def load(ref: str, what: str) -> Loaded:
    """The object `ref` names, imported (once per content) with the files it came from."""
    loaded = _import_file(ref, what) if is_file_ref(ref) else _import_module(ref, what)
    LAST[ref] = loaded
    return loaded


def user_files() -> set[str]:
    """Every file of the user's imported in this process (and the runs' copies): a traceback through them is theirs."""
    return {_resolved(f.path) for ld in LAST.values() for f in ld.files} | {_resolved(str(p)) for p in
                                                                           REDIRECT.values()}


def blame(exc: BaseException) -> str | None:
    """The reference whose code raised `exc` (a frame of its traceback in one of its files), else None."""
    import traceback

    frames = {_resolved(fr.filename) for fr in traceback.extract_tb(exc.__traceback__)}
    for ref, ld in LAST.items():
        if frames & ({_resolved(str(REDIRECT.get(f.path, f.path))) for f in ld.files} |
                     {_resolved(f.path) for f in ld.files}):
            return ref
    return None

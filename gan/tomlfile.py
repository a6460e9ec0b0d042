"""TOML text in and out: experiment files read as UTF-8 with one-line errors for anything else, configs written back."""
from __future__ import annotations

import tomllib

from gan.errors import GanError


def parse(raw: bytes, where: str) -> dict:
    """TOML is UTF-8 text: say what else a file is (UTF-16, Latin-1, binary) in one line."""
    if raw.startswith((b"\xff\xfe\0\0", b"\0\0\xfe\xff")):
        raise GanError(f"{where}: UTF-32 text; TOML files are UTF-8 (save it as UTF-8)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise GanError(f"{where}: UTF-16 text; TOML files are UTF-8 (save it as UTF-8)")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise GanError(f"{where}: NUL byte at offset {nul}: not UTF-8 text (UTF-16 without a BOM, or binary?)")
    try:
        text = raw.decode("utf-8-sig")  # a leading BOM, as some Windows editors write, is harmless
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise GanError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}; TOML files are "
                       f"UTF-8: Latin-1 or binary?)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GanError(f"{where}: TOML syntax error: {e}") from None
    except RecursionError:
        raise GanError(f"{where}: TOML syntax error: nested too deeply") from None


def dumps(doc: dict) -> str:
    """{section: {key: value}} as TOML tables, in order; a table value as [section.key] after its section."""
    lines = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in values.items() if not isinstance(v, dict)]
        lines.append("")
        for k, sub in values.items():  # a table inside a section ([model.args]) after the section's own keys
            if isinstance(sub, dict) and sub:
                lines += [f"[{section}.{k}]", *[f"{a} = {value(v)}" for a, v in sub.items()], ""]
    return "\n".join(lines)


def value(v) -> str:
    """One value as TOML: booleans, quoted strings, lists, numbers."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
    return repr(v)

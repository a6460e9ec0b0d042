"""TensorBoard event files read fast: the scalars of a run folder, as TensorBoard shows them.

An event file is a sequence of records (its length as a little-endian u64, that length's masked CRC-32C, a
serialized `Event`, the event's masked CRC-32C). TensorBoard's own reader (EventAccumulator, without TensorFlow)
computes the CRC of every byte in pure Python and decodes every image: seconds for a long run. This reader checks
the CRC of every record's length, decodes each event only as far as its kind (a scalar, a restart, a file version,
an image...), checks the CRC of the records it keeps, and steps over images, histograms and tensors unread.

It keeps TensorBoard's rules (EventAccumulator with purge_orphaned_data, event files of format brain.Event:2, which
every SummaryWriter writes):
- the files: every file of the folder whose name holds "tfevents", in sorted order;
- a truncated or damaged record ends the reading of its file (a file being written ends in a partial record);
- a restart (SessionLog.START at step S: SummaryWriter(purge_step=S), what a resume writes) drops every point at
  step >= S read so far, in every tag; a step logged twice keeps the later value;
- t0, the start of the minutes axis: the wall time of the first event read.
One difference: a damaged byte inside an image's bytes ends TensorBoard's reading of that file, not this one's.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

_F64, _F32, _U64, _U32 = struct.Struct("<d"), struct.Struct("<f"), struct.Struct("<Q"), struct.Struct("<I")


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
        table.append(c)
    return table


_TABLE = _crc_table()


def masked_crc(data) -> int:
    """The masked CRC-32C of TFRecord framing."""
    c, t = 0xFFFFFFFF, _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(b, i: int) -> tuple[int, int]:
    x = b[i]
    if x < 0x80:
        return x, i + 1
    r, shift = x & 0x7F, 7
    while True:
        i += 1
        x = b[i]
        r |= (x & 0x7F) << shift
        if x < 0x80:
            return r, i + 1
        shift += 7


def _skip(b, i: int, wire: int) -> int:
    """The offset after a field's value of wire type `wire` starting at `i`."""
    if wire == 0:
        return _varint(b, i)[1]
    if wire == 1:
        return i + 8
    if wire == 2:
        n, i = _varint(b, i)
        return i + n
    if wire == 5:
        return i + 4
    raise ValueError(f"wire type {wire}")


def _scalars(b, i: int, end: int, out: list) -> None:
    """The (tag, simple_value) pairs of a Summary between offsets i and end (images and the rest skipped)."""
    while i < end:
        key, i = _varint(b, i)
        if key != 0x0A:  # not field 1 (value), length-delimited
            i = _skip(b, i, key & 7)
            continue
        n, i = _varint(b, i)
        j, stop, tag, value = i, i + n, None, None
        while j < stop:
            k, j = _varint(b, j)
            if k == 0x0A:  # tag
                m, j = _varint(b, j)
                tag = bytes(b[j:j + m]).decode("utf-8", "replace")
                j += m
            elif k == 0x15:  # simple_value (fixed32)
                value = _F32.unpack_from(b, j)[0]
                j += 4
            else:
                j = _skip(b, j, k & 7)
        if value is not None:
            out.append((tag or "", value))
        i = stop


def decode(b) -> tuple[float, int, list, bool, bool]:
    """(wall_time, step, [(tag, value)] of its scalars, a SessionLog.START?, has file_version?) of one Event."""
    fast = _one_scalar(b)
    if fast is not None:
        return fast
    wall, step, values, start, version = 0.0, 0, [], False, False
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        f, wire = key >> 3, key & 7
        if f == 1 and wire == 1:
            wall = _F64.unpack_from(b, i)[0]
            i += 8
        elif f == 2 and wire == 0:
            step, i = _varint(b, i)
            step -= (1 << 64) if step >= 1 << 63 else 0
        elif f in (3, 5, 7) and wire == 2:
            m, i = _varint(b, i)
            if f == 3:
                version = True
            elif f == 5:
                _scalars(b, i, i + m, values)
            else:  # SessionLog: status is field 1, START = 1
                j = i
                while j < i + m:
                    k, j = _varint(b, j)
                    if k == 0x08:
                        status, j = _varint(b, j)
                        start = status == 1
                    else:
                        j = _skip(b, j, k & 7)
            i += m
        else:
            i = _skip(b, i, wire)
    if i != n:
        raise ValueError("event runs past its record")
    return wall, step, values, start, version


def _one_scalar(b):
    """The common event at a glance: wall_time, step, a Summary of one simple_value with a short tag, in that order
    (what add_scalar writes); None for anything else (decoded field by field)."""
    n = len(b)
    if n < 20 or b[0] != 0x09 or b[9] != 0x10:
        return None
    step, i = _varint(b, 10)
    step -= (1 << 64) if step >= 1 << 63 else 0
    if i + 6 > n or b[i] != 0x2A or b[i + 2] != 0x0A or b[i + 4] != 0x0A or b[i + 1] != n - i - 2:
        return None
    t = b[i + 5]
    j = i + 6 + t
    if t >= 0x80 or b[i + 3] != t + 7 or j + 5 != n or b[j] != 0x15:
        return None
    return (_F64.unpack_from(b, 1)[0], step, [(bytes(b[i + 6:j]).decode("utf-8", "replace"),
                                              _F32.unpack_from(b, j + 1)[0])], False, False)


def first_bad(data: bytes, spans: list[tuple[int, int, int]]) -> int:
    """Index of the first (offset, length, masked CRC) span of `data` whose CRC does not match; len(spans) when all
    do. One pass over every span at once (numpy, byte column by byte column): the records a scan keeps are small."""
    import numpy as np

    if not spans:
        return 0
    sp = np.array(spans, dtype=np.int64)
    order = np.argsort(-sp[:, 1], kind="stable")  # longest first: the spans still running are a prefix
    start, length, want = sp[order, 0], sp[order, 1], sp[order, 2]
    buf, table = np.frombuffer(data, dtype=np.uint8), np.array(_TABLE, dtype=np.uint32)
    c = np.full(len(sp), 0xFFFFFFFF, dtype=np.uint32)
    for j in range(int(length[0])):
        k = int(np.searchsorted(-length, -j, side="left"))  # spans longer than j
        cj = c[:k]
        c[:k] = table[(cj ^ buf[start[:k] + j]) & 0xFF] ^ (cj >> 8)
    c = (c ^ 0xFFFFFFFF).astype(np.uint64)
    masked = (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    bad = order[masked != want.astype(np.uint64)]
    return int(bad.min()) if len(bad) else len(spans)


def is_event_file(name: str) -> bool:
    return "tfevents" in name  # TensorBoard's rule (io_wrapper.IsSummaryEventsFile)


def files(run: Path) -> list[Path]:
    """The run's event files in the order TensorBoard reads them."""
    try:
        with os.scandir(run) as it:
            return sorted(Path(e.path) for e in it if is_event_file(e.name) and e.is_file())
    except FileNotFoundError:
        return []


def sizes(run: Path) -> dict[str, int]:
    """{event file name: bytes} as they are now: what a summary says it was made from."""
    out = {}
    try:
        with os.scandir(run) as it:
            for e in it:
                if is_event_file(e.name) and e.is_file():
                    out[e.name] = e.stat().st_size
    except FileNotFoundError:
        pass
    return dict(sorted(out.items()))


@dataclass
class Scan:
    t0: float | None = None  # wall time of the first event read
    points: dict = field(default_factory=dict)  # tag -> {step: (value, wall_time)}
    sizes: dict = field(default_factory=dict)  # event file name -> bytes read

    def purge(self, step: int) -> None:
        """A restart at `step`: every point at step >= `step` dropped, in every tag (TensorBoard's _Purge)."""
        for tag, pts in self.points.items():
            if pts and max(pts) >= step:
                self.points[tag] = {s: p for s, p in pts.items() if s < step}

    def last_step(self) -> int | None:
        return max((max(p) for p in self.points.values() if p), default=None)


_HEADER_CRC: dict[int, int] = {}  # length -> masked CRC of its 8 bytes: lengths repeat, one tag after another


def _read(path: Path, scan: Scan, limit: int | None = None) -> None:
    with open(path, "rb") as f:
        data = f.read() if limit is None else f.read(1 << 16)  # a first record (the file version) is small
    if limit is None:
        scan.sizes[path.name] = len(data)
    mv, pos, n = memoryview(data), 0, len(data)
    events, spans = [], []  # decoded events in file order; the spans of those the scan uses, to CRC-check
    u64, u32, known, dec = _U64.unpack_from, _U32.unpack_from, _HEADER_CRC.get, decode  # locals: a hot loop
    want_t0 = scan.t0 is None
    while pos + 12 <= n and (limit is None or len(events) < limit):
        length = u64(data, pos)[0]
        crc = known(length)
        if crc is None:
            crc = masked_crc(mv[pos:pos + 8])
            if len(_HEADER_CRC) < 65536:
                _HEADER_CRC[length] = crc
        if crc != u32(data, pos + 8)[0]:
            break  # a damaged length: the rest of the file cannot be framed
        end = pos + 12 + length
        if end + 4 > n:
            break  # a partial record: the writer's last, or a killed writer's
        try:
            ev = dec(mv[pos + 12:end])
        except (IndexError, ValueError, struct.error):
            break
        if ev[2] or ev[3] or ev[4] or want_t0:
            want_t0 = False
            spans.append((pos + 12, length, u32(data, end)[0]))
            events.append((ev, len(spans) - 1))
        else:
            events.append((ev, None))
        pos = end + 4
    bad = first_bad(data, spans)  # a damaged record that would be used: TensorBoard stops its file there too
    for (wall, step, values, restart, _), span in events:
        if span is not None and span >= bad:
            break
        if scan.t0 is None:
            scan.t0 = wall
        if restart:
            scan.purge(step)
        for tag, value in values:
            scan.points.setdefault(tag, {})[step] = (value, wall)


def scan(run: Path) -> Scan:
    """Every scalar point of the run's event files, as TensorBoard shows them."""
    out = Scan()
    for path in files(Path(run)):
        _read(path, out)
    return out


def first_wall(run: Path) -> float | None:
    """The wall time of the run's first event (TensorBoard's FirstEventTimestamp), reading one record."""
    out = Scan()
    for path in files(Path(run)):
        _read(path, out, limit=1)
        if out.t0 is not None:
            return out.t0
    return None

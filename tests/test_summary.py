"""The run index (gan/summary.py) never disagrees with the event files: a run SIGKILLed at random moments (a
step, an evaluation, inside the summary's own write, a checkpoint, run.json), resumed, then extended with
`gan resume --set train.steps=N`, is read the same through its summary, through our event reader and through
TensorBoard's own EventAccumulator. A summary that is missing, stale or damaged (a family made from a good file) is
rebuilt from the events once, said in one line, and saved; the listing never stops at one."""
from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from gan import eventfile, events, runlock, runs, summary
from gan.metrics import protocol
from tests.conftest import ROOT, copy_run, tiny_toml

ENV = {"OMP_NUM_THREADS": "1"}
# a first attempt is killed after its first checkpoint (step 4), so that it can be resumed; a resume is killed
# before its next checkpoint
FIRST = ["step@6", "eval@2", "write:summary.jsonl@3", "write:last.pt@2"]
AGAIN = ["step@3", "eval@1", "write:summary.jsonl@1", "write:summary.jsonl@2", "write:last.pt@1", "write:run.json@4"]


@pytest.fixture(autouse=True)
def _no_earlier_note():
    summary.note()  # what other tests in this process rebuilt is not this test's


def gan(*args, at: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **ENV, **(env or {}))
    e.pop("GAN_TEST_AT", None)
    if at:
        e["GAN_TEST_AT"] = at
    return subprocess.run([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def agree(run: Path, s: summary.Summary | None = None) -> summary.Summary:
    """The summary (as given, else as a reader loads it) says what both event readers read."""
    tb = events.load_scalars_tb(run)
    assert events.load_scalars(run) == tb  # our reader is TensorBoard's, restarts included
    s = s or summary.load(run)
    metric = {t: v for t, v in tb.items() if events.is_metric(t)}
    assert s.tags == sorted(metric)
    for t, want in metric.items():
        assert s.series(t) == want, t  # steps, values, minutes, training seconds, images: exact
        assert s.best(t) == events.best_point(want, t) and s.last(t) == (want.steps[-1], want.values[-1])
    assert s.step == max(v.steps[-1] for v in tb.values())
    rate = tb.get(summary.RATE)
    assert s.images_per_sec == (statistics.median(rate.values) if rate else None)
    assert s.primary == protocol.primary(tb).tag
    return s


def fresh(run: Path) -> summary.Summary:
    """The summary as the run wrote it, and current: made from the event files as they are."""
    s = summary.read(run)
    assert s is not None and s.head["by"] == "run" and s.head["key"] == summary.key_now(run), s and s.head
    return s


@pytest.fixture
def exp(tmp_path, tiny_npz) -> Path:
    return tiny_toml(tmp_path / "idx.toml", tiny_npz,
                     train={"steps": 12, "log_every": 2, "image_every": 4, "checkpoint_every": 4},
                     metrics={"enabled": True, "extractors": ["c10"], "every": 4, "num_samples": 16,
                              "ref_samples": 32, "batch_size": 32, "kid": False})


def test_summary_agrees_with_the_events_over_kills_resumes_and_an_extension(tmp_path, exp):
    seed = int(os.environ.get("GAN_KILLS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    logs, run, plan = tmp_path / "logs", None, []
    for at in (rng.choice(FIRST), rng.choice(AGAIN)):
        r = gan("train", exp, "--device", "cpu", "--logs", logs, at=at) if run is None else \
            gan("resume", run, "--device", "cpu", at=at)
        assert r.returncode == -9, (f"seed {seed}: {at} was not killed", r.returncode, r.stderr[-2000:])
        run = run or next((logs / "tiny").iterdir())
        plan.append(at)
        agree(run)  # read after the kill: rebuilt from the events where the kill left it stale
    r = gan("resume", run, "--device", "cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    s = agree(run, fresh(run))
    assert s.step == 12 and s.series("metrics/fid_c10").steps == [4, 8, 12]
    r = gan("resume", run, "--device", "cpu", "--set", "train.steps=16")  # extended
    assert r.returncode == 0, r.stdout + r.stderr
    s = agree(run, fresh(run))
    assert s.step == 16 and s.series("metrics/fid_c10").steps == [4, 8, 12, 16], plan
    assert s.head["status"] == "completed" and len(eventfile.files(run)) == len(plan) + 2
    print(f"\nkills (seed {seed}; GAN_KILLS_SEED={seed} repeats them): {plan}")
    r = gan("runs", "--logs", logs)  # nothing to rebuild: no line about it
    assert r.returncode == 0 and "rebuilt" not in r.stdout and "16/16" in r.stdout, r.stdout + r.stderr


def test_the_engine_writes_a_current_summary_that_the_readers_use(two_runs, tmp_path, monkeypatch):
    logs, dirs, tag = two_runs
    for d in dirs:
        s = agree(d, fresh(d))
        assert s.config == {"experiment": {"name": "tiny", "seed": s.config["experiment"]["seed"]},
                            "model": {"arch": "dcgan", "conditional": False},
                            "train": {"precision": "fp32", "minutes": 0.0}}, s.config
    # the listing reads summaries, never an event file
    monkeypatch.setattr(eventfile, "scan", lambda run: pytest.fail(f"events of {run} read"))
    monkeypatch.setattr(events, "points_tb", lambda run: pytest.fail(f"events of {run} read"))
    rows = [runs.run_summary(d) for d in dirs]
    assert [r["best"] for r in rows] == [summary.read(d).best(tag) for d in dirs]
    assert summary.note() is None


def _rebuilt_line(logs: Path, n: int, cmd: str = "runs") -> str:
    r = gan(cmd, "--logs", logs)
    assert r.returncode == 0, r.stdout + r.stderr
    want = f"rebuilt the index of {n} run{'s' if n != 1 else ''} from their event files"
    assert (want in r.stdout) if n else ("rebuilt" not in r.stdout), r.stdout
    return r.stdout


def test_missing_and_stale_summaries_are_rebuilt_once_and_said(two_runs, tmp_path):
    _, dirs, tag = two_runs
    logs = tmp_path / "logs"
    a, b = (copy_run(d, logs / "tiny" / d.name) for d in dirs)
    good = (a / summary.FILE).read_bytes()
    (a / summary.FILE).unlink()  # an older run: no summary
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(b), filename_suffix=".eval-last-6")  # what `gan eval` does: events newer than the summary
    w.add_scalar("eval/" + tag.split("/")[1], 1.5, 6)
    w.close()
    out = _rebuilt_line(logs, 2)
    assert "2 runs" in out and out.count("completed") == 2
    s = agree(b, summary.read(b))
    assert s.head["by"] == "rebuilt from the event files" and s.series("eval/" + tag.split("/")[1]).values == [1.5]
    assert json.loads((a / summary.FILE).read_bytes().split(b"\n")[0])["best"] == json.loads(good.split(b"\n")[0])["best"]
    _rebuilt_line(logs, 0)  # saved: the second listing rebuilds nothing
    _rebuilt_line(logs, 0, "leaderboard")
    # config.toml changed by hand: its facts are rebuilt too
    cfg = a / "config.toml"
    cfg.write_text(cfg.read_text().replace('precision = "fp32"', 'precision = "auto"'))
    assert runs.run_summary(a)["precision"] == "fp32 (auto)" and summary.note().startswith("rebuilt the index of 1 run ")


def damaged(good: bytes) -> dict[str, bytes]:
    """A family of damaged summaries made from a good one: cut anywhere, a byte flipped in each part, not JSON,
    JSON of another shape, another format."""
    head_end = good.index(b"\n")
    assert summary.parse(good[:-1]) is not None  # only its last newline lost: whole still
    out = {f"cut at {n}": good[:n] for n in (0, 1, head_end // 2, head_end, head_end + 1, len(good) // 2,
                                             len(good) - 2)}
    for at in (2, head_end // 3, head_end - 3, head_end + 20, len(good) // 2 + 1, len(good) - 8):
        flipped = bytearray(good)
        flipped[at] ^= 0x04
        out[f"byte {at} flipped"] = bytes(flipped)
    head, rest = json.loads(good[:head_end]), good[head_end:].rstrip(b"\n").rpartition(b"\n")[0] + b"\n"

    def sealed(h: dict) -> bytes:  # a head of another shape with a checksum that fits it
        body = json.dumps(h).encode() + rest
        return body + json.dumps({"crc32": zlib.crc32(body)}).encode() + b"\n"

    assert sealed(head) == good
    out |= {"not JSON": b"\x00\xff garbage\n", "a JSON list": b"[1, 2]\n", "UTF-16": good.decode().encode("utf-16"),
            "format 99": sealed(head | {"format": 99}), "tags not a list": sealed(head | {"tags": 7}),
            "a tag too few": sealed(head | {"tags": head["tags"][1:]}), "no key": sealed({"format": 1, "tags": []})}
    return out


def test_a_damaged_summary_is_rebuilt_never_a_crash(two_runs, tmp_path):
    _, dirs, tag = two_runs
    src = dirs[0]
    good = (src / summary.FILE).read_bytes()
    family = damaged(good)
    logs = tmp_path / "logs"
    for i, (what, data) in enumerate(family.items()):
        d = copy_run(src, logs / "tiny" / f"r{i:02d}")
        (d / summary.FILE).write_bytes(data)
    (logs / "tiny" / "r00" / summary.FILE).unlink()
    (logs / "tiny" / "r00" / summary.FILE).mkdir()  # not even a file: read fails, save fails, the row is still there
    table, rows = runs.runs_table(logs)
    assert len(rows) == len(family) and all(r["problem"] is None and r["best"] == summary.read(src).best(tag)
                                            for r in rows), rows
    assert summary.note() == (f"rebuilt the index of {len(family)} runs from their event files (1 not saved: being "
                              "written, or a folder this user cannot write)")
    for i, what in enumerate(family):
        d = logs / "tiny" / f"r{i:02d}"
        if i:
            agree(d, summary.read(d))  # rebuilt and saved over the damaged one
    runs.runs_table(logs)
    assert summary.note() == "rebuilt the index of 1 run from their event files (not saved: being written, or a " \
                             "folder this user cannot write)"


def test_a_live_run_is_never_written_by_a_reader(two_runs, tmp_path):
    _, dirs, tag = two_runs
    d = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "live")
    (d / summary.FILE).unlink()
    held = runlock.acquire(d)  # a writer holds it: a reader rebuilds in memory only
    try:
        agree(d)
        assert not (d / summary.FILE).exists()
        assert summary.note().endswith("(not saved: being written, or a folder this user cannot write)")
    finally:
        held.release()
    agree(d)
    assert summary.read(d) is not None and summary.note() == "rebuilt the index of 1 run from their event files"


def test_the_fresh_reading_path_needs_no_torch_nor_tensorboard(two_runs):
    logs, _, tag = two_runs
    code = ("import sys; from gan import runs, leaderboard as lb; t, rows = runs.runs_table(sys.argv[1]); "
            "b = lb.leaderboard([r['path'] for r in rows], lb.parse_at([sys.argv[2] + '=1e9'])); "
            "print(len(rows), len(b.rows), [m for m in ('torch', 'tensorboard') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code, str(logs), tag.split("/")[1]], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["2", "2", "[]"], r.stdout + r.stderr


def test_gan_runs_disk_counts_every_byte_by_kind(two_runs, tmp_path):
    from gan import disk

    _, dirs, _ = two_runs
    logs = tmp_path / "logs"
    a = copy_run(dirs[0], logs / "tiny" / "a")
    b = copy_run(dirs[1], logs / "tiny" / "b")
    (a / "results").mkdir()
    (a / "results" / "fake_0000006.png").write_bytes(b"\x89PNG" + bytes(1000))
    (a / "samples-last-step6-seed0-n64.png").write_bytes(bytes(300))
    (a / "netG.pth").write_bytes(bytes(70))
    (a / "checkpoints" / "last.pt.prev").unlink(missing_ok=True)
    os.link(a / "checkpoints" / "last.pt", a / "checkpoints" / "last.pt.prev")  # a rotation cut short: one file
    os.link(b / "checkpoints" / "best.pt", a / "checkpoints" / "best-copy.pt")  # shared with run b
    want = {k: 0 for k in disk.KINDS}
    inodes = set()
    for p in sorted(a.rglob("*")):
        if p.is_file() and p.stat().st_ino not in inodes:
            inodes.add(p.stat().st_ino)
            rel = p.relative_to(a)
            kind = ("events" if "tfevents" in p.name else "checkpoints" if rel.parts[0] == "checkpoints" else
                    "pngs" if rel.parts[0] == "results" else
                    "samples" if p.name.startswith(("samples-", "netG")) else "other")
            want[kind] += p.stat().st_size
    got = disk.usage(a)
    assert {k: got[k] for k in disk.KINDS} == want and got["total"] == sum(want.values())
    assert want["pngs"] == 1004 and want["samples"] == 370 and all(want.values())
    t, rows, total = runs.disk_table(logs)
    assert [r["total"] for r in rows] == [got["total"], disk.usage(b)["total"]]
    assert total["total"] == got["total"] + disk.usage(b)["total"] - (b / "checkpoints" / "best.pt").stat().st_size
    r = gan("runs", "--disk", "--logs", logs)
    assert r.returncode == 0 and "checkpoints" in r.stdout and disk.fmt_bytes(total["total"]) in r.stdout, r.stdout
    assert disk.fmt_bytes(999) == "999 B" and disk.fmt_bytes(15_040_000) == "15 MB" and \
        disk.fmt_bytes(1_234_000_000) == "1.23 GB" and disk.fmt_bytes(401_000_000) == "401 MB"

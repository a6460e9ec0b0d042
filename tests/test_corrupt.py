"""Damaged files, generated from good ones (truncated at many offsets, bytes flipped, another program's file):
checkpoints are refused in one line naming the file (or the previous one is used, and said); reference caches are
recomputed and said; a damaged run.json is moved aside, never overwritten. Runs side by side: two `gan train`
started together, two processes computing one reference cache, readers of a run that is being written."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan import checkpoint, fileio
from gan.errors import GanError
from tests.conftest import ROOT, events, tiny_toml
from tests.test_kills import assert_same_tensors
from tests.test_resume import cli, one_line, run_of


def truncations(data: bytes) -> dict[str, bytes]:
    n = len(data)
    return {f"cut{k}": data[:k] for k in sorted({0, 1, 16, 100, 1000, n // 3, n // 2, n - 200, n - 22, n - 1})
            if 0 <= k < n}


def flips(data: bytes, count: int, seed: int = 0, to: bytes | None = None) -> dict[str, bytes]:
    """`count` single-byte changes spread over the file (first and last byte included)."""
    rng = random.Random(seed)
    out = {}
    for pos in sorted({0, len(data) - 1, *(rng.randrange(len(data)) for _ in range(count - 2))}):
        b = bytearray(data)
        b[pos] = to[0] if to is not None else b[pos] ^ 0xFF
        out[f"flip{pos}"] = bytes(b)
    return out


def foreign_torch_files(tmp: Path) -> dict[str, bytes]:
    """.pt files another program could have left: a tensor, a list, a state_dict, a dict of other things."""
    out = {}
    for name, obj in {"tensor": torch.zeros(3), "list": [1, 2, 3],
                      "state_dict": {"weight": torch.ones(2, 2)}, "other_dict": {"epoch": 3, "model": {}}}.items():
        p = tmp / f"{name}.pt"
        torch.save(obj, p)
        out[f"foreign_{name}"] = p.read_bytes()
    out["text"] = b"not a checkpoint\n"
    return out


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, tiny_npz):
    tmp = tmp_path_factory.mktemp("good")
    r = cli("train", tiny_toml(tmp / "t.toml", tiny_npz), "--device", "cpu", "--logs", tmp / "logs")
    assert r.exit_code == 0, r.stderr
    return run_of(tmp / "logs")


# ---- checkpoints ----------------------------------------------------------------------------------------------

def test_damaged_checkpoints_are_refused_in_one_line_or_the_previous_is_used(tmp_path, good_run):
    good = (good_run / "checkpoints" / "last.pt").read_bytes()
    ref = checkpoint.load(good_run / "checkpoints" / "last.pt")
    prev = checkpoint.load(good_run / "checkpoints" / "last.pt.prev")
    cases = truncations(good) | flips(good, 40) | foreign_torch_files(tmp_path)
    assert len(cases) >= 50
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    refused = 0
    for name, data in cases.items():
        for p in ck.iterdir():
            p.unlink()
        path = ck / "last.pt"
        path.write_bytes(data)
        try:
            got = checkpoint.load(path)
        except GanError as e:  # no .prev: refused, one line naming the file and what is wrong
            msg = str(e)
            assert msg.startswith(f"{path}: ") and "\n" not in msg, (name, msg)
            assert any(w in msg for w in ("truncated or corrupt", "corrupt checkpoint", "not a gan checkpoint")), \
                (name, msg)
            refused += 1
        else:  # a byte the contents do not depend on (zip padding, a header field): the very same checkpoint
            assert_same_tensors(ref, got, name)
            continue
        shutil.copy(good_run / "checkpoints" / "last.pt.prev", ck / "last.pt.prev")
        said = []
        got = checkpoint.load(path, log=said.append)  # with .prev: it is used, and said
        assert got["step"] == prev["step"] and len(said) == 1 and "using the previous checkpoint last.pt.prev" in \
            said[0] and str(path) in said[0], (name, said)
    print(f"\n{len(cases)} damaged checkpoints: {refused} refused (or .prev used), "
          f"{len(cases) - refused} changed only bytes the contents do not depend on")
    assert refused >= len(cases) - 5


def test_resume_from_damaged_checkpoints_is_exit_2_one_line(tmp_path, good_run):
    good = (good_run / "checkpoints" / "last.pt").read_bytes()
    flipped = next(d for d in flips(good, 20, seed=5).values() if _refused(tmp_path / "probe.pt", d))
    cases = {"empty": b"", "half": good[:len(good) // 2], "flipped": flipped}
    cases |= {k: v for k, v in foreign_torch_files(tmp_path).items() if k in ("foreign_state_dict", "text")}
    for name, data in cases.items():
        run = tmp_path / name
        shutil.copytree(good_run, run)
        (run / "checkpoints" / "last.pt.prev").unlink()
        (run / "checkpoints" / "last.pt").write_bytes(data)
        r = cli("resume", run, "--device", "cpu", "--set", "train.steps=8")
        one_line(r, f"{run / 'checkpoints' / 'last.pt'}: ")
        assert json.loads((run / "run.json").read_text())["status"] == "completed"  # untouched


def _refused(path: Path, data: bytes) -> bool:
    path.write_bytes(data)
    try:
        checkpoint.load_one(path)
    except GanError:
        return True
    return False


# ---- reference caches ---------------------------------------------------------------------------------------

def _reference(images, log):
    from gan.config import Metrics
    from gan.metrics.evaluator import Evaluator

    m = Metrics(extractors=["c10"], num_samples=16, batch_size=64, kid=False)
    return Evaluator(m, images, torch.device("cpu"), 16, log).refs["c10"]


def test_damaged_reference_caches_are_recomputed_and_said(tmp_path, monkeypatch):
    from tests.conftest import make_images

    monkeypatch.setenv("GAN_CACHE", str(tmp_path / "cache"))
    images = torch.from_numpy(make_images(64, seed=3)).permute(0, 3, 1, 2).contiguous()
    said = []
    good = _reference(images, said.append)
    path = next((tmp_path / "cache" / "refstats").glob("*.pt"))
    assert "cached" in said[-1] and str(path) in said[-1]
    data = path.read_bytes()
    cases = truncations(data) | flips(data, 10, seed=1) | foreign_torch_files(tmp_path)
    recomputed = 0
    for name, bad in cases.items():
        path.write_bytes(bad)
        said.clear()
        got = _reference(images, said.append)
        assert_same_tensors(good, got, name)  # never a damaged number
        if "is damaged" in said[0]:
            assert str(path) in said[0] and "recomputing" in said[0], (name, said)
            recomputed += 1
            assert_same_tensors(good, fileio.load_torch(path), name)  # a good file again
        else:
            assert said == [f"reference statistics for c10: cached {path}"], (name, said)
    assert recomputed >= len(cases) - 3, recomputed


def test_two_processes_computing_one_reference_cache_leave_one_good_file(tmp_path):
    """Both start the same computation at once (a barrier), both write: one good file, no temp files."""
    script = (
        "import os, sys, time, torch\n"
        "from pathlib import Path\n"
        "from tests.conftest import make_images\n"
        "from tests.test_corrupt import _reference\n"
        "d = Path(sys.argv[1]); (d / f'ready{sys.argv[2]}').touch()\n"
        "while len(list(d.glob('ready*'))) < 2: time.sleep(0.01)\n"
        "x = torch.from_numpy(make_images(256, seed=4)).permute(0, 3, 1, 2).contiguous()\n"
        "said = []\n"
        "ref = _reference(x, said.append)\n"
        "print(said[-1]); torch.save(ref, d / f'ref{sys.argv[2]}.pt')\n")
    env = dict(os.environ, GAN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("images in" in o and "cached" in o for o, _ in outs), outs  # both computed it
    files = list((tmp_path / "cache" / "refstats").iterdir())
    assert len(files) == 1 and not files[0].name.startswith("."), files
    a, b = (torch.load(tmp_path / f"ref{i}.pt", weights_only=True) for i in range(2))
    assert_same_tensors(a, b)
    assert_same_tensors(a, fileio.load_torch(files[0]))


# ---- run.json -------------------------------------------------------------------------------------------------

def test_damaged_run_json_is_moved_aside_never_overwritten(tmp_path, good_run):
    from gan.rundir import RunInfo

    good = (good_run / "run.json").read_bytes()
    cases = truncations(good) | flips(good, 8, seed=2, to=b"\xff") | flips(good, 4, seed=3, to=b"\x00") | {
        "list": b"[1, 2]\n", "string": b'"running"\n', "null": b"null\n", "number": b"42\n", "empty": b""}
    kept = []
    for name, bad in cases.items():
        d = tmp_path / name
        d.mkdir()
        (d / "run.json").write_bytes(bad)
        said = []
        info = RunInfo(d, log=said.append)
        aside = list(d.glob("run.json.corrupt-*"))
        if aside:
            assert aside[0].read_bytes() == bad and info.data == {}, name  # the damaged bytes kept as they were
            assert len(said) == 1 and f"'{d / 'run.json'}' was damaged" in said[0] and aside[0].name in said[0]
            assert not (d / "run.json").exists()
            info.update(status="running")
            assert json.loads((d / "run.json").read_text()) == {"status": "running"}
        else:  # still the same JSON object
            assert info.data == json.loads(good) and said == [], name
            kept.append(name)
    assert kept == [f"cut{len(good) - 1}"], kept  # only the trailing newline cut
    # a second damaged copy in the same second never replaces the first one set aside
    d = tmp_path / "list"
    (d / "run.json").write_bytes(b"[3]")
    RunInfo(d, log=lambda m: None)
    assert sorted(p.read_bytes() for p in d.glob("run.json.corrupt-*")) == [b"[1, 2]\n", b"[3]"]


def test_resume_with_a_damaged_run_json_goes_on_and_says_so(tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "run.json").write_bytes((good_run / "run.json").read_bytes()[:50])
    r = cli("resume", run, "--device", "cpu", "--set", "train.steps=8")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    aside = next(run.glob("run.json.corrupt-*"))
    assert "was damaged (not JSON" in out and f"moved aside to '{aside.name}'" in out
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


# ---- runs side by side ------------------------------------------------------------------------------------------

def _popen(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "gan", *map(str, args)], cwd=ROOT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_two_trains_of_one_experiment_started_together_both_finish_in_two_folders(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz)
    procs = [_popen("train", exp, "--device", "cpu", "--logs", tmp_path / "logs") for _ in range(2)]  # both first
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted(p for p in (tmp_path / "logs" / "tiny").iterdir())
    assert len(runs) == 2, runs
    said = {o.split("completed at step 6: ")[1].split()[0] for o, _ in outs}  # each names its own folder
    assert said == {str(r) for r in runs}, said
    for r in runs:
        assert json.loads((r / "run.json").read_text())["status"] == "completed"
        assert [e.step for e in events(r).Scalars("loss/D")] == [2, 4, 6]
    a, b = (checkpoint.load(r / "checkpoints" / "last.pt") for r in runs)
    assert_same_tensors(a["G"], b["G"])  # the same seed, in separate folders


def test_runs_compare_and_tensorboard_read_a_run_while_it_is_written(tmp_path, tiny_npz):
    from gan import compare as gcompare, runs as gruns

    exp = tiny_toml(tmp_path / "t.toml", tiny_npz,
                    train={"steps": 40, "log_every": 1, "checkpoint_every": 2, "image_every": 4},
                    metrics={"enabled": True, "extractors": ["c10"], "every": 4, "num_samples": 16,
                             "batch_size": 32, "kid": False})
    logs = tmp_path / "logs"
    p = _popen("train", exp, "--device", "cpu", "--logs", logs)
    reads = {"runs": 0, "compare": 0, "events": 0}
    try:
        while p.poll() is None:
            if not list(logs.glob("*/*/run.json")):
                time.sleep(0.05)
                continue
            run = run_of(logs)
            table, rows = gruns.runs_table(logs)
            reads["runs"] += bool(rows)
            if "last_eval" in json.loads((run / "run.json").read_text()):
                c = gcompare.compare([run], "fid", "c10")
                gcompare.plot(c, tmp_path / "cmp.png")
                gcompare.write_csv(c, tmp_path / "cmp.csv")
                reads["compare"] += 1
            reads["events"] += bool(events(run).Tags()["scalars"])
            time.sleep(0.1)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    print(f"\nread while written: {reads}")
    assert all(reads.values()), reads
    r = subprocess.run([sys.executable, "-m", "gan", "runs", "--logs", str(logs)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "completed" in r.stdout, r.stdout + r.stderr


# ---- a metric that is not a number ------------------------------------------------------------------------------

def test_a_non_finite_metric_is_recorded_as_such_and_named_with_its_step(tmp_path, tiny_npz, monkeypatch):
    from gan.metrics.evaluator import Evaluator

    real = Evaluator.score_images

    def nan_first(self, *a, **k):
        ev = real(self, *a, **k)
        if not hasattr(self, "_once"):
            self._once = ev.values["metrics/fid_c10"] = float("nan")
        return ev

    monkeypatch.setattr(Evaluator, "score_images", nan_first)
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, metrics={"enabled": True, "extractors": ["c10"], "every": 3,
                                                           "num_samples": 16, "batch_size": 32, "kid": False})
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "warning: metrics/fid_c10 is not finite (nan) at step 3: recorded as such in run.json" in \
        " ".join(r.stdout.split())
    run = run_of(tmp_path / "logs")
    info = json.loads((run / "run.json").read_text())
    assert info["nonfinite"] == [{"step": 3, "tag": "metrics/fid_c10"}]
    assert info["best"]["step"] == 6  # a NaN is never the best
    assert [e.step for e in events(run).Scalars("metrics/fid_c10")] == [6]  # TensorBoard gets numbers only
    hist = checkpoint.load(run / "checkpoints" / "last.pt")["history"]
    assert hist[0][0] == 3 and hist[0][1]["metrics/fid_c10"] != hist[0][1]["metrics/fid_c10"]  # kept as NaN

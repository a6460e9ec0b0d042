"""The run index (`gan runs`), TensorBoard as a process (a real server reading the same numbers as the event
files), the Tracker's hparams/layout, and the chromium screenshot. Runs: conftest's `two_runs`."""
from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan import board, config, fileio, runs
from gan.cli import app as APP
from gan.writer import Tracker, flatten, hparam_metrics
from tests.conftest import copy_run, events, hparams_tags


def cli(*args):
    r = CliRunner().invoke(APP, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def one_line_error(r, *needles):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tensorboard(two_runs):
    """A real TensorBoard on a free loopback port; stopped (process group, SIGKILL after 10 s) even on failure."""
    logs, dirs, tag = two_runs
    tb = board.TensorBoard(logs)
    with tb:
        names = {f"tiny/{d.name}" for d in dirs}
        tb.wait(timeout=90, until=lambda rs: names <= set(rs))
        yield tb
    assert tb.proc.poll() is not None


def get(tb, path):
    return board.http_json(tb.url + path, timeout=20)


def test_tensorboard_serves_both_runs_and_the_event_values(two_runs, tensorboard):
    import time

    logs, dirs, tag = two_runs
    names = [f"tiny/{d.name}" for d in dirs]
    assert set(names) <= set(get(tensorboard, "/data/runs"))
    deadline = time.monotonic() + 60
    while True:  # the first load may still be on its way
        tags = get(tensorboard, "/data/plugin/scalars/tags")
        if all(tag in tags.get(n, {}) for n in names) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    sfx = tag[len("metrics/fid"):]
    for n in names:
        assert {tag, "loss/D", "loss/G", f"summary/best_fid{sfx}"} <= set(tags[n]), tags.get(n)
        assert any(t.startswith("metrics/kid") for t in tags[n])
    for n, d in zip(names, dirs):
        q = urllib.parse.urlencode({"run": n, "tag": tag})
        served = get(tensorboard, f"/data/plugin/scalars/scalars?{q}")
        on_disk = events(d).Scalars(tag)
        assert [s for _, s, _ in served] == [e.step for e in on_disk] == [3, 6]
        assert [v for _, _, v in served] == pytest.approx([e.value for e in on_disk], rel=1e-6)
    layout = get(tensorboard, "/data/plugin/custom_scalars/layout")
    from gan.metrics.protocol import extractor_label

    assert [c["title"] for c in layout["category"]] == [f"metrics · {extractor_label(sfx)}", "training"]
    for chart in layout["category"][0]["chart"]:  # every metric chart of a category holds one extractor's tags
        assert all(r.endswith(f"{sfx}$") for r in chart["multiline"]["tag"]), chart
    req = urllib.request.Request(tensorboard.url + "/data/plugin/hparams/experiment", method="POST",
                                 data=b'{"experimentName": ""}', headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        exp = json.loads(r.read())
    assert "optim.g_lr" in {h["name"] for h in exp["hparamInfos"]}
    assert {m["name"]["tag"] for m in exp["metricInfos"]} == {f"summary/best_fid{sfx}", f"summary/final_fid{sfx}"}


def test_runs_lists_both_completed(two_runs):
    logs, dirs, tag = two_runs
    r = cli("runs", "--logs", logs)
    assert r.exit_code == 0, r.output
    for d in dirs:
        line = next(x for x in r.stdout.splitlines() if d.name in x)
        assert "completed" in line and "6/6" in line and "tiny" in line
    from gan.metrics.protocol import extractor_label

    assert f"FID {extractor_label(tag[len('metrics/fid'):])}" in r.stdout  # which extractor the FID columns show
    rows = [runs.run_summary(d) for d in dirs]
    for row, d in zip(rows, dirs):
        fid = events(d).Scalars(tag)
        assert row["last"] == (6, fid[-1].value) and row["best"][1] == min(e.value for e in fid)
        assert row["problem"] is None
    assert cli("runs", "tiny", "--logs", logs).exit_code == 0


def damaged(good: bytes) -> dict:
    """A family of bad run.json files made from a good one: name -> (bytes, words of the reason)."""
    return {"truncated": (good[: len(good) // 2], "not JSON"), "empty": (b"", "not JSON"),
            "garbage": (b"\x00\xffnot json", "UnicodeDecodeError"), "list": (b"[1, 2]", "a list"),
            "string": (b'"run"', "a str"), "null": (b"null", "a NoneType")}


def test_damaged_run_json_is_listed_and_named_never_moved(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    mine = tmp_path / "logs"
    good = [copy_run(d, mine / "tiny" / d.name) for d in dirs]
    cases = damaged((dirs[0] / "run.json").read_bytes())
    for name, (data, _) in cases.items():
        (copy_run(dirs[0], mine / "bad" / name) / "run.json").write_bytes(data)
    r = cli("runs", "--logs", mine)
    assert r.exit_code == 0, r.output
    rows = {x["run"]: x for x in runs.runs_table(mine)[1]}
    assert len(rows) == len(cases) + 2
    for d in good:
        assert rows[d.name]["status"] == "completed" and rows[d.name]["problem"] is None
        assert "completed" in next(x for x in r.stdout.splitlines() if d.name in x)
    for name, (data, why) in cases.items():
        row = rows[name]
        assert row["status"] == "damaged" and why in row["problem"] and row["problem"].startswith("run.json"), row
        assert row["step"] == 6 and row["experiment"] == "tiny"  # from config.toml and the events
        assert (mine / "bad" / name / "run.json").read_bytes() == data  # a listing moves nothing
        assert not list((mine / "bad" / name).glob("run.json.corrupt-*"))
    for name in cases:  # the row says it, with the reason
        line = next(x for x in r.stdout.splitlines() if x.split() and x.split()[0] == name)
        assert "damaged" in line and "run.json" in line, line


def test_a_run_being_written_reads_without_error(two_runs, tmp_path):
    """run.json replaced atomically and the event file growing while `gan runs` reads: never damaged."""
    from torch.utils.tensorboard import SummaryWriter

    logs, dirs, tag = two_runs
    live = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "live")
    info = json.loads((live / "run.json").read_text()) | {"status": "running", "ended": None}
    fileio.write_json(live / "run.json", info | {"step": 6})
    from gan import runlock

    held = runlock.acquire(live)  # this process is the run's writer: `running`, not `dead`
    stop, errors = threading.Event(), []

    def writer():
        try:
            w = SummaryWriter(str(live), flush_secs=1)
            for step in range(7, 100_000):
                if stop.is_set():
                    break
                fileio.write_json(live / "run.json", info | {"step": step}, durable=False)
                w.add_scalar("loss/D", float(step), step)
                w.add_scalar(tag, 1.0 / step, step)
                if step % 5 == 0:
                    w.flush()
            w.close()
        except Exception as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = []
        for _ in range(40):
            row = runs.run_summary(live)
            assert row["problem"] is None and row["status"] == "running", row
            seen.append(row["step"])
    finally:
        stop.set()
        t.join()
        held.release()
    assert not errors and seen == sorted(seen) and seen[-1] > 6


def test_runs_errors_are_one_line(tmp_path):
    one_line_error(cli("runs", "--logs", tmp_path / "nologs"), "does not exist")
    (tmp_path / "logs" / "a").mkdir(parents=True)
    one_line_error(cli("runs", "b", "--logs", tmp_path / "logs"), "no experiment 'b'", "known: a")


def test_tracker_hparams_and_layout_stay_in_the_run_folder(tmp_path):
    cfg = config.Config()
    flat = flatten(cfg.to_dict())
    assert flat["optim.g_lr"] == cfg.optim.g_lr and flat["metrics.extractors"] == "['auto']"
    assert flatten({"a": {"b": {"c": 1}}}) == {"a.b.c": 1}
    hist = [(3, {"metrics/fid": 5.0, "metrics/fid_c10": 2.0}), (6, {"metrics/fid": 4.0, "metrics/fid_c10": 3.0})]
    assert hparam_metrics(hist, ["", "_c10"]) == {"summary/best_fid": 4.0, "summary/final_fid": 4.0,
                                                   "summary/best_fid_c10": 2.0, "summary/final_fid_c10": 3.0}
    assert hparam_metrics([], ["_c10"]) == {"summary/best_fid_c10": None, "summary/final_fid_c10": None}
    t = Tracker(tmp_path)
    t.layout([""])
    t.scalars({"metrics/fid": 9.0}, 1)
    t.hparams(flat, {"summary/best_fid": 9.0, "summary/final_fid": None}, 1)
    t.close()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # add_hparams would have made a subfolder
    ea = events(tmp_path)
    assert "custom_scalars__config__" in ea.Tags()["tensors"]
    assert hparams_tags(tmp_path) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                      "_hparams_/session_end_info"}
    assert ea.Scalars("summary/best_fid")[0].value == 9.0 and "summary/final_fid" not in ea.Tags()["scalars"]


HAVE_CHROMIUM = any(shutil.which(x) for x in ("chromium", "chromium-browser", "google-chrome"))


@pytest.mark.skipif(not os.environ.get("CI") and not HAVE_CHROMIUM,
                    reason="no chromium here (apt-get install chromium); with CI set this test runs and fails")
def test_screenshot_of_tensorboard(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    out = board.screenshot(logs, tmp_path / "tb.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[:2] == (1000, 1400) and img.std() > 5
    assert not [p for p in tmp_path.iterdir() if p.name != "tb.png"]  # no temp file left beside it


def test_two_extractors_never_share_a_tag_column_or_chart(tmp_path, tiny_npz, standin_weights):
    """One run, a stand-in Inception beside c10: one FID per extractor, each under its own tag, HParams column and
    Custom Scalars category; c10's FID judges the run (best.pt, run.json, `gan runs`), never the stand-in's."""
    from gan.engine import Trainer
    from gan.metrics.protocol import extractor_label
    from gan.writer import layout
    from tests.conftest import tiny_toml

    metrics = {"enabled": True, "every": 3, "num_samples": 6, "ref_samples": 8, "batch_size": 16, "is": False,
               "extractors": ["inception", "c10"], "inception_weights": str(standin_weights)}
    cfg = config.load(str(tiny_toml(tmp_path / "two.toml", tiny_npz, metrics=metrics)))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "completed"
    sfx = f"_inception_{fileio.sha256_file(standin_weights)[:8]}"
    scalars = set(events(r.run_dir).Tags()["scalars"])
    for s in ("_c10", sfx):
        assert {f"metrics/fid{s}", f"metrics/kid{s}", f"summary/best_fid{s}", f"summary/final_fid{s}"} <= scalars, s
    assert not {"metrics/fid", "summary/best_fid", "summary/final_fid"} & scalars  # no column mixes two extractors
    info = json.loads((r.run_dir / "run.json").read_text())
    assert info["primary_metric"]["tag"] == "metrics/fid_c10"
    c10 = [e.value for e in events(r.run_dir).Scalars("metrics/fid_c10")]
    assert info["best"]["tag"] == "metrics/fid_c10" and info["best"]["value"] == pytest.approx(min(c10), rel=1e-6)
    best = fileio.load_torch(r.run_dir / "checkpoints" / "best.pt")["best"]  # best.pt was chosen by c10's FID
    assert best["tag"] == "metrics/fid_c10" and best["value"] == pytest.approx(min(c10), rel=1e-6)
    cats = layout(["_c10", sfx])
    assert list(cats) == [f"metrics · {extractor_label('_c10')}", f"metrics · {extractor_label(sfx)}", "training"]
    for (title, charts), s in zip(cats.items(), ("_c10", sfx)):  # every chart of a category: one extractor's tags
        assert all(t.endswith(f"{s}$") for _, tags in charts.values() for t in tags), title
    out = cli("runs", "--logs", tmp_path / "logs")
    assert out.exit_code == 0 and "FID c10" in out.stdout and "not standard" not in out.stdout, out.stdout


def test_long_sweep_run_names_fold_and_never_squeeze_the_facts_beside_them(two_runs, tmp_path):
    """A search's run folders are long (t003-g_lr=9.348e-05,d_lr=...,loss=bce-s3): at the console's 140 columns the
    status, steps and wall time stayed whole only for short names."""
    logs, dirs, _ = two_runs
    mine = tmp_path / "logs"
    long = "t003-" + ",".join(f"knob{i}=0.000{i}23" for i in range(9)) + "-s3"
    copy_run(dirs[0], mine / "tiny" / "sweep-20261203-171336-study" / long)
    r = cli("runs", "--logs", mine)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    row = next(x for x in lines if x.strip().startswith("t003-"))
    assert max(len(x) for x in lines) <= 140
    for fact in ("completed", "6/6", "tiny"):
        assert fact in row, row
    assert "".join(x.strip().split(" ")[0] for x in lines[lines.index(row):lines.index(row) + 8]).startswith(long)

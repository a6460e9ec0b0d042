"""`gan leaderboard`: its numbers are the event files', thresholds reached where a hand count says, ranked by the
primary metric, and protocol differences named (a footnote per difference, the differing rows marked)."""
from __future__ import annotations

import csv
import json
import statistics

import pytest

from gan import leaderboard as lb
from tests.conftest import copy_run, edit_run_json, events
from tests.test_runs import cli, one_line_error

PROTO = {"extractor": "c10", "suffix": "_c10", "weights_sha256": "c1" * 32, "num_samples": 1000,
         "reference_sha256": "e5" * 32, "reference_samples": 5000}


def hand_run(logs, name, points, rates=(100.0, 300.0, 200.0), arch="sngan", conditional=False, proto=None,
             device="cuda"):
    """A run written by hand: metric points [(step, fid, train_seconds, images)], perf/images_per_sec."""
    from torch.utils.tensorboard import SummaryWriter

    d = logs / "hand" / name
    d.mkdir(parents=True)
    (d / "config.toml").write_text(f'[experiment]\nname = "hand"\n[model]\narch = "{arch}"\n'
                                   f"conditional = {str(conditional).lower()}\n")
    (d / "run.json").write_text(json.dumps({"experiment": "hand", "status": "completed", "device": device,
                                            "metrics_protocol": [PROTO | (proto or {})]}))
    w = SummaryWriter(str(d))
    for i, r in enumerate(rates):
        w.add_scalar("perf/images_per_sec", r, 10 * (i + 1))
    for step, fid, secs, imgs in points:
        w.add_scalar("metrics/fid_c10", fid, step)
        w.add_scalar("metrics/class_entropy_c10", 1 - fid / 100, step)
        w.add_scalar("progress/train_seconds", secs, step)
        w.add_scalar("progress/images_seen", imgs, step)
    w.close()
    return d


@pytest.fixture
def hand(tmp_path):
    logs = tmp_path / "logs"
    a = hand_run(logs, "a", [(100, 50.0, 60.0, 6400), (200, 18.0, 125.0, 12800), (300, 8.0, 190.0, 19200)])
    b = hand_run(logs, "b", [(100, 30.0, 30.0, 3200), (200, 12.0, 61.0, 6400)], rates=(50.0,), arch="dcgan",
                 conditional=True)
    c = hand_run(logs, "c", [], rates=(10.0,))
    return logs, a, b, c


def test_thresholds_and_ranking_by_hand(hand, tmp_path):
    logs, a, b, c = hand
    out = tmp_path / "lb.csv"
    r = cli("leaderboard", "--logs", logs, "--at", "fid_c10=20,10,5", "--at", "class_entropy_c10=0.85",
            "--csv", out)
    assert r.exit_code == 0, r.output
    board = lb.leaderboard([a, b, c], lb.parse_at(["fid_c10=20,10,5"]))
    assert [x.run.name for x in board.rows] == ["a", "b", "c"]  # 8 < 12; no FID at all last
    assert board.primary.tag == "metrics/fid_c10" and board.tags[0] == "metrics/fid_c10"
    ra, rb, rc = board.rows
    assert ra.reached == {("metrics/fid_c10", 20.0): (200, 125.0, 12800.0),  # 18 <= 20 first at step 200
                          ("metrics/fid_c10", 10.0): (300, 190.0, 19200.0),
                          ("metrics/fid_c10", 5.0): None}
    assert rb.reached == {("metrics/fid_c10", 20.0): (200, 61.0, 6400.0), ("metrics/fid_c10", 10.0): None,
                          ("metrics/fid_c10", 5.0): None}
    assert rc.reached == {k: None for k in rc.reached}
    assert ra.images_per_sec == 200.0 and rb.images_per_sec == 50.0  # medians
    assert (ra.model, rb.model, ra.device) == ("sngan", "dcgan conditional", "cuda")
    rows = list(csv.DictReader(open(out)))
    assert [x["run"] for x in rows] == ["a", "b", "c"] and [x["rank"] for x in rows] == ["1", "2", "3"]
    assert rows[0]["fid_c10≤20 train_seconds"] == "125.0" and rows[0]["fid_c10≤20 images_seen"] == "12800.0"
    assert rows[0]["fid_c10≤5 step"] == "" and rows[1]["fid_c10≤20 step"] == "200"
    assert rows[0]["class_entropy_c10≥0.85 step"] == "300"  # higher is better: 1 - 8/100 = 0.92 >= 0.85
    line = next(x for x in r.stdout.splitlines() if x.split()[:2] == ["1", "a"])
    assert "2m05s · 12.8k" in line and "3m10s · 19.2k" in line
    assert "—" in next(x for x in r.stdout.splitlines() if x.split()[:2] == ["2", "b"])
    assert "ranked by metrics/fid_c10" in " ".join(r.stdout.split()) and "†" not in r.stdout


def test_protocol_differences_are_footnotes_and_marked_rows(hand, tmp_path):
    logs, a, b, c = hand
    edit_run_json(b, lambda d: d["metrics_protocol"][0].update(num_samples=50, weights_sha256="99" * 32))
    r = cli("leaderboard", a, b, "--logs", logs)
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "† metrics/fid_c10, metrics/class_entropy_c10: extractor weights differ" in text
    assert "metrics/class_entropy_c10: generated samples differ (a: 1000, b: 50)" in text
    assert next(x for x in r.stdout.splitlines() if x.split()[:2] == ["2", "b"]).split()[2] == "†"
    assert next(x for x in r.stdout.splitlines() if x.split()[:2] == ["1", "a"]).split()[2] != "†"
    board = lb.leaderboard([a, b])
    assert len(board.notes) == 2 and board.rows[1].differs == ["metrics/fid_c10", "metrics/class_entropy_c10"]


def test_leaderboard_numbers_are_the_event_files(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    out = tmp_path / "lb.csv"
    r = cli("leaderboard", "--exp", "tiny", "--logs", logs, "--csv", out)
    assert r.exit_code == 0, r.output
    rows = {x["run"]: x for x in csv.DictReader(open(out))}
    assert set(rows) == {d.name for d in dirs}
    name = tag.split("/", 1)[1]
    for d in dirs:
        ea, row = events(d), rows[d.name]
        for t in (x for x in ea.Tags()["scalars"] if x.startswith("metrics/")):
            vals = [e.value for e in ea.Scalars(t)]
            best = max(vals) if t.split("/")[1].startswith(("is", "class", "precision", "recall")) else min(vals)
            assert float(row[f"best {t.split('/', 1)[1]}"]) == best, t  # exactly, full precision
        rate = statistics.median(e.value for e in ea.Scalars("perf/images_per_sec"))
        assert float(row["images_per_sec"]) == pytest.approx(rate, rel=1e-12)
        assert row["model"] == "dcgan" and row["device"] == "cpu"
    ranked = sorted(dirs, key=lambda d: min(e.value for e in events(d).Scalars(tag)))
    assert [x for x in rows] == [d.name for d in ranked] and f"{name} ★" in r.stdout


def test_leaderboard_errors(hand, tmp_path):
    logs, a, b, c = hand
    for spec, words in (("fid_c10", "expected METRIC="), ("lpips=3", "not a metric"), ("fid_c10=x", "numbers"),
                        ("fid=20", "no run logs metrics/fid")):
        one_line_error(cli("leaderboard", "--logs", logs, "--at", spec), *words.split("|"))
    one_line_error(cli("leaderboard", "--logs", tmp_path / "none"), "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(cli("leaderboard", "--logs", tmp_path / "empty"), "no runs to rank")
    one_line_error(cli("leaderboard", "--exp", "nope", "--logs", logs), "no experiment 'nope'")
    (copy_run(a, logs / "hand" / "z") / "run.json").write_text("[")  # a damaged run is a row, not a stop
    r = cli("leaderboard", "--logs", logs)
    assert r.exit_code == 0 and any(x.split()[1:2] == ["z"] for x in r.stdout.splitlines() if x.split()), r.output

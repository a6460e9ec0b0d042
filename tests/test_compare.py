"""`gan compare`: the table, PNG and CSV equal the event files; seeds as bands; --x time/images read the
logged progress tags; protocols never mixed silently; a sweep folder compared by setting."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan import compare as cmp, runs
from gan.events import IMAGES_SEEN, TRAIN_SECONDS
from tests.conftest import copy_run, edit_run_json, events
from tests.test_runs import cli, one_line_error


def rows_of(path):
    return list(csv.DictReader(open(path)))


def test_compare_png_and_csv_equal_the_event_files(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    png, table = tmp_path / "cmp.png", tmp_path / "cmp.csv"
    r = cli("compare", "--exp", "tiny", "--logs", logs, "--out", png, "--csv", table)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(png)
    assert tag in r.stdout and "best" in r.stdout and "mixed" not in r.stdout
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 200 and img.std() > 5  # drawn, not blank
    rows = rows_of(table)
    assert list(rows[0]) == cmp.CSV_COLUMNS
    for d in dirs:
        mine = [x for x in rows if x["run"] == d.name]
        on_disk = events(d).Scalars(tag)
        assert [int(x["step"]) for x in mine] == [e.step for e in on_disk]
        assert [float(x["value"]) for x in mine] == [e.value for e in on_disk]  # exactly
        minutes = [float(x["wall_minutes"]) for x in mine]
        assert minutes == sorted(minutes) and minutes[0] >= 0 and {x["experiment"] for x in mine} == {"tiny"}
        assert {x["group"] for x in mine} == {"tiny"}
    # the two seeds of one experiment are one band; run ids work as well as paths
    c = cmp.compare([runs.resolve_run(d.name, logs) for d in dirs])
    assert cmp.seed_groups(c) == [[0, 1]] and c.seeds == [0, 1] and c.shared_steps == [3, 6]
    steps, _, mean, std = cmp.band(c, [0, 1], "step")
    v = np.array([s.values for s in c.series])
    assert list(steps) == [3, 6] and np.allclose(mean, v.mean(0)) and np.allclose(std, v.std(0, ddof=1))
    r = cli("compare", dirs[0], dirs[1], "--metric", "kid", "--out", tmp_path / "kid.png")
    assert r.exit_code == 0 and (tmp_path / "kid.png").stat().st_size > 0, r.output
    ext = "c10" if tag.endswith("_c10") else None  # the extractor named outright gives the same tag as auto
    if ext:
        assert cmp.compare(list(dirs), "fid", ext).tag == cmp.compare(list(dirs), "fid", "auto").tag == tag


@pytest.mark.parametrize("x,logged", [("time", TRAIN_SECONDS), ("images", IMAGES_SEEN)])
def test_x_axis_values_are_the_logged_progress_tags(two_runs, tmp_path, x, logged):
    logs, dirs, tag = two_runs
    table = tmp_path / "cmp.csv"
    r = cli("compare", *dirs, "--x", x, "--out", tmp_path / "cmp.png", "--csv", table)
    assert r.exit_code == 0, r.output
    column = {"time": "train_seconds", "images": "images_seen"}[x]
    c = cmp.compare(list(dirs), x=x)
    for d, s in zip(dirs, c.series):
        on_disk = {e.step: e.value for e in events(d).Scalars(logged)}
        assert s.steps == [3, 6] and cmp.axis(s, x) == [on_disk[3], on_disk[6]]  # exactly what was logged
        assert [float(row[column]) for row in rows_of(table) if row["run"] == d.name] == [on_disk[3], on_disk[6]]
    if x == "images":  # 16 images per step, one D step per G step
        assert cmp.axis(c.series[0], x) == [48.0, 96.0]
    else:
        assert all(0 < a < b for a, b in [cmp.axis(s, x) for s in c.series])
    _, xs, mean, _ = cmp.band(c, [0, 1], x)  # every run's points from the latest first one to the shortest end
    ends = [cmp.axis(s, x) for s in c.series]
    assert xs[0] == max(a[0] for a in ends) and xs[-1] == min(a[-1] for a in ends)
    assert set(xs) <= {v for a in ends for v in a}


def fake_run(root, name, scalars, exp="other"):
    from torch.utils.tensorboard import SummaryWriter

    d = root / exp / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"experiment": exp, "status": "running", "step": 2}))
    w = SummaryWriter(str(d))
    for tag, v in scalars.items():
        w.add_scalar(tag, v, 2)
    w.close()
    return d


def test_errors_are_one_line_exit_2(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    one_line_error(cli("compare", "nosuchrun", "--logs", logs), "no run 'nosuchrun'")
    one_line_error(cli("compare", "--logs", logs), "nothing to compare")
    one_line_error(cli("compare", "--exp", "nosuchexp", "--logs", logs), "no experiment 'nosuchexp'")
    no_metrics = fake_run(tmp_path, "young", {"loss/D": 1.0})
    one_line_error(cli("compare", dirs[0], no_metrics), "has no metrics yet", str(no_metrics))
    fid_only = fake_run(tmp_path, "fidonly", {tag: 3.0})
    one_line_error(cli("compare", dirs[0], fid_only, "--metric", "kid"), str(fid_only), "has no metrics/kid")
    one_line_error(cli("compare", dirs[0], "--metric", "lpips"), "--metric")
    one_line_error(cli("compare", dirs[0], "--x", "epochs"), "--x 'epochs'")
    one_line_error(cli("compare", fid_only, "--x", "time"), str(fid_only), TRAIN_SECONDS, "--x step")
    one_line_error(cli("compare", "--sweep", tmp_path), "no sweep.json")
    (tmp_path / "sweep.json").write_text('{"runs": [')
    one_line_error(cli("compare", "--sweep", tmp_path), "sweep.json", "damaged")
    (tmp_path / "sweep.json").write_text('{"runs": [{"folder": "../x"}]}')
    one_line_error(cli("compare", "--sweep", tmp_path), "not a plain folder name")


def test_mixed_protocols_refused_in_one_line_unless_allowed(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    a = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "a")
    b = copy_run(dirs[1], tmp_path / "logs" / "tiny" / "b")
    sha = json.loads((a / "run.json").read_text())["metrics_protocol"][0]["weights_sha256"]
    other = "ab" * 32
    edit_run_json(b, lambda d: [p.update(weights_sha256=other) for p in d["metrics_protocol"]])
    line = one_line_error(cli("compare", a, b, "--out", tmp_path / "m.png"), "extractor weights differ",
                          sha[:12], other[:12], "--allow-mixed")
    assert tag in line and not (tmp_path / "m.png").exists()
    r = cli("compare", a, b, "--allow-mixed", "--out", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    assert "mixed protocols" in r.stdout and "extractor weights" in r.stdout
    assert (tmp_path / "m.png").stat().st_size > 0
    c = cmp.compare([a, b], allow_mixed=True)
    assert len(c.mixed) == 1 and "extractor weights differ" in c.mixed[0]
    # another sample count is another protocol too; a run without a record is named
    edit_run_json(b, lambda d: [p.update(weights_sha256=sha, num_samples=999) for p in d["metrics_protocol"]])
    one_line_error(cli("compare", a, b), "generated samples differ")
    edit_run_json(b, lambda d: d.pop("metrics_protocol"))
    one_line_error(cli("compare", a, b), f"no protocol recorded for {tag} in b")


def make_sweep(root, dirs):
    """A sweep folder as `gan sweep` writes it, from copies of real runs: setting lr=1e-4 with seeds 0 and 1,
    lr=2e-4 with seed 0, and one run that never started."""
    sweep = root / "sweep"
    plan = [("optim.g_lr=1e-4", 0, dirs[0]), ("optim.g_lr=1e-4", 1, dirs[1]), ("optim.g_lr=2e-4", 0, dirs[0]),
            ("optim.g_lr=2e-4", 1, None)]
    entries = []
    for setting, seed, src in plan:
        folder = f"{setting}-s{seed}"
        if src is not None:
            copy_run(src, sweep / folder)
        entries.append({"setting": setting, "overrides": [setting, f"experiment.seed={seed}"], "seed": seed,
                        "folder": folder, "status": "completed" if src is not None else "pending"})
    (sweep / "sweep.json").write_text(json.dumps({"version": 1, "experiment": "tiny", "id": "s1",
                                                  "grid": {"optim.g_lr": ["1e-4", "2e-4"]}, "seeds": 2,
                                                  "runs": entries}))
    return sweep


def test_sweep_is_one_band_per_setting(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    sweep = make_sweep(tmp_path, dirs)
    found, settings, notes = cmp.sweep_runs(sweep)
    assert [p.name for p in found] == ["optim.g_lr=1e-4-s0", "optim.g_lr=1e-4-s1", "optim.g_lr=2e-4-s0"]
    assert settings == ["optim.g_lr=1e-4"] * 2 + ["optim.g_lr=2e-4"]
    assert len(notes) == 1 and "optim.g_lr=2e-4-s1 (pending)" in notes[0]
    c = cmp.compare(found, groups=settings)
    assert cmp.seed_groups(c) == [[0, 1], [2]] and c.groups == settings
    _, _, mean, std = cmp.band(c, [0, 1], "step")
    v = np.array([c.series[0].values, c.series[1].values])
    assert np.allclose(mean, v.mean(0)) and np.allclose(std, v.std(0, ddof=1))
    table = tmp_path / "sweep.csv"
    r = cli("compare", "--sweep", sweep, "--out", tmp_path / "sweep.png", "--csv", table)
    assert r.exit_code == 0, r.output
    assert "left out" in r.stdout and (tmp_path / "sweep.png").stat().st_size > 0
    rows = rows_of(table)
    assert {x["group"] for x in rows} == {"optim.g_lr=1e-4", "optim.g_lr=2e-4"}
    assert [float(x["value"]) for x in rows if x["run"] == "optim.g_lr=2e-4-s0"] == \
        [e.value for e in events(dirs[0]).Scalars(tag)]


def test_band_of_time_limited_seeds_reaches_the_shortest_seeds_end():
    """Two seeds stopped by train.minutes at different steps (8 and 9): on the time axis the band runs to the
    shorter one's end (27 s), the longer one read there between its own points, not only to shared step 6."""
    from gan.events import Series

    a = Series(steps=[3, 6, 8], minutes=[1, 2, 3], values=[50.0, 40.0, 36.0], train_seconds=[10.0, 20.0, 27.0],
               images=[48.0, 96.0, 128.0])
    b = Series(steps=[3, 6, 9], minutes=[1, 2, 3], values=[52.0, 44.0, 38.0], train_seconds=[11.0, 21.0, 30.0],
               images=[48.0, 96.0, 144.0])
    c = cmp.Compared("metrics/fid_c10", [], ["a", "b"], ["tiny"] * 2, [0, 1], [a, b], [3, 6], [], ["s"] * 2, "time")
    _, xs, mean, std = cmp.band(c, [0, 1], "time")
    assert list(xs) == [11.0, 20.0, 21.0, 27.0]
    b_at_27 = 44.0 + (38.0 - 44.0) * (27.0 - 21.0) / (30.0 - 21.0)
    assert mean[-1] == pytest.approx((36.0 + b_at_27) / 2)
    assert std[-1] == pytest.approx(float(np.std([36.0, b_at_27], ddof=1)))
    steps, xs, mean, _ = cmp.band(c, [0, 1], "step")  # on the step axis: the steps both have
    assert list(steps) == [3, 6] and list(mean) == [51.0, 42.0]


def test_compare_never_overwrites_a_plot_or_a_table(two_runs, tmp_path, monkeypatch):
    """The plot goes into the runs' logs folder by default (never the current folder, a checkout's say); the CSV
    where --csv says; neither overwrites."""
    logs, dirs, _ = two_runs
    runs = [copy_run(d, tmp_path / "logs" / "tiny" / d.name) for d in dirs]
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    first = {}
    for n in (0, 1):
        r = cli("compare", *runs, "--csv", "points.csv")
        assert r.exit_code == 0, r.output
        png, table = ("compare-fid.png", "points.csv") if n == 0 else ("compare-fid-1.png", "points-1.csv")
        png = tmp_path / "logs" / png
        assert str(png) in " ".join(r.stdout.split()) and table in r.stdout
        first = first or {p: Path(p).read_bytes() for p in (png, here / table)}
    assert {p: Path(p).read_bytes() for p in first} == first  # the first files as they were
    assert sorted(p.name for p in here.iterdir()) == ["points-1.csv", "points.csv"]
    assert Image.open(tmp_path / "logs" / "compare-fid-1.png").size == Image.open(tmp_path / "logs" /
                                                                                 "compare-fid.png").size

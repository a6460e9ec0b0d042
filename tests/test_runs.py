"""Run management: `runs`, `compare`, `eval`, `sample`, the TensorBoard extras, and a real TensorBoard server
reading the same numbers as the event files. Two short runs with metrics are made once for the module."""
from __future__ import annotations

import csv
import json
import math
import shutil
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan import config, runs
from gan.cli import app as APP
from gan.engine import Trainer
from gan.features import WEIGHTS as C10_WEIGHTS
from gan.tracking import Tracker, flatten, hparam_metrics
from tests.conftest import events, tiny_toml


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


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Inception on a busy 2-core machine: one intra-op thread is ~3x faster than conftest's two."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def hparams_tags(run_dir) -> set:
    try:
        return set(events(run_dir).PluginTagToContent("hparams"))
    except KeyError:
        return set()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_npz, standin_weights):
    """Experiment `tiny`, seeds 0 and 1, 6 steps, metrics at steps 3 and 6 (c10 when its weights are packaged,
    else Inception with the stand-in weights); layout/hparams as the engine writes them at start/end."""
    root = tmp_path_factory.mktemp("runs")
    c10 = C10_WEIGHTS.is_file()
    metrics = {"enabled": True, "every": 3, "num_samples": 6, "ref_samples": 8, "batch_size": 16, "is": False,
               "extractors": ["c10"] if c10 else ["inception"]}
    if not c10:
        metrics["inception_weights"] = str(standin_weights)
    dirs = []
    for seed in (0, 1):
        cfg = config.load(str(tiny_toml(root / f"s{seed}.toml", tiny_npz, experiment={"seed": seed},
                                        metrics=metrics)))
        tr = Trainer(cfg, device="cpu", logs=root / "logs", quiet=True)
        r = tr.run()
        assert r.status == "completed"
        assert hparams_tags(r.run_dir)  # the engine writes layout and hparams itself
        dirs.append(r.run_dir)
    if c10:
        return root / "logs", dirs, "metrics/fid_c10"
    from gan.fileio import sha256_file

    return root / "logs", dirs, f"metrics/fid_inception_{sha256_file(standin_weights)[:8]}"  # never metrics/fid


@pytest.fixture(scope="module")
def tensorboard(two_runs):
    """A real TensorBoard on a free loopback port; stopped (process group, SIGKILL after 10 s) even on failure."""
    logs, dirs, tag = two_runs
    tb = runs.TensorBoard(logs)
    with tb:
        names = {f"tiny/{d.name}" for d in dirs}
        tb.wait(timeout=90, until=lambda rs: names <= set(rs))
        yield tb
    assert tb.proc.poll() is not None


def get(tb, path):
    return runs.http_json(tb.url + path, timeout=20)


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
        assert {tag, "loss/D", "loss/G", f"hparam/best_fid{sfx}"} <= set(tags[n]), tags.get(n)
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
    assert {m["name"]["tag"] for m in exp["metricInfos"]} == {f"hparam/best_fid{sfx}", f"hparam/final_fid{sfx}"}


def test_compare_png_and_csv_equal_the_event_files(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    png, table = tmp_path / "cmp.png", tmp_path / "cmp.csv"
    r = cli("compare", "--exp", "tiny", "--logs", logs, "--out", png, "--csv", table)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(png)
    assert tag in r.stdout and "best" in r.stdout
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 200 and img.std() > 5  # drawn, not blank
    rows = list(csv.DictReader(open(table)))
    assert set(rows[0]) == {"run", "experiment", "step", "wall_minutes", "value"}
    for d in dirs:
        mine = [x for x in rows if x["run"] == d.name]
        on_disk = events(d).Scalars(tag)
        assert [int(x["step"]) for x in mine] == [e.step for e in on_disk]
        assert [float(x["value"]) for x in mine] == [e.value for e in on_disk]  # exactly
        minutes = [float(x["wall_minutes"]) for x in mine]
        assert minutes == sorted(minutes) and minutes[0] >= 0 and {x["experiment"] for x in mine} == {"tiny"}
    # the two seeds of one experiment are one band; run ids work as well as paths
    c = runs.compare([runs.resolve_run(d.name, logs) for d in dirs])
    assert runs.seed_groups(c) == [[0, 1]] and c.seeds == [0, 1] and c.shared_steps == [3, 6]
    steps, _, mean, std = runs.band(c, [0, 1])
    v = np.array([s.values for s in c.series])
    assert list(steps) == [3, 6] and np.allclose(mean, v.mean(0)) and np.allclose(std, v.std(0, ddof=1))
    r = cli("compare", dirs[0], dirs[1], "--metric", "kid", "--out", tmp_path / "kid.png")
    assert r.exit_code == 0 and (tmp_path / "kid.png").stat().st_size > 0, r.output


def fake_run(root, name, scalars):
    from torch.utils.tensorboard import SummaryWriter

    d = root / "other" / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"experiment": "other", "status": "running", "step": 2}))
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
    one_line_error(cli("runs", "--logs", tmp_path / "nologs"), "does not exist")
    one_line_error(cli("sample", fid_only), "config.toml")
    one_line_error(cli("eval", tmp_path / "nothing"), "no run")
    one_line_error(cli("eval", dirs[0], "--metrics", "fid,bogus"), "--metrics")


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
    assert cli("runs", "tiny", "--logs", logs).exit_code == 0


def test_eval_appends_metrics_json_and_tensorboard(two_runs):
    logs, dirs, tag = two_runs
    d = dirs[1]
    r = cli("eval", d, "--samples", "4", "--metrics", "fid,kid", "--device", "cpu", "--checkpoint", "best")
    assert r.exit_code == 0, r.output
    rec = json.loads((d / "metrics.json").read_text())[-1]
    assert rec["checkpoint"] == "best" and rec["samples"] == 4 and rec["step"] in (3, 6)
    assert tag in rec["values"] and all(math.isfinite(v) for v in rec["values"].values())
    assert rec["protocol"][0]["num_samples"] == 4
    ev = events(d).Scalars("eval/" + tag.split("/")[1])
    assert ev[-1].step == rec["step"] and ev[-1].value == pytest.approx(rec["values"][tag], rel=1e-6)
    assert not [p for p in d.iterdir() if p.is_dir() and p.name != "checkpoints"]  # no stray subfolder run


def test_sample_grid_folder_seed_and_no_overwrite(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    out = tmp_path / "grid.png"
    r = cli("sample", dirs[0], "--out", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (8 * 34 + 2, 8 * 34 + 2)  # 64 images of 32 px, 2 px padding
    before = out.read_bytes()
    one_line_error(cli("sample", dirs[0], "--out", out), "already exists")
    assert out.read_bytes() == before
    assert cli("sample", dirs[0], "--n", "8", "--out", tmp_path / "a.png", "--seed", "5").exit_code == 0
    assert cli("sample", dirs[0], "--n", "8", "--out", tmp_path / "b.png", "--seed", "5").exit_code == 0
    assert cli("sample", dirs[0], "--n", "8", "--out", tmp_path / "c.png", "--seed", "6").exit_code == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{x}.png")) for x in "abc")
    assert (a == b).all() and not (a == c).all()
    r = cli("sample", dirs[0], "--n", "3", "--folder", tmp_path / "imgs")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "imgs").iterdir())
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    assert all(Image.open(f).size == (32, 32) for f in files)
    one_line_error(cli("sample", dirs[0], "--n", "3", "--folder", tmp_path / "imgs"), "000000.png")


def test_tracker_hparams_and_layout_stay_in_the_run_folder(tmp_path):
    cfg = config.Config()
    flat = flatten(cfg.to_dict())
    assert flat["optim.g_lr"] == cfg.optim.g_lr and flat["metrics.extractors"] == "['auto']"
    assert flatten({"a": {"b": {"c": 1}}}) == {"a.b.c": 1}
    hist = [(3, {"metrics/fid": 5.0, "metrics/fid_c10": 2.0}), (6, {"metrics/fid": 4.0, "metrics/fid_c10": 3.0})]
    assert hparam_metrics(hist, ["", "_c10"]) == {"hparam/best_fid": 4.0, "hparam/final_fid": 4.0,
                                                   "hparam/best_fid_c10": 2.0, "hparam/final_fid_c10": 3.0}
    assert hparam_metrics([], ["_c10"]) == {"hparam/best_fid_c10": None, "hparam/final_fid_c10": None}
    t = Tracker(tmp_path)
    t.layout([""])
    t.scalars({"metrics/fid": 9.0}, 1)
    t.hparams(flat, {"hparam/best_fid": 9.0, "hparam/final_fid": None}, 1)
    t.close()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # add_hparams would have made a subfolder
    ea = events(tmp_path)
    assert "custom_scalars__config__" in ea.Tags()["tensors"]
    assert hparams_tags(tmp_path) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                      "_hparams_/session_end_info"}
    assert ea.Scalars("hparam/best_fid")[0].value == 9.0 and "hparam/final_fid" not in ea.Tags()["scalars"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (apt-get install chromium)")
def test_screenshot_of_tensorboard(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    out = runs.screenshot(logs, tmp_path / "tb.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[:2] == (1000, 1400) and img.std() > 5

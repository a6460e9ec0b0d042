"""The GAN view in TensorBoard: every logged grid served by a bare `tensorboard --logdir` (the plugin's flags), the
`gan` tab's data routes, and the tab itself in headless chromium; `gan compare --grids`, the same view as a PNG.
One real TensorBoard serves conftest's `two_runs` and a run that logged 30 grids."""
from __future__ import annotations

import html.parser
import io
import os
import re
import shutil
import time
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from gan import board, config
from gan.dashboard import IMAGES_KEPT, view
from tests.conftest import copy_run, events, tiny_toml

HAVE_CHROMIUM = any(shutil.which(x) for x in ("chromium", "chromium-browser", "google-chrome"))
needs_chromium = pytest.mark.skipif(not os.environ.get("CI") and not HAVE_CHROMIUM,
                                    reason="no chromium (apt-get install chromium); with CI set this runs and fails")


def tb_flags(*args):
    """TensorBoard's flags as `tensorboard ARGS` parses them, with every installed plugin's loader (ours too)."""
    from tensorboard import program

    tb = program.TensorBoard()
    tb.configure(["tensorboard", *args])
    return tb.flags


def test_installing_gan_keeps_every_image_unless_the_user_says(tmp_path):
    assert tb_flags("--logdir", str(tmp_path)).samples_per_plugin == {"images": IMAGES_KEPT}
    assert tb_flags("--logdir", str(tmp_path), "--samples_per_plugin", "scalars=50").samples_per_plugin == \
        {"scalars": 50, "images": IMAGES_KEPT}
    assert tb_flags("--logdir", str(tmp_path), "--samples_per_plugin", "images=5").samples_per_plugin == {"images": 5}


@pytest.fixture(scope="module")
def served(two_runs, tiny_npz, tmp_path_factory):
    """logs/ with the two tiny runs and one that logged a grid at each of its 30 steps; a real TensorBoard on it,
    started as a user starts it (`python -m tensorboard.main --logdir`, no sampling flag)."""
    import torch

    from gan.engine import Trainer

    logs_in, dirs, tag = two_runs
    root = tmp_path_factory.mktemp("board")
    logs = root / "logs"
    runs = [copy_run(d, logs / "tiny" / d.name) for d in dirs]
    cfg = config.load(str(tiny_toml(root / "g.toml", tiny_npz, experiment={"name": "grids30"},
                                    train={"steps": 30, "image_every": 1, "log_every": 10, "checkpoint_every": 30})))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = Trainer(cfg, device="cpu", logs=logs, quiet=True).run()
    finally:
        torch.set_num_threads(threads)
    assert r.status == "completed"
    with board.TensorBoard(logs) as tb:
        names = {f"tiny/{d.name}" for d in runs} | {f"grids30/{r.run_dir.name}"}
        tb.wait(timeout=90, until=lambda rs: names <= set(rs))
        yield tb, runs, r.run_dir, tag


def get(tb, path, **query):
    return board.http_json(f"{tb.url}{path}?{urllib.parse.urlencode(query)}", timeout=20)


def poll(fn, timeout=60):
    """fn() until it returns something true (TensorBoard's first load may still be on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def test_a_bare_tensorboard_serves_all_30_grids(served):
    tb, _, run30, _ = served
    name = f"grids30/{run30.name}"
    steps = lambda: [x["step"] for x in get(tb, "/data/plugin/images/images", run=name, tag="images/fake")]  # noqa
    assert [e.step for e in events(run30).Images("images/fake")] == list(range(1, 31))
    assert poll(lambda: steps() == list(range(1, 31))), steps()  # TensorBoard's default would keep 10


def test_the_gan_tab_is_listed_and_serves_runs_grids_and_curves(served):
    tb, runs, run30, tag = served
    plugin = board.http_json(tb.url + "/data/plugins_listing")["gan"]
    assert plugin["enabled"] and plugin["tab_name"] == "GAN"
    assert plugin["loading_mechanism"] == {"type": "IFRAME", "module_path": "/data/plugin/gan/index.js"}
    for js in ("index.js", "chart.js"):
        with urllib.request.urlopen(f"{tb.url}/data/plugin/gan/{js}", timeout=20) as r:
            assert r.headers["Content-Type"].startswith("text/javascript") and b"export" in r.read()
    listed = poll(lambda: {x["run"]: x for x in get(tb, "/data/plugin/gan/runs")["runs"]
                           if x["primary"] or x["experiment"] == "grids30"})
    a = listed[f"tiny/{runs[0].name}"]
    assert (a["experiment"], a["status"], a["sweep"], a["primary"]) == ("tiny", "completed", None, tag)
    assert a["label"] == view.metric_label(tag) and "images/fake" in a["grids"]
    assert listed[f"grids30/{run30.name}"]["primary"] is None  # metrics off: no curve, no label
    d = get(tb, "/data/plugin/gan/run", run=f"tiny/{runs[0].name}")
    ea = events(runs[0])
    assert [s for s, _ in d["grids"]["images/fake"]] == [e.step for e in ea.Images("images/fake")] == [3, 6]
    assert d["metric"]["tag"] == tag and [p[0] for p in d["metric"]["points"]] == [3, 6]
    assert [p[1] for p in d["metric"]["points"]] == pytest.approx([e.value for e in ea.Scalars(tag)], rel=1e-6)
    key = d["grids"]["images/fake"][-1][1]
    with urllib.request.urlopen(f"{tb.url}/data/plugin/gan/blob?key={urllib.parse.quote(key)}", timeout=20) as r:
        png = r.read()
    assert png == ea.Images("images/fake")[-1].encoded_image_string  # the very bytes the run logged


class Dom(html.parser.HTMLParser):
    """The elements of a DOM dump: (tag, attrs, text inside it) in document order."""

    def __init__(self, text):
        super().__init__()
        self.out, self.open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.out.append([tag, dict(attrs), ""])
        if tag not in ("img", "input", "link", "base", "br", "meta"):
            self.open.append(self.out[-1])

    def handle_endtag(self, tag):
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for e in self.open:
            e[2] += data

    def all(self, tag, cls=None):
        return [e for e in self.out if e[0] == tag and (cls is None or cls in e[1].get("class", "").split())]


@needs_chromium
def test_the_gan_tab_in_a_browser_shows_each_chosen_run_at_the_chosen_step(served, tmp_path):
    tb, runs, run30, tag = served
    chosen = [f"tiny/{d.name}" for d in runs]
    q = urllib.parse.urlencode({"name": "gan", "runs": ",".join(chosen), "step": 3})
    dom = Dom(board.headless(tmp_path, ["--dump-dom"], f"{tb.url}/data/plugin_entry.html?{q}"))
    listed = {e[1]["data-run"] for e in dom.all("li", "run")}
    assert listed == set(chosen) | {f"grids30/{run30.name}"}, listed
    cards = dom.all("figure", "card")
    assert [c[1]["data-run"] for c in cards] == chosen and [c[1]["data-step"] for c in cards] == ["3", "3"]
    imgs = dom.all("img")
    assert len(imgs) == 2 and all(i[1].get("data-loaded") == "274x274" for i in imgs), imgs  # decoded 8×8 grids
    for c, d in zip(cards, runs):
        fid = next(e.value for e in events(d).Scalars(tag) if e.step == 3)
        assert "step 3" in c[2] and f"{view.metric_label(tag)} {fid:.4g} @ step 3" in c[2], c[2]
    assert {p[1]["data-run"] for p in dom.all("path") if "data-run" in p[1]} == set(chosen)  # their curves


def test_nearest_step_and_the_metric_label():
    assert [view.nearest([3, 6, 9], s) for s in (0, 3, 4, 5, 7, 8, 100)] == [3, 3, 3, 6, 6, 9, 9]
    assert view.nearest([10, 20], 15) == 10 and view.nearest([], 5) is None  # a tie goes to the earlier
    assert view.metric_label("metrics/fid_c10") == "FID c10" and view.metric_label("metrics/fid") == "FID Inception"
    assert view.point_label("metrics/fid_c10", [(500, 12.345), (1000, 9.0)], 620) == "FID c10 12.35 @ step 500"
    assert view.point_label(None, [], 5) == "no metric logged"


def one_line_error(r, *needles):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_compare_grids_writes_one_png_of_the_runs_at_one_step(two_runs, tmp_path):
    """`gan compare A B --grids --step 4`: each run's grid nearest step 4 (3: its grids are at 3 and 6), the very
    pixels it logged, side by side, labelled; written into A's folder, never over a file."""
    import numpy as np
    from typer.testing import CliRunner

    from gan.cli import app
    from gan.dashboard import sheet

    logs, dirs, tag = two_runs
    runs = [copy_run(d, tmp_path / "logs" / "tiny" / d.name) for d in dirs]  # the PNG goes into a run folder
    cli = lambda *a: CliRunner().invoke(app, [str(x) for x in a])  # noqa: E731
    paths = []
    for _ in range(2):
        r = cli("compare", *runs, "--grids", "--step", 4)
        assert r.exit_code == 0, r.output
        paths.append(r.stdout.strip().splitlines()[-1])
    assert paths == [str(runs[0] / "grids-step4.png"), str(runs[0] / "grids-step4-1.png")]  # never overwritten
    png = Image.open(paths[0]).convert("RGB")
    img, step, corners = sheet.sheet(runs, 4)
    assert step == 4 and png.size == img.size and png.size[0] >= 2 * 274 and np.array_equal(np.asarray(png),
                                                                                          np.asarray(img))
    for d, (x, y) in zip(runs, corners):
        logged = Image.open(io.BytesIO(next(e for e in events(d).Images("images/fake") if e.step == 3)
                                       .encoded_image_string)).convert("RGB")
        assert np.array_equal(np.asarray(png.crop((x, y, x + logged.width, y + logged.height))), np.asarray(logged))
    r = cli("compare", *runs, "--grids", "--out", tmp_path / "fig.png")  # default step: the latest all reached
    assert r.exit_code == 0 and r.stdout.strip().endswith("fig.png") and sheet.sheet(runs)[1] == 6, r.output
    one_line_error(cli("compare", *runs, "--step", 4), "--step and --per-class go with --grids")
    one_line_error(cli("compare", *runs, "--grids", "--metric", "kid"), "drop --metric")
    one_line_error(cli("compare", *runs, "--grids", "--step", -1), "--step -1")
    one_line_error(cli("compare", *runs, "--grids", "--per-class"), "has no images/fake_per_class", "conditional")
    assert sorted(p.name for p in runs[0].glob("*.png")) == ["grids-step4-1.png", "grids-step4.png"]


def test_tensorboard_opens_on_the_primary_metric(served):
    """Time Series opens its first two tag groups: FID/ and images/. The Custom Scalars layout has no chart without
    data (no precision/recall with metrics.prc off, no eval chart before `gan eval`, no flat epoch or lr chart).
    The HParams table's five shown columns are the ones that tell GAN runs apart, then the primary FID."""
    import json

    from gan import writer

    tb, runs, _, tag = served
    ea = events(runs[0])
    tags = {k: set(v) for k, v in ea.Tags().items() if isinstance(v, list)}
    logged = tags["scalars"] | tags["images"] | tags["histograms"]
    groups = sorted({t.split("/")[0] for t in logged})  # TensorBoard's order for these names: capitals first
    assert groups[:2] == ["FID", "images"], groups
    head = writer.HEADLINE + (tag[len("metrics/fid_"):] or "inception")
    assert [e.value for e in ea.Scalars(head)] == [e.value for e in ea.Scalars(tag)]  # the same numbers
    assert not {"epoch", "progress/epoch", "D/real"} & tags["scalars"]  # 6 steps of 16: no pass over 192 images
    layout = get(tb, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]}
    for title, regexes in charts.items():  # every chart has data
        assert any(re.search(r, t) for r in regexes for t in tags["scalars"]), (title, regexes)
    assert not [t for t in charts if "precision" in t or "eval" in t or "learning" in t], list(charts)
    req = urllib.request.Request(tb.url + "/data/plugin/hparams/experiment", method="POST",
                                 data=b'{"experimentName": ""}', headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        exp = json.loads(r.read())
    assert [h["name"] for h in exp["hparamInfos"][:5]] == sorted(writer.FIRST_COLUMNS)  # the five shown
    sfx = tag[len("metrics/fid"):]
    assert [m["name"]["tag"] for m in exp["metricInfos"]][:2] == [f"summary/best_fid{sfx}", f"summary/final_fid{sfx}"]
    assert exp["metricInfos"][0]["displayName"] == f"best {view.metric_label(tag)}"


def test_gan_eval_brings_its_chart(two_runs):
    """The layout a run writes at its start has no eval chart; `gan eval` writes it again with one chart per number
    it logged (a published protocol's apart)."""
    from gan import evaluate

    logs, dirs, tag = two_runs
    records = [{"values": {tag: 3.0, "metrics/kid_c10": float("nan")}},
               {"values": {"metrics/fid": 4.0}, "published_protocol": {"name": "published"}}]
    lay = evaluate.eval_layout(dirs[0], records)
    assert list(lay)[-2:] == ["eval (gan eval)", "training"]
    assert lay["eval (gan eval)"] == {"published/fid": ["Multiline", ["^eval/published/fid$"]],
                                      tag[len("metrics/"):]: ["Multiline", [f"^eval/{tag[len('metrics/'):]}$"]]}
    assert "eval (gan eval)" not in evaluate.eval_layout(dirs[0], [])

"""`gan eval` and `gan sample`: metrics of a checkpoint appended to metrics.json (a damaged one moved aside, its
bytes kept) and TensorBoard; the reference set checked against the run's; samples of a conditional run by
class; never an overwritten file; run folders written before these changes still work."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan import config, evaluate, fileio
from gan.errors import GanError
from gan.engine import Trainer
from tests.conftest import copy_run, edit_run_json, events, tiny_toml
from tests.test_runs import cli, one_line_error


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Feature extraction on a busy 2-core machine: one intra-op thread is faster than conftest's two."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory, tiny_npz):
    """A conditional dcgan (tiny npz has labels 0..9), 2 steps, no metrics."""
    root = tmp_path_factory.mktemp("cond")
    cfg = config.load(str(tiny_toml(root / "c.toml", tiny_npz, experiment={"name": "cond"},
                                    model={"conditional": True}, train={"steps": 2})))
    r = Trainer(cfg, device="cpu", logs=root / "logs", quiet=True).run()
    assert r.status == "completed"
    return r.run_dir


def test_eval_appends_metrics_json_and_tensorboard(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    d = copy_run(dirs[1], tmp_path / "logs" / "tiny" / "evaluated")  # the shared runs stay as trained
    r = cli("eval", d, "--samples", "4", "--metrics", "fid,kid", "--device", "cpu", "--checkpoint", "best")
    assert r.exit_code == 0, r.output
    rec = json.loads((d / "metrics.json").read_text())[-1]
    assert rec["checkpoint"] == "best" and rec["samples"] == 4 and rec["step"] in (3, 6)
    assert tag in rec["values"] and all(math.isfinite(v) for v in rec["values"].values())
    assert rec["protocol"][0]["num_samples"] == 4
    assert "reference_differs" not in rec and "reference images differ" not in r.output  # the run's own data
    ev = events(d).Scalars("eval/" + tag.split("/")[1])
    assert ev[-1].step == rec["step"] and ev[-1].value == pytest.approx(rec["values"][tag], rel=1e-6)
    assert not [p for p in d.iterdir() if p.is_dir() and p.name != "checkpoints"]  # no stray subfolder run


def test_damaged_metrics_json_is_moved_aside_with_its_bytes(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    good = json.dumps([{"step": 3, "values": {tag: 1.0}}], indent=2).encode()
    cases = {"truncated": good[: len(good) // 2], "garbage": b"\x00\xff", "object": b'{"step": 3}'}
    for name, data in cases.items():
        run = copy_run(dirs[0], tmp_path / name)
        (run / "metrics.json").write_bytes(data)
        r = cli("eval", run, "--samples", "4", "--metrics", "fid", "--device", "cpu")
        assert r.exit_code == 0, r.output
        aside = list(run.glob("metrics.json.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == data, name  # every byte kept
        assert "was damaged" in r.output and aside[0].name in r.output.replace("\n", "")
        recs = json.loads((run / "metrics.json").read_text())
        assert len(recs) == 1 and tag in recs[0]["values"]


def test_eval_says_when_the_reference_images_differ(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    run = copy_run(dirs[0], tmp_path / "run")
    recorded = json.loads((run / "run.json").read_text())["metrics_protocol"][0]["reference_sha256"]
    edit_run_json(run, lambda d: [p.update(reference_sha256="0" * 64) for p in d["metrics_protocol"]])
    r = cli("eval", run, "--samples", "4", "--metrics", "fid", "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "reference images differ" in out and "different FID protocol" in out and "0" * 16 in out
    rec = json.loads((run / "metrics.json").read_text())[-1]
    assert rec["reference_differs"] == {"run": ["0" * 64], "now": recorded}
    assert rec["protocol"][0]["reference_sha256"] == recorded


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
    assert not [p for p in tmp_path.rglob(".*tmp*")]  # no temp file left behind


def test_sample_of_one_class(cond_run, two_runs, tmp_path):
    g = evaluate.load_generator(cond_run, "last", torch.device("cpu"))
    assert g.num_classes == 10 and g.class_names[3] == "cat"
    r = cli("sample", cond_run, "--class", "cat", "--seed", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    cat = cond_run / f"samples-last-step{g.step}-seed1-n64-class3-cat.png"
    assert r.stdout.strip() == str(cat) and Image.open(cat).size == (8 * 34 + 2, 8 * 34 + 2)
    for spec, name in (("3", "same.png"), ("CAT", "same2.png"), ("airplane", "plane.png")):
        assert cli("sample", cond_run, "--class", spec, "--seed", "1", "--out", tmp_path / name).exit_code == 0
    assert (tmp_path / "same.png").read_bytes() == cat.read_bytes() == (tmp_path / "same2.png").read_bytes()
    assert not (np.asarray(Image.open(tmp_path / "plane.png")) == np.asarray(Image.open(cat))).all()
    # the same latents drawn by hand: the grid is G(z, class 3) exactly
    z = torch.randn(64, g.cfg.model.z_dim, generator=torch.Generator().manual_seed(1))
    from torchvision.utils import make_grid

    from gan.data import to_uint8

    with torch.inference_mode():
        want = make_grid(to_uint8(g.G(z, torch.full((64,), 3))), nrow=8).permute(1, 2, 0).numpy()
    assert (np.asarray(Image.open(cat).convert("RGB")) == want).all()
    assert cli("sample", cond_run, "--n", "10", "--out", tmp_path / "all.png").exit_code == 0  # classes in turn
    for bad in ("unicorn", "10", "-1"):
        one_line_error(cli("sample", cond_run, "--class", bad, "--out", tmp_path / "x.png"), repr(bad),
                       "no such class", "3 cat")
    logs, dirs, tag = two_runs
    one_line_error(cli("sample", dirs[0], "--class", "cat", "--out", tmp_path / "x.png"), "not conditional")
    assert not (tmp_path / "x.png").exists()


def test_run_folders_written_before_still_evaluate_and_sample(two_runs, tmp_path):
    """run.json without protocol suffixes, checkpoints without num_classes: as older versions wrote them."""
    logs, dirs, tag = two_runs
    run = copy_run(dirs[0], tmp_path / "old")
    edit_run_json(run, lambda d: [p.pop("suffix") for p in d["metrics_protocol"]])
    for p in (run / "checkpoints").glob("*.pt*"):
        state = torch.load(p, weights_only=True)
        state.pop("num_classes")
        state.pop(fileio.CHECKSUM)  # older versions wrote no checksum either
        torch.save(state, p)
    assert cli("sample", run, "--n", "4", "--out", tmp_path / "old.png", "--device", "cpu").exit_code == 0
    r = cli("eval", run, "--samples", "4", "--metrics", "fid", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rec = json.loads((run / "metrics.json").read_text())[-1]
    assert "reference_differs" not in rec and tag in rec["values"]
    edit_run_json(run, lambda d: [p.update(reference_sha256="f" * 64) for p in d["metrics_protocol"]])
    assert evaluate.reference_check(run, rec["protocol"]) == {"run": ["f" * 64],
                                                              "now": rec["protocol"][0]["reference_sha256"]}


def test_eval_and_sample_errors(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    from tests.test_compare import fake_run

    fid_only = fake_run(tmp_path, "fidonly", {tag: 3.0})
    one_line_error(cli("sample", fid_only), "config.toml")
    one_line_error(cli("eval", tmp_path / "nothing"), "no run")
    one_line_error(cli("eval", dirs[0], "--metrics", "fid,bogus"), "--metrics")
    one_line_error(cli("sample", dirs[0], "--checkpoint", "middle"), "--checkpoint")


def test_exclusive_write_never_replaces_a_file(tmp_path):
    """What `gan sample` relies on when a file appears between its check and its write."""

    p = tmp_path / "taken.png"
    p.write_bytes(b"theirs")
    with pytest.raises(GanError, match="already exists: not overwriting it"):
        fileio.write_atomic(p, b"mine", exclusive=True)
    assert p.read_bytes() == b"theirs" and sorted(x.name for x in tmp_path.iterdir()) == ["taken.png"]
    fileio.write_atomic(tmp_path / "new.png", b"mine", exclusive=True)
    assert (tmp_path / "new.png").read_bytes() == b"mine"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["new.png", "taken.png"]

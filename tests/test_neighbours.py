"""`gan neighbours` and metrics.neighbours: the copy rate separates a generator that returns training images (a
stand-in: training images plus small noise) from one that makes new images (fresh images of the same process) and
from the held-out images themselves; the nearest-neighbour search is exact; the PNG, metrics.json record and
TensorBoard image/scalar read back; nothing is overwritten; bad input is one line and exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gan import config, neighbours as nb, runlock
from gan.engine import Trainer
from gan.metrics import copying
from tests.conftest import copy_run, events, make_images, tiny_toml
from tests.test_runs import cli, one_line_error

N_TRAIN, N_HELD = 192, 300


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # feature extraction on a busy 2-core machine
    yield
    torch.set_num_threads(old)


class Returns(torch.nn.Module):
    """A stand-in generator: the image bank's image picked by the latent, plus Gaussian noise of `noise` (in [-1, 1]
    units). With the training images as its bank it copies; with fresh images of the same process it makes new ones."""

    def __init__(self, bank_u8: np.ndarray, noise: float = 0.0):
        super().__init__()
        self.bank = torch.from_numpy(bank_u8).permute(0, 3, 1, 2).float() / 127.5 - 1
        self.noise = noise

    def forward(self, z, y=None):
        i = (z[:, 0].abs() * 1e4).long() % len(self.bank)
        return (self.bank[i] + self.noise * torch.randn_like(self.bank[i])).clamp(-1, 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """npz shards as CIFAR-10's lie: train-00.npz and, beside it, test-00.npz (images of the same process)."""
    d = tmp_path_factory.mktemp("shards")
    np.savez(d / "train-00.npz", images=make_images(N_TRAIN, seed=0), labels=np.arange(N_TRAIN) % 10)
    np.savez(d / "test-00.npz", images=make_images(N_HELD, seed=5), labels=np.arange(N_HELD) % 10)
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory, folder):
    root = tmp_path_factory.mktemp("nbrun")
    cfg = config.load(str(tiny_toml(root / "t.toml", folder, experiment={"name": "nb"})))
    r = Trainer(cfg, device="cpu", logs=root / "logs", quiet=True).run()
    assert r.status == "completed"
    return r.run_dir


def rate_of(G, cfg, train, held, n=64):
    rep = nb.measure(G, cfg, 0, train, held, "test", n, 0, torch.device("cpu"), 0, log=lambda *a, **k: None)
    return rep.copies


def test_the_copy_rate_separates_copying_from_new_images(run):
    torch.manual_seed(0)
    cfg = config.load(str(run / "config.toml"))
    train, held, what, _ = nb.data_for(cfg)
    assert "test-*.npz" in what and len(held) == N_HELD and len(train) == N_TRAIN
    copier = rate_of(Returns(train, noise=0.01), cfg, train, held)
    new = rate_of(Returns(make_images(500, seed=9)), cfg, train, held)
    # the held-out images themselves: half of them measured against the other half's threshold
    cal, rest = held[::2], held[1::2]
    itself = rate_of(Returns(rest), cfg, train, cal, n=150)
    assert copier.tag == "neighbours/copy_rate_c10" and copier.k == N_HELD // 100
    assert copier.value >= 0.95 and copier.interval[0] > 0.85
    assert new.value <= 0.08 and itself.value <= 0.08
    assert copier.interval[0] > max(new.interval[1], itself.interval[1])  # separated beyond their 95 % intervals
    feats, pixels = copier.spaces
    assert (feats.name, pixels.name) == ("c10", "pixels") and pixels.distances[:, 0].max() < pixels.tau
    # calibrated: fewer than 1 % of the held-out images lie below a threshold, in either space
    assert copier.heldout_below < copier.k and copier.fresh <= copier.k / (N_HELD + 1)
    assert int(((feats.heldout < feats.tau) | (pixels.heldout < pixels.tau)).sum()) == copier.heldout_below


def test_joint_thresholds_reduce_to_one_space_and_count_either():
    """One space: τ is the k-th smallest held-out distance. Two: the largest common rank with fewer than k held-out
    images below either threshold; a sample counts when it lies below either."""
    held = torch.arange(1, 1001).float()[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    one = copying.Space("a", torch.tensor([[9.5], [10.0]]), torch.zeros(2, 1, dtype=torch.long), held)
    c = copying.Copies([one], "neighbours/copy_rate_x")
    assert (c.k, one.tau, c.heldout_below, c.copies) == (10, 10.0, 9, 1)  # 9 of 1,000 below 10; 9.5 counts
    assert c.fresh == pytest.approx(10 / 1001)
    other = copying.Space("b", torch.tensor([[1e9], [0.5]]), torch.zeros(2, 1, dtype=torch.long), held.flip(0))
    c = copying.Copies([copying.Space("a", torch.tensor([[2.5], [10.0]]), one.indices, held), other],
                       "neighbours/copy_rate_x")
    assert 5 <= c.spaces[0].tau == c.spaces[1].tau < 10  # a common rank j: at most 2 (j - 1) below either
    assert c.heldout_below < 10 and c.copied.tolist() == [True, True]  # each sample below in one space
    assert int(((held < c.spaces[0].tau) | (held.flip(0) < c.spaces[1].tau)).sum()) == c.heldout_below
    assert c.alone() == "below the threshold by a 1/2, by b 1/2"


def test_nearest_is_exact_batched_and_finds_an_image_itself():
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g)
    q = torch.cat([ref[[7, 31]], torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)])
    d, i = copying.nearest(q, ref, k=3, chunk=16)  # chunks smaller than the reference: the merge is exercised
    full = torch.cdist(q.reshape(7, -1).double(), ref.reshape(50, -1).double())
    want_d, want_i = full.topk(3, largest=False)
    assert torch.equal(i, want_i) and torch.allclose(d.double(), want_d, atol=1e-3)
    assert d[0, 0] == 0 and d[1, 0] == 0 and i[0, 0] == 7 and i[1, 0] == 31


def test_wilson_interval():
    lo, hi = copying.wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)  # Wilson's interval for 0/10 (Newcombe 1998: 0-0.2775)
    lo, hi = copying.wilson(64, 64)
    assert hi == 1 and lo == pytest.approx(0.9434, abs=1e-4)


def test_neighbours_writes_png_record_and_tensorboard_and_never_overwrites(run, tmp_path):
    r = cli("neighbours", run, "--n", "20", "--show", "6")
    assert r.exit_code == 0, r.output
    png = run / "neighbours-last-step6-seed0-n20.png"
    assert str(png) in r.output and "copy_rate_c10" in r.output and "test-*.npz" in r.output
    img = np.asarray(Image.open(png))
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 32 + 40  # header + one row of 6 samples
    rec = json.loads((run / "metrics.json").read_text())[-1]
    assert rec["kind"] == "neighbours" and rec["step"] == 6 and rec["samples"] == 20 and rec["png"] == str(png)
    assert set(rec["values"]) == {"neighbours/copy_rate_c10"} and set(rec["below_alone"]) == {"c10", "pixels"}
    assert rec["copies"] == round(rec["values"]["neighbours/copy_rate_c10"] * 20)
    assert set(rec["protocol"]["thresholds"]) == {"c10", "pixels"}
    p = rec["protocol"]
    assert p["extractor"] == "c10" and p["training_images"] == N_TRAIN and p["heldout_images"] == N_HELD
    assert len(p["training_sha256"]) == 64 and len(p["weights_sha256"]) == 64
    ea = events(run)
    assert [e.step for e in ea.Images(nb.TAG)] == [6]
    assert [(e.step, e.value) for e in ea.Scalars("neighbours/copy_rate_c10")] == \
        [(6, pytest.approx(rec["values"]["neighbours/copy_rate_c10"]))]
    before = png.read_bytes()
    r2 = cli("neighbours", run, "--n", "20", "--show", "6")
    assert r2.exit_code == 0 and png.read_bytes() == before  # the same name is taken: the next free one
    assert (run / "neighbours-last-step6-seed0-n20-1.png").is_file()
    assert len(json.loads((run / "metrics.json").read_text())) == 2
    out = tmp_path / "mine.png"
    assert cli("neighbours", run, "--n", "4", "--out", out).exit_code == 0 and out.is_file()


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, tiny_npz):
    bare = copy_run(run, tmp_path / "logs" / "nb" / "bare")
    for f in (bare / "checkpoints").iterdir():
        f.unlink()
    whole = tmp_path / "whole"  # trained on every image of one npz file: nothing held out, no test split beside it
    cfg = config.load(str(tiny_toml(tmp_path / "w.toml", tiny_npz, experiment={"name": "whole"},
                                    train={"steps": 2})))
    whole = Trainer(cfg, device="cpu", logs=whole, quiet=True).run().run_dir
    few = tmp_path / "few.npz"
    np.savez(few, images=make_images(50, seed=3))
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"theirs")
    cases = [((bare,), "no checkpoints/last.pt"), ((run, "--n", "0"), "--n 0"), ((run, "--n", "50001"), "--n 50001"),
             ((run, "--show", "0"), "--show 0"), ((run, "--checkpoint", "middle"), "--checkpoint"),
             ((run, "--extractor", "clip"), "--extractor"), ((run, "--out", taken), "not overwriting"),
             ((whole,), "no held-out images"), ((run, "--heldout", few), "at least 100"),
             ((run, "--heldout", tmp_path / "none.npz"), "--heldout: no .npz file"),
             ((tmp_path / "nothing",), "no run")]
    listing = sorted(p.name for p in run.iterdir())
    for args, needle in cases:
        one_line_error(cli("neighbours", *args), needle)
    assert taken.read_bytes() == b"theirs" and sorted(p.name for p in run.iterdir()) == listing
    lk = runlock.acquire(run)  # a live writer (a training process) holds the run
    try:
        one_line_error(cli("neighbours", run), "being written by another process")
    finally:
        lk.release()


def test_metrics_neighbours_runs_at_the_end_of_a_run(tmp_path, tiny_npz):
    """The end-of-run option, on images data.limit left out of training; a run without held-out images still
    completes and says why it skipped."""
    cfg = config.load(str(tiny_toml(tmp_path / "e.toml", tiny_npz, experiment={"name": "end"}, data={"limit": 64},
                                    metrics={"neighbours": 8})))
    lines = []
    t = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True)
    t.log = lambda m, *a, **k: lines.append(str(m))
    r = t.run()
    assert r.status == "completed" and r.exit_code == 0
    assert (r.run_dir / "neighbours-end-step6-seed0-n8.png").is_file()
    rec = json.loads((r.run_dir / "metrics.json").read_text())[-1]
    assert rec["checkpoint"] == "end" and "never trained on" in rec["protocol"]["heldout"]
    assert rec["protocol"]["training_images"] == 64 and rec["protocol"]["heldout_images"] == 128
    assert [e.step for e in events(r.run_dir).Images(nb.TAG)] == [6]
    assert any(ln.startswith("neighbours: copy_rate_c10") for ln in lines)
    cfg = config.load(str(tiny_toml(tmp_path / "f.toml", tiny_npz, experiment={"name": "all"}, train={"steps": 2},
                                    metrics={"neighbours": 8})))
    t = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True)
    t.log = lambda m, *a, **k: lines.append(str(m))
    r = t.run()
    assert r.status == "completed" and not list(r.run_dir.glob("neighbours-*.png"))
    assert any("metrics.neighbours: skipped: no held-out images" in ln for ln in lines)
    assert any(k == "metrics.neighbours" for k, _, _ in config.keys_doc())

"""The levers of the best runs: DiffAugment, class conditioning with its class metrics, precision/recall, bf16 where
the CPU has it, and time-limited runs; each through the one training loop."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan import augment, config
from gan.engine import Trainer
from gan.errors import GanError
from tests.conftest import SHARED, events, gan_cli, needs_shared, tiny_toml


def batch(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ---- DiffAugment -------------------------------------------------------------------------------------------------

def test_off_is_the_identity():
    x = batch()
    aug = augment.DiffAugment("")
    assert not aug and aug(x) is x


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shape_device_and_per_sample_randomness(policy):
    torch.manual_seed(0)
    x = batch(8).repeat(1, 1, 1, 1)
    x[:] = x[0]  # eight copies of one image: per-sample draws must make them differ
    y = augment.DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert len({tuple(v.flatten()[:200].tolist()) for v in y}) > 1


def test_color_on_gray_images_is_a_brightness_shift_of_at_most_half():
    torch.manual_seed(1)
    x = torch.full((16, 3, 8, 8), 0.25)  # a constant gray image: saturation and contrast leave it alone
    y = augment.color(x)
    shift = y - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)  # one constant per image
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.std() > 0


def test_translation_moves_pixels_by_at_most_an_eighth_with_zero_padding():
    torch.manual_seed(2)
    h = 32
    x = (torch.arange(h * h, dtype=torch.float32) + 1).view(1, 1, h, h).repeat(12, 3, 1, 1)  # unique positive ids
    y = augment.translation(x)
    for img, out in zip(x, y):
        vals = out[0]
        inside = vals > 0
        src = (vals[inside] - 1).long()
        src_y, src_x = src // h, src % h
        ys, xs = torch.nonzero(inside, as_tuple=True)
        dy, dx = (ys - src_y).unique(), (xs - src_x).unique()
        assert len(dy) == 1 and len(dx) == 1, "one shift per image"
        assert abs(dy.item()) <= h // 8 and abs(dx.item()) <= h // 8
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # channels move together
    assert y.min() >= 0 and y.max() <= h * h  # only input pixels or the zero border


def test_cutout_zeroes_exactly_a_16_square_at_32_clipped_at_the_border():
    """DiffAugment's cutout (Zhao et al.'s code): a hole of half the side, 16×16 at 32×32, centred at c ∈ 0..32
    in each axis, so rows max(0, c-8) .. min(32, c+8) - 1: every such extent appears over many draws, no other."""
    torch.manual_seed(3)
    x = torch.ones(2000, 3, 32, 32)
    y = augment.cutout(x)
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])  # one hole through every channel
    want = {(max(0, c - 8), min(32, c + 8) - max(0, c - 8)) for c in range(33)}  # (first row, height)
    seen_r, seen_c = set(), set()
    for out in y:
        zero = out[0] == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        r = (rows.min().item(), len(rows))
        c = (cols.min().item(), len(cols))
        assert r in want and c in want, (r, c)
        assert zero.sum() == r[1] * c[1] and zero[r[0]:r[0] + r[1], c[0]:c[0] + c[1]].all()  # one filled rectangle
        seen_r.add(r)
        seen_c.add(c)
    assert seen_r == want and seen_c == want  # (16 high away from the border; 8..15 clipped at it)


def test_color_draws_the_papers_ranges():
    """Brightness + U(-0.5, 0.5), saturation × U(0, 2), contrast × U(0.5, 1.5), as in DiffAugment's code. Each
    draw is read back exactly from an image a + s(h, w) + d(c) (s, d of zero mean): after `color`, the image mean
    is a + brightness, the spatial part s × contrast, the channel part d × saturation × contrast."""
    torch.manual_seed(4)
    n = 4000
    sp = torch.tensor([-0.2, 0.2]).repeat_interleave(4).view(1, 1, 8, 1).expand(1, 1, 8, 8)  # top/bottom halves
    d = torch.tensor([0.1, -0.05, -0.05]).view(1, 3, 1, 1)
    x = (0.1 + sp + d).expand(n, 3, 8, 8).contiguous()
    y = augment.color(x)
    mean = y.mean((1, 2, 3))
    contrast = (y.mean(1) - mean.view(n, 1, 1))[:, 0, 0] / sp[0, 0, 0, 0]
    saturation = (y - y.mean(1, keepdim=True))[:, 0, 0, 0] / (d[0, 0, 0, 0] * contrast)
    draws = {"brightness": (mean - 0.1, -0.5, 0.5), "saturation": (saturation, 0.0, 2.0),
             "contrast": (contrast, 0.5, 1.5)}
    for name, (v, lo, hi) in draws.items():
        span = hi - lo
        assert v.min() >= lo - 1e-4 and v.max() <= hi + 1e-4, (name, v.min(), v.max())
        assert v.min() < lo + 0.01 * span and v.max() > hi - 0.01 * span, name  # the whole range is drawn
        q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75]))
        assert torch.allclose(q, lo + span * torch.tensor([0.25, 0.5, 0.75]), atol=0.03 * span), (name, q)  # uniform


def test_gradients_reach_g_through_the_augmentation():
    from gan.config import Model
    from gan.models import build

    torch.manual_seed(0)
    G, D = build(Model(arch="dcgan", z_dim=8, g_channels=8, d_channels=8), 32)
    aug = augment.DiffAugment("color,translation,cutout")
    loss = -D(aug(G(torch.randn(4, 8)))).mean()
    loss.backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_unknown_op_is_one_line(tmp_path, tiny_npz):
    with pytest.raises(GanError, match="train.diffaug = 'color,zoom'.*unknown DiffAugment op"):
        config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, train={"diffaug": "color,zoom"})))


LOSSES = {"bce": {"name": "bce"}, "hinge": {"name": "hinge"}, "wgan_gp": {"name": "wgan", "gp_weight": 10.0},
          "hinge_r1": {"name": "hinge", "r1_weight": 1.0}}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_with_diffaugment(loss, tmp_path, tiny_npz):
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, loss=LOSSES[loss],
                                    train={"steps": 3, "log_every": 1, "diffaug": "color,translation,cutout"})))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "completed" and all(math.isfinite(v) for _, a, b in r.losses for v in (a, b))
    ea = events(r.run_dir)
    img = Image.open(io.BytesIO(ea.Images("images/real_augmented")[0].encoded_image_string))
    real = Image.open(io.BytesIO(ea.Images("images/real")[0].encoded_image_string))
    assert img.size == real.size and np.asarray(img).tobytes() != np.asarray(real).tobytes()  # what D sees


# ---- class conditioning ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory, tiny_npz):
    """A tiny conditional DCGAN with c10 metrics (class consistency and coverage) at steps 3 and 6."""
    tmp = tmp_path_factory.mktemp("cond")
    cfg = config.load(str(tiny_toml(tmp / "c.toml", tiny_npz, model={"conditional": True},
                                    metrics={"enabled": True, "every": 3, "num_samples": 20, "ref_samples": 40,
                                             "batch_size": 20, "extractors": ["c10"], "prc": True})))
    tr = Trainer(cfg, device="cpu", logs=tmp / "logs", quiet=True)
    return tr, tr.run()


def test_conditional_run_logs_per_class_grid_class_metrics_and_prc(conditional_run):
    tr, r = conditional_run
    assert r.status == "completed" and tr.num_classes == 10
    ea = events(r.run_dir)
    tags = set(ea.Tags()["scalars"])
    for t in ("metrics/class_acc_c10", "metrics/class_entropy_c10", "metrics/precision_c10", "metrics/recall_c10",
              "metrics/fid_c10", "progress/train_seconds", "progress/images_seen"):
        assert t in tags, t
        assert [e.step for e in ea.Scalars(t)] == [3, 6], t
    # what class consistency measures is checked on real CIFAR-10 images below (a 6-step G's value means nothing)
    assert [e.value for e in ea.Scalars("progress/images_seen")] == [3 * 16, 6 * 16]
    grid = Image.open(io.BytesIO(ea.Images("images/fake_per_class")[-1].encoded_image_string))
    assert grid.size[1] == 10 * 34 + 2 and grid.size[0] > 8 * 34 + 2  # ten rows, a name column on the left
    assert "metrics/classes_c10" in ea.Tags()["histograms"]  # beside the class metrics
    info = json.loads((r.run_dir / "run.json").read_text())
    proto = info["metrics_protocol"][0]
    assert proto["classes_sampled"] and 0 < proto["class_acc_real"] <= 1 and 0 < proto["class_entropy_real"] <= 1


COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                    [255, 255, 255], [0, 0, 0], [128, 128, 128], [255, 128, 0]])


@pytest.fixture
def one_thread():
    """One intra-op thread: the same training on every machine, and faster on a busy one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_conditional_g_makes_the_class_it_is_asked_for(tmp_path, one_thread):
    """Ten classes, each one solid colour (+ noise): after 400 steps, a sample asked for class k has k's colour as
    its nearest class colour far more often than chance (0.1); an unconditional mix would not."""
    rng = np.random.default_rng(0)
    y = np.arange(320) % 10
    img = (COLOURS[y][:, None, None, :] + rng.normal(0, 8, (320, 32, 32, 3))).clip(0, 255).astype(np.uint8)
    np.savez(tmp_path / "colours.npz", images=img, labels=y.astype(np.uint8))
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tmp_path / "colours.npz", model={"conditional": True},
                                    data={"hflip": False}, optim={"g_lr": 1e-3, "d_lr": 1e-3},
                                    train={"steps": 400, "log_every": 100, "image_every": 400,
                                           "checkpoint_every": 400})))
    tr = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True)
    assert tr.run().status == "completed" and tr.num_classes == 10
    G = tr.nets.G_sample.eval()
    torch.manual_seed(1)
    asked = torch.arange(200) % 10
    with torch.no_grad():
        rgb = ((G(torch.randn(200, cfg.model.z_dim), asked) + 1) * 127.5).mean((2, 3)).numpy()
    nearest = np.linalg.norm(rgb[:, None] - COLOURS[None], axis=2).argmin(1)
    assert (nearest == asked.numpy()).mean() >= 0.5, nearest.reshape(-1, 10)[0]
    with pytest.raises(ValueError, match="needs class labels"):
        G(torch.randn(4, cfg.model.z_dim))


@needs_shared
def test_class_consistency_is_high_for_correct_labels_and_chance_for_shuffled(tmp_path, one_thread):
    """Class consistency as a run computes it (c10's class ÷ the class asked for), on real CIFAR-10 test images
    standing in for samples: their true labels agree with c10 (its card: 92 %), shuffled labels at chance."""
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tmp_path / "unused.npz", model={"conditional": True},
                                    data={"dataset": "cifar10", "root": str(SHARED), "limit": 200},
                                    train={"steps": 1},
                                    metrics={"enabled": True, "every": 0, "num_samples": 10, "ref_samples": 100,
                                             "batch_size": 100, "extractors": ["c10"], "kid": False,
                                             "is": False})))
    tr = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True)
    assert tr.run().status == "completed"
    test = np.load(SHARED / "test-00.npz")
    u8 = torch.from_numpy(test["images"][:400]).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(test["labels"][:400].astype(np.int64))
    right = tr.evaluator.score_images(u8, labels).values["metrics/class_acc_c10"]
    wrong = tr.evaluator.score_images(u8, labels[torch.randperm(400, generator=torch.Generator().manual_seed(0))])
    wrong = wrong.values["metrics/class_acc_c10"]
    assert right >= 0.8 and wrong <= 0.2, (right, wrong)


def test_conditional_without_labels_is_one_line(tmp_path):
    from tests.conftest import make_images

    np.savez(tmp_path / "nolabels.npz", images=make_images(40))
    r = gan_cli("train", tiny_toml(tmp_path / "t.toml", tmp_path / "nolabels.npz", model={"conditional": True}),
                "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.returncode == 2 and "model.conditional = true: the dataset has no class labels" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "logs").exists()


def test_conditional_on_a_family_without_a_conditional_form_is_one_line(tmp_path, tiny_npz):
    with pytest.raises(GanError, match="model 'dcgan_fc' has no conditional form"):
        config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, model={"arch": "dcgan_fc", "conditional": True})))


@pytest.mark.parametrize("arch", ["dcgan", "sngan_cnn", "wgan_cnn", "sngan_resnet"])
def test_every_conditional_family_trains(arch, tmp_path, tiny_npz):
    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, model={"arch": arch, "conditional": True,
                                                                          "g_channels": 4, "d_channels": 4},
                                    optim={"batch_size": 8}, train={"steps": 2, "log_every": 1})))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "completed" and "images/fake_per_class" in events(r.run_dir).Tags()["images"]


def test_class_entropy_of_known_distributions():
    from gan.metrics.scores import class_entropy

    eye = torch.eye(10)
    assert class_entropy(eye.repeat(5, 1), 10)[0] == pytest.approx(1.0)  # all ten classes equally
    assert class_entropy(eye[[3] * 50], 10)[0] == pytest.approx(0.0)  # one class only
    h, counts = class_entropy(eye[[0] * 25 + [1] * 25], 10)
    assert h == pytest.approx(math.log(2) / math.log(10)) and counts[:2].tolist() == [25, 25]


# ---- precision, time limits ----------------------------------------------------------------------------------------

def test_bf16_on_this_cpu_or_one_line_why_not(tmp_path, tiny_npz, monkeypatch):
    from gan import device

    cfg = config.load(str(tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 2, "precision": "bf16"})))
    ok, _ = device.bf16_supported(torch.device("cpu"))
    r = Trainer(cfg, device="cpu", logs=tmp_path / "a", quiet=True).run()
    assert json.loads((r.run_dir / "run.json").read_text())["precision"] == ("bf16" if ok else "fp32")
    monkeypatch.setattr(device, "bf16_supported", lambda d: (False, "this CPU has no AVX512-BF16"))
    said = []
    tr = Trainer(cfg, device="cpu", logs=tmp_path / "b", quiet=True)
    assert tr.precision == "fp32"
    assert device.choose_precision("bf16", torch.device("cpu"), tr.nets.G, tr.nets.D, 16, 4, 32, said.append) \
        == "fp32" and "keeping fp32 (this CPU has no AVX512-BF16)" in said[0]


def test_minutes_end_the_run_with_a_metric_point_at_its_last_step(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, train={"steps": 1000000, "minutes": 0.05, "log_every": 5},
                    metrics={"enabled": True, "every": 0, "num_samples": 10, "ref_samples": 20, "batch_size": 10,
                             "extractors": ["c10"]})
    r = gan_cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.returncode == 0, r.stderr
    run = next((tmp_path / "logs" / "tiny").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["ended_by"] == "train.minutes = 0.05"
    assert 3.0 <= info["train_seconds"] < 30 and 0 < info["step"] < 1000000
    fid = events(run).Scalars("metrics/fid_c10")
    assert [e.step for e in fid] == [info["step"]]  # the final evaluation, at the last step

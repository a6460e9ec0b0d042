"""Class metrics only where c10's classes mean something: CIFAR-10's class names, matched by name (any label
order), and off, said in one line with nothing logged under their tags, on a dataset with other classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gan import config
from gan.data import CIFAR10_CLASSES, load_dataset
from gan.metrics import evaluator as gev
from tests.conftest import HAVE_SHARED, SHARED, events, make_images, tiny_toml
from tests.test_resume import cli, run_of


@pytest.mark.skipif(not HAVE_SHARED, reason="needs the shared CIFAR-10 shards")
def test_cifar10_classes_in_another_order_still_measure_class_consistency(tmp_path):
    """Real test images labelled through a permuted `classes` field: c10 (92 % on them) must agree with their
    labels once its classes are mapped by name; compared index to index it would be near chance."""
    with np.load(SHARED / "test-00.npz") as z:
        x, y = z["images"][:400], z["labels"][:400].astype(np.int64)
    perm = np.random.default_rng(0).permutation(10)  # label j of the new file is CIFAR-10 class perm[j]
    names = np.array([CIFAR10_CLASSES[k] for k in perm])
    y_new = np.argsort(perm)[y]
    np.savez(tmp_path / "perm.npz", images=x, labels=y_new, classes=names)
    cfg = config.load(tiny_toml(tmp_path / "t.toml", tmp_path / "perm.npz",
                                metrics={"enabled": True, "extractors": ["c10"], "batch_size": 200}))
    ds = load_dataset(cfg.data)
    assert ds.classes == list(names) and ds.classes != CIFAR10_CLASSES
    real = torch.from_numpy(ds.images).permute(0, 3, 1, 2).contiguous()
    lines = []
    ev = gev.Evaluator(cfg.metrics, real, torch.device("cpu"), 16, lines.append, 10, ds.classes)
    got = ev.score_images(real, torch.from_numpy(ds.labels)).values
    print(f"\nclass_acc_c10 of real test images, labels permuted: {got['metrics/class_acc_c10']:.3f}")
    assert got["metrics/class_acc_c10"] >= 0.8
    assert 0.9 <= got["metrics/class_entropy_c10"] <= 1.0
    assert not any("class metrics" in n for n in ev.notes)


def test_other_class_names_log_no_class_metric_and_say_why_once(tmp_path):
    npz = tmp_path / "shapes.npz"
    names = ["circle", "square", "star", "moon", "heart", "cross", "ring", "dot", "line", "wave"]
    np.savez(npz, images=make_images(96), labels=np.arange(96) % 10, classes=np.array(names))
    exp = tiny_toml(tmp_path / "t.toml", npz, model={"arch": "dcgan", "z_dim": 16, "g_channels": 8,
                                                     "d_channels": 8, "conditional": True},
                    train={"steps": 3, "log_every": 1, "image_every": 3, "checkpoint_every": 3},
                    metrics={"enabled": True, "extractors": ["c10"], "every": 3, "num_samples": 20,
                             "ref_samples": 32, "batch_size": 32, "kid": False, "is": False})
    r = cli("train", exp, "--device", "cpu", "--logs", tmp_path / "logs")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    out = " ".join(r.stdout.split())  # the console wraps long lines
    said = out[out.index("class metrics off"):][:90]
    print("\n" + said)
    assert out.count("class metrics") == 1 and "the dataset's classes (circle, square, star, …) are not CIFAR-10's" \
        in out, out
    run = run_of(tmp_path / "logs")
    ea = events(run)
    tags = ea.Tags()["scalars"] + ea.Tags()["histograms"]
    assert "metrics/fid_c10" in tags and not [t for t in tags if "class" in t], tags
    proto = json.loads((run / "run.json").read_text())["metrics_protocol"][0]
    assert not [k for k in proto if k.startswith("class_acc") or k.startswith("class_entropy")], proto
    assert not [t for t in proto["tags"] if "class" in t], proto["tags"]

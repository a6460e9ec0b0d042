"""Published protocols end to end with the random stand-in Inception at a small N (the protocols' sizes shrunk
through published.PROTOCOLS, a seam no command exposes), the literature table against the README, and
`gan leaderboard --published` showing a published figure only beside a run measured under the same protocol."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from gan.fileio import sha256_file
from gan.metrics import published
from tests.conftest import ROOT, SHARED, copy_run, events, make_images, needs_shared
from tests.test_runs import cli, one_line_error

SMALL = {"published": dict(samples=10, reference_count=12), "diffaug": dict(samples=10, reference_count=40)}


@pytest.fixture()
def small(monkeypatch, tmp_path, standin_weights):
    """Protocols at a test's size, a CIFAR-like folder (24 train, 30 test images: too few for diffaug's 40) and
    the stand-in as the Inception weights, every metric read from its 64-d layer (a 2048-d FID's matrix square
    root alone takes half a minute on a busy 2-core machine, and the layer spares the rest of the net)."""
    from gan.metrics import extractors

    spec = extractors.REGISTRY["inception"]
    monkeypatch.setitem(extractors.REGISTRY, "inception", dataclasses.replace(
        spec, layers={k: "64" for k in spec.layers}))
    for name, kw in SMALL.items():
        monkeypatch.setitem(published.PROTOCOLS, name, dataclasses.replace(published.PROTOCOLS[name], **kw))
    data = tmp_path / "cifar"
    data.mkdir()
    np.savez(data / "train-00.npz", images=make_images(24, seed=3), labels=np.arange(24) % 10)
    np.savez(data / "test-00.npz", images=make_images(30, seed=4), labels=np.arange(30) % 10)
    monkeypatch.setenv("GAN_INCEPTION_WEIGHTS", str(standin_weights))
    return data


@pytest.fixture()
def as_cifar10(two_runs, monkeypatch):
    """The tiny runs' training images taken for CIFAR-10's (the protocols measure only runs trained on those)."""
    sha = json.loads((two_runs[1][0] / "run.json").read_text())["data_sha256"]
    monkeypatch.setattr(published, "CIFAR10_TRAIN_SHA256", sha)
    return sha


def test_protocol_published_end_to_end_with_the_standin(two_runs, small, as_cifar10, tmp_path, standin_weights):
    logs, dirs, tag = two_runs
    run = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "run")
    r = cli("eval", run, "--protocol", "published", "--data", small, "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "10 samples vs the 12 CIFAR-10 training images" in out and "22 images through inception on cpu" in out
    assert "not the standard pt_inception-2015-12-05" in out
    rec = json.loads((run / "metrics.json").read_text())[-1]
    sfx = f"_inception_{sha256_file(standin_weights)[:8]}"
    assert set(rec["values"]) == {f"metrics/{m}{sfx}" for m in ("fid", "kid", "is")}  # never metrics/fid
    assert rec["published_protocol"] == {"name": "published", "samples": 10, "reference": "train",
                                         "reference_count": 12, "standard_inception": False,
                                         "what": published.PROTOCOLS["published"].what, "training_sha256": as_cifar10}
    p = rec["protocol"][0]
    assert p["num_samples"] == 10 and p["reference_samples"] == 12 and p["extractor"] == "inception"
    assert p["reference"].startswith(str(small / "train-*.npz")) and "reference_differs" not in rec
    assert [e.value for e in events(run).Scalars(f"eval/published/fid{sfx}")] == pytest.approx(
        [rec["values"][f"metrics/fid{sfx}"]])
    # the reference statistics are cached by content, like every reference
    from gan.metrics.evaluator import cache_dir

    key = f"inception-{p['weights_sha256'][:16]}-{p['reference_sha256'][:16]}-n12.pt"
    assert (cache_dir() / "refstats" / key).is_file() and f"cached {cache_dir() / 'refstats' / key}" in out


def test_protocols_refuse_in_one_line(two_runs, small, as_cifar10, tmp_path, monkeypatch):
    logs, dirs, tag = two_runs
    one_line_error(cli("eval", dirs[0], "--protocol", "diffaug", "--data", small), "needs 40 CIFAR-10 test images",
                   "has 30")
    one_line_error(cli("eval", dirs[0], "--protocol", "fid50k"), "expected one of published, diffaug")
    one_line_error(cli("eval", dirs[0], "--protocol", "published", "--samples", "10"), "drop --samples")
    one_line_error(cli("eval", dirs[0], "--data", small), "--data goes with --protocol")
    one_line_error(cli("eval", dirs[0], "--protocol", "published", "--data", tmp_path / "none"),
                   "no CIFAR-10 train images")
    # without Inception weights: the fetch fails (conftest points it at a closed port) and the preset refuses
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS")
    one_line_error(cli("eval", dirs[0], "--protocol", "published", "--data", small, "--device", "cpu"),
                   "no feature extractor can run", "inception")
    assert not list(dirs[0].glob("metrics.json")) or all(
        "published_protocol" not in x for x in json.loads((dirs[0] / "metrics.json").read_text()))


def test_features_check_published(small, standin_weights, monkeypatch):
    one_line_error(cli("features", "check", "--published", "--data", small), "not the standard", "sha256")
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS")
    one_line_error(cli("features", "check", "--published", "--data", small),
                   "--published needs the standard Inception weights", "gan features get inception")
    # the figure itself, with the stand-in taken for the standard file (in this test only)
    from gan.metrics import protocol

    monkeypatch.setattr(protocol, "INCEPTION_SHA256", sha256_file(standin_weights))
    args = ("features", "check", "--published", "--data", small, "--inception-weights", standin_weights,
            "--device", "cpu")
    one_line_error(cli(*args), "needs 40 CIFAR-10 test images", "has 30")
    monkeypatch.setitem(published.PROTOCOLS, "diffaug",
                        dataclasses.replace(published.PROTOCOLS["diffaug"], reference_count=30))
    r = cli(*args)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("FID train"))
    fid = float(line.split(": ")[1].split()[0])
    assert line.startswith("FID train 12 vs test 30 (standard Inception)") and "3.1508" in line and fid > 0


def test_eval_metrics_fid_computes_no_class_or_prc_metric(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    run = copy_run(dirs[0], tmp_path / "run")
    r = cli("eval", run, "--samples", "4", "--metrics", "fid", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert list(json.loads((run / "metrics.json").read_text())[-1]["values"]) == [tag]


def _readme_published_column() -> dict:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Experiments", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| `")]
    return {re.sub(r"[` ]", "", r[0]): r[-1].strip() for r in rows}


def test_readme_published_column_is_the_literature_table():
    from gan import config

    col = _readme_published_column()
    assert len(col) >= 10
    for exp, cell in col.items():
        assert cell == published.readme_cell(exp, config.load(exp).to_dict()), exp
    for f in published.LITERATURE:
        assert f.protocol in published.PROTOCOLS and f.source and f.fid > 0
        # a figure stands beside its recipe's experiment only; the others of its model say how they differ
        if f.recipe is not None:
            assert col[f.recipe.experiment].startswith(f"FID {f.fid:.2f} ({f.model}, {f.kind}")
            for other in f.related:
                assert col[other].startswith(f"— (not the recipe of {f.model}'s {f.fid:.2f}: ")
    shown = " ".join(col.values())
    assert "BigGAN" not in shown  # conditional: it stands beside no unconditional experiment


def test_each_published_recipe_is_its_experiment_in_every_key_the_source_sets():
    """The `*_collections` experiments against the source's flag files (as written, at the commit named) and what
    its training scripts fix in code; a change of any key breaks it, and a flag nobody maps is refused."""
    from gan import config
    from gan.metrics import recipes

    with_recipe = [f for f in published.LITERATURE if f.recipe is not None]
    assert {f.recipe.experiment for f in with_recipe} == {"sngan_collections", "wgan_gp_collections",
                                                          "sngan_resnet_collections"}
    for f in with_recipe:
        flags = recipes.parse_flags(recipes.FLAGFILES[f.recipe.flagfile])
        assert set(flags) <= set(recipes.FLAGS), set(flags) - set(recipes.FLAGS)  # every flag mapped or named
        keys = f.recipe.keys()
        assert keys["train.steps"] == int(flags["total_steps"]) and keys["optim.n_dis"] == int(flags["n_dis"])
        assert keys["optim.batch_size"] == int(flags["batch_size"]) and keys["model.z_dim"] == int(flags["z_dim"])
        cfg = config.load(f.recipe.experiment).to_dict()
        assert recipes.differences(cfg, f.recipe) == [], f.recipe.experiment
        assert published.recipe_of(cfg) is f
        for key, other in (("optim.n_dis", 3), ("optim.lr_decay", "none"), ("data.hflip", not cfg["data"]["hflip"]),
                           ("optim.g_batch_size", 0)):
            sec, k = key.split(".")
            changed = {a: dict(b) for a, b in cfg.items()} | {sec: dict(cfg[sec]) | {k: other}}
            assert [d[0] for d in recipes.differences(changed, f.recipe)] == [key]
    # the source's words, as read at the commit: SN-GAN CNN trains 100k steps of batch 128 at n_dis 1
    assert "--n_dis=1" in recipes.FLAGFILES["SNGAN_CIFAR10_CNN"] and "--batch_size=128" in \
        recipes.FLAGFILES["SNGAN_CIFAR10_CNN"]


@needs_shared
def test_the_pinned_cifar10_hash_is_the_shards_content():
    import torch

    from gan.data import content_hash, load_npz, to_tensor

    x = load_npz(str(SHARED / "train-*.npz"))[0]
    assert content_hash(to_tensor(x, 32, torch.device("cpu"))) == published.CIFAR10_TRAIN_SHA256


def test_a_protocol_refuses_a_run_that_did_not_train_on_cifar10(two_runs, tmp_path, monkeypatch):
    """By content, before any weights are looked for (no Inception weights anywhere here): the same answer on any
    machine. A 64×64 run is refused for its size."""
    logs, dirs, tag = two_runs
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS", raising=False)
    calls = []
    from gan.metrics import extractors

    monkeypatch.setattr(extractors, "choose", lambda *a, **k: calls.append(a) or ([], []))
    for name in ("published", "diffaug"):
        line = one_line_error(cli("eval", dirs[0], "--protocol", name, "--device", "cpu"),
                              f"--protocol {name} applies to runs trained on CIFAR-10's 50,000 training images",
                              "npz")
        assert published.CIFAR10_TRAIN_SHA256[:16] in line
    run = copy_run(dirs[0], tmp_path / "run64")
    cfg = (run / "config.toml").read_text().replace("image_size = 32", "image_size = 64")
    (run / "config.toml").write_text(cfg)
    one_line_error(cli("eval", run, "--protocol", "published"), "at 32×32", "64×64")
    assert calls == [] and not (run / "metrics.json").exists()


def _measured(run, values: dict, standard: bool, name="published"):
    p = published.PROTOCOLS[name]
    rec = {"checkpoint": "last", "step": 6, "samples": p.samples, "values": values,
           "published_protocol": {"name": name, "samples": p.samples, "reference": p.reference,
                                  "reference_count": p.reference_count, "what": p.what,
                                  "standard_inception": standard}}
    (run / "metrics.json").write_text(json.dumps([rec]))


def test_leaderboard_published_only_beside_the_same_protocol(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    root = tmp_path / "logs" / "tiny"
    match, other = copy_run(dirs[0], root / "match"), copy_run(dirs[1], root / "standin")
    _measured(match, {"metrics/fid": 16.5, "metrics/is": 8.1, "metrics/kid": 0.012}, True)
    _measured(other, {"metrics/fid_inception_ab12cd34": 3.0}, False)
    r = cli("leaderboard", match, other, "--published")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "protocol 'published'" in out and "50,000 samples vs the 50,000 CIFAR-10 training images" in out
    names = [line for line in out.splitlines() if "(published)" in line or "16.50" in line]
    assert [n.split()[0] for n in names] == ["1", "2", "3", "4", "5"]  # ranked by FID, the run among the figures
    assert "14.32" in names[0] and "16.50" in names[1] and "17.81" in names[2] and "42.72" in names[4]
    assert "BigGAN" not in out  # the diffaug figures: no run measured under that protocol
    assert "published figures under 'diffaug'" in out and "left out" in out
    assert "standin measured with Inception weights that are not the standard file" in " ".join(out.split())
    # no run under any protocol: no published row at all, one line per protocol says why
    r = cli("leaderboard", other, "--published")
    assert r.exit_code == 0 and "(published)" not in r.output and "17.81" not in r.output
    lines = [x for x in r.output.splitlines() if x.startswith("published figures under")]
    assert len(lines) == 2 and "`gan eval RUN --protocol published`" in lines[0]


def test_leaderboard_ranks_conditional_figures_only_beside_conditional_runs(two_runs, tmp_path):
    logs, dirs, tag = two_runs
    cond = copy_run(dirs[0], tmp_path / "logs" / "tiny" / "cond")
    cfg = (cond / "config.toml").read_text()
    assert "conditional = false" in cfg
    (cond / "config.toml").write_text(cfg.replace("conditional = false", "conditional = true"))
    _measured(cond, {"metrics/fid": 12.0}, True, name="diffaug")
    r = cli("leaderboard", cond, "--published")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "protocol 'diffaug', conditional models" in out and "BigGAN + DiffAugment (published)" in out
    assert "StyleGAN2" in out and "StyleGAN2 + DiffAugment (published)" not in out  # named as left out, not ranked
    assert "unconditional published figures under 'diffaug' left out: no unconditional run" in out
    assert "its own (no figure here trains dcgan)" in out  # every row says its recipe
    plain = copy_run(dirs[1], tmp_path / "logs" / "tiny" / "plain")
    _measured(plain, {"metrics/fid": 16.5}, True)
    out = " ".join(cli("leaderboard", plain, "--published").output.split())
    assert "protocol 'published', unconditional models" in out and "`sngan_collections`" in out

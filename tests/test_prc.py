"""Precision/recall in bounded memory (gan.metrics.prc): torch-fidelity's own numbers, block by block, and the
real images' k-NN radii kept with the reference statistics."""
from __future__ import annotations

import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from gan import fileio
from gan.config import Metrics
from gan.metrics import prc, scores
from gan.metrics.evaluator import Evaluator
from tests.conftest import make_images


def _features(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(333, 192, generator=g).abs()
    fake = torch.randn(257, 192, generator=g).abs() * 1.05 + 0.02
    return fake, real


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [64, 1000])
def test_precision_recall_are_torch_fidelitys(seed, chunk):
    fake, real = _features(seed)
    got = prc.precision_recall(fake, real, chunk=chunk)
    for low_ram in (False, True):
        tf = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=low_ram,
                                    verbose=False)
        assert got == pytest.approx((tf["precision"], tf["recall"]), abs=1e-6), (got, tf, low_ram)
    assert 0.05 < got[0] < 0.95 and 0.05 < got[1] < 0.95  # a case where both can be wrong either way


def _evaluator(images, log, prc_on=True):
    m = Metrics(extractors=["c10"], num_samples=16, batch_size=64, kid=False, prc=prc_on)
    return Evaluator(m, images, torch.device("cpu"), 16, log)


def test_real_radii_are_cached_with_the_reference_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_CACHE", str(tmp_path / "cache"))
    images = torch.from_numpy(make_images(40, seed=4)).permute(0, 3, 1, 2).contiguous()
    said = []
    _evaluator(images, said.append, prc_on=False)  # a cache written by a run without precision/recall
    path = next((tmp_path / "cache" / "refstats").glob("*.pt"))
    assert scores.RADII not in fileio.load_torch(path)
    said.clear()
    ev = _evaluator(images, said.append)  # computed once, added to the cache, said
    assert said[0] == f"reference statistics for c10: cached {path}" and said[1].startswith(
        "precision/recall radii for c10: 40 images in") and said[1].endswith(f"cached {path}"), said
    blob = fileio.load_torch(path)
    feats = blob["features"]["feat"]
    assert torch.equal(blob[scores.RADII], prc.radii(feats)) and blob[scores.RADII].shape == (40,)

    def never(*a, **k):
        raise AssertionError("the real radii were recomputed")

    said.clear()
    real_radii = prc.radii
    monkeypatch.setattr(prc, "radii", lambda f, *a: never() if len(f) == 40 else real_radii(f, *a))
    ev2 = _evaluator(images, said.append)
    assert said == [f"reference statistics for c10: cached {path}"], said
    fake = images.flip(0)[:30]
    a, b = ev.score_images(fake).values, ev2.score_images(fake).values
    assert a["metrics/precision_c10"] == b["metrics/precision_c10"] and a["metrics/recall_c10"] == b[
        "metrics/recall_c10"]
    want = prc_features_to_metric(ev2.extractors[0].features(fake, 64)["feat"], feats, prc_neighborhood=3,
                                  prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert (b["metrics/precision_c10"], b["metrics/recall_c10"]) == pytest.approx(
        (want["precision"], want["recall"]), abs=1e-6)

"""Every call this project makes into other libraries' internals, in one place.

torch-fidelity documents `calculate_metrics`, `register_feature_extractor`, `FeatureExtractorBase` and the
`KEY_METRIC_*` names; everything below reaches into its modules (the per-metric functions on precomputed features,
its feature-extractor factory and registry, its distance helper, its download URL), and into torch's private or
low-level ops. A release may move or change any of them: `tests/test_compat.py` pins each behaviour relied on here
(names, signatures, values against the public `calculate_metrics` or plain torch), and pyproject.toml bounds the
versions those tests cover. Imports happen on first use, so importing this module costs nothing.
"""
from __future__ import annotations

KEY_FID = "frechet_inception_distance"
KEY_KID, KEY_KID_STD = "kernel_inception_distance_mean", "kernel_inception_distance_std"
KEY_IS, KEY_IS_STD = "inception_score_mean", "inception_score_std"


# ---- torch-fidelity ------------------------------------------------------------------------------------------
def fid_statistics(featuresdict: dict, layer: str) -> dict:
    """{"mu", "sigma"} (numpy float64) of one layer's features, as torch-fidelity computes them."""
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics

    return fid_featuresdict_to_statistics(featuresdict, layer)


def fid(stat_1: dict, stat_2: dict) -> float:
    """The Fréchet distance of two {"mu", "sigma"} statistics (numpy)."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    return float(fid_statistics_to_metric(stat_1, stat_2, False)[KEY_FID])


def kid(feats_1: dict, feats_2: dict, layer: str, **kw) -> dict:
    """{KEY_KID, KEY_KID_STD} over subsets (kw: kid_subset_size, kid_subsets, rng_seed, ...)."""
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric

    return kid_featuresdict_to_metric(feats_1, feats_2, layer, **kw)


def isc(feats: dict, layer: str, **kw) -> dict:
    """{KEY_IS, KEY_IS_STD} over splits (kw: isc_splits, samples_shuffle, rng_seed, ...)."""
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric

    return isc_featuresdict_to_metric(feats, layer, **kw)


def cdist_part(features_1, features_2, batch_size: int):
    """Pairwise Euclidean distances, features_2 taken `batch_size` at a time (torch-fidelity's precision/recall
    helper: the numbers are its own)."""
    from torch_fidelity.metric_prc import calc_cdist_part

    return calc_cdist_part(features_1, features_2, batch_size)


def create_feature_extractor(name: str, layers: list[str], weights_path: str):
    """A registered torch-fidelity feature extractor on the CPU, its weights from `weights_path`."""
    from torch_fidelity.utils import create_feature_extractor as make

    return make(name, layers, cuda=False, verbose=False, feature_extractor_weights_path=weights_path)


def register_feature_extractor(name: str, cls) -> None:
    """torch-fidelity's public registration, made idempotent (its registry refuses a name twice)."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, cls)


def inception_url() -> str:
    """Where torch-fidelity downloads the standard Inception weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


# ---- torch -----------------------------------------------------------------------------------------------------
def mkldnn_bf16_supported() -> bool:
    """Whether oneDNN runs bf16 at speed on this CPU (AVX512-BF16 or AMX)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def foreach_lerp_(targets: list, sources: list, weight: float) -> None:
    """targets += weight · (sources - targets), one multi-tensor kernel."""
    import torch

    torch._foreach_lerp_(targets, sources, weight)


def conv_input_grad(gy, x, w, stride: int, pad: int, transposed: bool):
    """The input gradient of a (transposed) convolution without bias, by torch's own backward kernel."""
    import torch

    return torch.ops.aten.convolution_backward(gy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], transposed,
                                              [0, 0], 1, [True, False, False])[0]

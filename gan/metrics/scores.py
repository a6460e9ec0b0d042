"""The metrics themselves, on precomputed features, through torch-fidelity's own functions where it has them:
FID, KID, IS, precision/recall (torch-fidelity ≥ 0.4: earlier releases swapped the two), and the class metrics of
a classifier extractor (c10): class consistency of a conditional G and class coverage of any G."""
from __future__ import annotations

import math

import numpy as np
import torch

from gan import compat
from gan.metrics import prc as gprc

SEED = 2020  # KID subsets and IS splits drawn alike at every evaluation
RADII = f"prc_radii_k{gprc.K}"  # the reference cache's key for the real images' k-NN radii


def wanted(mcfg, conditional: bool, cifar10_classes: bool = True) -> dict[str, bool]:
    """The metrics to compute; the class metrics only where the dataset's classes are CIFAR-10's (c10_labels)."""
    classes = mcfg.classes and cifar10_classes
    return {"fid": mcfg.fid, "kid": mcfg.kid, "is": mcfg.is_, "prc": mcfg.prc, "classes": classes,
            "class_acc": classes and conditional}


def c10_labels(class_names: list[str] | None) -> tuple[torch.Tensor | None, str]:
    """c10's class index -> the dataset's label, matched by name (another label order still works); or None and
    why the class metrics mean nothing on this dataset."""
    from gan.data.common import CIFAR10_CLASSES

    if not class_names:
        return None, "the dataset has no class names"
    names = [str(n).strip().lower() for n in class_names]
    if sorted(names) != sorted(CIFAR10_CLASSES):
        shown = ", ".join(class_names[:3]) + (", …" if len(class_names) > 3 else "")
        return None, f"the dataset's classes ({shown}) are not CIFAR-10's"
    return torch.tensor([names.index(c) for c in CIFAR10_CLASSES]), "CIFAR-10's classes, matched by name"


def names(want: dict, classifier: bool) -> list[str]:
    """The metric names an extractor logs under `want` (class metrics need a classifier's logits)."""
    out = [m for m in ("fid", "kid", "is") if want.get(m)]
    out += ["precision", "recall"] if want.get("prc") else []
    if classifier:
        out += ["class_acc"] if want.get("class_acc") else []
        out += ["class_entropy"] if want.get("classes") else []
    return out


def fid_statistics(ext, feats: dict) -> dict:
    st = compat.fid_statistics(feats, ext.spec.layers["fid"])
    return {"mu": torch.from_numpy(st["mu"]), "sigma": torch.from_numpy(st["sigma"])}


def _kw(n1: int, n2: int) -> dict:
    # torch-fidelity's defaults, with the KID subset shrunk to fit small sample counts.
    return {"verbose": False, "kid_subset_size": min(1000, n1, n2), "kid_subsets": 100, "isc_splits": 10,
            "samples_shuffle": True, "rng_seed": SEED}


def class_entropy(logits: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """Normalised entropy of the classes assigned (argmax), 1.0 = all classes equally; and the counts."""
    counts = torch.bincount(logits.argmax(1), minlength=num_classes).double()
    p = counts / counts.sum()
    h = max(0.0, -(p[p > 0] * p[p > 0].log()).sum().item())
    return h / math.log(num_classes), counts


def compute(ext, fake: dict, ref: dict, want: dict, classes: torch.Tensor | None = None,
            labels_of: torch.Tensor | None = None) -> tuple[dict[str, float], dict[str, float], dict[str, torch.Tensor]]:
    """({metric: value}, {metric: spread over subsets/splits}, {metric: histogram}) of one extractor's features
    of the generated images. `labels_of`: c10's class index -> the dataset's label (c10_labels); identity if None."""
    out: dict[str, float] = {}
    std: dict[str, float] = {}
    hist: dict[str, torch.Tensor] = {}
    L = ext.spec.layers
    n_fake = len(next(iter(fake.values())))
    n_ref = len(ref["features"][L["fid"]])
    if want.get("fid"):
        st = compat.fid_statistics(fake, L["fid"])
        out["fid"] = compat.fid(st, {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()})
    if want.get("kid"):
        kid = compat.kid(fake, ref["features"], L["kid"], **_kw(n_fake, n_ref))
        out["kid"], std["kid"] = kid[compat.KEY_KID], kid[compat.KEY_KID_STD]
    if want.get("is"):
        isc = compat.isc(fake, L["is"], **_kw(n_fake, n_fake))
        out["is"], std["is"] = isc[compat.KEY_IS], isc[compat.KEY_IS_STD]
    if want.get("prc"):
        # bounded memory (torch-fidelity's full path builds N×N matrices); the real radii cached with `ref`
        out["precision"], out["recall"] = gprc.precision_recall(fake[L["prc"]], ref["features"][L["prc"]],
                                                               ref.get(RADII))
    if ext.spec.classifier:
        logits = fake[L["is"]]
        if want.get("class_acc") and classes is not None:
            said = logits.argmax(1) if labels_of is None else labels_of[logits.argmax(1)]
            out["class_acc"] = (said == classes.cpu()).double().mean().item()
        if want.get("classes"):
            out["class_entropy"], hist["class_entropy"] = class_entropy(logits, logits.shape[1])
    return {k: float(v) for k, v in out.items()}, {k: float(v) for k, v in std.items()}, hist


def ceilings(ext, ref: dict) -> dict:
    """What the class metrics of real images are: the ceiling a generator's numbers are read against."""
    from gan import features

    logits = ref["features"][ext.spec.layers["is"]]
    h, _ = class_entropy(logits, logits.shape[1])
    card = features.card()
    return {"class_entropy_real": round(h, 4), "class_acc_real": card.get("accuracy"),
            "class_acc_real_on": card.get("test_set", "test-00.npz")}


def finite(v: float) -> bool:
    return v == v and not np.isinf(v)

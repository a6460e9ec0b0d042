"""One truth for what a metric number means and which one counts.

A metric is logged as `metrics/<name><suffix>`; the suffix names the feature extractor:
  ""                   the standard Inception (pt_inception-2015-12-05, its full sha256 pinned below): standard FID
  "_c10"               our packaged CIFAR-10 classifier (gan/weights/c10.pt)
  "_inception_<sha8>"  Inception-shaped weights that are not the standard file (a stand-in, a retrained net)
so two extractors never share a tag. `primary()` is the one rule that decides which FID judges a run: best.pt,
`gan runs`, `gan compare`, the HParams columns, the leaderboard and sweeps all ask it. `differences()` says why
two runs' numbers of one tag must not be ranked together (other weights, sample count or reference set).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

# sha256 of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (95,628,359 bytes)
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

# name in tags -> what it is; every metric the engine can log
METRICS = {
    "fid": "Fréchet distance",
    "kid": "kernel distance",
    "is": "Inception Score (on the extractor's class logits)",
    "precision": "precision (Kynkäänniemi et al. 2019)",
    "recall": "recall (Kynkäänniemi et al. 2019)",
    "class_acc": "class consistency: share of samples classified as the class asked for",
    "class_entropy": "class coverage: normalised entropy of the classes the samples are assigned (1 = uniform)",
}
HIGHER_IS_BETTER = {"is", "precision", "recall", "class_acc", "class_entropy"}
EXTRACTOR_SUFFIX = {"inception": "", "c10": "_c10"}  # the registered extractors with their standard weights


def suffix(extractor: str, sha256: str = "") -> str:
    """The tag suffix of an extractor with these weights; non-standard Inception weights get their own."""
    if extractor == "inception" and sha256 and sha256 != INCEPTION_SHA256:
        return f"_inception_{sha256[:8]}"
    return EXTRACTOR_SUFFIX[extractor]


def tag(metric: str, suffix: str) -> str:
    return f"metrics/{metric}{suffix}"


@functools.lru_cache(maxsize=4096)  # asked per tag per run by every table: a thousand runs ask it often
def split(t: str) -> tuple[str, str]:
    """'metrics/fid_c10' -> ('fid', '_c10'); the metric is the longest known name the tag starts with."""
    name = t.split("/", 1)[1] if "/" in t else t
    for m in sorted(METRICS, key=len, reverse=True):
        if name == m or name.startswith(m + "_"):
            return m, name[len(m):]
    return name, ""


def extractor_label(sfx: str) -> str:
    """'' -> 'Inception', '_c10' -> 'c10', '_inception_ab12cd34' -> 'Inception ab12cd34 (not standard)'."""
    if sfx == "":
        return "Inception"
    if sfx.startswith("_inception_"):
        return f"Inception {sfx[len('_inception_'):]} (not standard)"
    return sfx.lstrip("_")


def higher_is_better(t: str) -> bool:
    return split(t)[0] in HIGHER_IS_BETTER


@dataclass(frozen=True)
class Primary:
    tag: str | None
    why: str


def primary(tags, metric: str = "fid") -> Primary:
    """The number that judges a run, out of the tags it logs: the standard Inception's when there is one (the
    published protocol), else c10's (every machine has it), else a non-standard Inception's (comparable only
    with runs of the very same weights)."""
    tags = set(tags)
    std, c10 = tag(metric, ""), tag(metric, "_c10")
    if std in tags:
        return Primary(std, "standard Inception weights (sha256 pinned)")
    if c10 in tags:
        return Primary(c10, "c10, the packaged CIFAR-10 extractor (no standard Inception weights in this run)")
    other = sorted(t for t in tags if t.startswith(tag(metric, "_inception_")))
    if other:
        return Primary(other[0], f"non-standard Inception weights {other[0].rsplit('_', 1)[1]}: comparable only "
                                 "with runs of the same weights")
    return Primary(None, f"no {metric} logged")


def better(t: str, a: float, b: float | None) -> bool:
    """Is `a` better than `b` (None = nothing yet) for tag `t`?"""
    return b is None or (a > b if higher_is_better(t) else a < b)


def entry(protocol: list[dict], t: str) -> dict | None:
    """The run's protocol record (run.json `metrics_protocol`) behind tag `t`."""
    sfx = split(t)[1]
    return next((p for p in protocol or [] if p.get("suffix", suffix(p.get("extractor", "c10"),
                                                                        p.get("weights_sha256", ""))) == sfx), None)


KEYS = {"weights_sha256": "extractor weights", "num_samples": "generated samples",
        "reference_sha256": "reference images", "reference_samples": "reference count"}


def differences(protocols: dict[str, list[dict]], t: str) -> list[str]:
    """One line per protocol field in which the runs differ for tag `t` ({run name: its metrics_protocol}).
    Runs without a record (older runs, fake ones) are named too. Empty = the numbers are comparable."""
    found = {run: entry(p, t) for run, p in protocols.items()}
    out = []
    missing = sorted(r for r, e in found.items() if e is None)
    if missing and len(missing) < len(found):
        out.append(f"no protocol recorded for {t} in {', '.join(missing)}")
    have = {r: e for r, e in found.items() if e is not None}
    for key, what in KEYS.items():
        vals = {r: e.get(key) for r, e in have.items()}
        if len({str(v) for v in vals.values()}) > 1:
            shown = ", ".join(f"{r}: {str(v)[:12]}" for r, v in vals.items())
            out.append(f"{what} differ ({shown})")
    return out


def changes(before: list[dict] | None, after: list[dict]) -> list[dict]:
    """What differs between the protocol a run recorded and the one it resumes with, per extractor: the reference
    images (the data files changed), the weights, the counts, or an extractor no longer there."""
    now = {p.get("extractor"): p for p in after}
    out = []
    for old in before or []:
        if not isinstance(old, dict):
            continue
        name, new = old.get("extractor"), now.get(old.get("extractor"))
        if new is None:
            out.append({"extractor": name, "what": "extractor", "was": old.get("weights_sha256"), "now": None})
            continue
        out += [{"extractor": name, "what": what, "was": old[k], "now": new.get(k)}
                for k, what in KEYS.items() if old.get(k) is not None and old[k] != new.get(k)]
    return out


def change_line(ch: dict, step: int) -> str:
    """One line for a protocol change of a resumed run (see `changes`)."""
    if ch["now"] is None:
        return f"metrics: extractor {ch['extractor']} is not available now: its curves stop at step {step}"
    return (f"metrics: the {ch['what']} of {ch['extractor']} differ from the ones this run recorded "
            f"({str(ch['was'])[:12]} then, {str(ch['now'])[:12]} now): its points after step {step} follow a "
            "different protocol, not comparable with the earlier ones")

"""Synthetic runs: what a long run leaves in its folder, written in seconds with no training, by the project's own
recorder (gan.rundir.Recorder: TensorBoard events through writer.Tracker, run.json, the summary) at an experiment's
own cadence (`train.log_every`, `train.image_every`, `metrics.every`, `train.steps`).

Each log point writes the engine's scalars and run.json's heartbeat, each grid point the fake grid (and the per-class
grid of a conditional model) made with gan.grids from real images (the bench's data: CIFAR-10 when it has it), each
metric point the metrics of the chosen extractors with their spreads, class histograms and progress, the end the
HParams row and the status: the same calls, in the same order, as gan/engine.py makes them.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from gan import config, fileio, grids, rundir, writer
from gan.metrics import protocol

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(data_ov: list[str], n: int, size: int = 32) -> torch.Tensor:
    """n uint8 (N,3,size,size) images: the bench's npz/CIFAR-10 shards when it has them, else smooth random blobs
    (their PNGs compress like a trained G's samples no better than real photographs do)."""
    paths = []
    for ov in data_ov:
        key, _, val = ov.partition("=")
        val = val.strip('"')
        if key == "data.path":
            paths = [Path(val)] if Path(val).is_file() else sorted(Path(val).glob("*.npz"))
        elif key == "data.root":
            paths = sorted(Path(val).glob("train-*.npz"))
    for p in paths[:1]:
        with np.load(p) as z:
            x = torch.from_numpy(z["images"][:n]).permute(0, 3, 1, 2)
        if len(x) >= n:
            break
    else:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(n, 3, 4, 4, generator=g) * 255)
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).to(torch.uint8)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear").round().to(torch.uint8)
    return x.contiguous()


def _proto(extractors: tuple, num_samples: int, conditional: bool) -> list[dict]:
    out = []
    for name in extractors:
        sfx = protocol.EXTRACTOR_SUFFIX[name]
        names = ["fid", "kid", "is"] + (["class_entropy"] + (["class_acc"] if conditional else []) if name == "c10"
                                         else [])
        out.append({"extractor": name, "suffix": sfx, "weights": f"synthetic-{name}.pt", "weights_sha256":
                    (protocol.INCEPTION_SHA256 if name == "inception" else "84642e6e" + "0" * 56),
                    "tags": [protocol.tag(m, sfx) for m in names], "num_samples": num_samples,
                    "reference": "train (synthetic)", "reference_samples": 10_000, "reference_sha256": "5e" * 32})
    return out


class _Eval:
    """What the evaluator hands the recorder: values, spreads, class histograms."""

    def __init__(self, proto: list[dict], step: int, steps: int, rng: np.random.Generator):
        f = math.exp(-3 * step / max(steps, 1))
        self.values, self.spread, self.histograms = {}, {}, {}
        for p in proto:
            for tag in p["tags"]:
                m = protocol.split(tag)[0]
                v = {"fid": 8 + 40 * f, "kid": 0.005 + 0.04 * f, "is": 8.5 - 5 * f, "class_entropy": 0.98 - 0.4 * f,
                     "class_acc": 0.85 - 0.7 * f}[m]
                self.values[tag] = float(v * (1 + 0.02 * rng.standard_normal()))
                if m in ("kid", "is"):
                    self.spread[f"std/{m}{p['suffix']}"] = abs(float(0.05 * v))
                if m == "class_entropy":
                    self.histograms[tag] = torch.from_numpy(rng.multinomial(p["num_samples"], [0.1] * 10))


def write_run(folder: Path, exp: str, steps: int, pictures: torch.Tensor, extractors: tuple = ("c10",),
              overrides: tuple = (), seed: int = 0) -> Path:
    """A completed run of experiment `exp` over `steps` steps in `folder` (made new), at its own cadence."""
    cfg = config.load(exp, [f"train.steps={steps}", f"experiment.seed={seed}", *overrides])
    t, o, m = cfg.train, cfg.optim, cfg.metrics
    folder = rundir.exact_run_dir(Path(folder))
    rec = rundir.Recorder(folder, True, None, log=lambda *a, **k: None, save_png=t.save_png)
    toml = config.to_toml(cfg)
    rec.started(True, toml, {"steps_planned": steps, "precision": "bf16", "threads": 1, "experiment": exp,
                             "seed": seed, "device": "cuda:0", "data": "CIFAR-10 (synthetic run)"}, 0, None)
    proto = _proto(extractors, m.num_samples, cfg.model.conditional)
    primary = protocol.primary([tg for p in proto for tg in p["tags"]])
    rec.protocol(True, proto, [], primary, 0)
    real = grids.grid(pictures[:grids.GRID])
    rec.first_pictures(toml, proto, [], primary, real, real if t.diffaug else None)
    rng, history, best = np.random.default_rng(seed), [], None
    per_step = o.batch_size * o.n_dis
    for step in sorted({s for every in (t.log_every, t.image_every, m.every) if every > 0
                        for s in range(every, steps + 1, every)} | {steps}):
        secs = step * 0.05
        if step % t.log_every == 0 or step == steps:
            rec.tb.scalars({"loss/D": 1.0 + 0.1 * rng.standard_normal(), "loss/G": 0.5 + 0.1 * rng.standard_normal(),
                            "D/real": 0.8, "D/fake": -0.8, "lr/G": o.g_lr, "lr/D": o.d_lr,
                            "perf/images_per_sec": per_step / 0.05 * (1 + 0.05 * rng.standard_normal()),
                            "epoch": step * o.batch_size // 50_000}, step)
            rec.info.update(durable=False, progress={"step": step, "steps": steps, "images_per_sec": per_step / 0.05,
                                                     "train_seconds": secs, "minutes": t.minutes, "at": rundir.now()})
        if t.image_every and (step % t.image_every == 0 or step == steps):
            k = (step // max(t.image_every, 1)) % max(len(pictures) // grids.GRID, 1) * grids.GRID
            rec.image("images/fake", grids.grid(pictures[k:k + grids.GRID]), step, f"fake_{step:07d}.png")
            if cfg.model.conditional:
                rows = grids.labelled_rows(pictures[:10 * grids.PER_CLASS], CLASSES)
                rec.image("images/fake_per_class", rows, step, f"fake_per_class_{step:07d}.png")
        if m.enabled and m.every and (step % m.every == 0 or step == steps):
            values = rec.evaluation(step, _Eval(proto, step, steps, rng), {
                "time/eval_seconds": 30.0, "progress/train_seconds": secs, "progress/images_seen": float(step * per_step)})
            history.append((step, values))
            if primary.tag and protocol.better(primary.tag, values[primary.tag], best and best["value"]):
                best = {"step": step, "tag": primary.tag, "value": values[primary.tag]}
        if step % t.checkpoint_every == 0:
            rec.info.update(step=step, best=best, train_seconds=secs)
    rec.ended("completed", writer.flatten(cfg.to_dict()), history, step=steps, best=best, train_seconds=steps * 0.05)
    return folder


def copy_run(template: Path, dest: Path, seed: int) -> Path:
    """A run folder of its own (run.json, config.toml: seed `seed`) whose event files are the template's, hard-linked
    (copied where links cannot be made); no summary: the first reader rebuilds it."""
    dest.mkdir(parents=True)
    for p in template.iterdir():
        if "tfevents" in p.name:
            try:
                os.link(p, dest / p.name)
            except OSError:
                shutil.copy2(p, dest / p.name)
    info = fileio.read_json(template / "run.json") | {"seed": seed}
    fileio.write_json(dest / "run.json", info, durable=False)
    text = (template / "config.toml").read_text()
    fileio.write_atomic(dest / "config.toml", text.replace("seed = 0", f"seed = {seed}", 1), durable=False)
    return dest

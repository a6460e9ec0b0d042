"""A trained generator, loaded back from a run's checkpoint: `gan eval` (its metrics, appended to
<run>/metrics.json and logged under eval/*) and `gan sample` (a grid or a folder of PNGs, never overwriting).

The EMA generator is used when the checkpoint has one; a conditional generator is rebuilt with the checkpoint's
`num_classes` (checkpoints written before conditioning existed have none: unconditional). `gan eval` compares the
reference images it scores against with the ones the run's own metrics used (run.json `metrics_protocol`): other
data means another FID protocol, and it says so.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from gan import fileio, runlock
from gan.data import CIFAR10_CLASSES
from gan.errors import GanError
from gan.runs import info_of, protocol_of
from gan.console import console
from gan.rundir import now

WHICH = ("last", "best")


@dataclasses.dataclass
class Loaded:
    cfg: object  # gan.config.Config
    G: object  # nn.Module in eval mode, no grads
    step: int
    num_classes: int  # 0 = unconditional
    names: list | None = None  # the dataset's class names, as the checkpoint recorded them

    @property
    def class_names(self) -> list[str]:
        return list(self.names) if self.names else class_names(self.num_classes)


def class_names(num_classes: int) -> list[str]:
    """For checkpoints that did not record their class names: CIFAR-10's for 10 classes, else the indices."""
    return list(CIFAR10_CLASSES) if num_classes == len(CIFAR10_CLASSES) else [str(i) for i in range(num_classes)]


def load_generator(run: Path, which: str, device) -> Loaded:
    from gan import checkpoint, coderecord, config
    from gan.models import build

    if which not in WHICH:
        raise GanError(f"--checkpoint {which!r}: expected last or best")
    if not (run / "config.toml").is_file():
        raise GanError(f"'{run}' has no config.toml")
    p = run / "checkpoints" / f"{which}.pt"
    if not p.is_file() and not checkpoint.prev_of(p).is_file():
        why = " (no metric has been evaluated yet?)" if which == "best" else ""
        raise GanError(f"'{run}' has no checkpoints/{which}.pt{why}")
    with coderecord.from_run(run):  # a user's model from the run's own copy of its file: the run folder alone
        cfg = config.load(str(run / "config.toml"))
        state = checkpoint.load(p, lambda m: console.print(m))
        k = int(state.get("num_classes", 0) or 0)
        G, _ = build(cfg.model, cfg.data.image_size, k)
    sd = state["G_ema"] if state.get("G_ema") is not None else state["G"]
    try:
        G.load_state_dict(sd)
    except (RuntimeError, KeyError) as e:
        raise GanError(f"{p}: does not fit model {cfg.model.arch!r} of {run / 'config.toml'} "
                       f"({str(e).splitlines()[0][:160]})") from None
    return Loaded(cfg, G.to(device).eval().requires_grad_(False), int(state["step"]), k, state.get("class_names"))


# ---- `gan eval` ------------------------------------------------------------------------------------------------
EVAL_METRICS = ("fid", "kid", "is")


def reference_check(run: Path, proto: list[dict]) -> dict | None:
    """None when the reference images scored against now are those of the run's own metrics (or the run
    recorded none); else {"run": [its sha256s], "now": sha256}."""
    recorded = sorted({str(e["reference_sha256"]) for e in protocol_of(run) if e.get("reference_sha256")})
    current = next((str(e["reference_sha256"]) for e in proto if e.get("reference_sha256")), None)
    if not recorded or current is None or current in recorded:
        return None
    return {"run": recorded, "now": current}


def read_records(path: Path, log) -> list:
    """metrics.json's records; a damaged file (or one that is not a list) is moved aside, its bytes kept."""
    records = fileio.read_json(path, default=[], move_aside=True, log=log)
    if not isinstance(records, list):
        fileio.set_aside(path, f"not a list of records but a {type(records).__name__}", log)
        records = []
    return records


def evaluate(run: Path, which: str = "last", samples: int | None = None, metrics: str = "fid,kid,is",
             device: str = "auto", extractors: list[str] | None = None, log=console.print,
             preset: str | None = None, data: str | None = None) -> dict:
    """Metrics of a checkpoint, appended to <run>/metrics.json and written to TensorBoard as eval/<tag>.
    `preset`: a published protocol (gan/metrics/published.py) fixes the samples, the reference set (CIFAR-10's
    split under `data`, default the run's data folder) and the extractor (Inception); logged as eval/<preset>/<tag>."""
    from gan.data import load_dataset, to_tensor
    from gan.device import pick as pick_device
    from gan.metrics.evaluator import build

    want = [m.strip() for m in metrics.split(",") if m.strip()]
    bad = [m for m in want if m not in EVAL_METRICS]
    if bad or not want:
        raise GanError(f"--metrics {metrics!r}: expected a comma list out of {', '.join(EVAL_METRICS)}")
    if samples is not None and samples < 2:
        raise GanError(f"--samples {samples}: expected at least 2")
    p, trained_on = None, None
    if preset is not None:
        from gan.metrics import published

        p = published.protocol(preset)
        if samples is not None or extractors or want != list(EVAL_METRICS):
            raise GanError(f"--protocol {preset} fixes the samples ({p.samples:,}), the metrics (fid, kid, is) and "
                           "the extractor (inception): drop --samples/--metrics/--extractor")
        trained_on = _trained_on(run)  # before any weights are loaded or fetched: the same answer on any machine
        published.check_applies(p, *trained_on)
    dev = pick_device(device)
    g = load_generator(run, which, dev)
    cfg = g.cfg
    # only what was asked: --metrics fid computes neither precision/recall nor the class metrics
    m = dataclasses.replace(cfg.metrics, fid="fid" in want, kid="kid" in want, is_="is" in want, enabled=True,
                            prc=False, classes=False, num_samples=samples or cfg.metrics.num_samples,
                            extractors=extractors or cfg.metrics.extractors)
    meter, reference, classes = None, None, None
    if p is None:
        data_set = load_dataset(cfg.data)
        ref, classes = to_tensor(data_set.metric_images, cfg.data.image_size, dev), data_set.classes
    else:
        x, reference = published.reference_images(p, data or _data_folder(cfg.data))
        ref = to_tensor(x, 32, dev)
        m = dataclasses.replace(m, num_samples=p.samples, ref_samples=p.reference_count, extractors=["inception"])
        from gan.metrics.meter import Meter

        meter = Meter(console, log)
        log(f"--protocol {p.name}: {p.what} (as {p.used_by} report)")
    try:
        ev, notes = build(m, ref, dev, cfg.model.z_dim, log, g.num_classes, classes, meter=meter,
                          reference=reference)
        if ev is None:
            raise GanError("no feature extractor can run: " + "; ".join(notes))
        proto = ev.protocol()
        values = ev(g.G, m.num_samples).values
    finally:
        if meter is not None:
            meter.close()
    record = {"at": now(), "checkpoint": which, "step": g.step, "samples": m.num_samples, "protocol": proto,
              "values": values}
    if p is not None:
        standard = all(e["suffix"] == "" for e in proto)
        record["published_protocol"] = {"name": p.name, "samples": p.samples, "reference": p.reference,
                                        "reference_count": p.reference_count, "what": p.what,
                                        "standard_inception": standard, "training_sha256": trained_on[1]}
        if not standard:
            log(f"[yellow]warning: these Inception weights are not the standard pt_inception-2015-12-05: the "
                f"numbers are logged as {', '.join(values)} and never sit beside published figures[/]")
    differs = None if p is not None else reference_check(run, proto)
    if differs:
        record["reference_differs"] = differs
        log(f"[yellow]warning: the reference images differ from the run's own (sha256 {differs['now'][:16]}… now, "
            f"{', '.join(s[:16] + '…' for s in differs['run'])} in its run.json): different data is a different "
            f"FID protocol; these numbers do not compare with the run's curves[/]")
    from torch.utils.tensorboard import SummaryWriter

    with runlock.records(run):  # read, append, replace: another eval's record is never lost
        path = run / "metrics.json"
        records = read_records(path, log)
        records.append(record)
        fileio.write_json(path, records)
        w = SummaryWriter(log_dir=str(run), filename_suffix=f".eval-{which}-{g.step}")
        prefix = "eval/" if p is None else f"eval/{p.name}/"  # a protocol's numbers never share a chart with others
        try:
            for tag, v in values.items():
                if math.isfinite(v):
                    w.add_scalar(prefix + tag.split("/", 1)[1], v, g.step)
            w.add_custom_scalars(eval_layout(run, records))  # the run's layout, now with its eval charts
        finally:
            w.close()
    return record


def eval_layout(run: Path, records: list) -> dict:
    """The run's Custom Scalars layout with a chart for every eval/* number its records logged (writer.run_layout):
    the layout the run wrote at its start has no eval chart, so that none stays empty before a `gan eval`."""
    from gan import writer
    from gan.runs import info_of

    tags = set()
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("values"), dict):
            continue
        pp = r.get("published_protocol")
        prefix = f"eval/{pp['name']}/" if isinstance(pp, dict) and pp.get("name") else "eval/"
        tags |= {prefix + t.split("/", 1)[1] for t, v in r["values"].items()
                 if isinstance(v, (int, float)) and math.isfinite(v)}
    info = info_of(run)
    return writer.run_layout(protocol_of(run), (info.get("primary_metric") or {}).get("tag"), tags)


def _trained_on(run: Path) -> tuple[int, str, str]:
    """(image size, content sha256 of the images the run trained on, where they came from): run.json's record, or
    for a run that recorded none, its dataset loaded again as the run's config gives it."""
    from gan import config

    cfg = config.load(str(run / "config.toml"))
    info = info_of(run)
    if info.get("data_sha256"):
        return cfg.data.image_size, info["data_sha256"], str(info.get("data", cfg.data.dataset))
    import torch

    from gan.data import content_hash, load_dataset, to_tensor

    ds = load_dataset(cfg.data)
    return cfg.data.image_size, content_hash(to_tensor(ds.images, cfg.data.image_size, torch.device("cpu"))), ds.source


def _data_folder(data_cfg) -> str:
    """Where a run's CIFAR-10 lives: data.root (or GAN_DATA_ROOT) for cifar10, else data.path's folder."""
    import os

    if data_cfg.dataset == "cifar10":
        return data_cfg.root
    path = Path(data_cfg.path.split("*")[0] or ".")
    return str(path if path.is_dir() else path.parent) if data_cfg.path else os.environ.get("GAN_DATA_ROOT", "data")


# ---- `gan sample` ----------------------------------------------------------------------------------------------
def pick_class(spec: str, names: list[str], run: Path) -> int:
    """A class given by name (case-insensitive) or index; one line naming the run's classes otherwise."""
    if not names:
        raise GanError(f"--class {spec!r}: run '{run}' is not conditional (its generator has no classes)")
    s = str(spec).strip()
    if s.isdigit() and int(s) < len(names):
        return int(s)
    low = [n.lower() for n in names]
    if s.lower() in low:
        return low.index(s.lower())
    shown = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    raise GanError(f"--class {spec!r}: run '{run}' has no such class (its classes: {shown})")


def draw(G, n: int, z_dim: int, num_classes: int, seed: int, device, klass: int | None = None):
    """n uint8 samples (CPU) of G in eval mode on latents drawn from `seed` on the CPU (the same images for a seed on
    any device); a conditional G draws its classes in turn, or only `klass`. `gan sample` and `gan neighbours`."""
    import torch

    from gan.data import to_uint8

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=gen)
    y = None if not num_classes else torch.full((n,), klass) if klass is not None else torch.arange(n) % num_classes
    was = G.training
    G.eval()
    try:
        with torch.inference_mode():
            return torch.cat([to_uint8(G(zc.to(device), None if y is None else y[i:i + 256].to(device))).cpu()
                              for i, zc in zip(range(0, n, 256), z.split(256))])
    finally:
        G.train(was)


def sample(run: Path, n: int = 64, out: Path | None = None, folder: Path | None = None, seed: int = 0,
           which: str = "last", device: str = "auto", klass: str | None = None) -> list[Path]:
    """n samples from a checkpoint as one PNG grid (8 per row) or, with `folder`, n PNG files. Never overwrites.
    A conditional generator draws the classes in turn, or only `klass` (a name or index) when given."""
    from torchvision.utils import save_image

    from gan.device import pick as pick_device

    if n < 1:
        raise GanError(f"--n {n}: expected at least 1")
    if out is not None and folder is not None:
        raise GanError("give --out or --folder, not both")
    if which not in WHICH:
        raise GanError(f"--checkpoint {which!r}: expected last or best")
    dev = pick_device(device)
    g = load_generator(run, which, dev)
    k = None if klass is None else pick_class(klass, g.class_names, run)
    if folder is not None:
        targets = [Path(folder) / f"{i:06d}.png" for i in range(n)]
    else:
        tail = "" if k is None else f"-class{k}-{g.class_names[k]}"
        targets = [Path(out) if out is not None else run / f"samples-{which}-step{g.step}-seed{seed}-n{n}{tail}.png"]
    clash = next((p for p in targets if p.exists()), None)
    if clash is not None:
        raise GanError(f"'{clash}' already exists: not overwriting it (choose another --out/--folder)")
    x = draw(g.G, n, g.cfg.model.z_dim, g.num_classes, seed, dev, k)
    if folder is None:
        writes = [(targets[0], lambda f: save_image(x.float() / 255, f, nrow=8, format="png"))]
    else:
        from PIL import Image

        writes = [(p, lambda f, img=img: Image.fromarray(img).save(f, format="PNG"))
                  for img, p in zip(x.permute(0, 2, 3, 1).numpy(), targets)]
    with runlock.records(run):
        for p, fill in writes:  # exclusive: a file made by someone else since the check is still kept
            fileio.write_atomic(p, fill, exclusive=True)
    return targets


def describe(rec: dict) -> str:
    """The one line `gan eval` prints of a record."""
    return ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in rec["values"].items())


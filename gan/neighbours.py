"""`gan neighbours RUN`: what the generator copied.

N samples of the run's generator (its EMA when it has one) are set beside their nearest training images, found by
an extractor's features (the standard Inception's pool layer when its weights are here, else c10's `feat`) and by
pixels, each labelled with its distance: a PNG (never overwriting; default inside the run) and an image in the
run's TensorBoard (`images/neighbours` at the checkpoint's step). The samples closest to a training image come
first. One number sums it up, the copy rate (defined in gan/metrics/copying.py): the share of samples closer to
their nearest training image than 99 % of held-out real images lie to theirs, by features or by pixels (each space
misses copies the other sees), ≈ 1 % for a generator whose samples are as new as fresh real images, with a 95 %
Wilson interval. It is logged as `neighbours/copy_rate_c10` (the extractor's suffix, as every metric's:
gan/metrics/protocol.py) and appended to the run's metrics.json with its protocol (extractor and weights, training
and held-out images and their content hashes, thresholds, what each space alone counts), under the run's lock.

Held-out images, the first that applies: --heldout (an npz file, folder or glob); the images of the run's own data
that data.limit / data.fraction left out of training; the test split beside the training data (CIFAR-10's
test-*.npz or cifar-10-batches-py/test_batch for data.dataset = "cifar10", and for npz train-*.npz shards). A run
that trained on every image it has and has no test split beside them is refused in one line: no share can be held
out of a training that is over. At most HELDOUT of them, evenly spaced; at least copying.MIN_HELDOUT.

A run trained with data.hflip saw every image mirrored as well, so the training set searched (for the samples and
the held-out images alike) holds the mirror images too: a mirrored copy is a copy. Training-set features are cached
under GAN_CACHE like the reference statistics (keyed by the extractor's weights, the images' content hash and
count; the metrics' own reference cache is read when it holds the same images). The same check runs at the end of
a completed run when metrics.neighbours = N (the engine calls `at_end`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from gan import fileio, runlock
from gan.console import console
from gan.data import content_hash, load_dataset, npz_files, subset, to_tensor
from gan.errors import GanError
from gan.evaluate import WHICH, draw, load_generator, read_records
from gan.metrics import copying, extractors
from gan.metrics.evaluator import _console, cache_dir
from gan.metrics.meter import Meter
from gan.rundir import now

TAG = "images/neighbours"
HELDOUT = 1000  # held-out images used at most (CIFAR-10's shared test split has 1,000)
K = 2  # nearest training images shown per space
SHOW = 64  # samples drawn in the grid by default
MAX_N = 50_000


@dataclasses.dataclass
class Report:
    samples: torch.Tensor  # uint8 (N, 3, H, W), CPU
    train: torch.Tensor  # uint8 (T, 3, H, W): the run's training images (then mirrored, with data.hflip)
    copies: copying.Copies  # its spaces: the extractor's features, then pixels
    protocol: dict
    step: int


# ---- the images: the run's training set and held-out real images ----------------------------------------------
def data_for(cfg, given: str | None = None, log=console.print) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(training images, held-out images (uint8 NHWC), where the held-out ones come from, the training source)."""
    from gan.metrics.published import split_images

    d = cfg.data
    full = load_dataset(dataclasses.replace(d, limit=0, fraction=1.0), log)
    keep, said = subset(len(full.images), full.labels, d.limit, d.fraction)
    train, source = full.images[keep], f"{full.source.rsplit(' (', 1)[0]} ({said})"
    unseen = np.ones(len(full.images), bool)
    unseen[keep] = False
    if given:
        from gan.data import load_npz_dataset

        try:
            held, what = load_npz_dataset(given)[0], f"--heldout {given}"
        except GanError as e:
            raise GanError(f"--heldout: {str(e).removeprefix('data.path: ')}") from None
    elif unseen.any():
        held, what = full.images[unseen], f"images of the run's data it never trained on ({said})"
    else:
        files = npz_files(d.path) if d.dataset == "npz" else []
        root = d.root if d.dataset == "cifar10" else None
        if files and all(Path(f).name.startswith("train-") for f in files):  # shards as CIFAR-10's lie
            root = str(Path(files[0]).parent)
        found = split_images(root, "test") if root else None
        if found is None:
            raise GanError(f"no held-out images to calibrate the copy rate: the run trained on all {len(train):,} "
                           f"images of {source} and no test split lies beside them (test-*.npz or "
                           "cifar-10-batches-py/test_batch); give real images it never saw with --heldout PATH "
                           "(an npz file, folder or glob)")
        held, what = found[0], f"the test split {found[1]}"
    if len(held) < copying.MIN_HELDOUT:
        raise GanError(f"{len(held)} held-out images ({what}): at least {copying.MIN_HELDOUT} are needed to place "
                       f"a {copying.PERCENT} % threshold")
    pick = np.unique(np.linspace(0, len(held) - 1, min(HELDOUT, len(held))).round().astype(int))
    return train, held[pick], f"{len(pick):,} of {len(held):,} {what}", source


def features(e, images: torch.Tensor, batch: int, log, device) -> torch.Tensor:
    """The extractor's feature rows of many images, cached by content (the metrics' reference cache is read
    when it holds these very images); said up front and shown with a progress bar when computed."""
    layer = e.spec.layers["fid"]
    key = f"{e.name}-{e.sha256[:16]}-{content_hash(images)[:16]}-n{len(images)}.pt"
    mine = cache_dir() / "neighbours" / key
    for path in (cache_dir() / "refstats" / key, mine):
        if not path.is_file():
            continue
        try:
            f = fileio.load_torch(path)["features"][layer]
            if isinstance(f, torch.Tensor) and len(f) == len(images):
                log(f"neighbours: {len(images):,} images' {e.name} features: cached {path}")
                return f
        except Exception as err:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
            log(f"neighbours: cache {path} is damaged ({type(err).__name__}): recomputing")
    meter = Meter(_console(log), log)
    try:
        meter.plan([e], len(images), device)
        f = e.features(images, batch)[layer]
    finally:
        meter.close()
        e.on_batch = None
    try:
        fileio.save_torch(mine, {"features": {layer: f}}, checksum=True)
        log(f"neighbours: cached {mine}")
    except GanError as err:  # a cache the disk cannot take is not a reason to stop
        log(f"neighbours: not cached ({err})")
    return f


# ---- the measurement --------------------------------------------------------------------------------------------
def measure(G, cfg, num_classes: int, train_np: np.ndarray, held_np: np.ndarray, held_what: str, n: int,
            seed: int, device, step: int, log=console.print, extractor: str | None = None,
            source: str = "") -> Report:
    """N samples of G, their nearest training images by features and by pixels, and the copy rate in each."""
    names = [extractor] if extractor else cfg.metrics.extractors
    chosen, notes = extractors.choose(names, cfg.metrics.inception_weights)
    if not chosen:
        raise GanError("no feature extractor can run: " + "; ".join(notes))
    e = extractors.load(*chosen[0], device)
    size, bs = cfg.data.image_size, cfg.metrics.batch_size
    train, held = to_tensor(train_np, size, device), to_tensor(held_np, size, device)
    # a run that trained with data.hflip saw each image mirrored too: a mirrored copy is a copy
    refs = [train] + ([train.flip(-1)] if cfg.data.hflip else [])
    samples = draw(G, n, cfg.model.z_dim, num_classes, seed, device)
    ft, fh = torch.cat([features(e, x, bs, log, device) for x in refs]), features(e, held, bs, log, device)
    fs = e.features(samples.to(device), bs)[e.spec.layers["fid"]]
    pixels = torch.cat(refs)
    copies = copying.Copies([copying.space(e.name, fs, fh, ft, K),
                             copying.space("pixels", samples.to(device), held, pixels, K,
                                           scale=math.sqrt(samples[0].numel()))], f"neighbours/copy_rate{e.suffix}")
    proto = {"definition": f"share of samples closer to their nearest training image than {100 - copying.PERCENT} % "
                           "of held-out real images lie to theirs, by features or by pixels (gan/metrics/copying.py); "
                           "Wilson 95 % interval",
             "extractor": e.name, "suffix": e.suffix, "layer": e.spec.layers["fid"], "weights": e.weights_path,
             "weights_sha256": e.sha256, "training": source, "training_images": len(train),
             "training_sha256": content_hash(train), "mirrored": cfg.data.hflip, "heldout": held_what,
             "heldout_images": len(held), "heldout_sha256": content_hash(held),
             "pixel_distance": "RMS per value, 0..255",
             "thresholds": {s.name: s.tau / s.scale for s in copies.spaces}, "heldout_below": copies.heldout_below,
             "expected_of_new_images": copies.fresh}
    for s in copies.spaces:
        if s.tau == 0:
            log(f"[yellow]warning: {copies.k} or more held-out images are also training images (distance 0 by "
                f"{s.name}): no sample can lie below them there[/]")
    return Report(samples, pixels.cpu(), copies, proto, step)


# ---- the picture ------------------------------------------------------------------------------------------------
RED, GREY, WHITE = (230, 60, 60), (170, 170, 170), (255, 255, 255)


def picture(rep: Report, show: int = SHOW) -> torch.Tensor:
    """uint8 (3, H, W): a header with the copy rate, then per sample (the closest to a training image, relative to
    the thresholds, first): the sample (framed red when it counts as a copy), its K nearest training images by
    features, then by pixels, each labelled with its distance (red: below that space's threshold)."""
    from PIL import Image, ImageDraw, ImageFont

    c = rep.copies
    f = c.spaces[0]
    near = torch.stack([x.distances[:, 0] / max(x.tau, 1e-12) for x in c.spaces]).min(0).values
    order = near.argsort()[:show].tolist()
    s = rep.samples.shape[-1]
    tile, lab, gap = s + 4, 12, 10
    block = (1 + 2 * K) * tile + 4 + gap
    font = ImageFont.load_default()
    head = [c.line(), c.alone(),
            f"each sample #i (seed order), then its {K} nearest training images by {f.name} features, then by pixels "
            "(RMS 0-255); red frame: a copy, red distance: below that space's threshold",
            f"thresholds: fewer than {copying.PERCENT} % of {rep.protocol['heldout']} lie below either"
            + (" (to the training images and their mirror images: data.hflip)" if rep.protocol["mirrored"] else "")]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    per_row = max(1, min(len(order), 1100 // block))
    width = max(per_row * block, max(int(probe.textlength(t, font=font)) for t in head) + 8)
    top = 14 * len(head) + 6
    canvas = Image.new("RGB", (width, top + math.ceil(len(order) / per_row) * (tile + lab + 4)), (0, 0, 0))
    ink = ImageDraw.Draw(canvas)
    for i, t in enumerate(head):
        ink.text((4, 3 + 14 * i), t, fill=WHITE, font=font)

    def put(img: torch.Tensor, x: int, y: int, label: str, colour, frame=None) -> None:
        if frame is not None:
            ink.rectangle([x, y, x + s + 3, y + s + 3], outline=frame, width=2)
        canvas.paste(Image.fromarray(img.permute(1, 2, 0).numpy()), (x + 2, y + 2))
        ink.text((x + 2, y + tile), label, fill=colour, font=font)

    for slot, j in enumerate(order):
        x, y = (slot % per_row) * block, top + (slot // per_row) * (tile + lab + 4)
        put(rep.samples[j], x, y, f"#{j}", WHITE, RED if bool(c.copied[j]) else None)
        for g, r in enumerate(c.spaces):
            for m in range(r.indices.shape[1]):
                d = float(r.distances[j, m])
                put(rep.train[int(r.indices[j, m])], x + (1 + g * K + m) * tile + 4 * g, y, f"{d / r.scale:.3g}",
                    RED if d < r.tau else GREY)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


# ---- the record -------------------------------------------------------------------------------------------------
def free_png(run: Path, which: str, step: int, seed: int, n: int) -> Path:
    """The default PNG: <run>/neighbours-<ckpt>-step<S>-seed<seed>-n<N>.png, or its first free -1, -2, ..."""
    stem = f"neighbours-{which}-step{step}-seed{seed}-n{n}"
    return next(p for i in range(10_000) if not (p := run / f"{stem}{f'-{i}' if i else ''}.png").exists())


def record(run: Path, rep: Report, which: str, seed: int, out: Path | None, show: int, tb=None,
           log=console.print) -> Path:
    """The PNG, the metrics.json record and the TensorBoard image and scalars; the caller holds the run's lock.
    `tb`: the run's own writer (at the end of a run), else an events file of its own beside the run's."""
    from torchvision.utils import save_image

    grid = picture(rep, show)
    n = len(rep.samples)
    while True:  # never overwrite: a default name taken meanwhile moves on to the next one
        png = Path(out) if out is not None else free_png(run, which, rep.step, seed, n)
        try:
            fileio.write_atomic(png, lambda fh: save_image(grid.float() / 255, fh, format="png"), exclusive=True)
            break
        except GanError as e:
            if out is not None or "already exists" not in str(e):
                raise
    c = rep.copies
    values = {c.tag: c.value}
    rec = {"at": now(), "kind": "neighbours", "checkpoint": which, "step": rep.step, "samples": n, "seed": seed,
           "values": values, "copies": c.copies, "interval95": list(c.interval),
           "below_alone": {s.name: int(s.below.sum()) for s in c.spaces}, "protocol": rep.protocol, "png": str(png)}
    path = run / "metrics.json"
    fileio.write_json(path, read_records(path, log) + [rec])
    if tb is not None:
        tb.image(TAG, grid, rep.step)
        tb.scalars(values, rep.step)
        return png
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(run), filename_suffix=f".neighbours-{which}-{rep.step}")
    try:
        w.add_image(TAG, grid, rep.step)
        for tag, v in values.items():
            w.add_scalar(tag, v, rep.step)
    finally:
        w.close()
    return png


# ---- the command and the end of a run ---------------------------------------------------------------------------
def check_n(n: int, show: int) -> None:
    if not 1 <= n <= MAX_N:
        raise GanError(f"--n {n}: expected 1 to {MAX_N:,} samples")
    if show < 1:
        raise GanError(f"--show {show}: expected at least 1")


def neighbours(run: Path, n: int = 64, show: int = SHOW, out: Path | None = None, heldout: str | None = None,
               seed: int = 0, which: str = "last", device: str = "auto", extractor: str | None = None,
               log=console.print) -> tuple[Report, Path]:
    """`gan neighbours`: measure a checkpoint, then write the PNG, metrics.json and TensorBoard under the lock."""
    from gan.device import pick as pick_device

    check_n(n, show)
    if which not in WHICH:
        raise GanError(f"--checkpoint {which!r}: expected last or best")
    if out is not None and Path(out).exists():
        raise GanError(f"'{out}' already exists: not overwriting it (choose another --out)")
    runlock.refuse_if_held(run)  # a run being trained: said now, not after the work
    dev = pick_device(device)
    g = load_generator(run, which, dev)
    train, held, what, source = data_for(g.cfg, heldout, log)
    rep = measure(g.G, g.cfg, g.num_classes, train, held, what, n, seed, dev, g.step, log, extractor, source)
    with runlock.holding(run):
        png = record(run, rep, which, seed, out, show, None, log)
    return rep, png


def at_end(run: Path, cfg, G, num_classes: int, step: int, tb, log, stop) -> None:
    """metrics.neighbours = N at the end of a completed run (its process holds the lock; `tb` is its writer). What
    keeps it from running (no held-out images, a signal) is said in one line and the run ends as it would."""
    from gan.stop import Interrupted

    n = cfg.metrics.neighbours
    try:
        with stop.droppable():
            train, held, what, source = data_for(cfg, None, log)
            rep = measure(G, cfg, num_classes, train, held, what, n, 0, next(G.parameters()).device, step, log,
                          source=source)
        png = record(run, rep, "end", 0, None, min(n, SHOW), tb, log)
    except (GanError, Interrupted) as e:
        log(f"[yellow]metrics.neighbours: skipped: {e or 'interrupted'}[/]")
        return
    log(f"neighbours: {rep.copies.line()}; {rep.copies.alone()}")
    log(f"neighbours: {png}")

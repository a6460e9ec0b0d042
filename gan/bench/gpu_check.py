"""`python -m gan.bench.gpu_check [--profile gpu|tiny] [--sections ...]`: every figure the README leaves open for a
GPU, in one command (`make gpu-check`, under 8 minutes on one GPU), each printed with the device's name.

Sections, each the bench's own code: `speed` (DCGAN and SN-GAN CNN img/s against the seed-style loop, and the best
DCGAN setting at large batches: the ≥ 50,000 img/s goal), `levers` (each switch of the engine, TF32, bf16 and
torch.compile), `precision` (fp32/TF32, bf16 and fp16 autocast in one race), `fidcheck` (FID_c10 of the same samples
with each numerics-changing lever: TF32, bf16, compile), `runs` (`baseline` and `best` img/s
over a few hundred steps, and what their full length would take), `eval` (an evaluation at 10k and 50k samples:
c10, and the standard Inception when its weights are here) and `ddp` (a 1-process torchrun run beside the same run
without it). `--profile tiny` runs all of it on the CPU in seconds with tiny nets (the test suite's: its numbers
mean nothing). Anything missing (no CUDA device, no data, a missing package, no c10 weights) stops it at once with
one line, exit 2; a section that fails is written into the report and the exit code is 1.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOAL = 50_000  # DCGAN img/s on an H100: the project's goal (gan/bench/report.py, target cuda_img_s)
SECTIONS = ("speed", "levers", "precision", "fidcheck", "runs", "eval", "ddp")
# the packages this script imports (pyproject's dependencies, less the sweep's optuna and submitit)
NEEDS = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "PIL": "pillow", "scipy": "scipy",
         "tensorboard": "tensorboard", "typer": "typer", "rich": "rich", "tqdm": "tqdm",
         "torch_fidelity": "torch-fidelity"}
SIZES = {"gpu": {"eval_ns": (10_000, 50_000), "run_steps": 300, "peak_batches": (128, 512, 2048)},
         "tiny": {"eval_ns": (40, 80), "run_steps": 3, "peak_batches": (16, 32)}}


class Missing(Exception):
    """Something the check needs is not on this machine: one line, exit 2."""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gan.bench.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=list(SIZES), default="gpu",
                    help="gpu (default: needs CUDA) or tiny (the CPU, seconds, tiny nets: its numbers mean nothing)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list out of {', '.join(SECTIONS)}")
    ap.add_argument("--data", default=None, help="CIFAR-10 train-*.npz shards (a folder) or an npz file (default: "
                                                 "GAN_DATA_ROOT, the shared shards, or data/ in this checkout)")
    ap.add_argument("--out", default="bench-out", help="folder of the report files")
    return ap


def data_folder(arg: str | None) -> str | None:
    """Where the CIFAR-10 shards are: --data, GAN_DATA_ROOT, the shared shards, or data/ here (git-ignored)."""
    from gan.bench.context import DEFAULT_DATA

    if arg:
        if not Path(arg).exists():
            raise Missing(f"--data {arg}: no such file or folder")
        return arg
    for root in (os.environ.get("GAN_DATA_ROOT"), DEFAULT_DATA, ROOT / "data"):
        if root and glob.glob(str(Path(root) / "train-*.npz")):
            return str(root)
    return None


def preflight(profile: str, data: str | None) -> list[str]:
    """What the check needs, in the order a user can fix it; raises Missing with one line. Returns notes."""
    gone = [pip for mod, pip in NEEDS.items() if importlib.util.find_spec(mod) is None]
    if gone:
        raise Missing(f"missing Python package(s): {', '.join(gone)} (offline: `pip download --no-deps "
                      f"{' '.join(gone)}` on a connected machine for this Python, then `pip install --no-deps` the "
                      "wheels here)")
    import torch

    if profile == "gpu" and not torch.cuda.is_available():
        raise Missing("no CUDA device (torch.cuda.is_available() is False): this check measures a GPU; "
                      "`--profile tiny` runs it on the CPU")
    if data is None:
        raise Missing("no CIFAR-10 shards: copy ../shared/data/cifar10/train-*.npz into data/ (git-ignored), set "
                      "GAN_DATA_ROOT, or give --data")
    from gan import features

    if not features.WEIGHTS.is_file():
        raise Missing(f"no c10 weights at {features.WEIGHTS} (they ship with the checkout: carry gan/weights/)")
    from gan.metrics import extractors

    inc, why = extractors.inception_weights()
    return [f"standard Inception: {'timed in eval, ' + why if inc else 'not timed (' + why + ')'}"]


def device_name(device) -> str:
    import torch

    from gan.bench import machine

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{machine.cpu()[0]} (CPU)"


def fp16_loop(label: str, ctx, exp: str):
    """The engine's step under fp16 autocast, for its speed only: the engine trains in fp32 or bf16 (fp16 would
    need a GradScaler); this says whether adding it would pay on this device."""
    import torch

    from gan.bench.speed import EngineLoop

    loop = EngineLoop(label, ctx, exp, ['train.precision="fp32"'])  # its own autocast off: the one here decides
    plain = loop.step

    def step():
        with torch.autocast(loop.device.type, dtype=torch.float16):
            return plain()
    loop.step = step
    return loop


# ---- sections ------------------------------------------------------------------------------------------------
def speed(ctx, sizes: dict, figures: list) -> None:
    from gan.bench import speed as sp

    sp.run(ctx)  # on CUDA this also measures the large-batch peak (the goal's figure)
    d = ctx.report.sections["speed"]["data"]
    for exp in ("dcgan", "baseline"):
        figures.append((f"{exp}: engine img/s vs seed-style loop", f"{d[exp]['engine_img_s']:,.0f} vs "
                        f"{d[exp]['seed_img_s']:,.0f} img/s ({d[exp]['ratio']:.2f}×)"))
    peak = d.get("cuda") or sp.cuda_peak(ctx, sizes["peak_batches"])  # the CPU runs the same code at small batches
    met = "n/a on a CPU" if not ctx.cuda else "met" if peak["best_img_s"] >= GOAL else "NOT met"
    figures.append(("DCGAN engine img/s, best setting", f"{peak['best_img_s']:,.0f} img/s ({peak['best']}) vs goal "
                    f"≥ {GOAL:,} on an H100: {met}"))


def compile_or_not(ctx, figures: list) -> None:
    """torch.compile needs triton and a C compiler on a GPU machine: tried once on a small function; where it
    fails, the levers and the FID check run without it and one figure says why (not a failed section)."""
    import torch

    if not ctx.profile.compile or ctx.left.get("compile_checked"):
        return
    ctx.left["compile_checked"] = True
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(8, device=ctx.device))
    except Exception as e:  # noqa: BLE001 - whatever inductor raises: said in one line, the rest still runs
        ctx.profile = ctx.left["compile_failed"] = dataclasses.replace(ctx.profile, compile=False)
        figures.append(("lever: torch.compile", f"not run: it fails here ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else ''})"))


def levers(ctx, sizes: dict, figures: list) -> None:
    from gan.bench import levers as lv

    compile_or_not(ctx, figures)
    lv.run(ctx)
    d = ctx.report.sections["levers"]["data"]
    base = d["img_s"]["defaults"]
    figures.append(("DCGAN defaults (levers race)", f"{base:,.0f} img/s"))
    for label, rate in d["img_s"].items():
        if label != "defaults":
            figures.append((f"lever: {label}", f"{rate:,.0f} img/s ({rate / base:.2f}× of defaults)"))
    if "compile" in d:
        figures.append(("torch.compile warm-up", f"+{d['compile']['warmup_extra_s']:.0f} s over eager steps"))
    figures += [(f"lever: {r.split(':')[0]}", r.split(": ", 1)[1]) for r in d["not_run"]
                if not (r.startswith("torch.compile") and "compile_failed" in ctx.left)]  # said above


def precision(ctx, sizes: dict, figures: list) -> None:
    from gan import device as gdevice
    from gan.bench.speed import RACE_HEADER, EngineLoop, race, race_rows

    base = "fp32" + (" (TF32)" if ctx.cuda else "")
    loops, notes = [EngineLoop(base, ctx, "dcgan", ['train.precision="fp32"'])], {}
    ok, why = gdevice.bf16_supported(ctx.device)
    if ok:
        loops.append(EngineLoop("bf16 autocast", ctx, "dcgan", ['train.precision="bf16"']))
    else:
        figures.append(("precision: bf16 autocast", f"not run: {why}"))
    try:
        fp16 = fp16_loop("fp16 autocast", ctx, "dcgan")
        fp16.step()  # fails here, not inside the race, where autocast cannot run fp16
        loops.append(fp16)
        notes["fp16 autocast"] = "speed only: no GradScaler, the engine has no fp16 precision"
    except RuntimeError as e:
        figures.append(("precision: fp16 autocast", f"not run: {str(e).splitlines()[0][:120]}"))
    res = race(ctx, loops, base, "precision")
    ctx.report.table([h.format(base=base) for h in RACE_HEADER], race_rows(res, base, notes))
    ctx.report.data(img_s={k: r["median"] for k, r in res.items()}, paired={k: r["paired"] for k, r in res.items()})
    for label, r in res.items():
        rel = "" if label == base else f" ({statistics.fmean(r['paired']):.2f}× of {base}, paired)"
        figures.append((f"precision: DCGAN {label}", f"{r['median']:,.0f} img/s{rel}"))
    for e in loops:
        e.close()


def fidcheck(ctx, sizes: dict, figures: list) -> None:
    from gan.bench import fidcheck as fc

    compile_or_not(ctx, figures)
    fc.run(ctx)
    d = ctx.report.sections["fidcheck"]["data"]
    for name, v in d.get("levers", {}).items():
        figures.append((f"FID_c10 change, {name}", f"{v['relative'] * 100:.3f} % on the same {d['samples']:,} samples "
                        f"(largest pixel change {v['max_abs_diff']}/255)"))


def runs(ctx, sizes: dict, figures: list) -> None:
    """`baseline` and `best` as shipped (batch, n_dis, precision, DiffAugment, conditioning) over a few hundred
    steps: img/s, and the time their full length would take here."""
    from gan.bench.speed import EngineLoop, time_steps

    n, rows = sizes["run_steps"], []
    for exp in ("baseline", "best"):
        e = EngineLoop(exp, ctx, exp)
        time_steps(e, 10 if ctx.cuda else 1)  # kernel choice
        secs = time_steps(e, n)
        step_s, img_s, total = secs / n, n * e.imgs_per_step / secs, e.tr.steps
        rows.append([exp, e.tr.cfg.model.arch, e.tr.precision, n, f"{img_s:,.0f}", f"{1 / step_s:,.2f}",
                     f"{total:,}", f"{total * step_s / 3600:,.2f} h"])
        ctx.report.data(**{exp: {"img_s": img_s, "step_s": step_s, "steps_timed": n, "precision": e.tr.precision,
                                 "planned_steps": total}})
        figures.append((f"{exp}: img/s over {n} steps", f"{img_s:,.0f} img/s ({e.tr.precision}; its {total:,} "
                        f"steps ≈ {total * step_s / 3600:,.1f} h of training)"))
        e.close()
    ctx.report.table(["experiment", "arch", "precision", "steps timed", "img/s (real images through D)",
                      "G steps/s", "planned steps", "planned length here (evaluations excluded)"], rows)


def evaluation(ctx, sizes: dict, figures: list) -> None:
    """One evaluation at each N (generate, features, scores: gan/bench/metrics_cost.py's timing) for c10 and, with
    its weights, the standard Inception; the reference statistics of the training images fresh and cached."""
    from gan.bench import metrics_cost as mc
    from gan.bench.context import cache_at
    from gan.data import load_dataset, to_tensor
    from gan.metrics import extractors
    from gan.models import build

    data = load_dataset(ctx.cfg(mc.EXP).data)
    images = to_tensor(data.images, 32, ctx.device)
    G = build(ctx.cfg(mc.EXP).model, 32)[0].to(ctx.device)
    rows = []
    for name, _ in extractors.choose(["auto"])[0]:
        with cache_at(ctx.tmp / f"cache-eval-{name}"):
            ref = 0 if ctx.cuda else ctx.profile.ref_n  # on a GPU every training image, as the published protocol
            ev, fresh = mc.timed(lambda: mc.evaluator(ctx, images, [name], ref), ctx.device)
            ev, cached = mc.timed(lambda: mc.evaluator(ctx, images, [name], ref), ctx.device)
        mc.time_eval(ev, G, min(sizes["eval_ns"]))  # warm-up
        for n in sizes["eval_ns"]:
            t = mc.time_eval(ev, G, n)
            rows.append([name, f"{n:,}", f"{t['total']:.1f}", f"{t['generate']:.1f}", f"{t['features']:.1f}",
                         f"{t['scores']:.1f}"])
            ctx.report.data(**{f"{name}_{n}": t})
            figures.append((f"evaluation {name}, N = {n:,}", f"{t['total']:.1f} s (features {t['features']:.1f} s, "
                            f"scores {t['scores']:.1f} s)"))
        figures.append((f"reference statistics {name}, {len(ev.ref_images):,} images", f"{fresh:.1f} s fresh, "
                        f"{cached:.1f} s cached"))
    ctx.report.table(["extractor", "N", "total s", "generate s", "features s", "scores s (FID/KID/IS/classes)"], rows)


def ddp(ctx, sizes: dict, figures: list) -> None:
    """`smoke` trained by torchrun with one process, beside the same run started plainly. With WORLD_SIZE=1 the
    engine runs its single-process path (gan/dist.py), so this checks the launcher on this device and its cost."""
    n = 200 if ctx.cuda else 4
    shrink = [o for o in ctx.profile.shrink if not o.startswith("metrics.")]  # metrics are off here
    sets = [*ctx.data_ov, *shrink, f"train.steps={n}", "metrics.enabled=false",
            f"train.log_every={max(1, n // 4)}", f"train.checkpoint_every={n}", f"train.image_every={n}"]
    args = ["train", "smoke", "--device", ctx.device.type, *[x for s in sets for x in ("--set", s)]]
    rows = []
    for label, head in (("plain", [sys.executable, "-m", "gan"]),
                        ("torchrun, 1 process", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 "--nproc_per_node", "1", "-m", "--", "gan"])):
        logs = ctx.tmp / f"ddp-{label.split(',')[0]}"
        t = time.perf_counter()
        p = subprocess.run([*head, *args, "--logs", str(logs)], capture_output=True, text=True, cwd=ROOT,
                           stdin=subprocess.DEVNULL, timeout=600)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"{label}: exit {p.returncode}: {(p.stderr or p.stdout)[-400:]}")
        info = json.loads(next(logs.glob("smoke/*/run.json")).read_text())
        img_s = n * ctx.cfg("smoke").optim.batch_size / info["train_seconds"]
        rows.append([label, info["status"], n, f"{img_s:,.0f}", f"{info['train_seconds']:.1f}", f"{wall:.1f}"])
        ctx.report.data(**{label: {"img_s": img_s, "train_seconds": info["train_seconds"], "wall_s": wall}})
        figures.append((f"smoke, {label}: {n} steps", f"{img_s:,.0f} img/s, {info['status']}, {wall:.0f} s wall "
                        "with start-up"))
    ctx.report.table(["launch", "status", "steps", "img/s (training time)", "training s", "wall s"], rows)


RUN = {"speed": speed, "levers": levers, "precision": precision, "fidcheck": fidcheck, "runs": runs,
       "eval": evaluation, "ddp": ddp}
TITLES = {"speed": "Speed: engine vs the seed-style loop, and the DCGAN peak",
          "levers": "Levers, one at a time (DCGAN)", "precision": "Precision: fp32/TF32, bf16, fp16 autocast",
          "fidcheck": "FID check of numerics-changing levers", "runs": "baseline and best as shipped",
          "eval": "Evaluation time at 10k and 50k samples", "ddp": "1-process DDP (torchrun)"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    t0 = time.perf_counter()
    try:
        bad = [s for s in sections if s not in SECTIONS]
        if bad or not sections:
            raise Missing(f"--sections {a.sections!r}: expected a comma list out of {', '.join(SECTIONS)}")
        data = data_folder(a.data)
        notes = preflight(a.profile, data)
    except Missing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    from gan.bench import machine
    from gan.bench.context import PROFILES, Context, cache_at, env_at, find_data, inductor_cold
    from gan.bench.report import Report, table

    device = torch.device("cuda" if a.profile == "gpu" else "cpu")
    base = PROFILES["quick" if a.profile == "gpu" else "tiny"]
    profile = dataclasses.replace(base, name=a.profile, windows=4, window_s=1.5, compile=True) \
        if a.profile == "gpu" else dataclasses.replace(base, shrink=(*base.shrink, "data.limit=2048"))
    sizes, tmp = SIZES[a.profile], Path(tempfile.mkdtemp(prefix="gan-gpucheck-"))
    say = lambda line="": print(line, flush=True)  # noqa: E731
    try:
        with env_at("GAN_DATA_ROOT", data) if not a.data else contextlib.nullcontext():  # the folder found above
            data_ov, data_note = find_data(a.data, tmp)
        rep = Report(machine.facts(device), argv, f"gpu-check-{a.profile}", say=say)
        ctx = Context(device, profile, data_ov, data_note, tmp, rep, a)
        name, figures = device_name(device), []
        say(f"# gan gpu-check ({a.profile}) on {name}")
        for ln in machine.header(rep.facts) + [f"- data: {data_note}"] + [f"- {n}" for n in notes]:
            say(ln)
        for s in SECTIONS:
            if s in sections:
                # the check's reference statistics stay out of the user's cache; compile's warm-up is timed cold
                with rep.section(s, TITLES[s]), cache_at(tmp / "cache"), inductor_cold(tmp):
                    RUN[s](ctx, sizes, figures)
        path = rep.write(Path(a.out))
        say(f"\n## Every figure, on {name}\n")
        rows = [[what, value, name] for what, value in figures]
        rows += [[f"section {k} FAILED", s["error"][:160], name] for k, s in rep.sections.items() if s["error"]]
        for ln in table(["figure", "value", "device"], rows):
            say(ln)
        failed = [k for k, s in rep.sections.items() if s["error"]]
        code = 1 if failed else 0
        say(f"\nreport: {path} (+ .json); {time.perf_counter() - t0:.0f} s; exit code {code}"
            + (f" (failed: {', '.join(failed)})" if failed else ""))
        return code
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

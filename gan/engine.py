"""The one training loop for every model: data on the device, losses kept on the device between logs."""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torchvision.utils import make_grid, save_image

from gan import checkpoint, config as config_mod, dist as gdist, losses
from gan.config import Config
from gan.data import load_images, to_tensor, to_uint8
from gan.errors import GanError
from gan.models import build, count_params
from gan.sampler import Sampler
from gan.tracking import (RunInfo, Tracker, console, flatten, git_commit, hparam_metrics, new_run_dir, now,
                          versions)

GRID = 64  # fixed latents shown in the fake grid


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GanError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise GanError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device | None = None) -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
        if device is not None and device.type == "cuda":  # the generator this process draws from: under torchrun
            s["cuda_device"] = torch.cuda.get_rng_state(device)  # cuda:LOCAL_RANK, which resume puts on its own
    # numpy/python states hold tuples and arrays; store them as plain lists/tensors for weights_only loading
    kind, keys, pos, has_gauss, cached = s["numpy"]
    s["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached}
    ver, internal, gauss = s["python"]
    s["python"] = {"version": ver, "internal": list(internal), "gauss": gauss}
    return s


def set_rng_state(s: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in s and torch.cuda.is_available():
        for i, st in enumerate(s["cuda"][:torch.cuda.device_count()]):  # a checkpoint from a bigger machine fits
            torch.cuda.set_rng_state(st, i)
        if s.get("cuda_device") is not None and device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(s["cuda_device"], device)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):  # BatchNorm statistics are copied, not averaged
        be.copy_(bm)


def total_steps(cfg: Config, n_images: int) -> int:
    if cfg.train.epochs > 0:  # one pass = N / (batch * n_dis) G steps, as the D sees every image once
        return max(1, math.ceil(cfg.train.epochs * n_images / (cfg.optim.batch_size * cfg.optim.n_dis)))
    return cfg.train.steps


@dataclass
class Result:
    run_dir: Path
    status: str
    step: int
    losses: list = field(default_factory=list)  # (step, loss_D, loss_G) at every log point
    metrics: list = field(default_factory=list)  # (step, {tag: value})
    best: dict | None = None


class StopFlag:
    """First SIGINT/SIGTERM: finish the step, checkpoint, exit 130/143. Second: stop at once.

    Under torchrun a signal reaches each rank twice (the terminal's Ctrl-C goes to the whole process group and
    torchrun passes it on): a repeat within `debounce` seconds counts as the same signal."""

    def __init__(self, debounce: float = 0.0, distributed: bool = False):
        self.signum = 0
        self.old = {}
        self.debounce, self.distributed, self.t = debounce, distributed, 0.0

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (tests calling train() from a thread)
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum:
            if time.monotonic() - self.t < self.debounce:
                return
            raise KeyboardInterrupt
        self.signum, self.t = signum, time.monotonic()
        when = "at the next log step (every rank)" if self.distributed else "this step"
        console.print(f"[yellow]signal {signal.Signals(signum).name}: finishing {when} and writing a "
                      "checkpoint (again to stop at once)[/]")

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


class _Null:
    """Tracker/RunInfo stand-in on ranks other than 0: they write nothing."""

    data: dict = {}

    def __getattr__(self, name):
        return lambda *a, **k: None


class Trainer:
    def __init__(self, cfg: Config, device: str = "auto", name: str | None = None, logs: str | Path = "logs",
                 resume: Path | None = None, quiet: bool = False):
        self.cfg, self.quiet = cfg, quiet
        self.device = pick_device(device)
        c = cfg
        # torchrun (WORLD_SIZE > 1): one process per device, DDP. Rank 0 alone writes files and prints.
        ddp_device = gdist.init(self.device)
        self.ddp = ddp_device is not None
        self.rank, self.world = gdist.rank(), gdist.world()
        self.main = self.rank == 0
        if self.ddp:
            self.device = ddp_device
            if not self.main:
                self.quiet = quiet = True
                console.quiet = True  # progress bar, logs and the closing lines: rank 0's only
            if c.optim.batch_size % self.world:
                raise GanError(f"optim.batch_size = {c.optim.batch_size}: not divisible by the {self.world} "
                               f"processes (optim.batch_size is the global batch; each rank takes an equal share)")
        self.log = (lambda *a, **k: None) if quiet else console.print
        seed_everything(c.experiment.seed)

        # Data first: a missing dataset or impossible batch fails before any folder is made.
        images, self.data_source = load_images(c.data, self.log)
        if c.optim.batch_size > len(images):
            raise GanError(f"optim.batch_size = {c.optim.batch_size}: larger than the dataset "
                           f"({len(images)} images from {self.data_source})")
        self.images = to_tensor(images, c.data.image_size, self.device)
        del images
        self.steps = total_steps(c, len(self.images))

        self.G, self.D = build(c.model, c.data.image_size)
        if self.ddp and c.model.sync_batchnorm:  # same parameters and buffers: checkpoints do not change
            self.G, self.D = gdist.sync_batchnorm(self.G, self.device), gdist.sync_batchnorm(self.D, self.device)
        self.mf = torch.channels_last if c.train.channels_last else torch.contiguous_format
        self.G.to(self.device, memory_format=self.mf)
        self.D.to(self.device, memory_format=self.mf)
        # Compiled views share parameters with G/D; checkpoints and EMA use the plain modules.
        self.g_fwd = torch.compile(self.G) if c.train.compile else self.G
        self.d_fwd = torch.compile(self.D) if c.train.compile else self.D
        # What gradients flow through: under DDP the wrapped modules (their gradients are averaged over the ranks);
        # G's no-grad forward in the D step and D's forward in the G step use the plain views (no reduction).
        self.g_train, self.d_train = self.g_fwd, self.d_fwd
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # No buffer sync before each forward: with sync BN the running statistics agree anyway (per-rank BN:
            # rank 0's are the ones saved and used for samples), spectral norm's u/v follow from identical weights,
            # and D runs 2-3 forwards per backward, each of which would broadcast.
            kw = dict(device_ids=[self.device.index] if self.device.type == "cuda" else None,
                      find_unused_parameters=False)
            no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
                       else "broadcast_buffers")  # torch renamed it (same meaning for the forward)
            kw[no_sync] = False
            g_ddp, d_ddp = DDP(self.G, **kw), DDP(self.D, **kw)
            self.g_train = torch.compile(g_ddp) if c.train.compile else g_ddp
            self.d_train = torch.compile(d_ddp) if c.train.compile else d_ddp
        self.amp = c.train.precision == "bf16" and self.device.type == "cuda"
        if c.train.precision == "bf16" and not self.amp:
            self.log("[yellow]train.precision = bf16 needs CUDA: keeping fp32 on this CPU (bf16 autocast measured "
                     "23× slower on CPUs without BF16 instructions)[/]")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = c.train.tf32
            torch.backends.cudnn.benchmark = True
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if c.optim.ema_decay > 0 else None
        fused = self.device.type == "cuda"
        self.opt_G = torch.optim.Adam(self.G.parameters(), c.optim.g_lr, (c.optim.beta1, c.optim.beta2),
                                      foreach=not fused, fused=fused or None)
        self.opt_D = torch.optim.Adam(self.D.parameters(), c.optim.d_lr, (c.optim.beta1, c.optim.beta2),
                                      foreach=not fused, fused=fused or None)
        self.sampler = Sampler(self.images, c.optim.batch_size, c.data.hflip, c.experiment.seed, self.rank,
                               self.world)
        self.shard = slice(self.rank * c.optim.batch_size // self.world,
                           (self.rank + 1) * c.optim.batch_size // self.world)
        g = torch.Generator().manual_seed(c.experiment.seed + 1)  # on the CPU: same grid latents everywhere
        self.fixed_z = torch.randn(GRID, c.model.z_dim, generator=g).to(self.device)
        self.step = 0
        self.history: list = []  # (step, {tag: value}) of every evaluation
        self.best: dict | None = None  # {"step", "tag", "value"}
        self.loss_log: list = []

        if resume is not None:  # every rank reads the checkpoint (under torchrun: on storage all nodes see)
            self.run_dir = Path(resume)
            state = checkpoint.load(self.run_dir / "checkpoints" / "last.pt", self.log)
            self._load_state(state)
        elif self.ddp:  # rank 0 makes the folder; the others learn its name (or rank 0's error)
            made, err = None, None
            if self.main:
                try:
                    made = str(new_run_dir(Path(logs), c.experiment.name, name))
                except GanError as e:
                    err = str(e)
            made, err = gdist.broadcast_object((made, err))
            if err:
                raise GanError(err)
            self.run_dir = Path(made)
        else:
            self.run_dir = new_run_dir(Path(logs), c.experiment.name, name)
        self.evaluator = None
        self.eval_active = False  # under DDP: whether rank 0 evaluates (so every rank agrees on checkpoint steps)
        self.metric_notes: list[str] = []

    # ---- state -----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "sampler": self.sampler.state_dict(), "rng": rng_state(self.device),
                "history": [[s, m] for s, m in self.history], "best": self.best, "losses": self.loss_log,
                "config": self.cfg.to_dict(), "arch": self.cfg.model.arch}

    def _load_state(self, s: dict) -> None:
        where = self.run_dir / "checkpoints" / "last.pt"
        try:
            self.G.load_state_dict(s["G"])
            self.D.load_state_dict(s["D"])
            if self.G_ema is not None and s.get("G_ema") is not None:
                self.G_ema.load_state_dict(s["G_ema"])
            self.opt_G.load_state_dict(s["opt_G"])
            self.opt_D.load_state_dict(s["opt_D"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise GanError(f"{where}: does not fit model {self.cfg.model.arch!r} of this config "
                           f"({str(e).splitlines()[0][:160]})") from None
        self.sampler.load_state_dict(s["sampler"])
        set_rng_state(s["rng"], self.device)
        self.step = int(s["step"])
        self.history = [(int(a), dict(b)) for a, b in s.get("history", [])]
        self.best = s.get("best")
        self.loss_log = [tuple(x) for x in s.get("losses", [])]

    def save_checkpoint(self, best: bool = False) -> None:
        st = self.state()
        checkpoint.save(st, self.run_dir / "checkpoints" / "last.pt")
        if best:
            checkpoint.save(st, self.run_dir / "checkpoints" / "best.pt")

    # ---- one step --------------------------------------------------------------------------------
    def latents(self) -> torch.Tensor:
        """The global batch of latents, drawn alike on every rank; this rank's shard of it."""
        z = torch.randn(self.cfg.optim.batch_size, self.cfg.model.z_dim, device=self.device)
        return z[self.shard] if self.ddp else z

    def train_step(self) -> torch.Tensor:
        """n_dis D steps and one G step; returns [loss_D, loss_G, D(x), D(G(z))] on the device (no sync).

        Under DDP each rank sees its shard of the global batch; its losses are shard means, and DDP averages the
        gradients over the ranks, which gives the global batch's gradient."""
        c = self.cfg
        G, D = self.g_fwd, self.d_fwd  # single process: G_train is G and D_train is D
        G_train, D_train = self.g_train, self.d_train
        autocast = torch.autocast("cuda", torch.bfloat16, enabled=self.amp)
        # One G forward serves both updates when nothing else needs a fresh fake batch: its graph is kept for
        # the G step, and the D step sees it detached.
        reuse = c.train.reuse_fake and c.optim.n_dis == 1 and not (c.loss.gp_weight or c.loss.r1_weight)
        for _ in range(c.optim.n_dis):
            real = self.sampler.next()[0].contiguous(memory_format=self.mf)  # [1]: labels, unused by these models
            z = self.latents()
            with autocast:
                if reuse:
                    fake = G_train(z)
                else:
                    with torch.no_grad():
                        fake = G(z)
                d_real, d_fake = D_train(real).float(), D_train(fake.detach()).float()
                loss_d = losses.d_loss(c.loss.name, d_real, d_fake, c.loss.label_smoothing, c.loss.label_noise)
                if c.loss.gp_weight:
                    loss_d = loss_d + c.loss.gp_weight * losses.gradient_penalty(D_train, real, fake)
                if c.loss.r1_weight:
                    loss_d = loss_d + c.loss.r1_weight * losses.r1_penalty(D_train, real)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
        with autocast:
            if not reuse:
                fake = G_train(self.latents())
            d_gen = D(fake).float()
            loss_g = losses.g_loss(c.loss.name, d_gen)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        if self.G_ema is not None:
            decay = c.optim.ema_decay if self.step >= c.optim.ema_start else 0.0
            ema_update(self.G_ema, self.G, decay)
        return torch.stack([loss_d.detach(), loss_g.detach(), losses.d_probability(c.loss.name, d_real.detach()),
                            losses.d_probability(c.loss.name, d_fake.detach())])

    @property
    def sample_G(self) -> torch.nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def fake_grid(self) -> torch.Tensor:
        G = self.sample_G
        was = G.training
        G.eval()
        x = G(self.fixed_z)
        G.train(was)
        return make_grid(to_uint8(x).cpu(), nrow=8)

    # ---- the run ---------------------------------------------------------------------------------
    def setup_metrics(self) -> None:
        m = self.cfg.metrics
        if not m.enabled or not (m.fid or m.kid or m.isc):
            self.metric_notes = ["metrics: off (metrics.enabled = false or no metric chosen)"]
            return
        from gan.metrics import Evaluator

        t0 = time.perf_counter()
        self.evaluator = Evaluator(m, self.images, self.device, self.cfg.model.z_dim, self.log)
        self.metric_notes = self.evaluator.notes
        self.ref_seconds = time.perf_counter() - t0
        if not self.evaluator.extractors:
            self.evaluator = None

    def evaluate(self) -> dict[str, float]:
        t0 = time.perf_counter()
        vals = self.evaluator(self.sample_G)
        vals["time/eval_seconds"] = time.perf_counter() - t0
        return vals

    def primary_tag(self) -> str | None:
        """The FID that picks best.pt: Inception's when it runs, else c10's."""
        if self.evaluator is None or not self.cfg.metrics.fid:
            return None
        exts = self.evaluator.extractors  # standard Inception first, then c10, then any other
        pick = next((e for e in exts if e.name == "inception" and e.suffix == ""), None) or \
            next((e for e in exts if e.name == "c10"), exts[0])
        return "metrics/fid" + pick.suffix

    def _rank0_only(self):
        """Rank 0's extra work (grids, metrics) must not move the RNG the ranks share: fork it under DDP."""
        if not self.ddp:
            return contextlib.nullcontext()
        return torch.random.fork_rng(devices=[self.device.index] if self.device.type == "cuda" else [])

    def run(self) -> Result:
        c = self.cfg
        resumed = self.step > 0
        info = RunInfo(self.run_dir) if self.main else _Null()
        dist_info = {"world_size": self.world, "backend": gdist.backend(),
                     "sync_batchnorm": c.model.sync_batchnorm} if self.ddp else None
        if not resumed:
            info.update(experiment=c.experiment.name, status="running", started=now(), seed=c.experiment.seed,
                        device=str(self.device), steps_planned=self.steps, versions=versions(),
                        git_commit=git_commit(), data=self.data_source)
            if dist_info:
                info.update(distributed=dist_info)
            if self.main:
                (self.run_dir / "config.toml").write_text(config_mod.to_toml(c))
        else:
            entry = {"at": now(), "step": self.step} | ({"world_size": self.world} if self.ddp else {})
            info.update(status="running", resumed=info.data.get("resumed", []) + [entry])
        tracker = Tracker(self.run_dir, purge_step=self.step + 1 if resumed else None) if self.main else _Null()
        result = Result(self.run_dir, "running", self.step, list(self.loss_log), list(self.history), self.best)
        try:
            if self.main:
                # Building extractors draws from the global RNG (layer init): fork it so a resumed run continues
                # from exactly the saved state.
                cuda = [self.device.index or 0] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=cuda):
                    self.setup_metrics()
            self.eval_active = bool(gdist.broadcast_object(self.evaluator is not None))
            for note in self.metric_notes:
                self.log(f"metrics: {note}")
            protocol = self.evaluator.protocol() if self.evaluator else []
            info.update(metrics_protocol=protocol, metrics_notes=self.metric_notes)
            if not resumed and self.main:
                tracker.layout()
                tracker.text("config", "```\n" + config_mod.to_toml(c) + "\n```")
                tracker.text("metrics_protocol", "\n\n".join(
                    [f"- {n}" for n in self.metric_notes]
                    + [f"`{p['extractor']}` sha256 {p['weights_sha256'][:16]}…, {p['num_samples']} samples vs "
                       f"{p['reference_samples']} training images ({p['reference_sha256'][:16]}…): "
                       f"{', '.join(p['tags'])}" for p in protocol]))
                real = make_grid(to_uint8(self.sampler.images[:GRID].float().div(127.5).sub(1)).cpu(), nrow=8)
                tracker.image("images/real", real, 0)
                if c.train.save_png:
                    (self.run_dir / "results").mkdir(exist_ok=True)
                    save_image(real.float() / 255, self.run_dir / "results" / "real.png")
            share = c.optim.batch_size // self.world
            where = (f"{self.world} processes ({gdist.backend()}, {self.device.type}, {share} images each, "
                     f"{'sync' if c.model.sync_batchnorm else 'per-rank'} BatchNorm)" if self.ddp else str(self.device))
            self.log(f"run [bold]{self.run_dir}[/]: {c.model.arch} G {count_params(self.G) / 1e6:.2f}M "
                     f"D {count_params(self.D) / 1e6:.2f}M, {c.loss.name} loss, {self.steps} steps on {where}, "
                     f"data {self.data_source}")
            status = self._loop(tracker, info, result)
        except KeyboardInterrupt:  # second signal: stop at once, files stay as the last atomic write left them
            status = "interrupted"
            info.update(status=status, ended=now(), step=self.step)
            tracker.close()
            result.status = status
            return result
        except BaseException:  # under DDP also a peer that died: the collective fails, this rank exits non-zero
            if self.ddp:  # torchrun's SIGTERM to the survivors must not cut this status write short
                with contextlib.suppress(ValueError):
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
            info.update(status="failed", ended=now(), step=self.step)
            tracker.close()
            raise
        info.update(status=status, ended=now(), step=self.step, best=self.best)
        tracker.hparams(flatten(c.to_dict()), hparam_metrics(self.history, self.best, self.primary_tag()), self.step)
        tracker.close()
        result.status, result.step, result.best = status, self.step, self.best
        result.losses, result.metrics = list(self.loss_log), list(self.history)
        if self.ddp:  # every rank stopped on the same step; leave together
            gdist.barrier()
            gdist.cleanup()
        return result

    def _loop(self, tracker: Tracker, info: RunInfo, result: Result) -> str:
        c = self.cfg
        acc = torch.zeros(4, device=self.device)
        n_acc, t_log, imgs_per_step = 0, time.perf_counter(), c.optim.batch_size * c.optim.n_dis
        last = {"D": float("nan"), "G": float("nan"), "fid": ""}
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                            console=console, disable=self.quiet, transient=False)
        status = "completed"
        with progress, StopFlag(debounce=2.0 if self.ddp else 0.0, distributed=self.ddp) as stop:
            task = progress.add_task(c.experiment.name, total=self.steps, completed=self.step, status="", rate="")
            t_start, step_start = time.perf_counter(), self.step
            while self.step < self.steps:
                acc += self.train_step()
                n_acc += 1
                self.step += 1
                step = self.step
                final = step == self.steps
                # Single process: a signal stops after this step. DDP: the ranks agree at log steps (below).
                stopping = bool(stop.signum) and not self.ddp
                if step % c.train.log_every == 0 or final:
                    if self.ddp:  # the ranks' mean losses and whether any rank got a signal: one all_reduce
                        flag = torch.tensor([1.0 if stop.signum else 0.0], device=self.device)
                        packed = gdist.all_reduce_sum(torch.cat([acc / (n_acc * self.world), flag])).tolist()
                        vals, stopping = packed[:4], packed[4] > 0
                    else:
                        vals = (acc / n_acc).tolist()  # the one host sync per log interval
                    if not all(math.isfinite(v) for v in vals):
                        status = "diverged"
                        self.log(f"[red]diverged at step {step}: loss_D={vals[0]} loss_G={vals[1]}; the last good "
                                 f"checkpoint is kept[/]")
                        break
                    dt = time.perf_counter() - t_log
                    tracker.scalars({"loss/D": vals[0], "loss/G": vals[1], "D/real": vals[2], "D/fake": vals[3],
                                     "lr/G": self.opt_G.param_groups[0]["lr"], "lr/D": self.opt_D.param_groups[0]["lr"],
                                     "perf/images_per_sec": n_acc * imgs_per_step / dt,
                                     "epoch": self.sampler.epoch}, step)
                    self.loss_log.append((step, vals[0], vals[1]))
                    last.update(D=vals[0], G=vals[1])
                    acc.zero_()
                    n_acc, t_log = 0, time.perf_counter()
                    if c.train.print_every and (step % c.train.print_every == 0 or final):
                        self.log(f"step {step}/{self.steps} loss_D {vals[0]:.4f} loss_G {vals[1]:.4f} "
                                 f"D(x) {vals[2]:.3f} D(G(z)) {vals[3]:.3f}")
                if self.main and (step % c.train.image_every == 0 or final):
                    with self._rank0_only():
                        grid = self.fake_grid()
                    tracker.image("images/fake", grid, step)
                    if c.train.save_png:
                        (self.run_dir / "results").mkdir(exist_ok=True)
                        save_image(grid.float() / 255, self.run_dir / "results" / f"fake_{step:07d}.png")
                is_best = False
                eval_due = (c.metrics.every and step % c.metrics.every == 0) or final
                if self.evaluator is not None and eval_due:
                    with self._rank0_only():
                        vals_m = self.evaluate()
                    tracker.scalars(vals_m, step)
                    self.history.append((step, vals_m))
                    tag = self.primary_tag()
                    if tag in vals_m and (self.best is None or vals_m[tag] < self.best["value"]):
                        self.best, is_best = {"step": step, "tag": tag, "value": vals_m[tag]}, True
                    if tag in vals_m:
                        last["fid"] = f"{tag.split('/')[1]} {vals_m[tag]:.2f}"
                    self.log(f"step {step}: " + ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in vals_m.items()
                                                          if k.startswith("metrics/")))
                    tracker.flush()
                # Under DDP every rank must take the same branch here (the finiteness check is collective), so the
                # condition uses only what all ranks know: is_best implies an evaluation step on rank 0.
                if self.ddp:
                    ckpt_due = step % c.train.checkpoint_every == 0 or final or stopping or (self.eval_active
                                                                                               and eval_due)
                else:
                    ckpt_due = step % c.train.checkpoint_every == 0 or final or is_best or stop.signum
                if ckpt_due:
                    finite = gdist.all_reduce_sum(acc.clone()) if self.ddp else acc
                    if not torch.isfinite(finite).all():  # diverged since the last log: keep the good checkpoint
                        status = "diverged"
                        self.log(f"[red]diverged before step {step}; the last good checkpoint is kept[/]")
                        break
                    if self.main:
                        self.save_checkpoint(best=is_best)
                        info.update(step=step, best=self.best)
                rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
                progress.update(task, completed=step, rate=f"{rate:.2f} it/s",
                                status=f"D {last['D']:.3f} G {last['G']:.3f} {last['fid']}")
                if stopping or (stop.signum and not self.ddp):
                    status = "interrupted"
                    self.log(f"interrupted at step {step}: checkpoint written, resume with "
                             f"`gan resume {self.run_dir}`")
                    self.stop_signal = stop.signum
                    break
        if status == "completed" and c.train.export and self.main:
            export(self.run_dir, self.state())
        return status


def export(run_dir: Path, state: dict) -> tuple[Path, Path]:
    """netG.pth (EMA weights when there are any) and netD.pth as plain state_dicts."""
    g = state["G_ema"] if state.get("G_ema") is not None else state["G"]
    paths = (Path(run_dir) / "netG.pth", Path(run_dir) / "netD.pth")
    for p, sd in zip(paths, (g, state["D"])):
        tmp = p.with_name(f".{p.name}.tmp")
        torch.save(sd, tmp)
        tmp.replace(p)
    return paths

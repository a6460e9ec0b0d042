"""The one training loop for every model. Data lives on the device; losses stay there between log steps; one
process or many (torchrun) run the same code through `Dist`; the main process alone writes (rundir.Recorder)."""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gan import checkpoint, config as config_mod, device as gdevice, fileio, grids, nets as gnets
from gan import neighbours, rundir, runlock, seeding, trainstate, writer
from gan.augment import DiffAugment
from gan.config import Config
from gan.data import content_hash, to_uint8, training_set
from gan.dist import Dist
from gan.errors import GanError
from gan.metrics import evaluator as gmetrics, protocol
from gan.models import count_params
from gan.sampler import Sampler
from gan.schedule import Schedule, total_steps
from gan.stop import Interrupted, Stop, at as moment  # moment(): a test hook, nothing otherwise
from gan.console import banner, console, long_run_note, progress_bar
from gan.rundir import now
from gan.trainstate import LOSS_TAIL
from gan.update import Update


class Diverged(Exception):
    """A non-finite loss: the run stops, keeping the last good checkpoint."""


@dataclass
class Result:
    run_dir: Path
    status: str
    step: int
    losses: list = field(default_factory=list)  # (step, loss_D, loss_G) at the last LOSS_TAIL log points
    metrics: list = field(default_factory=list)  # (step, {tag: value})
    best: dict | None = None
    exit_code: int = 0


class Trainer:
    def __init__(self, cfg: Config, device: str = "auto", name: str | None = None, logs: str | Path = "logs",
                 resume: Path | None = None, quiet: bool = False, stop: Stop | None = None,
                 run_dir: Path | None = None, resume_set: list[str] | None = None):
        c = self.cfg = cfg
        self.resume_set = list(resume_set or [])  # the --set of this resume, kept in run.json's `resumed` entry
        self.dist = Dist.start(gdevice.pick(device))
        self.device = self.dist.device
        self.lock = None  # rank 0's hold on the run folder (runlock): one writer per run
        if resume is not None:  # a second writer is refused before anything else happens
            self._lock(lambda: Path(resume))
        if not self.dist.is_main:
            quiet = console.quiet = True  # progress bar, logs and the closing lines: rank 0's only
        self.quiet, self.log = quiet, ((lambda *a, **k: None) if quiet else console.print)
        self.stop = stop or Stop(log=self.log)
        seeding.seed_everything(c.experiment.seed)
        with self.stop.droppable():  # data first: a missing dataset or impossible batch fails before any folder
            moment("data")
            self.data = training_set(c, self.device, self.dist.world, self.log)
        self.images, self.num_classes = self.data.images, self.data.num_classes
        self.steps = total_steps(c, len(self.images))
        gdevice.configure(self.device, c.train.tf32)
        self.nets = gnets.make(c, self.dist, self.num_classes)
        self.opt_G, self.opt_D = gnets.optimizers(c, self.nets, self.device)
        self.sampler = Sampler(self.images, c.optim.batch_size, c.data.hflip, c.experiment.seed, self.dist.rank,
                               self.dist.world, self.data.labels)
        self.augment = DiffAugment(c.train.diffaug)
        self.update = Update(c, self.nets, self.opt_G, self.opt_D, self.sampler, self.augment, self.dist,
                             self.num_classes)
        self.sched = Schedule.of(c)
        g = torch.Generator().manual_seed(c.experiment.seed + 1)  # on the CPU: same grid latents everywhere
        self.fixed_z = torch.randn(grids.GRID, c.model.z_dim, generator=g).to(self.device)
        self.fixed_y = torch.arange(grids.GRID, device=self.device) % self.num_classes if self.num_classes else None
        self.step, self.train_seconds, self.saved_step = 0, 0.0, 0
        self.history, self.best = [], None  # [(step, {tag: value})], {step, tag, value}
        self.loss_log = deque(maxlen=LOSS_TAIL)  # bounded: a long run's loss curve is in its event files
        self.evaluator, self.metric_notes, self.primary = None, [], protocol.Primary(None, "metrics off")
        self.eval_pending = self.evaluating = False  # an evaluation a signal dropped: made first on resume
        if resume is not None:  # every rank reads the checkpoint (under torchrun: on storage all nodes see)
            self.run_dir = Path(resume)  # locked above
            trainstate.restore(self, checkpoint.load_to_resume(self.run_dir / "checkpoints" / "last.pt", self.log,
                                                               self.dist.is_main))
            if self.dist.is_main:  # what killed writers left behind
                for d in (self.run_dir, self.run_dir / "checkpoints", self.run_dir / "results"):
                    fileio.remove_stale_temps(d)
        else:
            self.run_dir = self._lock(lambda: rundir.exact_run_dir(runlock.refuse_if_held(run_dir)) if run_dir
                                      else rundir.new_run_dir(Path(logs), c.experiment.name, name), fresh=True)
            self.precision = self.dist.broadcast(gdevice.choose_precision(
                c.train.precision, self.device, self.nets.G, self.nets.D, c.model.z_dim, c.optim.batch_size //
                self.dist.world, c.data.image_size, self.log, self.num_classes) if self.dist.is_main else None)

    def _lock(self, folder, fresh: bool = False) -> Path:
        """Rank 0 makes or names the run folder and takes its lock before writing any file in it; a refusal
        (another live writer) is raised on every rank. Held until the run ends (or the process does)."""
        def take():
            d = folder()
            self.lock = runlock.acquire(d, fresh=fresh)
            return d
        return self.dist.on_main(take)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # ---- state (gan/trainstate.py: what a checkpoint holds) ---------------------------------------
    def state(self) -> dict:
        return trainstate.capture(self)

    # ---- one step --------------------------------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        """n_dis D steps, one G step and the EMA (gan/update.py); [loss_D, loss_G, D(x), D(G(z))] on the device."""
        return self.update(self.step, self.steps, self.precision, self.sched.every("ema_start"))

    # ---- the run ---------------------------------------------------------------------------------
    def run(self) -> Result:
        first = self.step == 0
        self.rec = rundir.Recorder(self.run_dir, self.dist.is_main, None if first else self.step + 1, self.log,
                                     self.cfg.train.save_png)
        self.acc, self.n_acc = torch.zeros(4, device=self.device), 0  # losses summed between log steps
        self.t_log = self.t_mark = time.perf_counter()
        try:
            self._start(first)
            if self.eval_pending:  # the evaluation a signal dropped at this step, as if it had not been
                self._checkpoint(self._evaluate())
            # a run killed between its last checkpoint and its end only ends: nothing is left to train
            status = "completed" if self.step >= self.steps or self._out_of_time() else self._loop()
        except Interrupted:  # a droppable phase (reference statistics, an evaluation) was left at a signal
            status = "interrupted"
            self.eval_pending |= self.evaluating  # resume makes it first: the metric curve stays whole
            if self.step > self.saved_step or self.evaluating:
                self._checkpoint(False)
        except KeyboardInterrupt:  # second signal: stop at once; files stay as the last atomic write left them
            status = "interrupted"
        except Diverged as e:
            status = "diverged"
            self.log(f"[red]diverged {e}; the last good checkpoint (step {self.saved_step}) is kept[/]")
        except BaseException as e:  # under DDP also a peer that died: the collective fails, this rank exits non-zero
            self.dist.shield()
            self.rec.failed(f"another process of the job stopped ({str(e).splitlines()[0][:200]})"
                            if self.dist.peer_failed(e) else e, self.step)
            self.release()
            raise
        return self._end(status)

    def _start(self, first: bool) -> None:
        c, d = self.cfg, self.dist
        facts = {"steps_planned": self.steps, "precision": self.precision, "threads": torch.get_num_threads()}
        if first:
            facts |= {"experiment": c.experiment.name, "seed": c.experiment.seed, "device": str(self.device),
                      "data": self.data.source, "data_sha256": content_hash(self.images) if d.is_main else None} | (
                {"distributed": d.facts(c.model.sync_batchnorm)} if d.ddp else {})
        self.rec.started(first, config_mod.to_toml(c), facts, self.step, d.world if d.ddp else None,
                         self.resume_set)
        if d.is_main:  # building extractors draws from the RNG (layer init): forked, so resume is exact
            with d.main_only(), self.stop.droppable():
                self.evaluator, self.metric_notes = gmetrics.build(c.metrics, self.data.reference, self.device,
                                                                   c.model.z_dim, self.log, self.num_classes,
                                                                   self.data.classes)
        self.eval_active = d.broadcast(self.evaluator is not None)
        proto = self.evaluator.protocol() if self.evaluator else []
        self.primary = protocol.primary([t for p in proto for t in p["tags"]])
        self.rec.protocol(first, proto, self.metric_notes, self.primary, self.step)
        if first and d.is_main:
            real = self.images[:grids.GRID]
            with d.main_only():
                seen = grids.grid(to_uint8(self.augment(real.float() / 127.5 - 1))) if self.augment else None
            self.rec.first_pictures(config_mod.to_toml(c), proto, self.metric_notes, self.primary, grids.grid(real),
                                    seen)
        where = d.describe(c.optim.batch_size, c.model.sync_batchnorm)
        self.log(banner(self.run_dir, c, count_params(self.nets.G), count_params(self.nets.D), where, self.steps,
                        self.precision, self.data))

    def _loop(self) -> str:
        c, sc = self.cfg, self.sched
        self.t_log = self.t_mark = time.perf_counter()
        agree_every = c.train.log_every if self.dist.ddp else 1  # ranks agree on a stop only where they sync anyway
        stopping = time_up = False
        first_step, secs0 = self.step, self.train_seconds
        with progress_bar(c.experiment.name, self.steps, self.step, self.quiet, self._status,
                          lambda: sc.left(self.step, self.train_seconds, self.steps),
                          lambda: sc.total(self.step, self.train_seconds, self.steps)) as bar:
            while True:
                self.acc += self.train_step()
                self.n_acc += 1
                self.step += 1
                self._clock()
                if self.step == first_step + 1 and self.device.type == "cpu":  # sized for a GPU? say so at once
                    note = long_run_note(self.steps - self.step, self.train_seconds - secs0, c.train.minutes)
                    if note:
                        self.log(note)
                if self.step % agree_every == 0 or self.step >= self.steps:
                    stopping, time_up, paced = self.dist.any_of(bool(self.stop.signum), self._out_of_time(),
                                                                sc.measured(self.step, self.train_seconds))
                    if paced:
                        self._pace()
                final = self.step >= self.steps or time_up
                if sc.due("log_every", self.step, final):
                    self._log_scalars()
                side = time.perf_counter()  # grids, evaluations, checkpoints: not in perf/images_per_sec
                if sc.due("image_every", self.step, final):
                    self._log_grids()
                best = sc.due("metrics_every", self.step, final) and self._evaluate()
                if sc.due("checkpoint_every", self.step, final) or best or stopping:
                    self._checkpoint(best)
                self.t_log += time.perf_counter() - side
                bar(self.step)
                if final:
                    if time_up:
                        self.rec.info.update(ended_by=f"train.minutes = {c.train.minutes:g}")
                    return "completed"
                if stopping:
                    self.log(f"interrupted at step {self.step}: checkpoint written, resume with "
                             f"`gan resume {self.run_dir}`")
                    return "interrupted"

    def _pace(self) -> None:
        """The budget's pace is measured: rank 0's step schedules (scaled or not) on every rank, said and kept."""
        sc = self.sched
        sc.adopt(*self.dist.broadcast(sc.calibrate(self.step, self.train_seconds) if self.dist.is_main else None))
        self.log(sc.line(self.cfg.experiment.name, self.cfg.train.minutes))
        self.rec.info.update(schedule={"projected_steps": sc.projected, "tuned_steps": sc.tuned_steps,
                                       "scale": sc.scale, **{k: sc.every(k) for k in sc.base}})

    def _clock(self) -> None:
        """Training seconds: wall time in the loop, evaluations excluded (they add their own)."""
        t = time.perf_counter()
        self.train_seconds += t - self.t_mark
        self.t_mark = t

    def _out_of_time(self) -> bool:
        return self.sched.out_of_time(self.train_seconds)

    def _log_scalars(self) -> None:
        c, step = self.cfg, self.step
        vals = self.dist.mean(self.acc / self.n_acc).tolist()  # the one host sync per log interval
        if not all(math.isfinite(v) for v in vals):
            raise Diverged(f"at step {step}: loss_D={vals[0]} loss_G={vals[1]}")
        # training images per training second: t_log is moved past grids, evaluations and checkpoints (_loop)
        rate = self.n_acc * c.optim.batch_size * c.optim.n_dis / (time.perf_counter() - self.t_log)
        # tag names chosen so that TensorBoard opens on the primary metric (writer.py); no epoch chart flat at 0
        self.rec.tb.scalars({"loss/D": vals[0], "loss/G": vals[1], "loss/D_real": vals[2], "loss/D_fake": vals[3],
                             "lr/G": self.opt_G.param_groups[0]["lr"], "lr/D": self.opt_D.param_groups[0]["lr"],
                             "perf/images_per_sec": rate}
                            | ({"progress/epoch": self.sampler.epoch} if self.sampler.epoch else {}), step)
        self.rec.info.update(durable=False, progress={"step": step, "steps": self.steps, "images_per_sec": rate,
                                                      "train_seconds": round(self.train_seconds, 2),
                                                      "minutes": c.train.minutes, "at": now()})
        self.loss_log.append((step, vals[0], vals[1]))
        self.acc.zero_()
        self.n_acc, self.t_log = 0, time.perf_counter()
        if c.train.print_every and (step % c.train.print_every == 0 or step == self.steps):
            self.log(f"step {step}/{self.steps} loss_D {vals[0]:.4f} loss_G {vals[1]:.4f} D(x) {vals[2]:.3f} "
                     f"D(G(z)) {vals[3]:.3f}")

    def _log_grids(self) -> None:
        if self.dist.is_main:
            with self.dist.main_only():
                grids.log_fake(self.rec, self.nets.G_sample, self.fixed_z, self.fixed_y, self.data.class_names,
                               self.step)

    def _evaluate(self) -> bool:
        """Metrics at this step (main process); whether the primary metric improved, known on every rank."""
        if not self.eval_active:
            return False
        is_best = False
        if self.dist.is_main:
            t0 = time.perf_counter()
            self.evaluating = True
            with self.dist.main_only(), self.stop.droppable():
                ev = self.evaluator(self.nets.G_sample)
            self.evaluating = self.eval_pending = False
            secs, o = time.perf_counter() - t0, self.cfg.optim
            self.t_mark += secs  # evaluation time is not training time
            self.sched.eval_s = secs
            values = self.rec.evaluation(self.step, ev, {"time/eval_seconds": secs,
                                                         "progress/train_seconds": self.train_seconds,
                                                         "progress/images_seen": float(self.step * o.batch_size *
                                                                                       o.n_dis)})
            self.history.append((self.step, values))
            p = self.primary.tag
            if p in values and math.isfinite(values[p]) and \
                    protocol.better(p, values[p], self.best["value"] if self.best else None):
                self.best, is_best = {"step": self.step, "tag": p, "value": values[p]}, True
        return self.dist.broadcast(is_best)

    def _checkpoint(self, best: bool) -> None:
        if self.dist.any_of(not bool(torch.isfinite(self.acc).all()))[0]:  # diverged since the last log
            raise Diverged(f"before step {self.step}")
        if self.dist.is_main:
            # Everything logged up to this step is on disk before the checkpoint that resumes after it; best.pt
            # before last.pt: a run killed between the two redoes this step and writes best.pt again.
            self.rec.tb.flush()
            st = self.state()
            if best:
                checkpoint.save(st, self.run_dir / "checkpoints" / "best.pt")
            checkpoint.save(st, self.run_dir / "checkpoints" / "last.pt")
            self.rec.info.update(step=self.step, best=self.best, train_seconds=round(self.train_seconds, 2))
        self.saved_step = self.step

    def _status(self) -> str:
        """The progress bar's text: last losses and the primary metric."""
        p = self.primary.tag
        fid = next((f" {p.split('/')[1]} {m[p]:.2f}" for _, m in reversed(self.history) if p in m), "")
        return (f"D {self.loss_log[-1][1]:.3f} G {self.loss_log[-1][2]:.3f}" if self.loss_log else "") + fid

    def _end(self, status: str) -> Result:
        done = status == "completed"
        if done and self.cfg.train.export and self.dist.is_main:
            try:  # before the run says `completed`: an export the disk cannot take fails the run
                checkpoint.export(self.run_dir, self.state())
            except GanError as e:
                self.rec.failed(e, self.step)
                raise
        if done and self.cfg.metrics.neighbours and self.dist.is_main:  # what G copied: gan/neighbours.py
            neighbours.at_end(self.run_dir, self.cfg, self.nets.G_sample, self.num_classes, self.step, self.rec.tb,
                              self.log, self.stop)
        self.rec.ended(status, writer.flatten(self.cfg.to_dict()) if done else None, self.history, step=self.step,
                       best=self.best, train_seconds=round(self.train_seconds, 2))
        self.release()
        self.dist.finish()
        return Result(self.run_dir, status, self.step, list(self.loss_log), list(self.history), self.best,
                      self.stop.exit_code if status == "interrupted" else EXIT.get(status, 1))


EXIT = {"completed": 0, "interrupted": 130, "diverged": 3, "failed": 1}

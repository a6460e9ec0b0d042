"""`--trials T`: a search over distributions through Optuna (its TPE sampler), pruned at metric points.

    --sample optim.g_lr=loguniform:1e-5:1e-3   --sample loss.name=choice:hinge,bce   (also uniform:LO:HI, int:LO:HI)

Each trial is one run, with the trial's number as its seed: when the sampler proposes a setting again (a categorical
choice), the repeat is a new seed of it, so the report's spread over seeds stays honest. Re-run the top settings
with `--setting 'NAME: KEY=V ...' --seeds 3` (the report prints that command for the best two beside the base) to
learn whether they differ beyond seed noise.

Pruning: Optuna's PatientPruner around its MedianPruner. A plain median pruner stops a trial the first time its
value is worse than the median of completed trials at that step; FID on a few hundred samples jumps by several
units between metric points, so it stops trials that are still improving (Optuna's own issues say so). With the
patience wrapper a trial is stopped only when it is worse than that median AND has not improved on its own best for
`patience` metric points in a row. The sweep process makes every decision from the run.json the run's rank 0
writes (`last_eval`), so under DDP the decision is rank 0's by construction; a pruned run is sent SIGTERM (it
checkpoints and exits), then marked `pruned` in run.json with the reason.

The study lives in the sweep folder (`sqlite:///<sweep>/optuna.db`) or in the database `--storage URL` names;
only the sweep process talks to it (jobs elsewhere only write their run folders), and `--resume` continues it.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import statistics
from dataclasses import dataclass
from pathlib import Path

from gan import config
from gan.errors import GanError
from gan.sweep import grid
from gan.sweep.manifest import Manifest, run_info

KINDS = ("loguniform", "uniform", "int", "choice")


@dataclass
class Dist:
    key: str
    kind: str
    args: list  # raw strings: [lo, hi] or the choices

    def text(self) -> str:
        return f"{self.kind}:{(',' if self.kind == 'choice' else ':').join(self.args)}"


def parse(items: list[str]) -> dict[str, Dist]:
    out: dict[str, Dist] = {}
    for item in items:
        key, raw = grid.key_of(item, "--sample")
        kind, _, rest = raw.partition(":")
        if kind not in KINDS:
            raise GanError(f"--sample {item!r}: expected {key}=loguniform:LO:HI, uniform:LO:HI, int:LO:HI or "
                           "choice:V1,V2,...")
        if key in out:
            raise GanError(f"--sample {key} is given twice")
        if kind == "choice":
            args = grid.split_values(rest)
            if not rest or "" in args or len(set(args)) < len(args):
                raise GanError(f"--sample {item!r}: expected distinct values choice:V1,V2,...")
        else:
            args = rest.split(":")
            try:
                lo, hi = (int(a) if kind == "int" else float(a) for a in args)
            except ValueError:
                raise GanError(f"--sample {item!r}: expected {kind}:LO:HI with two "
                               f"{'integers' if kind == 'int' else 'numbers'}") from None
            if not lo < hi or (kind == "loguniform" and lo <= 0):
                raise GanError(f"--sample {item!r}: expected LO < HI" + (" and LO > 0" if kind == "loguniform"
                                                                           else ""))
        out[key] = Dist(key, kind, args)
    return out


def validate(exp: str, sets: list[str], dists: dict[str, Dist]) -> None:
    """Every bound and every choice checked as `gan train --set` checks a value, alone and with the experiment and
    --set, before anything starts (a rule between two sampled keys can only fail its trial)."""
    for d in dists.values():
        for raw in d.args:
            grid.validate_value(d.key, raw, "--sample")
            try:
                config.load(exp, sets + [f"{d.key}={raw}"])
            except GanError as e:
                raise GanError(f"--sample {d.key}={raw}: {e}") from None
        section, name = config.split_key(d.key)
        if name.startswith("args."):  # a user's own argument: its type as its value reads once validated
            v = config.get_key(config.load(exp, sets + [f"{d.key}={d.args[0]}"]).to_dict(), section, name)
            ftype = "int" if isinstance(v, int) and not isinstance(v, bool) else type(v).__name__
        else:
            ftype = next(f.type for f in dataclasses.fields(getattr(config.Config(), section))
                         if config.key(f) == name)
        if d.kind in ("uniform", "loguniform") and ftype == "int":
            raise GanError(f"--sample {d.key}={d.text()}: {d.key} is an integer: use int:LO:HI")


def base_point(exp: str, sets: list[str], dists: dict[str, Dist]) -> tuple[dict | None, str]:
    """The experiment's own value of every sampled knob, to be the study's first trial: the yardstick the sampled
    trials rank against (a search that never measures it cannot say it found anything better: our study of `quick`
    never came near quick's own corner). None, with the reason, when a value lies outside its distribution."""
    own = config.load(exp, sets).to_dict()
    out = {}
    for k, d in dists.items():
        section, name = config.split_key(k)
        try:
            v = config.get_key(own, section, name)
        except KeyError:  # a user's argument the experiment leaves unset, without a default TOML can hold
            return None, f"{k} has no value in the experiment"
        if d.kind == "choice":
            hit = next((a for a in d.args if config.parse_override(f"{k}={a}")[2] == v), None)  # read as --set reads it
            if hit is None:
                return None, f"{k} = {v!r} is not one of its choices"
            out[k] = hit
        elif not float(d.args[0]) <= v <= float(d.args[1]):
            return None, f"{k} = {v!r} lies outside {d.text()}"
        else:
            out[k] = int(v) if d.kind == "int" else float(v)
    return out, ""


def distributions(dists: dict[str, Dist]) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for k, d in dists.items():
        if d.kind == "choice":
            out[k] = CategoricalDistribution(d.args)
        elif d.kind == "int":
            out[k] = IntDistribution(int(d.args[0]), int(d.args[1]))
        else:
            out[k] = FloatDistribution(float(d.args[0]), float(d.args[1]), log=d.kind == "loguniform")
    return out


def value_text(v) -> str:
    """A sampled value as --set takes it; floats to 4 significant digits (readable folder names, the value the run
    gets is exactly the one shown)."""
    return repr(float(f"{v:.4g}")) if isinstance(v, float) else str(v)


def pruner(patience: int, after: int):
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # PatientPruner: since 2.8
    if patience < 0:
        return optuna.pruners.NopPruner()
    return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=0),
                                        patience=patience)


class Search:
    def __init__(self, man: Manifest):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.man, s = man, man.data["search"]
        self.total, self.patience = s["trials"], s["patience"]
        self.dists = {k: Dist(k, d["kind"], d["args"]) for k, d in s["distributions"].items()}
        try:
            self.study = optuna.create_study(storage=s["storage"], study_name=s["study"], direction="minimize",
                                             load_if_exists=True, pruner=pruner(s["patience"], s["prune_after"]))
            done = len(self.study.get_trials(deepcopy=False))
            if not done and s.get("base"):  # trial 0 is the experiment as it is (once: a resume finds it there)
                self.study.enqueue_trial(s["base"], user_attrs={"base": True})
            # a new sampler per session, seeded past the trials already drawn (a resumed sweep draws new points)
            self.study.sampler = optuna.samplers.TPESampler(seed=s["seed"] + done)
        except Exception as e:  # noqa: BLE001 - an unreachable database, a bad URL: one line
            raise GanError(f"optuna storage {s['storage']!r}: {str(e).splitlines()[0][:200]}") from None
        self.optuna, self.reported = optuna, {}
        self.asked = {}  # trial number -> the Trial study.ask() gave this session (what results are reported to)
        known = {e["trial"] for e in man.runs}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.number not in known:  # asked, then the sweep was killed before it wrote the run down
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)

    def _trial(self, entry: dict):
        ft = next(t for t in self.study.get_trials(deepcopy=False) if t.number == entry["trial"])
        self.reported.setdefault(entry["folder"], set(ft.intermediate_values))
        return ft

    def _live(self, entry: dict):
        """The Trial to report the entry's metric points to. One asked by an earlier session of this sweep (resumed)
        cannot be had again through Optuna's API: its run continues as a new trial with the same parameters
        (enqueued, then asked), given the points already reported, and the old one is told failed."""
        if entry["trial"] in self.asked:
            return self.asked[entry["trial"]]
        old = self._trial(entry)
        self.study.enqueue_trial(old.params, user_attrs={"continues_trial": old.number})
        trial = self.study.ask(distributions(self.dists))
        for step, v in sorted(old.intermediate_values.items()):
            trial.report(v, step)
        if not old.state.is_finished():  # a failed run started again by --resume was told failed when it failed
            self.study.tell(old.number, state=self.optuna.trial.TrialState.FAIL)
        self.asked[trial.number] = trial
        self.man.update(entry, trial=trial.number)
        return trial

    def more(self) -> bool:
        return len(self.man.runs) < self.total

    def new_entry(self) -> dict | None:
        if not self.more():
            return None
        trial = self.study.ask(distributions(self.dists))
        self.asked[trial.number] = trial
        over = [f"{k}={value_text(trial.params[k])}" for k in self.dists]
        setting, seed = "base" if trial.user_attrs.get("base") else grid.setting_name(over), trial.number
        return self.man.add({"setting": setting, "overrides": over + [f"{grid.SEED_KEY}={seed}"], "seed": seed,
                             "folder": f"t{trial.number:03d}-{grid.folder_name(setting, seed)}", "status": "pending",
                             "trial": trial.number})

    def watch(self, sched) -> None:
        """Report each running trial's new metric point to Optuna; stop the ones it prunes."""
        for folder, a in sched.active.items():
            e = a.entry
            if e.get("status") == "pruning":
                continue
            info = run_info(self.man.run_dir(e))
            ev, tag = info.get("last_eval") or {}, (info.get("primary_metric") or {}).get("tag")
            value = (ev.get("values") or {}).get(tag)
            if value is None or not math.isfinite(value):
                continue
            if folder not in self.reported:
                self._trial(e)  # what the study already has (a resumed trial reported before)
            if ev.get("step") in self.reported[folder]:
                continue
            step = int(ev["step"])
            trial = self._live(e)
            trial.report(float(value), step)
            self.reported[folder].add(step)
            if trial.should_prune():
                why = self.reason(e, tag, value, step)
                self.man.update(e, status="pruning", pruned={"step": step, "tag": tag, "value": value, "reason": why})
                a.handle.stop(signal.SIGTERM)
                sched.log(f"[yellow]pruning {folder}[/]: {why}")

    def reason(self, entry: dict, tag: str, value: float, step: int) -> str:
        done = self.study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.COMPLETE,))
        at = [t.intermediate_values[step] for t in done if step in t.intermediate_values]
        med = f" ({statistics.median(at):.4g})" if at else ""
        return (f"{tag} {value:.4g} at step {step} is worse than the median of the completed trials at that step"
                f"{med} and has not improved on its own best for {self.patience} metric points")

    def mark_pruned(self, man: Manifest, entry: dict) -> None:
        """After the pruned run's process has exited: run.json says `pruned` and why; it gets its HParams row."""
        from gan import runlock
        from gan.sweep.report import hparams_row
        from gan.rundir import RunInfo, now

        d = man.run_dir(entry)
        if (d / "run.json").is_file():
            with runlock.holding(d):  # its process has exited: the sweep is its one writer now
                RunInfo(d).update(status="pruned", ended=now(), pruned=entry.get("pruned"))
                hparams_row(d)

    def finished(self, entry: dict, status: str, info: dict) -> None:
        ft = self._trial(entry)
        if ft.state.is_finished() or status not in ("completed", "pruned", "diverged", "failed"):
            return  # an interrupted trial stays running: --resume continues it
        S = self.optuna.trial.TrialState
        best = (info.get("best") or {}).get("value")
        if status == "completed" and best is not None and math.isfinite(best):
            self.study.tell(entry["trial"], float(best))
        else:
            self.study.tell(entry["trial"], state=S.PRUNED if status == "pruned" else S.FAIL)


def importances(man: Manifest) -> tuple[dict[str, float], str]:
    """Optuna's importance of each sampled knob (its default evaluator, PED-ANOVA: how far each knob's values in
    the best trials stray from its values in all completed ones; shares summing to 1), and a line saying what it
    rests on. (Its fANOVA evaluator needs scikit-learn.)"""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = man.data["search"]
    study = optuna.load_study(study_name=s["study"], storage=s["storage"])
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 4:
        return {}, f"knob importance: needs ≥ 4 completed trials ({len(done)} so far)"
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as e:  # e.g. a knob that took one value in every completed trial
        return {}, f"knob importance: not computed ({str(e).splitlines()[0][:150]})"
    return imp, (f"knob importance (Optuna's PED-ANOVA) over {len(done)} completed trials: how much each knob's "
                 "values in the best trials differ from its values in all; few trials make it rough")


def manifest_fields(dists: dict[str, Dist], trials: int, patience: int, prune_after: int, storage: str | None,
                    folder: Path, study: str, seed: int = 0, base: dict | None = None) -> dict:
    return {"trials": trials, "base": base, "distributions": {k: {"kind": d.kind, "args": d.args} for k, d in dists.items()},
            "sampler": "TPE", "pruner": (f"PatientPruner(MedianPruner(n_startup_trials={prune_after}), "
                                         f"patience={patience})" if patience >= 0 else "none"),
            "patience": patience, "prune_after": prune_after, "seed": seed, "study": study,
            "storage": storage or f"sqlite:///{(Path(folder) / 'optuna.db').resolve()}"}

"""gan sweep --trials: Optuna's pruner on fixed curves, a search end to end (prune, SIGTERM, run.json, study,
--resume of the same study), and submitit's local executor running a sweep."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import events, gan_cli
from tests.test_sweep import manifest, only_sweep, sweep_toml


@pytest.fixture(scope="module")
def exp(tmp_path_factory, tiny_npz):
    return sweep_toml(tmp_path_factory.mktemp("exp"), tiny_npz)


# ---- Optuna: search, pruning, the study in the sweep folder ------------------------------------------------
def _first_prune(study, curve, every=100):
    t = study.ask()
    for i, v in enumerate(curve, 1):
        t.report(v, i * every)
        if t.should_prune():
            return i * every
    return None


def _study_with_done_trials(pruner):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(direction="minimize", pruner=pruner)
    for _ in range(3):  # three finished trials whose FID falls 60 -> 30
        t = s.ask()
        for i, v in enumerate([60, 50, 40, 35, 30], 1):
            t.report(v, i * 100)
        s.tell(t, 30)
    return s


def test_patient_pruner_spares_a_noisy_improving_curve_that_a_median_pruner_stops():
    import optuna

    from gan.sweep.search import pruner

    noisy = [62, 48, 44, 33, 29]  # improving, but one noisy point above the median of the others at its step
    flat = [62, 61, 63, 62, 64]  # a setting that does not learn
    assert _first_prune(_study_with_done_trials(optuna.pruners.MedianPruner(n_startup_trials=3)), noisy) == 100
    assert _first_prune(_study_with_done_trials(pruner(patience=2, after=3)), noisy) is None
    assert _first_prune(_study_with_done_trials(pruner(patience=2, after=3)), flat) == 500
    assert _first_prune(_study_with_done_trials(pruner(patience=-1, after=3)), flat) is None  # --patience -1


def test_optuna_search_prunes_says_why_and_resumes_the_same_study(exp, tmp_path, monkeypatch):
    """The mechanism end to end: trials asked, metric points reported from run.json, a pruned run stopped by SIGTERM
    (checkpointed), marked pruned with its reason and given an HParams row, the study told, and --resume continuing
    the same study. Which curves prune is Optuna's rule (tested above on fixed curves): here a pruner that prunes
    every g_lr=1.0 trial at its second metric point makes the outcome certain whatever FID the tiny runs reach."""
    import optuna
    from typer.testing import CliRunner

    from gan.cli import app
    from gan.sweep import jobs, search

    class PruneLr1(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.params.get("optim.g_lr") == "1.0" and len(trial.intermediate_values) >= 2

    monkeypatch.setattr(search, "pruner", lambda patience, after: PruneLr1())
    monkeypatch.setattr(jobs.Scheduler, "tick", 0.05)  # look often: the pruned run must not reach its end first
    logs = tmp_path / "logs"
    res = CliRunner().invoke(app, ["sweep", str(exp), "--trials", "3", "--sample", "optim.g_lr=choice:3e-4,1.0",
                                   "--jobs", "2", "--set", "train.steps=24", "--set", "metrics.every=3",
                                   "--device", "cpu", "--logs", str(logs)])
    assert res.exit_code == 0, res.stdout + res.stderr
    sweep = only_sweep(logs)
    m = manifest(sweep)
    assert len(m["runs"]) == 3 and m["grid"] == {} and m["search"]["pruner"].startswith("PatientPruner(Median")
    assert sorted(e["seed"] for e in m["runs"]) == [0, 1, 2] and all(e["folder"].startswith("t00") for e in m["runs"])
    study = optuna.load_study(study_name=m["id"], storage=m["search"]["storage"])
    by_number = {t.number: t for t in study.trials}
    for e in m["runs"]:
        info = json.loads((sweep / e["folder"] / "run.json").read_text())
        t = by_number[e["trial"]]
        assert info["status"] == e["status"] and t.params["optim.g_lr"] == e["setting"].split("=")[1]
        if t.params["optim.g_lr"] == "3e-4":
            assert e["status"] == "completed" and t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == info["best"]["value"] and set(t.intermediate_values) <= set(range(3, 25, 3))
        else:  # (the sweep looks every 0.5 s; a tiny run may pass a metric point in between)
            assert e["status"] == "pruned" and t.state == optuna.trial.TrialState.PRUNED
            at = sorted(t.intermediate_values)[-1]
            assert len(t.intermediate_values) == 2 and info["pruned"]["step"] == at and at % 3 == 0
            assert "metrics/fid_c10" in info["pruned"]["reason"] and f"at step {at}" in info["pruned"]["reason"]
            for step, v in t.intermediate_values.items():  # what was reported is what the run logged
                assert v == pytest.approx(next(x.value for x in events(sweep / e["folder"]).Scalars(
                    "metrics/fid_c10") if x.step == step), rel=1e-6)
            ck = torch.load(sweep / e["folder"] / "checkpoints" / "last.pt", weights_only=True)
            # SIGTERM: it checkpointed where it stopped (a 24-step run on a loaded CPU may reach its end first)
            assert at <= ck["step"] == info["step"] <= 24
            assert "_hparams_/session_start_info" in events(sweep / e["folder"]).PluginTagToContent("hparams")
    assert any(e["status"] == "pruned" for e in m["runs"]), res.stdout
    again = gan_cli("sweep", "--resume", sweep)  # nothing is left: no run starts, the study is the same one
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started" not in again.stdout and "resumed" not in again.stdout
    assert len(optuna.load_study(study_name=m["id"], storage=m["search"]["storage"]).trials) == 3
    # the report ends with the next step as a command: the best completed trial(s) beside the base, 3 seeds each
    best = next(e for e in m["runs"] if e["status"] == "completed")
    cmd = " ".join(again.stdout.split())
    assert f"--setting '{best['folder'].split('-')[0]}: optim.g_lr=3e-4' --setting 'tiny: base' --seeds 3" in cmd
    assert "--set train.steps=24 --set metrics.every=3" in cmd


def test_submitit_local_executor_runs_a_two_run_sweep(exp, tmp_path):
    logs = tmp_path / "logs"
    r = gan_cli("sweep", exp, "--grid", "optim.g_lr=1e-4,2e-4", "--jobs", "2", "--launcher", "submitit-local",
                "--set", "train.steps=6", "--set", "metrics.enabled=false", "--device", "cpu", "--logs", logs)
    assert r.returncode == 0, r.stdout + r.stderr
    sweep = only_sweep(logs)
    m = manifest(sweep)
    assert m["launcher"]["kind"] == "submitit-local"
    assert [e["status"] for e in m["runs"]] == ["completed", "completed"]
    for e in m["runs"]:
        info = json.loads((sweep / e["folder"] / "run.json").read_text())
        assert info["status"] == "completed" and info["step"] == 6
        assert (sweep / "submitit" / f"{e['job']}_0_log.out").is_file()  # submitit's own record of the job


def test_a_resumed_search_continues_its_study_and_fails_trials_it_never_wrote_down(tmp_path):
    import optuna

    from gan.sweep import search
    from gan.sweep.manifest import Manifest

    dists = search.parse(["optim.g_lr=loguniform:1e-5:1e-3", "loss.name=choice:hinge,bce"])
    fields = search.manifest_fields(dists, 4, 2, 3, None, tmp_path, "study-x")
    man = Manifest.create(tmp_path, grid={}, runs=[], search=fields)
    first = search.Search(man)
    entry = first.new_entry()  # trial 0, written down
    orphan = first.study.ask()  # trial 1: asked, then the sweep was killed before it wrote the run down
    assert entry["trial"] == 0 and entry["seed"] == 0 and entry["folder"].startswith("t000-g_lr=")
    lr, name = (o.split("=")[1] for o in entry["overrides"][:2])
    assert 1e-5 <= float(lr) <= 1e-3 and name in ("hinge", "bce") and lr == search.value_text(float(lr))
    again = search.Search(Manifest.load(tmp_path))
    states = {t.number: t.state for t in again.study.trials}
    assert states == {0: optuna.trial.TrialState.RUNNING, orphan.number: optuna.trial.TrialState.FAIL}
    assert again.more() and again.new_entry()["trial"] == 2  # the same study, numbered on


def test_a_resumed_running_trial_reports_through_a_trial_asked_anew_with_its_points(tmp_path):
    """Optuna gives no Trial for one asked by an earlier session: the run continues as a new trial with the same
    parameters and the points it already reported; the old one is told failed, the manifest names the new one."""
    import optuna

    from gan.sweep import search
    from gan.sweep.manifest import Manifest

    dists = search.parse(["optim.g_lr=loguniform:1e-5:1e-3", "loss.name=choice:hinge,bce"])
    fields = search.manifest_fields(dists, 4, 2, 3, None, tmp_path, "s")
    man = Manifest.create(tmp_path, grid={}, runs=[], search=fields)
    first = search.Search(man)
    entry = first.new_entry()
    first._live(entry).report(40.0, 3)  # this session's own trial: no new one
    assert entry["trial"] == 0 and len(first.study.trials) == 1
    again = search.Search(Manifest.load(tmp_path))  # the sweep resumed
    e = again.man.runs[0]
    again._live(e).report(35.0, 6)
    trials = {t.number: t for t in again.study.trials}
    assert e["trial"] == Manifest.load(tmp_path).runs[0]["trial"] == 1 and e["folder"] == entry["folder"]
    assert trials[0].state == optuna.trial.TrialState.FAIL and trials[1].state == optuna.trial.TrialState.RUNNING
    assert trials[1].params == trials[0].params and trials[1].intermediate_values == {3: 40.0, 6: 35.0}
    assert trials[1].user_attrs == {"continues_trial": 0}
    again._live(e).report(30.0, 9)  # asked once: the same trial afterwards
    assert len(again.study.trials) == 2
    again.finished(e, "completed", {"best": {"value": 30.0}})
    assert again.study.trials[1].state == optuna.trial.TrialState.COMPLETE and again.study.trials[1].value == 30.0


def test_a_failed_trial_started_again_by_resume_reports_without_killing_the_sweep(tmp_path):
    """Seen in a real study: a trial failed at step 0 (no data), --resume started its run again, and its first
    metric point ended the sweep with `ValueError: Cannot tell a FAIL trial`."""
    import optuna

    from gan.sweep import search
    from gan.sweep.manifest import Manifest

    dists = search.parse(["optim.g_lr=loguniform:1e-5:1e-3"])
    man = Manifest.create(tmp_path, grid={}, runs=[], search=search.manifest_fields(dists, 4, 2, 3, None, tmp_path, "s"))
    first = search.Search(man)
    entry = first.new_entry()
    first.finished(entry, "failed", {})
    assert first.study.trials[0].state == optuna.trial.TrialState.FAIL
    again = search.Search(Manifest.load(tmp_path))  # --resume: the failed run starts again and reports
    e = again.man.runs[0]
    again._live(e).report(35.0, 6)
    again.finished(e, "completed", {"best": {"value": 33.0}})
    t = {x.number: x for x in again.study.trials}
    assert t[0].state == optuna.trial.TrialState.FAIL and t[1].state == optuna.trial.TrialState.COMPLETE
    assert t[1].value == 33.0 and t[1].params == t[0].params and t[1].intermediate_values == {6: 35.0}


def test_knob_importance_reads_the_study_and_says_when_it_cannot(tmp_path):
    """The report's importance line: Optuna's fANOVA over the completed trials; a knob that decides the value gets
    the larger share; fewer than 4 completed trials: it says so."""
    from gan.sweep import search
    from gan.sweep.manifest import Manifest

    dists = search.parse(["optim.g_lr=loguniform:1e-5:1e-3", "optim.beta1=uniform:0:0.9"])
    man = Manifest.create(tmp_path, grid={}, runs=[], search=search.manifest_fields(dists, 12, 2, 3, None, tmp_path, "s"))
    s = search.Search(man)
    for i in range(12):
        e = s.new_entry()
        if i == 3:
            assert search.importances(man) == ({}, "knob importance: needs ≥ 4 completed trials (3 so far)")
        lr = s.study.trials[e["trial"]].params["optim.g_lr"]
        s.finished(e, "completed", {"best": {"value": 100 * lr}})  # the value follows g_lr alone
    imp, what = search.importances(man)
    assert set(imp) == {"optim.g_lr", "optim.beta1"} and sum(imp.values()) == pytest.approx(1)
    assert imp["optim.g_lr"] > 0.8 and "over 12 completed trials" in what


def test_the_experiment_as_it_is_is_trial_0_once_and_named_base(exp, tmp_path):
    """Our 20-trial study of quick never came near quick's own values, so it could not say whether any trial beat
    it. Trial 0 is now the experiment itself, named `base`, once: a resumed search does not enqueue it again; a
    distribution that excludes it says so. Its values are the experiment's, not the sampler's."""
    from gan.sweep import search
    from gan.sweep.manifest import Manifest

    dists = search.parse(["optim.g_lr=loguniform:1e-5:1e-3", "loss.name=choice:hinge,bce"])
    first, why = search.base_point(str(exp), ["loss.name=bce"], dists)
    assert first == {"optim.g_lr": 2e-4, "loss.name": "bce"} and why == ""
    none, why = search.base_point(str(exp), [], search.parse(["optim.g_lr=loguniform:5e-4:1e-3"]))
    assert none is None and why == "optim.g_lr = 0.0002 lies outside loguniform:5e-4:1e-3"
    fields = search.manifest_fields(dists, 4, 2, 3, None, tmp_path, "study-b", base=first)
    man = Manifest.create(tmp_path, grid={}, runs=[], search=fields)
    s = search.Search(man)
    e0, e1 = s.new_entry(), s.new_entry()
    assert e0["setting"] == "base" and e0["folder"] == "t000-base-s0" and e0["trial"] == 0
    assert e0["overrides"] == ["optim.g_lr=0.0002", "loss.name=bce", "experiment.seed=0"]
    assert e1["setting"] != "base" and s.study.trials[0].params == first
    again = search.Search(Manifest.load(tmp_path))  # resumed: trial 0 is already in the study
    assert again.new_entry()["setting"] != "base" and len(again.study.trials) == 3
    r = gan_cli("sweep", exp, "--trials", "3", "--sample", "optim.g_lr=loguniform:5e-4:1e-3", "--dry-run",
                "--logs", tmp_path / "logs")
    assert r.returncode == 0 and "no trial of the experiment as it is: optim.g_lr = 0.0002 lies outside" in r.stdout

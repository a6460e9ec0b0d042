"""gan sweep: a grid × seeds run J at once, its manifest, refusals before anything starts, Ctrl-C and SIGKILL then
--resume (same final weights as an uninterrupted sweep), the report against the event files, aggregate TensorBoard
runs and HParams rows, and the scheduler's pieces (cores split, what a run needs, the lock, the live table).
The search and submitit are in test_sweep_search.py."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, events, gan_cli, tiny_toml
from tests.test_robustness import wait_for

METRICS = {"enabled": True, "every": 30, "num_samples": 8, "ref_samples": 16, "batch_size": 16, "is": False,
           "extractors": ["c10"]}
TRAIN = {"steps": 60, "log_every": 3, "image_every": 30, "checkpoint_every": 3}
GRID = ["--grid", "optim.g_lr=1e-4,2e-4", "--seeds", "2", "--jobs", "2"]
# readable setting labels, in the order a sweep starts them: seed-major, so each round of seeds holds every setting
FOLDERS = ["g_lr=1e-4-s0", "g_lr=2e-4-s0", "g_lr=1e-4-s1", "g_lr=2e-4-s1"]


def sweep_toml(folder: Path, npz: Path) -> Path:
    """Experiment `tiny`: 60 steps, a checkpoint every 3, c10 metrics at steps 30 and 60."""
    return tiny_toml(folder / "tiny.toml", npz, train=TRAIN, metrics=METRICS)


@pytest.fixture(scope="module")
def exp(tmp_path_factory, tiny_npz) -> Path:
    return sweep_toml(tmp_path_factory.mktemp("exp"), tiny_npz)


def only_sweep(logs: Path) -> Path:
    found = list(logs.glob("tiny/sweep-*"))
    assert len(found) == 1, found
    return found[0]


def manifest(sweep: Path) -> dict:
    return json.loads((sweep / "sweep.json").read_text())


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, exp):
    """The acceptance shape: a 2×1 grid × 2 seeds with 2 jobs, uninterrupted (also the reference weights)."""
    logs = tmp_path_factory.mktemp("grid")
    r = gan_cli("sweep", exp, *GRID, "--device", "cpu", "--logs", logs)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, only_sweep(logs)


def test_grid_sweep_runs_every_setting_and_seed_with_cores_split(grid_sweep):
    r, sweep = grid_sweep
    m = manifest(sweep)
    assert m["version"] == 1 and m["experiment"] == "tiny" and m["id"] == sweep.name
    assert m["grid"] == {"optim.g_lr": ["1e-4", "2e-4"]} and m["seeds"] == 2
    assert [e["folder"] for e in m["runs"]] == FOLDERS
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for e in m["runs"]:
        lr, seed = e["setting"].split("=")[1], e["seed"]
        assert e["overrides"] == [f"optim.g_lr={lr}", f"experiment.seed={seed}"]
        assert e["status"] == "completed" and e["threads"] == threads
        run = sweep / e["folder"]
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "completed" and info["step"] == 60 and info["seed"] == seed
        assert f"g_lr = {float(lr)!r}" in (run / "config.toml").read_text()
        assert [s.step for s in events(run).Scalars("loss/D")] == list(range(3, 61, 3))
    assert "verdict" in r.stdout and "Welch" in r.stdout


def _best(run: Path, tag="metrics/fid_c10") -> float:
    return min(e.value for e in events(run).Scalars(tag))


def test_report_numbers_equal_the_event_files(grid_sweep, tmp_path):
    from scipy import stats
    from typer.testing import CliRunner

    from gan.cli import app

    _, sweep = grid_sweep
    res = CliRunner().invoke(app, ["sweep", "--report", str(sweep), "--csv", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.stdout + res.stderr
    rows = {row["setting"]: row for row in csv.DictReader(open(tmp_path / "r.csv"))}
    assert set(rows) == {"g_lr=1e-4", "g_lr=2e-4"}
    bests = {s: [_best(sweep / f"{s}-s{i}") for i in (0, 1)] for s in rows}
    for s, row in rows.items():
        b = bests[s]
        mean = sum(b) / 2
        assert row["metric"] == "metrics/fid_c10" and row["seeds"] == "2"
        assert float(row["mean_best"]) == pytest.approx(mean, rel=1e-12)
        assert float(row["std_best"]) == pytest.approx(float(torch.tensor(b, dtype=torch.float64).std()), rel=1e-9)
        assert [float(x) for x in row["best_per_seed"].split(";")] == b
        assert row["optim.g_lr"] == s.split("=")[1]
    top, second = sorted(rows.values(), key=lambda r: float(r["mean_best"]))
    assert top["rank"] == "1" and second["rank"] == "2"
    p = stats.ttest_ind(bests[top["setting"]], bests[second["setting"]], equal_var=False).pvalue
    assert float(second["welch_p_vs_rank1"]) == pytest.approx(p, rel=1e-9)
    said = " ".join(res.stdout.split())
    assert f"p = {p:.3g}" in said and ("beats the runner-up" in said or "does not beat the runner-up" in said)
    assert "cores: " in said and "g_lr=1e-4 beside g_lr=2e-4" in said  # who shared the machine (two jobs at once)


def test_aggregate_runs_hold_mean_and_std_in_one_tag_family_and_runs_are_hparams_rows(grid_sweep):
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, sweep = grid_sweep
    assert sorted(p.name for p in (sweep / "mean").iterdir()) == ["g_lr=1e-4", "g_lr=2e-4"]  # the labels
    for setting in ("g_lr=1e-4", "g_lr=2e-4"):
        seeds = [events(sweep / f"{setting}-s{i}") for i in (0, 1)]
        agg = events(sweep / "mean" / setting)
        tags = agg.Tags()["scalars"]
        assert {t.split("/")[0] for t in tags} <= {t.split("/")[0] for t in seeds[0].Tags()["scalars"]}
        assert not [t for t in tags if t.startswith(("min/", "max/"))]  # no top-level groups of their own
        for tag in ("metrics/fid_c10", "loss/D"):
            per = [{e.step: e.value for e in ea.Scalars(tag)} for ea in seeds]
            got = {e.step: e.value for e in agg.Scalars(tag)}
            assert set(got) == set(per[0])
            for step, v in got.items():
                assert v == pytest.approx((per[0][step] + per[1][step]) / 2, rel=1e-6)
        fid = [{e.step: e.value for e in ea.Scalars("metrics/fid_c10")} for ea in seeds]
        band = {k: {e.step: e.value for e in agg.Scalars(f"metrics/fid_c10/{k}")}
                for k in ("mean+std", "mean-std", "min", "max")}
        assert set(band["mean+std"]) == set(fid[0])
        for s in fid[0]:
            vals = torch.tensor([f[s] for f in fid], dtype=torch.float64)
            m, sd = float(vals.mean()), float(vals.std())  # ddof 1, as the report's ± std
            assert band["mean+std"][s] == pytest.approx(m + sd, rel=1e-5, abs=1e-6)
            assert band["mean-std"][s] == pytest.approx(m - sd, rel=1e-5, abs=1e-6)
            assert band["min"][s] == pytest.approx(min(vals).item())
            assert band["max"][s] == pytest.approx(max(vals).item())
        for i in (0, 1):  # one HParams row per run, with the swept key as a column
            content = events(sweep / f"{setting}-s{i}").PluginTagToContent("hparams")
            hp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            assert hp.session_start_info.hparams["optim.g_lr"].number_value == float(setting.split("=")[1])
            assert hp.session_start_info.hparams["experiment.seed"].number_value == i


@pytest.fixture(scope="module")
def auto_sweep(tmp_path_factory, exp):
    """Two seeds of `precision = auto` with 2 jobs; train.steps given twice (the last wins, as everywhere)."""
    logs = tmp_path_factory.mktemp("auto")
    r = gan_cli("sweep", exp, "--seeds", "2", "--jobs", "2", "--set", "train.precision=auto", "--set",
                "train.steps=2", "--set", "train.steps=3", "--set", "metrics.enabled=false", "--device", "cpu",
                "--logs", logs)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, only_sweep(logs)


def test_auto_precision_is_decided_once_for_every_seed_and_recorded(auto_sweep):
    r, sweep = auto_sweep
    m = manifest(sweep)
    chosen = m["precision"]["chosen"]
    assert chosen in ("fp32", "bf16") and m["precision"]["asked"] == "auto"
    assert "decided once for every run" in " ".join(r.stdout.split())
    for e in m["runs"]:
        run = sweep / e["folder"]
        assert json.loads((run / "run.json").read_text())["precision"] == chosen
        assert f'precision = "{chosen}"' in (run / "config.toml").read_text()  # pinned, not timed again
        assert "train.precision = auto:" not in (sweep / "console" / f"{e['folder']}.log").read_text()


def test_a_repeated_set_keeps_its_last_value_in_a_sweep(auto_sweep):
    _, sweep = auto_sweep
    m = manifest(sweep)
    assert m["set"] == ["train.precision=auto", "train.steps=3", "metrics.enabled=false"]
    assert all(json.loads((sweep / e["folder"] / "run.json").read_text())["step"] == 3 for e in m["runs"])


def test_a_resumed_sweep_takes_its_threads_from_the_current_jobs(auto_sweep):
    """--jobs 2 then --resume --jobs 1: the resumed run gets all the cores, not the half it started with (and
    --jobs 1 then --resume --jobs 4 gets a quarter); the child's own torch.get_num_threads() is what is checked."""
    _, sweep = auto_sweep
    n = len(os.sched_getaffinity(0))
    if n < 2:
        pytest.skip("one core: every --jobs gives one thread")
    m = manifest(sweep)
    e = m["runs"][1]
    run = sweep / e["folder"]
    assert json.loads((run / "run.json").read_text())["threads"] == e["threads"] == n // 2
    # stopped before its end: 3 of 5 steps
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("steps = 3", "steps = 5"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(info | {"status": "interrupted"}))
    e["status"] = "interrupted"
    (sweep / "sweep.json").write_text(json.dumps(m))
    r = gan_cli("sweep", "--resume", sweep, "--jobs", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 5 and info["threads"] == n
    assert manifest(sweep)["runs"][1]["threads"] == n and f"{n} threads" in r.stdout


def test_setting_labels_are_readable_and_the_same_in_folders():
    from gan.sweep import grid

    over = ['train.diffaug="color,translation,cutout"', "model.conditional=true"]
    assert grid.setting_name(over) == "diffaug=color+translation+cutout, conditional=true"
    assert grid.folder_name(grid.setting_name(over), 0) == "diffaug=color+translation+cutout,conditional=true-s0"
    assert grid.setting_name(['train.diffaug=""', "model.conditional=false"]) == "diffaug=none, conditional=false"
    assert grid.setting_name(["optim.batch_size=64", "metrics.batch_size=32"]) == \
        "optim.batch_size=64, metrics.batch_size=32"  # two keys of one name keep their sections
    assert grid.setting_name(["metrics.extractors=[\"c10\", \"inception\"]"]) == "extractors=c10+inception"
    assert grid.setting_name([]) == "base"
    # `name` alone says nothing: a search over loss.name showed `name=hinge` in every folder and table
    assert grid.setting_name(["optim.g_lr=0.0002", "loss.name=hinge"]) == "g_lr=0.0002, loss=hinge"


def test_dry_run_lists_the_runs_and_makes_nothing(exp, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gan.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sweep", str(exp), *GRID, "--dry-run", "--logs", str(tmp_path / "logs")])
    assert res.exit_code == 0, res.stdout + res.stderr
    for f in FOLDERS:
        assert f in res.stdout
    assert "4 runs" in res.stdout and "nothing was made" in res.stdout
    assert list(tmp_path.iterdir()) == []
    assert "round(s)" not in res.stdout  # a step-limited run's length is not known before it runs
    # time-limited runs: the sweep's length is known before it starts (4 runs, 2 at once: 2 rounds of 3 minutes)
    res = CliRunner().invoke(app, ["sweep", str(exp), *GRID, "--set", "train.minutes=3", "--dry-run", "--logs",
                                   str(tmp_path / "logs")])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "at least 2 round(s) × 3 min = 0.1 h of wall time" in " ".join(res.stdout.split())
    assert list(tmp_path.iterdir()) == []


# ---- refused before anything starts: a family of bad values made from the good grid -------------------------
GOOD = {"optim.g_lr": "1e-4,2e-4", "loss.name": "hinge,bce", "train.steps": "4,6"}
BAD = {"optim.g_lr": ["abc", "-1e-4", "0", "nan", "1.5", "true"], "loss.name": ["lsgan", "1"],
       "train.steps": ["0", "2.5", "x"]}
CASES = {f"{k}={v}": ([a for key, vals in GOOD.items() for a in
                       ("--grid", f"{key}={vals.split(',')[0]},{v}" if key == k else f"{key}={vals}")], f"{k}={v}")
         for k, vs in BAD.items() for v in vs}
CASES |= {
    "unknown_key": (["--grid", "optim.momentum=0.9,0.8"], "unknown key optim.momentum"),
    "no_equals": (["--grid", "optim.g_lr"], "expected section.key=V1,V2"),
    "empty_value": (["--grid", "optim.g_lr=1e-4,"], "an empty value"),
    "repeated_value": (["--grid", "optim.g_lr=1e-4,1e-4"], "given twice"),
    "repeated_key": (["--grid", "optim.g_lr=1e-4", "--grid", "optim.g_lr=2e-4"], "given twice"),
    "seed_swept": (["--grid", "experiment.seed=0,1"], "use --seeds N"),
    "set_and_swept": (["--grid", "optim.g_lr=1e-4", "--set", "optim.g_lr=2e-4"], "is also swept"),
    "bad_set": (["--grid", "optim.g_lr=1e-4", "--set", "optim.beta1=2"], "optim.beta1 = 2"),
    "rule_between_keys": (["--grid", "loss.name=bce,hinge", "--set", "loss.label_smoothing=0.1"],
                          "setting loss=hinge"),
    "sample_without_trials": (["--sample", "optim.g_lr=loguniform:1e-5:1e-3"], "--sample needs --trials"),
    "sample_bad_kind": (["--trials", "2", "--sample", "optim.g_lr=normal:0:1"], "loguniform:LO:HI"),
    "sample_log_from_zero": (["--trials", "2", "--sample", "optim.g_lr=loguniform:0:1e-3"], "LO > 0"),
    "sample_bound_out_of_range": (["--trials", "2", "--sample", "optim.g_lr=uniform:1e-4:3"], "optim.g_lr=3"),
    "sample_float_for_int": (["--trials", "2", "--sample", "train.steps=uniform:2:9"], "use int:LO:HI"),
    "sample_bad_choice": (["--trials", "2", "--sample", "loss.name=choice:hinge,lsgan"], "loss.name=lsgan"),
    "trials_with_grid": (["--trials", "2", "--sample", "loss.name=choice:hinge,bce", "--grid", "optim.g_lr=1e-4"],
                         "no --grid"),
    "bad_launcher": (["--grid", "optim.g_lr=1e-4", "--launcher", "pbs"], "--launcher 'pbs'"),
    "array_without_slurm": (["--grid", "optim.g_lr=1e-4", "--array", "--launcher", "submitit-local"],
                            "--array is for --launcher slurm"),
    "submitit_params_locally": (["--grid", "optim.g_lr=1e-4", "--submitit", "timeout_min=5"], "--submitit is for"),
    "bad_name": (["--grid", "optim.g_lr=1e-4", "--name", "../up"], "--name '../up'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sweep_input_is_one_line_and_makes_no_folder(case, exp, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gan.cli import app

    monkeypatch.chdir(tmp_path)
    args, expected = CASES[case]
    res = CliRunner().invoke(app, ["sweep", str(exp), *args, "--logs", str(tmp_path / "logs")])
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    assert expected in res.stderr and res.stderr.startswith("error: "), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "logs").exists()


def test_bad_value_message_names_key_and_value(exp, tmp_path):
    r = gan_cli("sweep", exp, "--grid", "optim.g_lr=1e-4,abc", "--seeds", "2", "--logs", tmp_path / "logs")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: --grid optim.g_lr=abc: ") and "expected a number" in r.stderr
    assert not (tmp_path / "logs").exists()


def test_resume_and_report_refuse_what_is_not_a_sweep(tmp_path):
    from typer.testing import CliRunner

    from gan.cli import app

    (tmp_path / "d").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("{not json")
    for args, said in ((["--resume", str(tmp_path / "d")], "is not a sweep folder"),
                       (["--report", str(tmp_path / "bad")], "is damaged"),
                       (["tiny", "--resume", str(tmp_path / "d")], "take a sweep folder only")):
        res = CliRunner().invoke(app, ["sweep", *args])
        assert res.exit_code == 2 and said in res.stderr, res.stderr
    assert (tmp_path / "bad" / "sweep.json").read_text() == "{not json"  # a damaged manifest is left as it is


# ---- stopping: Ctrl-C (graceful), SIGKILL of the whole group, --resume ---------------------------------------
def start_sweep(args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gan", "sweep", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.long
def test_ctrl_c_then_sigkill_then_resume_ends_with_the_uninterrupted_weights(grid_sweep, exp, tmp_path):
    _, ref = grid_sweep
    logs = tmp_path / "logs"
    p = start_sweep([exp, *GRID, "--device", "cpu", "--logs", logs])
    try:
        assert wait_for(lambda: list(logs.glob("tiny/sweep-*/*/checkpoints/last.pt.prev")), 300)
        p.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C delivers: the runs are in their own groups
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, out + err
    sweep = only_sweep(logs)
    m = manifest(sweep)
    assert "--resume" in out
    stopped = [e for e in m["runs"] if e["status"] != "pending"]
    assert stopped and all(e["status"] in ("interrupted", "completed") for e in stopped)
    stopped = [e for e in stopped if (sweep / e["folder"] / "run.json").is_file()]
    for e in stopped:  # each checkpointed at its stop and said so
        info = json.loads((sweep / e["folder"] / "run.json").read_text())
        assert info["status"] == e["status"]
        if e["status"] == "interrupted" and info.get("step"):
            ck = torch.load(sweep / e["folder"] / "checkpoints" / "last.pt", weights_only=True)
            assert ck["step"] == info["step"] <= 60
            # at its last step only when the signal dropped the final evaluation: resume makes it first
            assert ck["step"] < 60 or ck["eval_pending"], info
    assert any(json.loads((sweep / e["folder"] / "run.json").read_text()).get("step") for e in stopped)
    assert any(e["status"] == "pending" and not (sweep / e["folder"]).exists() for e in m["runs"])

    # resume, then SIGKILL the whole process group while the last two runs are mid-way
    p = start_sweep(["--resume", sweep])
    try:
        late = [sweep / f / "checkpoints" / "last.pt.prev" for f in FOLDERS[2:]]
        assert wait_for(lambda: any(x.exists() for x in late), 300)
        pids = [int(e["job"]) for e in manifest(sweep)["runs"] if e["status"] == "running"]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        p.kill()
    assert pids and wait_for(lambda: not any(alive(pid) for pid in pids), 30)  # no run outlives its sweep
    r = gan_cli("sweep", "--resume", sweep)
    assert r.returncode == 0, r.stdout + r.stderr
    m = manifest(sweep)
    assert [e["status"] for e in m["runs"]] == ["completed"] * 4
    for f in FOLDERS:
        a = torch.load(ref / f / "checkpoints" / "last.pt", weights_only=True)
        b = torch.load(sweep / f / "checkpoints" / "last.pt", weights_only=True)
        for part in ("G", "G_ema", "D"):
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), (f, part, k)
        assert [s.step for s in events(sweep / f).Scalars("loss/D")] == list(range(3, 61, 3))
    assert any(e["attempts"] >= 2 for e in m["runs"])


# ---- the machine split between jobs -------------------------------------------------------------------------
def test_jobs_split_cores_and_take_one_gpu_each(monkeypatch):
    from gan.sweep import jobs

    monkeypatch.setattr(jobs, "cores", lambda: 2)
    monkeypatch.setattr(jobs, "visible_gpus", lambda: [])
    assert [(s.threads, s.gpu) for s in jobs.make_slots(2, "auto", log=lambda m: None)] == [(1, None)] * 2
    assert [(s.threads, s.gpu) for s in jobs.make_slots(None, "auto", log=lambda m: None)] == [(2, None)]
    said = []
    assert len(jobs.make_slots(4, "cpu", log=said.append)) == 2 and "oversubscribe" in said[0]
    monkeypatch.setattr(jobs, "cores", lambda: 16)
    monkeypatch.setattr(jobs, "visible_gpus", lambda: ["3", "5"])
    assert [(s.threads, s.gpu) for s in jobs.make_slots(None, "auto")] == [(8, "3"), (8, "5")]
    assert [s.gpu for s in jobs.make_slots(None, "cpu")] == [None]
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert jobs.visible_gpus() == ["2", "7"]


def test_a_job_gets_its_threads_and_gpu_in_its_environment(tmp_path):
    from gan.sweep.jobs import Scheduler, Slot
    from gan.sweep.manifest import Manifest

    run = {"setting": "a=1", "overrides": ["optim.g_lr=1e-4", "experiment.seed=0"], "seed": 0, "folder": "a-s0",
           "status": "pending"}
    man = Manifest.create(tmp_path, base="tiny.toml", set=["train.steps=5"], runs=[run])
    s = Scheduler(man, launcher=None, slots=[Slot(0, 4, "1")], device="cuda")
    job = s.job(man.runs[0], "start", Slot(0, 4, "1"))
    assert job.env == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1"}
    assert job.args[:2] == ["train", str((tmp_path / "tiny.toml").resolve())]
    assert job.args[2:8] == ["--set", "train.steps=5", "--set", "optim.g_lr=1e-4", "--set", "experiment.seed=0"]
    assert job.args[-2:] == ["--run-dir", str((tmp_path / "a-s0").resolve())]
    assert job.args[job.args.index("--device") + 1] == "cuda"
    man.runs[0]["threads"] = 2  # a resumed run takes its slot's share of this sweep's --jobs, not its first one
    assert s.job(man.runs[0], "resume", Slot(0, 4, None)).env["OMP_NUM_THREADS"] == "4"


@pytest.mark.long
def test_a_sweep_records_its_data_root_and_its_runs_keep_it_from_any_shell(exp, tmp_path, monkeypatch):
    """Seen in a real search: `gan sweep --resume` from a shell without GAN_DATA_ROOT started every new trial on
    no data (each failed at step 0, spending the search's trials)."""
    from gan.sweep import launchers
    from gan.sweep.jobs import Scheduler, Slot
    from gan.sweep.manifest import Manifest

    logs = tmp_path / "logs"
    r = gan_cli("sweep", exp, "--grid", "optim.g_lr=1e-4,2e-4", "--set", "train.steps=3", "--set",
                "metrics.enabled=false", "--logs", logs, env={"GAN_DATA_ROOT": str(tmp_path / "shards")})
    assert r.returncode == 0, r.stdout + r.stderr
    sweep = only_sweep(logs)
    assert manifest(sweep)["env"]["GAN_DATA_ROOT"] == str(tmp_path / "shards")
    assert set(manifest(sweep)["env"]) <= set(launchers.RUN_ENV)
    monkeypatch.setenv("GAN_DATA_ROOT", str(tmp_path / "elsewhere"))
    man = Manifest.load(sweep)
    job = Scheduler(man, launcher=None, slots=[Slot(0, 1)]).job(man.runs[0], "resume", Slot(0, 1))
    assert launchers.child_env(job.env)["GAN_DATA_ROOT"] == str(tmp_path / "shards")
    assert launchers.env_changes({"GAN_DATA_ROOT": man.data["env"]["GAN_DATA_ROOT"]}) == [
        f"GAN_DATA_ROOT: the sweep's own {str(tmp_path / 'shards')!r} (recorded when it started), not this shell's "
        f"{str(tmp_path / 'elsewhere')!r}"]


@pytest.mark.long
def test_two_runs_failing_alike_before_training_stop_the_sweep_and_resume_starts_them(exp, tmp_path, tiny_npz):
    """Four runs whose data is missing: the sweep stops after the second same failure, not after all four; once
    the data is there, --resume starts the failed and the unstarted ones."""
    logs, npz = tmp_path / "logs", tmp_path / "later.npz"
    r = gan_cli("sweep", exp, *GRID[:-2], "--jobs", "1", "--set", f'data.path="{npz}"', "--set", "train.steps=3",
                "--set", "metrics.enabled=false", "--logs", logs)
    assert r.returncode == 1, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "no more runs start: two runs in a row failed before training with the same error" in out
    sweep = only_sweep(logs)
    assert [e["status"] for e in manifest(sweep)["runs"]] == ["failed", "failed", "pending", "pending"]
    import shutil

    shutil.copy(tiny_npz, npz)
    r = gan_cli("sweep", "--resume", sweep)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e["status"] for e in manifest(sweep)["runs"]] == ["completed"] * 4




def test_live_table_row_reads_the_run_heartbeat(tmp_path):
    from gan import fileio
    from gan.sweep.jobs import live_row

    fileio.write_json(tmp_path / "run.json", {
        "steps_planned": 1000, "primary_metric": {"tag": "metrics/fid_c10", "why": "c10"},
        "progress": {"step": 250, "steps": 1000, "images_per_sec": 512.4, "train_seconds": 100.0, "at": "now"},
        "last_eval": {"step": 200, "values": {"metrics/fid_c10": 41.234, "metrics/kid_c10": 0.03}}})
    assert live_row(tmp_path, "running") == ["running", "250/1000", "512", "41.23 @ 200", "5m00s"]
    assert live_row(tmp_path / "none", "pending") == ["pending", "0/?", "-", "-", "-"]


def test_live_table_eta_follows_the_limit_that_ends_the_run(tmp_path):
    """quick's shape: train.steps = 1,000,000 and train.minutes = 10: the time limit ends it, not the steps."""
    from gan import fileio
    from gan.sweep.jobs import live_row

    beat = {"step": 250, "steps": 1_000_000, "images_per_sec": 512.4, "train_seconds": 100.0, "minutes": 10}
    fileio.write_json(tmp_path / "run.json", {"progress": beat})
    assert live_row(tmp_path, "running")[1::3] == ["250/~1500", "8m20s"]  # 500 s left at 2.5 steps/s
    fileio.write_json(tmp_path / "run.json", {"progress": beat | {"steps": 300}})  # the steps end it first
    assert live_row(tmp_path, "running")[1::3] == ["250/300", "20s"]


def test_what_a_run_needs_after_a_kill_and_nothing_is_deleted(tmp_path):
    from gan import fileio
    from gan.errors import GanError
    from gan.sweep import manifest as mf

    runs = [{"setting": "s", "overrides": [], "seed": i, "folder": f"r{i}", "status": st}
            for i, st in enumerate(["completed", "running", "running", "running", "pruning", "pending"])]
    man = mf.Manifest.create(tmp_path, runs=runs)
    fileio.write_json(tmp_path / "r1" / "run.json", {"status": "completed"})  # ended while no sweep watched
    fileio.write_json(tmp_path / "r2" / "run.json", {"status": "running"})  # killed after a checkpoint
    fileio.write_atomic(tmp_path / "r2" / "checkpoints" / "last.pt.prev", b"x")
    fileio.write_json(tmp_path / "r3" / "run.json", {"status": "running"})  # killed before its first checkpoint
    assert [mf.needs(man, e) for e in man.runs] == ["done", "done", "resume", "start", "prune", "start"]
    said = []
    mf.clear_for_start(man, man.runs[3], said.append)
    (aside,) = (tmp_path / "aborted").iterdir()
    assert not (tmp_path / "r3").exists() and aside.name.startswith("r3-") and "moved aside" in said[0]
    assert json.loads((aside / "run.json").read_text()) == {"status": "running"}
    mf.clear_for_start(man, man.runs[5], said.append)  # nothing there: nothing to move
    assert len(said) == 1
    with mf.lock(tmp_path):  # one sweep process per sweep folder
        with pytest.raises(GanError, match="being run by another gan sweep"):
            with mf.lock(tmp_path):
                pass
    with mf.lock(tmp_path):  # released with its holder
        pass


def test_whole_settings_beside_the_base_each_with_seeds(exp, tmp_path):
    """--setting: what a grid cannot say (a study's best two beside the experiment as it is); refusals in one line."""
    from gan.sweep import grid

    r = gan_cli("sweep", exp, "--setting", "fast: optim.g_lr=4e-4 optim.d_lr=4e-4", "--setting", "today: base",
                "--seeds", "2", "--set", "train.steps=3", "--set", "metrics.enabled=false", "--logs", tmp_path / "logs")
    assert r.returncode == 0, r.stdout + r.stderr
    m = manifest(only_sweep(tmp_path / "logs"))
    assert [(e["folder"], e["overrides"]) for e in m["runs"]] == [
        ("fast-s0", ["optim.g_lr=4e-4", "optim.d_lr=4e-4", "experiment.seed=0"]), ("today-s0", ["experiment.seed=0"]),
        ("fast-s1", ["optim.g_lr=4e-4", "optim.d_lr=4e-4", "experiment.seed=1"]), ("today-s1", ["experiment.seed=1"])]
    assert all(e["status"] == "completed" for e in m["runs"])
    cfg = json.loads((only_sweep(tmp_path / "logs") / "fast-s1" / "run.json").read_text())
    assert grid.parse_settings(["optim.g_lr=1e-4 loss.name=bce"]) == [("g_lr=1e-4, loss=bce",
                                                                       ["optim.g_lr=1e-4", "loss.name=bce"])]
    assert cfg["status"] == "completed"
    for args, words in [(["--setting", "optim.g_lr=abc"], "--setting optim.g_lr=abc"),
                        (["--setting", "a: optim.g_lr=1e-4 optim.g_lr=2e-4"], "optim.g_lr is given twice"),
                        (["--setting", "a: base", "--setting", "a: optim.g_lr=1e-4"], "two settings are named 'a'"),
                        (["--setting", "a: base", "--grid", "optim.g_lr=1e-4,2e-4"], "instead of --grid"),
                        (["--setting", "a: optim.g_lr=1e-4", "--set", "optim.g_lr=2e-4"], "is also swept")]:
        bad = gan_cli("sweep", exp, *args, "--logs", tmp_path / "bad")
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()

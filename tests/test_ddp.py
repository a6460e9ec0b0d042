"""Multi-process training (torchrun, DDP, gloo on the CPU, loopback only): 2 processes train like 1 with the same
global batch and seed; rank 0 alone writes; a killed rank takes the job down within a bounded time and the run
resumes; checkpoints move between 2 and 1 processes and continue the same trajectory."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan import checkpoint
from tests.conftest import ROOT, events, gan_cli, tiny_toml

ENV = {"OMP_NUM_THREADS": "1", "GAN_DIST_TIMEOUT": "60"}  # one thread in every process: CPU kernels then agree
# 2 processes vs 1: the same batches, latents and flips, sync BatchNorm; what differs is the order of float sums
# (conv over 8 vs 16 images, the gradient all_reduce, BatchNorm statistics summed over ranks). Measured on this
# config: at most 7e-7 over 20 steps; per-rank BatchNorm (model.sync_batchnorm = false) differs by ~7e-5.
TOL = 1e-5
TAGS = ("loss/D", "loss/G", "loss/D_real", "loss/D_fake")


def cfg(tmp_path, npz, steps=20, **train):
    """bce, BatchNorm in G and D, 2 D steps per G step, flips on: every sharded path of the engine."""
    return tiny_toml(tmp_path / f"ddp{steps}.toml", npz, loss={"name": "bce"}, optim={"batch_size": 16, "n_dis": 2},
                     model={"d_batchnorm": True},
                     train={"steps": steps, "log_every": 1, "image_every": 10, "checkpoint_every": 10, **train})


def only_run(logs: Path) -> Path:
    runs = [p for p in logs.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    ea = events(run)
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in TAGS}


def max_diff(a: dict, b: dict, steps=None) -> float:
    worst = 0.0
    for t in TAGS:
        x = {s: v for s, v in a[t] if steps is None or s in steps}
        y = {s: v for s, v in b[t] if steps is None or s in steps}
        assert sorted(x) == sorted(y), (t, sorted(x), sorted(y))
        worst = max(worst, max(abs(x[s] - y[s]) for s in x))
    return worst


def side_by_side(a: dict, b: dict, steps) -> str:
    A, B = dict(a["loss/D"]), dict(b["loss/D"])
    GA, GB = dict(a["loss/G"]), dict(b["loss/G"])
    return "\n".join(f"step {s:2d}  loss/D {A[s]:.7f} {B[s]:.7f}  loss/G {GA[s]:.7f} {GB[s]:.7f}" for s in steps)


def set_steps(run: Path, steps: int) -> None:
    """Lengthen a finished run (its config.toml) so that `gan resume` continues it: a stop at a known step."""
    p = run / "config.toml"
    text = p.read_text()
    assert "steps = 10\n" in text
    p.write_text(text.replace("steps = 10\n", f"steps = {steps}\n", 1))


def torchrun(*gan_args) -> list[str]:
    """The command a user types (`--` keeps `--logs` away from torchrun's own --logs-specs)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "--",
            "gan", *map(str, gan_args)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_npz):
    """The 20-step single-process reference run."""
    tmp = tmp_path_factory.mktemp("one")
    r = gan_cli("train", cfg(tmp, tiny_npz), "--device", "cpu", "--logs", tmp / "logs", env=ENV)
    assert r.returncode == 0, r.stderr
    return only_run(tmp / "logs")


def test_two_processes_train_like_one_and_only_rank0_writes(tmp_path, tiny_npz, one_process):
    t0 = time.time()
    r = gan_cli("train", cfg(tmp_path, tiny_npz), "--device", "cpu", "--logs", tmp_path / "logs", "--nproc", "2",
                env=ENV, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "logs")  # one run folder for the whole job
    assert r.stdout.count("completed at step 20") == 1  # rank 1 prints nothing
    assert "2 processes (gloo, cpu, 8 images each, sync BatchNorm)" in " ".join(r.stdout.split())  # rich wraps lines
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert len([f for f in files if f.startswith("events.out.tfevents")]) == 1, files
    kept = [f for f in files if not f.startswith("events.") and f != "code.patch"]  # code.patch: a dirty checkout
    assert kept == [".lock", "checkpoints/last.pt", "checkpoints/last.pt.prev", "config.toml", "run.json",
                    "summary.jsonl"], files
    assert json.loads((run / ".lock").read_text())["pid"] != os.getpid()  # rank 0 held the run (gan.runlock)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 20
    assert info["distributed"] == {"world_size": 2, "backend": "gloo", "sync_batchnorm": True}
    # the checkpoint holds the plain modules: no "module." prefix, same keys as a single-process run
    a = torch.load(one_process / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for part in ("G", "D", "G_ema"):
        assert list(a[part]) == list(b[part]), part
        for k in a[part]:
            assert torch.allclose(a[part][k].float(), b[part][k].float(), atol=1e-4), (part, k)
    assert torch.equal(a["sampler"]["perm"], b["sampler"]["perm"]) and a["sampler"]["pos"] == b["sampler"]["pos"]
    one, two = scalars(one_process), scalars(run)
    assert [s for s, _ in two["loss/D"]] == list(range(1, 21))
    worst = max_diff(one, two)
    print(f"\n1 vs 2 processes, max |difference| over {TAGS}: {worst:.2e} (tolerance {TOL:g}); "
          f"2-process job {time.time() - t0:.0f}s\n" + side_by_side(one, two, (1, 2, 5, 10, 15, 20)))
    assert worst < TOL


def _workers(pid: int) -> dict[int, int]:
    """{RANK: pid} of the worker processes torchrun (pid) started."""
    kids = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        kids += [int(x) for x in f.read_text().split()]
    out = {}
    for k in kids:
        try:
            env = Path(f"/proc/{k}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = [int(e[5:]) for e in env if e.startswith(b"RANK=")]
        if ranks:
            out[ranks[0]] = k
    return out


@pytest.mark.long
def test_killed_rank_stops_the_job_in_bounded_time_and_the_run_resumes(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "long.toml", tiny_npz, train={"steps": 150, "log_every": 10, "image_every": 50,
                                                             "checkpoint_every": 5})
    logs = tmp_path / "logs"
    p = subprocess.Popen(torchrun("train", exp, "--device", "cpu", "--logs", logs), cwd=ROOT,
                         env=dict(os.environ, **ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        t0 = time.time()
        while not list(logs.glob("*/*/checkpoints/last.pt.prev")):  # two checkpoints written: mid-run
            assert p.poll() is None and time.time() - t0 < 90, "no checkpoint"
            time.sleep(0.05)
        ranks = _workers(p.pid)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        t_kill = time.time()
        _, err = p.communicate(timeout=90)
        took = time.time() - t_kill
    finally:
        p.kill()
        p.wait()
    assert p.returncode != 0 and took < 90, (p.returncode, took)
    run = only_run(logs)
    info = json.loads((run / "run.json").read_text())
    # rank 0 saw its peer die (its collective failed) and said so before torchrun stopped it
    assert info["status"] == "failed" and info["error"].startswith("another process of the job stopped"), info
    killed_at = checkpoint.load(run / "checkpoints" / "last.pt")["step"]  # the last checkpoint is intact
    assert 0 < killed_at < 150
    print(f"\nrank 1 SIGKILLed after step {killed_at}: torchrun exited {p.returncode} after {took:.1f}s")
    r = gan_cli("resume", run, "--device", "cpu", env=ENV)  # 2 -> 1 process
    assert r.returncode == 0, r.stderr
    assert f"resuming {run} at step {killed_at}" in r.stdout.replace("\n", "")
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert [e.step for e in events(run).Scalars("loss/D")] == list(range(10, 151, 10))


def test_two_process_checkpoint_resumes_in_one_process_on_the_same_trajectory(tmp_path, tiny_npz, one_process):
    logs = tmp_path / "logs"
    r = gan_cli("train", cfg(tmp_path, tiny_npz, steps=10), "--device", "cpu", "--logs", logs, "--nproc", "2",
                env=ENV, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(logs)
    set_steps(run, 20)
    r = gan_cli("resume", run, "--device", "cpu", env=ENV)
    assert r.returncode == 0, r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed"][0]["step"] == 10
    worst = max_diff(scalars(one_process), scalars(run), steps=range(11, 21))
    print(f"\n2 processes to step 10, then 1 process: max |difference| to the 1-process run {worst:.2e}")
    assert worst < TOL


@pytest.mark.long
def test_one_process_checkpoint_resumes_on_two_processes_on_the_same_trajectory(tmp_path, tiny_npz, one_process):
    logs = tmp_path / "logs"
    r = gan_cli("train", cfg(tmp_path, tiny_npz, steps=10), "--device", "cpu", "--logs", logs, env=ENV)
    assert r.returncode == 0, r.stderr
    run = only_run(logs)
    set_steps(run, 20)
    r = gan_cli("resume", run, "--device", "cpu", "--nproc", "2", env=ENV, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["resumed"][0]["step"] == 10 and info["resumed"][0]["world_size"] == 2
    worst = max_diff(scalars(one_process), scalars(run), steps=range(11, 21))
    print(f"\n1 process to step 10, then 2 processes: max |difference| to the 1-process run {worst:.2e}")
    assert worst < TOL


@pytest.mark.long
def test_ctrl_c_stops_every_rank_on_the_same_step_with_a_checkpoint(tmp_path, tiny_npz):
    exp = tiny_toml(tmp_path / "long.toml", tiny_npz, train={"steps": 150, "log_every": 5, "image_every": 50,
                                                             "checkpoint_every": 5})
    logs = tmp_path / "logs"
    p = subprocess.Popen([sys.executable, "-m", "gan", "train", str(exp), "--device", "cpu", "--logs", str(logs),
                          "--nproc", "2"], cwd=ROOT, env=dict(os.environ, **ENV), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        t0 = time.time()
        while not list(logs.glob("*/*/checkpoints/last.pt")):
            assert p.poll() is None and time.time() - t0 < 90, "no checkpoint"
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: every process of the job gets it, and torchrun passes it on
        out, err = p.communicate(timeout=90)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 130, out + err
    run = only_run(logs)
    info = json.loads((run / "run.json").read_text())
    ck = checkpoint.load(run / "checkpoints" / "last.pt")
    assert info["status"] == "interrupted" and ck["step"] == info["step"] and ck["step"] % 5 == 0
    r = gan_cli("resume", run, "--device", "cpu", env=ENV)
    assert r.returncode == 0 and json.loads((run / "run.json").read_text())["status"] == "completed", r.stderr


def test_batch_not_divisible_by_processes_is_one_line(tmp_path, tiny_npz):
    r = gan_cli("train", tiny_toml(tmp_path / "t.toml", tiny_npz, optim={"batch_size": 15}), "--nproc", "2",
                "--logs", tmp_path / "logs", env=ENV)
    assert r.returncode == 2 and "not divisible by --nproc 2" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "logs").exists()


# ---- the pieces, without torchrun ----------------------------------------------------------------------------

def test_sharded_sampler_is_the_single_process_batch_split():
    from gan.sampler import Sampler
    from gan.sampler import Sampler as ShardedSampler

    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    torch.manual_seed(3)
    one = Sampler(images, 12, True, seed=5)
    ref = [one.next()[0] for _ in range(7)]  # 7 batches of 12 from 40 images: two new passes
    after = torch.get_rng_state()  # the flips moved the global RNG
    parts = []
    for rank in range(3):
        torch.manual_seed(3)
        s = ShardedSampler(images, 12, True, seed=5, rank=rank, world=3)
        parts.append([s.next()[0] for _ in range(7)])
        assert s.state_dict()["pos"] == one.state_dict()["pos"] and s.epoch == one.epoch == 2
        assert torch.equal(torch.get_rng_state(), after), rank  # by as much as in one process
    for i, batch in enumerate(ref):
        assert torch.equal(torch.cat([parts[r][i] for r in range(3)]), batch), i


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_bn_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from gan.dist import sync_batchnorm

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(8, 4, 5, 5) * 3 + 1
    bn = sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(4)), torch.device("cpu"))
    with torch.no_grad():
        bn[0].weight.uniform_(0.5, 1.5)
        bn[0].bias.uniform_(-1, 1)
    xr = x[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    y = bn(xr)
    (y.pow(3) * torch.arange(4.).view(1, 4, 1, 1)).sum().backward()
    torch.save({"y": y.detach(), "gx": xr.grad, "gw": bn[0].weight.grad, "gb": bn[0].bias.grad,
                "rm": bn[0].running_mean, "rv": bn[0].running_var}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    """Forward, input gradients, summed weight gradients and running statistics over 2 ranks = one BatchNorm."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "bn")
    mp.spawn(_sync_bn_worker, args=(_free_port(), out), nprocs=2, join=True)
    r = [torch.load(f"{out}.{k}", weights_only=True) for k in range(2)]
    torch.manual_seed(0)
    x = (torch.randn(8, 4, 5, 5) * 3 + 1).requires_grad_(True)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    y = bn(x)
    (y.pow(3) * torch.arange(4.).view(1, 4, 1, 1)).sum().backward()
    close = dict(atol=1e-4, rtol=1e-4)
    assert torch.allclose(torch.cat([r[0]["y"], r[1]["y"]]), y.detach(), **close)
    assert torch.allclose(torch.cat([r[0]["gx"], r[1]["gx"]]), x.grad, **close)
    assert torch.allclose(r[0]["gw"] + r[1]["gw"], bn.weight.grad, **close)
    assert torch.allclose(r[0]["gb"] + r[1]["gb"], bn.bias.grad, **close)
    for k in range(2):
        assert torch.allclose(r[k]["rm"], bn.running_mean, **close)
        assert torch.allclose(r[k]["rv"], bn.running_var, **close)

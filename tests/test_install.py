"""An installed `gan` outside the checkout: the wheel `pip wheel .` builds ships the 14 experiments, and from a folder
far from the checkout, with only the wheel's files on the path, `gan list` shows them beside the folder's own
./experiments/*.toml (a local one with a shipped name shadows it) and `gan train smoke` trains."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from gan import config
from tests.conftest import ROOT


def test_the_wheel_lists_and_trains_outside_the_checkout(tmp_path, tiny_npz):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT),
                        "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp_path / "dist").glob("gan_tracker-*.whl")  # the distribution's name; the import stays `gan`
    shipped = sorted(p.name for p in config.EXPERIMENTS_DIR.glob("*.toml"))
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        assert sorted(n.split("/")[-1] for n in names if n.startswith("gan/experiments/")) == shipped
        assert "gan/weights/c10.pt" in names and not any(n.startswith(("tests/", "examples/")) for n in names)
        z.extractall(tmp_path / "site")
    user = tmp_path / "elsewhere"
    (user / "experiments").mkdir(parents=True)
    smoke = (config.EXPERIMENTS_DIR / "smoke.toml").read_text()
    (user / "experiments" / "mine.toml").write_text(smoke.replace('description = "', 'description = "mine: '))
    (user / "experiments" / "quick.toml").write_text(smoke)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))  # the wheel's files first: not the checkout's
    run = lambda *a: subprocess.run([sys.executable, "-m", "gan", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=600, cwd=user, env=env, stdin=subprocess.DEVNULL)
    r = run("list")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert set(lines) == {p.removesuffix(".toml") for p in shipped} | {"mine"}
    assert "mine: " in lines["mine"] and "(local: experiments/mine.toml)" in lines["mine"]
    assert "(local, shadows the shipped one: experiments/quick.toml)" in lines["quick"]
    assert "(local" not in lines["smoke"]
    r = run("train", "smoke", "--device", "cpu", "--set", "data.dataset=npz", "--set", f"data.path={tiny_npz}",
            "--set", "train.steps=2", "--set", "optim.batch_size=8", "--set", "model.g_channels=8", "--set",
            "model.d_channels=8", "--set", "metrics.enabled=false")
    assert r.returncode == 0, r.stderr
    assert "completed at step 2" in r.stdout and list((user / "logs" / "smoke").glob("*/checkpoints/last.pt"))
    where = subprocess.run([sys.executable, "-c", "import gan; print(gan.__file__)"], capture_output=True, text=True,
                           cwd=user, env=env).stdout.strip()
    assert where == str(tmp_path / "site" / "gan" / "__init__.py")


def test_a_name_is_looked_up_in_the_current_folder_then_the_package(tmp_path, monkeypatch):
    from gan import lookup

    monkeypatch.chdir(tmp_path)
    assert config.resolve_path("quick") == config.EXPERIMENTS_DIR / "quick.toml"
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "quick.toml").write_text("[experiment]\ndescription = \"mine\"\n")
    assert config.resolve_path("quick") == tmp_path / "experiments" / "quick.toml"
    assert config.load("quick").experiment.description == "mine"
    where = {n: w for n, _, w in lookup.listing()}
    assert where["quick"] == "local, shadows the shipped one" and where["smoke"] == "shipped" \
        and len(where) == len(list(config.EXPERIMENTS_DIR.glob("*.toml")))

"""Config validation: every bad input is one line naming file, key, value and expectation; exit 2."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gan import config
from gan.cli import app
from gan.errors import GanError

runner = CliRunner()


def cli(*args):
    r = runner.invoke(app, list(map(str, args)))
    return r.exit_code, r.stdout, r.stderr


def test_shipped_experiments_validate():
    for p in sorted(config.EXPERIMENTS_DIR.glob("*.toml")):
        cfg = config.load(str(p))
        assert cfg.experiment.name == p.stem
        assert cfg.experiment.description, f"{p.name} needs a description for `gan list`"


def test_validate_prints_resolved_config():
    code, out, _ = cli("validate", "smoke", "--set", "optim.batch_size=32")
    assert code == 0
    assert "batch_size = 32" in out and "[metrics]" in out


def test_set_goes_through_the_same_validation():
    cfg = config.load("smoke", ["optim.g_lr=1e-3", "model.arch=dcgan", "metrics.extractors=[\"c10\"]"])
    assert cfg.optim.g_lr == 1e-3 and cfg.metrics.extractors == ["c10"]


def test_every_key_is_documented():
    rows = config.keys_doc()
    assert len(rows) > 40 and all(doc for _, _, doc in rows)


BAD = [
    ("syntax", "[optim\nbatch_size = 1\n", "TOML syntax error"),
    ("unknown_section", "[optimizer]\nlr = 1\n", "unknown section [optimizer]"),
    ("unknown_key", "[optim]\nlearning_rate = 1\n", "unknown key optim.learning_rate"),
    ("wrong_type", "[optim]\nbatch_size = \"big\"\n", "optim.batch_size = 'big': expected an integer"),
    ("bool_for_int", "[optim]\nbatch_size = true\n", "expected an integer"),
    ("negative_lr", "[optim]\ng_lr = -0.1\n", "optim.g_lr = -0.1: expected > 0.0"),
    ("zero_lr", "[optim]\nd_lr = 0\n", "optim.d_lr = 0.0: expected > 0.0"),
    ("zero_batch", "[optim]\nbatch_size = 0\n", "optim.batch_size = 0"),
    ("bad_loss", "[loss]\nname = \"mse\"\n", "loss.name = 'mse': expected one of 'bce', 'hinge', 'wgan'"),
    ("bad_arch", "[model]\narch = \"stylegan9\"\n", "model.arch = 'stylegan9': expected one of"),
    ("bad_dataset", "[data]\ndataset = \"imagenet\"\n", "data.dataset = 'imagenet'"),
    ("bad_size", "[data]\nimage_size = 48\n", "data.image_size = 48"),
    ("npz_without_path", "[data]\ndataset = \"npz\"\n", "data.path is empty"),
    ("section_not_table", "optim = 3\n", "expected a [optim] table"),
    ("bad_extractor", "[metrics]\nextractors = [\"clip\"]\n", "metrics.extractors"),
    ("smoothing_on_hinge", "[loss]\nname = \"hinge\"\nlabel_smoothing = 0.1\n", "apply to loss.name = 'bce'"),
]


@pytest.mark.parametrize("case,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_exit_2(tmp_path, case, text, expected):
    p = tmp_path / f"{case}.toml"
    p.write_text(text)
    code, out, err = cli("validate", p)
    assert code == 2, (out, err)
    assert expected in err, err
    assert str(p) in err or case == "syntax" and "syntax" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args,expected", [
    (["validate", "no_such_experiment"], "no experiment named 'no_such_experiment'"),
    (["validate", "missing/file.toml"], "experiment file 'missing/file.toml' not found"),
    (["validate", "smoke", "--set", "optim.batch_size"], "expected section.key=value"),
    (["validate", "smoke", "--set", "optim.nope=1"], "unknown key optim.nope"),
    (["validate", "smoke", "--set", "batch_size=1"], "expected section.key=value"),
    (["validate", "smoke", "--set", "optim.batch_size=-4"], "optim.batch_size = -4"),
    (["train", "smoke", "--device", "tpu"], "--device 'tpu'"),
])
def test_bad_command_line_is_one_line_exit_2(args, expected):
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_error_type_is_the_projects_own(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[train]\nsteps = 1.5\n")
    with pytest.raises(GanError, match=r"train.steps = 1.5: expected an integer"):
        config.load(str(p))

"""A user's own model and loss from their own files: arguments checked before any data loads, the contract checked
on 2 images before the first step, every break one line and exit 2 with no run folder left, an exception inside
their code kept with its traceback. The bad models and losses are made from one good file, one change each."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gan import config
from gan.cli import app
from tests.conftest import tiny_toml

runner = CliRunner()

GOOD_MODEL = '''
import torch
import torch.nn as nn


class G(nn.Module):
    def __init__(self, z_dim, size, k):
        super().__init__()
        self.size = size
        self.fc = nn.Linear(z_dim, 3 * size * size)
        self.emb = nn.Embedding(k, z_dim) if k else None

    def forward(self, z, y=None):
        if self.emb is not None:
            z = z + self.emb(y)
        return torch.tanh(self.fc(z)).view(-1, 3, self.size, self.size)


class D(nn.Module):
    def __init__(self, size, k):
        super().__init__()
        self.fc = nn.Linear(3 * size * size, 1)
        self.emb = nn.Embedding(k, 3 * size * size) if k else None

    def forward(self, x, y=None):
        h = x.flatten(1)
        out = self.fc(h).flatten()
        if self.emb is not None:
            out = out + (self.emb(y) * h).sum(1)
        return out


def build(z_dim: int, image_size: int, num_classes: int = 0, width: int = 8, mode: str = "a"):
    return G(z_dim, image_size, num_classes), D(image_size, num_classes)
'''
GOOD_LOSS = '''
class LS:
    def __init__(self, b: float = 1.0):
        self.b = b

    def d(self, real, fake):
        return ((real - self.b) ** 2).mean() + (fake ** 2).mean()

    def g(self, fake):
        return ((fake - self.b) ** 2).mean()


ls = LS()
'''
G_OUT = "return torch.tanh(self.fc(z)).view(-1, 3, self.size, self.size)"
BUILD = "return G(z_dim, image_size, num_classes), D(image_size, num_classes)"
# (case, (old, new) in the good model file, model.conditional, what its one line says)
BAD_MODELS = [
    ("wrong_channels", (G_OUT, G_OUT + "[:, :1]"), False, "bad.py:build: G returned (2, 1, 32, 32); expected (2, 3, 32, 32)"),
    ("wrong_size", (G_OUT, G_OUT + "[..., :16, :16]"), False, "G returned (2, 3, 16, 16); expected (2, 3, 32, 32)"),
    ("nan_output", (G_OUT, G_OUT + " * float('nan')"), False, "G returned non-finite values (6144 of 6144 NaN or inf)"),
    ("out_of_range", (G_OUT, G_OUT + " + 2"), False, "expected [-1, 1] (end G with tanh)"),
    ("float64", (G_OUT, G_OUT + ".double()"), False, "G returned dtype torch.float64; expected torch.float32"),
    ("d_returns_n1", ("out = self.fc(h).flatten()", "out = self.fc(h)"), False,
     "D returned (2, 1); expected (2,): one raw logit per image"),
    ("g_takes_no_y", ("def forward(self, z, y=None):", "def forward(self, z):"), True,
     "G.forward(z) takes no y; expected forward(z, y=None): y holds the class labels"),
    ("d_takes_no_y", ("def forward(self, x, y=None):", "def forward(self, x):"), False,
     "D.forward(x) takes no y; expected forward(x, y=None): the trainer passes y"),
    ("g_ignores_y", ("z = z + self.emb(y)", "z = z"), True, "G ignores y: one input with classes 0 and 1"),
    ("no_trainable_params", (BUILD, "return G(z_dim, image_size, num_classes).requires_grad_(False), "
                                    "D(image_size, num_classes)"), False,
     "G has no parameter that requires grad (52,224 parameters, none trainable)"),
    ("detached_output", (G_OUT, G_OUT + ".detach()"), False, "no gradient of D(G(z)) reaches G's parameters"),
    ("not_a_pair", (BUILD, "return G(z_dim, image_size, num_classes)"), False,
     "bad.py:build returned a G; expected a pair (G, D) of torch.nn.Module"),
    ("d_not_a_module", (BUILD, "return G(z_dim, image_size, num_classes), 3"), False,
     "D is a int; expected a torch.nn.Module"),
    ("syntax_error", ("import torch\n", "import torch +\n"), False, "syntax error in"),
]
# (case, (old, new), what the line says, a line of the user's file the traceback shows)
RAISING = [
    ("raises_at_construction", (BUILD, "raise RuntimeError('boom in build')"),
     "bad.py:build raised RuntimeError at construction: boom in build", "raise RuntimeError('boom in build')"),
    ("raises_in_forward", ("h = x.flatten(1)", "h = x.flatten(1) @ torch.zeros(5, 5)"),
     "raised RuntimeError in the contract check (D(x, y) on a batch of 2)", "h = x.flatten(1) @ torch.zeros(5, 5)"),
    ("raises_at_import", ("import torch\n", "import torch\nimport no_such_module_anywhere\n"),
     "raised ModuleNotFoundError while importing", "import no_such_module_anywhere"),
]


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def model_exp(tmp_path, tiny_npz, text=GOOD_MODEL, conditional=False, **model):
    (tmp_path / "bad.py").write_text(text)
    return tiny_toml(tmp_path / "exp.toml", tiny_npz, model={"arch": "bad.py:build", "conditional": conditional,
                                                              **model}, train={"steps": 2})


def refused(tmp_path, exp, *expected, code=2):
    logs = tmp_path / "logs"
    rc, out, err = cli("train", exp, "--logs", logs, "--device", "cpu")
    assert rc == code, (rc, out, err)
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and all(e in lines[0] for e in expected), err
    return logs, err


@pytest.mark.parametrize("case,change,conditional,says", BAD_MODELS, ids=[c[0] for c in BAD_MODELS])
def test_a_broken_model_is_one_line_and_leaves_no_run(case, change, conditional, says, tmp_path, tiny_npz):
    assert change[0] in GOOD_MODEL
    exp = model_exp(tmp_path, tiny_npz, GOOD_MODEL.replace(*change), conditional)
    logs, err = refused(tmp_path, exp, says)
    assert "Traceback" not in err
    assert not list(logs.rglob("run.json")) and not list(logs.rglob("*.pt"))  # no run behind


@pytest.mark.parametrize("case,change,says,line", RAISING, ids=[c[0] for c in RAISING])
def test_an_exception_in_their_code_keeps_its_traceback(case, change, says, line, tmp_path, tiny_npz):
    exp = model_exp(tmp_path, tiny_npz, GOOD_MODEL.replace(*change))
    logs, err = refused(tmp_path, exp, says, "(your code: its traceback is above)")
    tb = err.split("error:")[0]
    assert tb.startswith("Traceback") and str(tmp_path / "bad.py") in tb and line in tb
    assert "gan/cli" not in tb and "typer" not in tb  # from their first frame: not the way into it
    assert not list(logs.rglob("run.json"))


def test_an_exception_at_step_n_fails_the_run_with_its_traceback(tmp_path, tiny_npz):
    """The contract passes; G raises at its 4th call, in the training loop: exit 1, the run marked failed."""
    text = GOOD_MODEL.replace("    def forward(self, z, y=None):\n", "    calls = 0\n\n    def forward(self, z, y=None):\n"
                              "        G.calls += 1\n        if G.calls > 3:\n            raise ValueError('boom late')\n")
    exp = model_exp(tmp_path, tiny_npz, text)  # the contract calls G twice, each step once: step 2 raises
    logs, err = refused(tmp_path, exp, "bad.py:build raised ValueError at step 2 of", "boom late", code=1)
    assert "raise ValueError('boom late')" in err.split("error:")[0]
    (run,) = [p.parent for p in logs.rglob("run.json")]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "boom late" in info["error"]


# (case, [model.args] / --set, what the one line says)
BAD_ARGS = [
    ("unknown", ["model.args.depth=4"], "model.args.depth: bad.py:build takes no argument 'depth' (its arguments: "
                                        "width, mode)"),
    ("mistyped", ["model.args.width=\"wide\""], "model.args.width = \"wide\": expected an integer (bad.py:build "
                                                "annotates width: int; its arguments: width, mode)"),
    ("bool_for_int", ["model.args.width=true"], "model.args.width = true: expected an integer"),
    ("a_model_key", ["model.args.z_dim=8"], "model.args.z_dim: z_dim is model.z_dim (passed to"),
    ("args_for_builtin", ["model.arch=dcgan", "model.args.width=3"], "[model.args] is for your own model"),
    ("no_file", ["model.arch=\"nothere.py:build\""], "model.arch = 'nothere.py:build': no file nothere.py"),
    ("no_callable", ["model.arch=\"bad.py:buildx\""], "bad.py has no 'buildx' (it defines: D, G, build)"),
    ("no_module", ["model.arch=no_such_pkg.models:build"], "no module 'no_such_pkg'"),
]


@pytest.mark.parametrize("case,sets,says", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_a_bad_argument_is_one_line_before_any_data_loads(case, sets, says, tmp_path, tiny_npz, monkeypatch):
    exp = model_exp(tmp_path, tiny_npz)
    monkeypatch.chdir(tmp_path)  # --set paths are relative to the current directory
    for cmd in (["validate", exp], ["train", exp, "--logs", tmp_path / "logs"]):
        rc, out, err = cli(*cmd, *[a for s in sets for a in ("--set", s)])
        assert rc == 2 and err.count("error:") == 1 and says in err, err
    assert not (tmp_path / "logs").exists()


def test_a_missing_required_argument(tmp_path, tiny_npz):
    exp = model_exp(tmp_path, tiny_npz, GOOD_MODEL.replace("width: int = 8", "*, width: int"))
    rc, _, err = cli("validate", exp)
    assert rc == 2 and "model.args.width is missing: " in err and "bad.py:build requires it (its arguments: width, mode" in err
    assert config.load(str(exp), ["model.args.width=4"]).model.args == {"width": 4, "mode": "a"}


def test_args_are_keys_like_any_other(tmp_path, tiny_npz, monkeypatch):
    """validate prints them (defaults filled in), --set reaches them, keys EXP lists them, paths resolve against the
    experiment file from any folder, and the run's config.toml loads back to the same config."""
    exp = model_exp(tmp_path, tiny_npz, args={"width": 16})
    monkeypatch.chdir(tmp_path.parent)
    rc, out, _ = cli("validate", exp, "--set", "model.args.mode=\"b\"")
    assert rc == 0 and f'arch = "{tmp_path / "bad.py"}:build"' in out
    assert "[model.args]\nwidth = 16\nmode = \"b\"" in out
    rc, out, _ = cli("keys", exp)
    assert rc == 0 and "model.args.width" in out and "int, set (default 8)" in out and "model.args.mode" in out
    cfg = config.load(str(exp))
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml(cfg))
    assert config.load(str(again)).to_dict() == cfg.to_dict()


def loss_exp(tmp_path, tiny_npz, text=GOOD_LOSS, name="ls", args=None, arch="dcgan"):
    (tmp_path / "myloss.py").write_text(text)
    loss = {"name": f"myloss.py:{name}"} | ({"args": args} if args else {})
    return tiny_toml(tmp_path / "exp.toml", tiny_npz, loss=loss, train={"steps": 2})


D_OUT = "return ((real - self.b) ** 2).mean() + (fake ** 2).mean()"
G_LOSS = "return ((fake - self.b) ** 2).mean()"
BAD_LOSSES = [
    ("d_not_reduced", (D_OUT, "return (real - self.b) ** 2"), "ls", None,
     "myloss.py:ls: d(real, fake) returned (2,); expected a scalar (reduce it with .mean())"),
    ("g_nan", (G_LOSS, G_LOSS + " * float('nan')"), "ls", None, "g(fake) returned nan"),
    ("d_constant", (D_OUT, "import torch; return torch.tensor(1.0)"), "ls", None,
     "d(real, fake) returned a tensor with no gradient"),
    ("g_detached", (G_LOSS, "return ((fake.detach() - self.b) ** 2).mean()"), "ls", None,
     "g(fake) returned a tensor with no gradient"),
    ("d_float", (D_OUT, "return 1.0"), "ls", None, "d(real, fake) returned a float; expected a scalar tensor"),
    ("unknown_arg", ("", ""), "LS", {"c": 1.0}, "myloss.py:LS takes no argument 'c' (its arguments: b)"),
    ("args_to_an_object", ("", ""), "ls", {"b": 2.0}, "myloss.py:ls is an object with d and g"),
    ("factory_returns_junk", ("", "\ndef junk():\n    return 3\n"), "junk", None,
     "myloss.py:junk returned a int; expected an object with d(real, fake) and g(fake)"),
    ("not_callable", ("", "\nnumber = 3\n"), "number", None, "is a int: expected an object with d(real, fake)"),
]


@pytest.mark.parametrize("case,change,name,args,says", BAD_LOSSES, ids=[c[0] for c in BAD_LOSSES])
def test_a_broken_loss_is_one_line_and_leaves_no_run(case, change, name, args, says, tmp_path, tiny_npz):
    text = GOOD_LOSS.replace(*change) if change[0] else GOOD_LOSS + change[1]
    logs, err = refused(tmp_path, loss_exp(tmp_path, tiny_npz, text, name, args), says)
    assert not list(logs.rglob("run.json"))


def test_own_model_and_own_loss_train_and_are_recorded(tmp_path, tiny_npz):
    """Both from the user's files, conditional: the contract passes, the run trains, and its folder keeps the code."""
    (tmp_path / "bad.py").write_text(GOOD_MODEL)
    exp = loss_exp(tmp_path, tiny_npz, name="LS", args={"b": 0.5})
    rc, out, err = cli("train", exp, "--logs", tmp_path / "logs", "--device", "cpu", "--set",
                       "model.arch=\"" + str(tmp_path / "bad.py") + ":build\"", "--set", "model.conditional=true")
    assert rc == 0, err
    (run,) = [p.parent for p in (tmp_path / "logs").rglob("run.json")]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 2
    files = {f["role"]: f for f in info["code"]["files"]}
    assert (run / files["model"]["copy"]).read_text() == GOOD_MODEL
    assert (run / files["loss"]["copy"]).read_text() == GOOD_LOSS
    assert "bad.py:build conditional" in out.replace("\n", " ") and "myloss.py:LS loss" in out


def test_the_torch_free_catalog_is_the_registry():
    """gan/families.py (read without torch, what config checks model.arch against) says what gan.models builds."""
    from gan.families import BUILTIN
    from gan.models import ARCHES

    assert set(ARCHES) >= set(BUILTIN)
    for name, fam in BUILTIN.items():
        a = ARCHES[name]
        assert (a.sizes, a.conditional, a.doc) == (fam.sizes, fam.conditional, fam.doc)

"""Benchmark any model: a network given as code (a factory in a .py file or module, TorchScript,
timm) is attacked, audited and measured like a registered checkpoint, identified by the hashes of
its weights and source, and every mistake in giving it is one line and exit code 2."""
from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustbench_ode.errors import UserError
from robustbench_ode.models import ODEBlock, SolverConfig, nfe_of, solver_surrogate, swap_solver
from robustbench_ode.pixel_model import parse_normalize
from robustbench_ode.user_model import ModelSource

from .helpers import CONV_FIELD, odebench, train_tiny
from .test_cli import one_line_error

GRID = ["-a", "fgsm", "-a", "pgd", "--attack-arg", "pgd.steps=5", "--eps", "0,0.1", "--n-samples", "50",
        "--device", "cpu"]
NUMBERS = ["eps", "attack", "attack_args", "clean_acc", "robust_acc", "grad_calls", "n"]

MODEL_FILE = '''
from robustbench_ode.data import load_dataset
from robustbench_ode.models import build_model


def make():
    """The registered tiny digits ResNet, built by the user's own code."""
    return build_model("resnet_small", load_dataset("digits").info, width=4)


def body():
    """The same network without odebench's normalisation in front (it expects normalised input)."""
    return make().body
'''

BAD_MODELS = '''
import torch
from torch import nn


def raises():
    raise ValueError("width must be even")


def not_a_module():
    return 3


def seven_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7))


def wants_colour():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))


def needs_args(width):
    return nn.Linear(64, width)


def flat_digits():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
'''

ODE_FILE = '''
import torch
from torch import nn

from robustbench_ode.models import ODEBlock, SolverConfig
''' + CONV_FIELD + '''
def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ODEBlock(Field(), SolverConfig("dopri5")),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
'''


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype={"checkpoint_sha": str, "code_sha": str}, keep_default_na=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("user") / "run"
    train_tiny(out, epochs=1)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("files")
    (root / "mynet.py").write_text(MODEL_FILE)
    (root / "bad.py").write_text(BAD_MODELS)
    (root / "myode.py").write_text(ODE_FILE)
    return root


@pytest.fixture(scope="module")
def registered(ckpt, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("registered")
    proc = odebench("attack", "-c", ckpt, *GRID, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return results(out)


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[NUMBERS].reset_index(drop=True), b[NUMBERS].reset_index(drop=True))


# --- the same network, given as code ---------------------------------------------------------
def test_a_model_from_a_file_gives_the_same_csv_as_the_registered_network(ckpt, files, registered, tmp_path):
    weights = ckpt / "model.safetensors"
    proc = odebench("attack", "--model-file", f"{files / 'mynet.py'}:make", "--weights", weights, *GRID,
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    mine = results(tmp_path)
    same_numbers(mine, registered)
    assert 0 < mine["robust_acc"].min() < mine["clean_acc"].max()  # the numbers compared say something
    # the same weights file is the same checkpoint_sha (so the same seeds); the code is named apart
    assert set(mine["checkpoint_sha"]) == set(registered["checkpoint_sha"]) == {sha16(weights)}
    assert set(mine["code_sha"]) == {sha16(files / "mynet.py")} and set(registered["code_sha"]) == {""}
    assert set(mine["model"]) == {"mynet:make"} and set(mine["training"]) == {"unknown"}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.9+ deprecates TorchScript, still supported
def test_the_same_network_as_torchscript_gives_the_same_numbers(ckpt, files, registered, tmp_path):
    from robustbench_ode.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    scripted = tmp_path / "net.pt"
    torch.jit.trace(model, torch.rand(2, 1, 8, 8)).save(str(scripted))
    grid = [*GRID, "--attack-arg", "pgd.random_start=false"]  # another hash draws other random starts
    assert odebench("attack", "-c", ckpt, *grid, "--out", tmp_path / "ref").returncode == 0
    proc = odebench("attack", "--torchscript", scripted, *grid, "--out", tmp_path / "ts")
    assert proc.returncode == 0, proc.stderr
    mine = results(tmp_path / "ts")
    same_numbers(mine, results(tmp_path / "ref"))
    assert set(mine["checkpoint_sha"]) == {sha16(scripted)} and set(mine["model"]) == {"net"}


def test_normalize_wraps_a_network_that_expects_normalised_input(ckpt, files, registered, tmp_path):
    state = {k.removeprefix("body."): v for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    torch.save(state, tmp_path / "body.pt")  # a .pt state dict, read with weights_only=True
    proc = odebench("attack", "--model-file", f"{files / 'mynet.py'}:body", "--weights", tmp_path / "body.pt",
                    "--normalize", "0.3048/0.3836", *GRID, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    mine = results(tmp_path / "o")
    pd.testing.assert_series_equal(mine["clean_acc"], registered["clean_acc"])
    # different weights file, so other PGD random starts: FGSM must agree exactly
    same_numbers(mine[mine["attack"] == "fgsm"], registered[registered["attack"] == "fgsm"])
    provenance = json.loads((tmp_path / "o" / "provenance.jsonl").read_text().splitlines()[-1])
    assert provenance["models"][0]["normalize"] == {"mean": [0.3048], "std": [0.3836]}


def test_a_factory_can_be_named_by_import_path(files, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(files))
    proc = odebench("attack", "--model-file", "mynet:make", "-a", "fgsm", "--eps", "0.1", "--n-samples", "20",
                    "--device", "cpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(results(tmp_path)["model"]) == {"mynet:make"}


def test_rows_and_provenance_name_the_weights_and_source_hashes_and_an_edited_file_is_a_new_model(files, tmp_path):
    source = tmp_path / "net.py"
    source.write_text(MODEL_FILE)
    args = ["attack", "--model-file", f"{source}:make", "-a", "fgsm", "--eps", "0.1", "--n-samples", "20",
            "--device", "cpu", "--out", tmp_path / "o"]
    assert odebench(*args).returncode == 0
    record = json.loads((tmp_path / "o" / "provenance.jsonl").read_text())["models"][0]
    assert record["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["name"] == "net:make" and len(record["weights_sha256"]) == 64 and record["weights"] == ""
    source.write_text(MODEL_FILE + "\n# edited\n")
    assert odebench(*args).returncode == 0
    rows = results(tmp_path / "o")
    assert len(rows) == 2 and rows["code_sha"].nunique() == 2  # not taken for a finished cell


@pytest.mark.parametrize("crafter", ["model", "checkpoint"])
def test_a_model_given_as_code_is_a_transfer_source_or_target(ckpt, files, tmp_path, crafter):
    model = ["--model-file", f"{files / 'mynet.py'}:make", "--weights", ckpt / "model.safetensors"]
    roles = ["--model-as-source", "-c", ckpt] if crafter == "model" else ["--source", ckpt]
    proc = odebench("attack", *model, *roles, "-a", "fgsm", "--eps", "0.1", "--n-samples", "20", "--device", "cpu",
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = results(tmp_path).iloc[0]
    assert (row["source"], row["model"]) == (("mynet:make", "run") if crafter == "model" else ("run", "mynet:make"))
    # crafted on the very same network: transfer is as strong as the white-box attack
    assert row["robust_acc"] < row["clean_acc"]


# --- timm ------------------------------------------------------------------------------------
def test_timm_models_say_how_to_install_the_extra_when_timm_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    line = one_line_error(odebench("attack", "--model", "timm:resnet18", "--eps", "0.1", "--out", tmp_path))
    assert "pip install odebench[timm]" in line


def test_a_timm_architecture_is_built_without_download_for_the_dataset_and_loads_weights(monkeypatch, tmp_path):
    calls = []

    def create_model(name, pretrained, num_classes, in_chans):
        calls.append((name, pretrained, num_classes, in_chans))
        torch.manual_seed(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(64 * in_chans, num_classes))

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model, __version__="9.9"))
    save_file(create_model("tiny", False, 10, 1).state_dict(), str(tmp_path / "w.safetensors"))
    proc = odebench("attack", "--model", "timm:tiny", "--weights", tmp_path / "w.safetensors", "-a", "fgsm",
                    "--eps", "0.1", "--n-samples", "20", "--device", "cpu", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert calls[-1] == ("tiny", False, 10, 1)
    row = results(tmp_path / "o").iloc[0]
    assert row["architecture"] == "timm:tiny" and row["checkpoint_sha"] == sha16(tmp_path / "w.safetensors")


# --- one line for every mistake --------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--model-file", "{d}/nowhere.py:make"], "does not exist"),
    (["--model-file", "{d}/mynet.py"], "FILE.py:FACTORY"),
    (["--model-file", "{d}/mynet.py:nope"], "has no function 'nope'"),
    (["--model-file", "no_such_package.mod:make"], "cannot import 'no_such_package.mod'"),
    (["--model-file", "{d}/bad.py:raises"], "raised ValueError: width must be even"),
    (["--model-file", "{d}/bad.py:needs_args"], "raised TypeError"),
    (["--model-file", "{d}/bad.py:not_a_module"], "not a torch.nn.Module"),
    (["--model-file", "{d}/bad.py:seven_classes"], "returns shape (2, 7)"),
    (["--model-file", "{d}/bad.py:wants_colour"], "fails on digits images (C x H x W = 1x8x8)"),
    (["--model-file", "{d}/mynet.py:make", "--weights", "{d}/bad.py"], "give a .safetensors file or a .pt/.pth"),
    (["--model-file", "{d}/mynet.py:make", "--weights", "{d}/nothing.safetensors"], "does not exist"),
    (["--model-file", "{d}/mynet.py:make", "--weights", "{d}/pickled.pt"], "odebench convert"),
    (["--model-file", "{d}/mynet.py:make", "--weights", "{d}/other.safetensors"], "do not fit the model (missing"),
    (["--model-file", "{d}/mynet.py:make", "--normalize", "0.1,0.2"], "MEANS/STDS"),
    (["--model-file", "{d}/mynet.py:make", "--normalize", "0.1/0"], "must be > 0"),
    (["--model-file", "{d}/mynet.py:make", "--torchscript", "{d}/mynet.py"], "give one of"),
    (["--torchscript", "{d}/mynet.py"], "is not a TorchScript file"),
    (["--torchscript", "{d}/mynet.py", "--weights", "{d}/other.safetensors"], "does not apply to --torchscript"),
    (["--model", "resnet18"], "give timm:NAME"),
    (["--weights", "{d}/other.safetensors"], "applies to a model given by"),
    (["--model-file", "{d}/mynet.py:make", "--model-as-source"], "--model-as-source"),
])
def test_each_bad_model_input_gives_one_line_and_exit_code_2(files, tmp_path, args, message):
    torch.save(nn.Linear(2, 2), files / "pickled.pt")
    save_file({"weight": torch.zeros(2)}, str(files / "other.safetensors"))
    args = [a.format(d=files) for a in args]
    line = one_line_error(odebench("attack", *args, "--eps", "0.1", "--n-samples", "10", "--out", tmp_path))
    assert message in line


def test_a_model_for_other_images_is_refused_in_one_line_on_the_dataset_given(files, shared_data, tmp_path):
    line = one_line_error(odebench("attack", "--model-file", f"{files / 'bad.py'}:flat_digits", "--dataset", "mnist",
                                   "--data-dir", shared_data, "--eps", "0.1", "--out", tmp_path))
    assert "mnist images (C x H x W = 1x28x28)" in line


def test_a_dataset_other_than_the_checkpoints_is_refused(ckpt, tmp_path):
    line = one_line_error(odebench("attack", "-c", ckpt, "--dataset", "mnist", "--eps", "0.1", "--out", tmp_path))
    assert "--dataset mnist differs" in line


@pytest.mark.parametrize("command", ["audit", "stability"])
def test_audit_and_stability_take_the_same_model_options_and_fail_in_one_line(files, tmp_path, command):
    line = one_line_error(odebench(command, "--model-file", f"{files / 'bad.py'}:raises", "--out", tmp_path))
    assert "raised ValueError" in line


def test_stability_of_a_model_without_residual_or_ode_blocks_is_one_line(files, tmp_path):
    line = one_line_error(odebench("stability", "--model-file", f"{files / 'bad.py'}:flat_digits", "--out", tmp_path))
    assert "model 'bad:flat_digits' has neither" in line


# --- ODE-aware where it can be ---------------------------------------------------------------
def test_a_users_neural_ode_gets_gradients_through_another_solver_nfe_and_the_ode_backend(files, tmp_path):
    proc = odebench("attack", "--model-file", f"{files / 'myode.py'}:make", "-a", "pgd", "--attack-arg", "steps=2",
                    "--grad-solver", "rk4:step_size=0.5", "--eps", "0.1", "--n-samples", "10", "--device", "cpu",
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = results(tmp_path).iloc[0]
    assert row["ode_backend"] == "torchode" and float(row["nfe_forward"]) > 0
    assert json.loads(row["attack_args"])["grad_solver"] == "rk4:step_size=0.5"


def test_solver_swaps_work_on_any_module_holding_an_ode_block_and_share_its_weights():
    class Field(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, t, y):
            return torch.tanh(self.lin(y))

    net = nn.Sequential(nn.Linear(4, 3), ODEBlock(Field(), SolverConfig("dopri5")), nn.Linear(3, 2)).eval()
    rk4 = solver_surrogate(net, solver="rk4", step_size=0.25)
    assert net[1].config.solver == "dopri5" and rk4[1].config.solver == "rk4"  # the original is untouched
    assert rk4[1].func is net[1].func and rk4[0] is net[0] and not rk4.training
    x = torch.randn(5, 4)
    assert torch.allclose(rk4(x), net(x), atol=1e-3)  # the same flow, integrated another way
    assert nfe_of(rk4)["nfe_forward"] == 4 * 4  # 4 steps of rk4's 4 stages
    euler = swap_solver(net, "euler", backend="torchode")
    assert euler[1].config.backend == "torchode" and euler[1].config.rtol == net[1].config.rtol
    with pytest.raises(UserError, match="no ODE solver"):
        solver_surrogate(nn.Linear(2, 2), solver="rk4")


def test_the_audit_of_a_users_neural_ode_runs_the_surrogate_check(files, tmp_path):
    proc = odebench("audit", "--model-file", f"{files / 'myode.py'}:make", "--n-samples", "10", "--apgd-steps", "2",
                    "--square-queries", "5", "--spsa-steps", "1", "--spsa-samples", "2", "--device", "cpu",
                    "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "audit.json").read_text())
    surrogate = next(c for c in report["checks"] if c["name"].startswith("ODE solver surrogate"))
    assert surrogate["status"] != "n/a" and "not applicable" not in report


def test_the_audit_of_any_other_model_says_which_checks_do_not_apply(ckpt, files, tmp_path):
    proc = odebench("audit", "--model-file", f"{files / 'mynet.py'}:make", "--weights", ckpt / "model.safetensors",
                    "--n-samples", "10", "--apgd-steps", "2", "--square-queries", "5", "--spsa-steps", "1",
                    "--spsa-samples", "2", "--device", "cpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not applicable: ODE solver surrogate (not an ODE model" in proc.stdout
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["not applicable"].startswith("ODE solver surrogate")
    assert report["weights_sha256"] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()


def test_stability_follows_a_users_neural_ode(files, tmp_path):
    proc = odebench("stability", "--model-file", f"{files / 'myode.py'}:make", "--n-samples", "4", "--time-points", "3",
                    "--kinds", "random", "--sizes", "0.01", "--device", "cpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "stability.csv")
    assert set(rows["model"]) == {"myode:make"} and len(rows) == 3
    assert json.loads((tmp_path / "stability.json").read_text())["models"][0]["name"] == "myode:make"


# --- parsing -----------------------------------------------------------------------------------
def test_normalize_takes_one_value_or_one_per_channel_or_the_datasets_statistics():
    from robustbench_ode.data.cifar10 import INFO as CIFAR
    from robustbench_ode.data.digits import INFO as DIGITS

    assert parse_normalize("0.5/0.25", CIFAR) == ((0.5,) * 3, (0.25,) * 3)
    assert parse_normalize("0.49,0.48,0.45/0.25,0.24,0.26", CIFAR) == ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    assert parse_normalize("dataset", DIGITS) == (DIGITS.mean, DIGITS.std)
    with pytest.raises(UserError, match="1 or 3 values"):
        parse_normalize("0.1,0.2/0.3", CIFAR)


def test_a_source_needs_exactly_one_model_and_names_it_for_the_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a/b/net.py", "x/traced.pt"):
        Path(name).parent.mkdir(parents=True)
        Path(name).write_text("")
    assert ModelSource.from_options(None, None, None, None, None) is None
    assert ModelSource.from_options("a/b/net.py:build", None, None, None, None).label == "net:build"
    assert ModelSource.from_options("pkg.nets:build", None, None, None, None).label == "nets:build"
    assert ModelSource.from_options(None, None, Path("x/traced.pt"), None, None).label == "traced"
    for missing in [("a/b/gone.py:build", None, None), (None, None, Path("x/gone.pt")), (None, Path("w.pt"), None)]:
        with pytest.raises(UserError, match="does not exist"):  # answered before anything loads
            ModelSource.from_options(*missing, "resnet20" if missing[1] else None, None)
    assert ModelSource.from_options(None, None, None, "timm:resnet18", None).label == "timm:resnet18"

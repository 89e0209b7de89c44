"""Trust any model: a Neural ODE written with plain torchdiffeq or torchode is recognised as one
(what it integrates, NFE, per-image verdicts where the batch matters, solver surrogates), models
that would make an evaluation silently wrong (probabilities, randomness, gradients inside the
forward) are flagged before any attack, and `attack` reports the per-sample worst case over its
attacks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_ode.data import load_dataset
from robustbench_ode.evaluation.worst_case import worst_case_row
from robustbench_ode.model_checks import FAIL, OK, WARN, inspect_model, output_kind
from robustbench_ode.models.base import batch_dependent, has_ode_solver, nfe_of, solver_surrogate
from robustbench_ode.models.intercept import Integrated
from robustbench_ode.models.probe import probe
from robustbench_ode.pixel_model import wrap

from .helpers import CONV_FIELD, odebench

PLAIN_ODES = '''
import torch
import torchode as to
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
''' + CONV_FIELD + '''
class Net(nn.Module):
    """A user's Neural ODE: it calls the ODE library itself (no odebench ODEBlock)."""

    def __init__(self, mode):
        super().__init__()
        torch.manual_seed(0)
        self.mode = mode
        self.stem, self.field, self.head = nn.Conv2d(1, 4, 3, padding=1), Field(), nn.Linear(4, 10)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        t = torch.tensor([0.0, 1.0])
        if self.mode == "dopri5":
            h = odeint(self.field, h, t, rtol=1e-3, atol=1e-3)[-1]
        elif self.mode == "adjoint":
            h = odeint_adjoint(self.field, h, t, rtol=1e-2, atol=1e-2)[-1]
        elif self.mode == "euler":
            h = odeint(self.field, h, t, method="euler", options={"step_size": 0.25})[-1]
        else:
            b, shape = h.shape[0], h.shape[1:]
            term = to.ODETerm(lambda t, y: self.field(t, y.view(b, *shape)).flatten(1))
            solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=1e-3, rtol=1e-3, term=term))
            problem = to.InitialValueProblem(y0=h.flatten(1), t_start=torch.zeros(b), t_end=torch.ones(b))
            h = solver.solve(problem).ys[:, -1].view_as(h)
        return self.head(h.mean((2, 3)))


def dopri5():
    return Net("dopri5")


def adjoint():
    return Net("adjoint")


def euler():
    return Net("euler")


def torchode():
    return Net("torchode")
'''

SUSPECT_MODELS = '''
import torch
from torch import nn


def flat():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def softmax():
    return nn.Sequential(flat(), nn.Softmax(dim=1))


def dropout():
    """Dropout that eval() does not switch off: random at evaluation."""
    class AlwaysDropout(nn.Module):
        def forward(self, x):
            return nn.functional.dropout(x, 0.5, training=True)
    return nn.Sequential(AlwaysDropout(), flat())
'''

# (mode, library.call, method, adaptive, batch-dependent)
KINDS = [("dopri5", "torchdiffeq.odeint", "dopri5", True, True),
         ("adjoint", "torchdiffeq.odeint_adjoint", "dopri5", True, True),
         ("euler", "torchdiffeq.odeint", "euler", False, False),
         ("torchode", "torchode.AutoDiffAdjoint", "dopri5", True, False)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("any_model")
    (root / "plain_odes.py").write_text(PLAIN_ODES)
    (root / "suspects.py").write_text(SUSPECT_MODELS)
    return root


@pytest.fixture(scope="module")
def plain_odes(files):
    import importlib.util

    spec = importlib.util.spec_from_file_location("plain_odes_under_test", files / "plain_odes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_dataset("digits").test_x[:4]


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", keep_default_na=False)


def small_audit(model_file: str, out: Path) -> dict:
    """`odebench audit` of a model file on 8 digits images with tiny budgets; its audit.json."""
    proc = odebench("audit", "--model-file", model_file, "--n-samples", "8", "--apgd-steps", "2", "--square-queries",
                    "5", "--spsa-steps", "1", "--spsa-samples", "2", "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "audit.json").read_text())


# --- any ODE is an ODE -----------------------------------------------------------------------
@pytest.mark.parametrize("mode, call, method, adaptive, dependent", KINDS)
def test_a_model_that_calls_torchdiffeq_or_torchode_itself_is_recognised_with_what_it_integrates(
        plain_odes, images, mode, call, method, adaptive, dependent):
    model = wrap(getattr(plain_odes, mode)().eval(), None, images)
    assert isinstance(model.net, Integrated) and has_ode_solver(model)
    found = probe(model, images)
    solve = found.solves[0]
    assert f"{solve.library}.{solve.call}" == call and solve.method == method and solve.adaptive == adaptive
    assert (solve.t0, solve.t1) == (0.0, 1.0) and solve.nfe > 0
    assert nfe_of(model)["nfe_forward"] == solve.nfe
    assert batch_dependent(model) == dependent
    if mode == "euler":
        assert solve.nfe == 4 and solve.step_size == 0.25


def test_a_network_that_integrates_nothing_is_left_as_it_is(images):
    model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval(), None, images)
    assert not any(isinstance(m, Integrated) for m in model.modules()) and nfe_of(model) is None


@pytest.mark.parametrize("mode", ["dopri5", "adjoint", "torchode"])
def test_a_solver_surrogate_swaps_every_intercepted_solve_and_shares_the_weights(plain_odes, images, mode):
    model = wrap(getattr(plain_odes, mode)().eval(), None, images)
    own = model(images)
    rk4 = solver_surrogate(model, solver="rk4", step_size=0.1, adjoint=False)
    x = images.clone().requires_grad_(True)
    out = rk4(x)
    assert torch.allclose(out, own, atol=1e-2)  # the same flow, integrated another way
    assert [(s.call, s.method) for s in rk4.net.solves] == [("odeint", "rk4")]  # no adjoint: direct graph
    assert nfe_of(rk4)["nfe_forward"] == 10 * 4  # 10 steps of rk4's 4 stages
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert rk4.net.net is model.net.net  # shared weights; the model itself still decides with its own solver
    model(images)
    assert model.net.solves[0].method == "dopri5"


def test_a_plain_torchdiffeq_ode_gets_nfe_its_library_and_per_image_verdicts_on_attack(files, tmp_path):
    proc = odebench("attack", "--model-file", f"{files / 'plain_odes.py'}:dopri5", "-a", "pgd", "--attack-arg",
                    "steps=2", "--eps", "0.1", "--n-samples", "10", "--device", "cpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = results(tmp_path).iloc[0]
    assert row["ode_backend"] == "torchdiffeq" and float(row["nfe_forward"]) > 0
    assert "every verdict is made one image at a time" in " ".join(proc.stdout.split())
    record = json.loads((tmp_path / "provenance.jsonl").read_text().splitlines()[-1])
    ode = next(f for f in record["model_checks"]["plain_odes:dopri5"] if f["check"] == "ODE solves")
    assert ode["numbers"]["solves"][0]["method"] == "dopri5"


def test_the_audits_surrogates_of_an_intercepted_adjoint_ode_are_rk4_and_its_own_solver_without_the_adjoint(
        plain_odes, images):
    from robustbench_ode.diagnostics.audited import AuditConfig, ode_surrogates

    model = wrap(plain_odes.adjoint().eval(), None, images)
    model(images)
    surrogates = ode_surrogates(model, AuditConfig(eps=0.1))
    assert list(surrogates) == ["rk4 h=0.1", "dopri5, no adjoint"]
    surrogates["dopri5, no adjoint"](images)
    assert [(s.call, s.method) for s in surrogates["dopri5, no adjoint"].net.solves] == [("odeint", "dopri5")]


@pytest.mark.slow  # the whole audit of an adaptive ODE, one image at a time
def test_the_audit_of_a_plain_torchdiffeq_ode_runs_the_surrogate_check(files, tmp_path):
    report = small_audit(f"{files / 'plain_odes.py'}:adjoint", tmp_path)
    surrogate = next(c for c in report["checks"] if c["name"].startswith("ODE solver surrogate"))
    assert surrogate["status"] != "n/a"
    assert any(k.startswith("via dopri5, no adjoint") for k in surrogate["numbers"])  # the adjoint is swapped out too


# --- model checks before any attack ----------------------------------------------------------
def test_outputs_are_told_apart_as_logits_probabilities_or_log_probabilities():
    logits = torch.randn(4, 10)
    assert output_kind(logits) == "logits"
    assert output_kind(logits.softmax(1)) == "probabilities"
    assert output_kind(logits.log_softmax(1)) == "log-probabilities"


def test_a_plain_model_passes_every_model_check(images):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    assert [(f.check, f.status) for f in inspect_model(net, images)] == [
        ("outputs", OK), ("randomness", OK), ("input gradient", OK), ("gradients in forward", OK)]


def test_probabilities_randomness_and_gradients_in_the_forward_are_each_flagged(images):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    class Dynamic(nn.Module):
        """A 'defence' that takes a gradient step on its input inside the forward pass."""

        def forward(self, x):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(flat(x).logsumexp(1).sum(), x)
            return flat(x - 0.01 * g.sign())

    class AlwaysDropout(nn.Module):
        """Dropout that eval() does not switch off."""

        def forward(self, x):
            return nn.functional.dropout(x, 0.5, training=True)

    def status(model: nn.Module) -> dict[str, str]:
        return {f.check: f.status for f in inspect_model(model.eval(), images)}

    assert status(nn.Sequential(flat, nn.Softmax(1)))["outputs"] == FAIL
    assert status(nn.Sequential(flat, nn.LogSoftmax(1)))["outputs"] == FAIL
    assert status(nn.Sequential(AlwaysDropout(), flat))["randomness"] == WARN
    assert status(Dynamic())["gradients in forward"] == WARN


@pytest.mark.parametrize("factory, words", [("softmax", "outputs look like probabilities"),
                                            ("dropout", "--eot")])
def test_attack_warns_in_one_line_about_a_model_that_would_fool_it(files, tmp_path, factory, words):
    proc = odebench("attack", "--model-file", f"{files / 'suspects.py'}:{factory}", "-a", "fgsm", "--eps", "0.1",
                    "--n-samples", "10", "--device", "cpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert words in " ".join(proc.stdout.split())


def test_the_audit_fails_a_model_that_returns_probabilities(files, tmp_path):
    report = small_audit(f"{files / 'suspects.py'}:softmax", tmp_path)
    assert report["verdict"] == "fail"
    assert next(c for c in report["checks"] if c["name"] == "model check: outputs")["status"] == "fail"


# --- one worst-case number -------------------------------------------------------------------
def test_the_worst_case_counts_a_sample_robust_only_if_every_attack_left_it_so():
    members = [{"attack": "fgsm", "attack_args": "{}", "robust_acc": 0.5, "grad_calls": 4, "queries": 0, "wall_s": 1.0,
                "eps_mode": "nested", "eps": 0.1, "norm": "linf", "precision": "fp32"},
               {"attack": "pgd", "attack_args": '{"steps": 5}', "robust_acc": 0.5, "grad_calls": 20, "queries": 0,
                "wall_s": 2.0, "eps_mode": "nested", "eps": 0.1, "norm": "linf", "precision": "bf16"}]
    masks = [torch.tensor([1, 1, 0, 0], dtype=torch.bool), torch.tensor([1, 0, 1, 0], dtype=torch.bool)]
    row = worst_case_row(members, masks)
    assert row["attack"] == "worst case" and row["robust_acc"] == 0.25
    assert json.loads(row["attack_args"]) == {"of": "fgsm, pgd steps=5"}
    assert row["grad_calls"] == 24 and row["wall_s"] == 3.0 and row["precision"] == "bf16,fp32"
    assert json.loads(row["attack_stats"]) == {"fgsm": 0.5, "pgd steps=5": 0.5}


def test_attack_adds_a_worst_case_row_per_eps_below_every_attack_and_keeps_it_on_a_rerun(files, tmp_path):
    args = ["attack", "--model-file", f"{files / 'suspects.py'}:flat", "-a", "fgsm", "-a", "pgd", "--attack-arg",
            "pgd.steps=3", "--attack-arg", "pgd.random_start=false", "--eps", "0.05,0.2", "--n-samples", "40",
            "--device", "cpu", "--out", tmp_path]
    assert odebench(*args).returncode == 0
    df = results(tmp_path)
    worst = df[df["attack"] == "worst case"].set_index("eps")["robust_acc"]
    members = df[df["attack"] != "worst case"].pivot(index="eps", columns="attack", values="robust_acc")
    assert len(worst) == 2 and (worst <= members.min(axis=1) + 1e-9).all()
    assert "worst case (fgsm, pgd random_start=False steps=3)" in (tmp_path / "results.md").read_text()
    rerun = odebench(*args)
    assert rerun.returncode == 0
    assert "suspects:flat · pgd: 2 finished cells reused from results.csv" in rerun.stdout  # a rerun says what it reused
    again = results(tmp_path)
    assert len(again) == len(df) and again[again["attack"] == "worst case"]["robust_acc"].tolist() == worst.tolist()


# --- small defects -----------------------------------------------------------------------------
def test_results_files_respect_the_umask_as_the_plot_does(files, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        proc = odebench("attack", "--model-file", f"{files / 'suspects.py'}:flat", "-a", "fgsm", "--eps", "0.1",
                        "--n-samples", "10", "--device", "cpu", "--out", tmp_path)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    written = ["results.csv", "results.md", "provenance.jsonl", "accuracy_vs_eps.png",
               *(p.relative_to(tmp_path) for p in (tmp_path / "state").glob("*.safetensors"))]
    assert len(written) > 4
    for name in written:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_a_checkpoint_and_a_converted_file_respect_the_umask(tmp_path):
    import os

    from robustbench_ode.checkpoint import save_checkpoint
    from robustbench_ode.convert import convert

    net = nn.Linear(2, 2)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ckpt", net, {"model": "x"})
        convert(tmp_path / "w.pt", tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    for path in (tmp_path / "ckpt" / "model.safetensors", tmp_path / "ckpt" / "meta.json", tmp_path / "w.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_the_python_api_names_its_own_parameters_and_explains_a_weights_file():
    import robustbench_ode
    from robustbench_ode.errors import UserError

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(UserError) as err:
        robustbench_ode.evaluate(net, eps=[8], n_samples=10)
    assert "--" not in str(err.value) and "eps 8 is above 1" in str(err.value) and "eps_scale 255" in str(err.value)
    with pytest.raises(UserError, match="is a file, not an odebench checkpoint directory"):
        robustbench_ode.evaluate(__file__, n_samples=10)


def test_weights_whose_names_carry_an_extra_prefix_suggest_convert_strip_prefix(files, tmp_path):
    from safetensors.torch import save_file

    import importlib.util

    spec = importlib.util.spec_from_file_location("suspects_under_test", files / "suspects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    save_file({f"model.{k}": v for k, v in module.flat().state_dict().items()}, str(tmp_path / "w.safetensors"))
    proc = odebench("attack", "--model-file", f"{files / 'suspects.py'}:flat", "--weights", tmp_path / "w.safetensors",
                    "-a", "fgsm", "--eps", "0.1", "--n-samples", "10", "--device", "cpu", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "--strip-prefix model." in " ".join(proc.stderr.split())


def test_a_factory_that_raises_names_the_line_of_the_users_file(tmp_path):
    (tmp_path / "broken.py").write_text("def make():\n    width = 3\n    raise ValueError('width must be even')\n")
    proc = odebench("attack", "--model-file", f"{tmp_path / 'broken.py'}:make", "-a", "fgsm", "--eps", "0.1",
                    "--n-samples", "10", "--device", "cpu", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "(at broken.py:3)" in " ".join(proc.stderr.split())


def test_attack_warns_when_a_models_clean_accuracy_is_at_chance(tmp_path):
    """An MNIST network evaluated on the default digits (a forgotten --dataset) classifies at chance."""
    (tmp_path / "const.py").write_text("import torch\nfrom torch import nn\n\n\ndef make():\n"
                                       "    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
                                       "    nn.init.zeros_(net[1].weight)\n    nn.init.zeros_(net[1].bias)\n"
                                       "    net[1].bias.data[3] = 1.0  # always class 3\n    return net\n")
    proc = odebench("attack", "--model-file", f"{tmp_path / 'const.py'}:make", "-a", "fgsm", "--eps", "0.1",
                    "--n-samples", "20", "--device", "cpu", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "clean accuracy 10.0% on digits (sklearn 8x8) is at chance" in " ".join(proc.stdout.split())


def test_a_model_without_input_gradients_refuses_gradient_attacks_in_one_line_and_takes_gradient_free_ones(tmp_path):
    (tmp_path / "const.py").write_text("import torch\nfrom torch import nn\n\n\nclass Const(nn.Module):\n"
                                       "    def forward(self, x):\n        return torch.zeros(len(x), 10)\n\n\n"
                                       "def make():\n    return Const()\n")
    args = ["--model-file", f"{tmp_path / 'const.py'}:make", "--eps", "0.1", "--n-samples", "10", "--device", "cpu"]
    proc = odebench("attack", *args, "-a", "fgsm", "--out", tmp_path / "a")
    assert proc.returncode == 2 and "has no gradient with respect to the input" in " ".join(proc.stderr.split())
    assert odebench("attack", *args, "-a", "square", "--attack-arg", "queries=5", "--out", tmp_path / "b").returncode == 0


def test_a_results_folder_of_one_dataset_refuses_a_job_on_another_instead_of_reusing_its_cells(files, tmp_path):
    args = ["attack", "--model-file", f"{files / 'suspects.py'}:flat", "-a", "fgsm", "--eps", "0.1", "--n-samples", "10",
            "--device", "cpu", "--out", tmp_path]
    assert odebench(*args).returncode == 0
    before = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").write_text(before.replace("digits (sklearn 8x8)", "MNIST"))
    proc = odebench(*args)
    assert proc.returncode == 2 and "holds results on MNIST; this job evaluates on digits" in " ".join(proc.stderr.split())

"""Verdicts that cannot be inflated: batch-independent decisions, verified points, failed starts
counted apart, transfer crafted with the whole budget."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_ode.errors import UserError
from robustbench_ode.evaluation.request import AttackJob, AttackSpec
from robustbench_ode.evaluation.runner import Runner
from robustbench_ode.evaluation.target import Target
from robustbench_ode.evaluation.session import load_evaluation, run_job
from robustbench_ode.evaluation.store import ResultStore
from robustbench_ode.evaluation.verdict import VERIFY_ROUNDS
from robustbench_ode.experiments import quickstart
from robustbench_ode.precision import resolve_precision
from robustbench_ode.progress import SILENT
from robustbench_ode.training.config import TrainConfig
from robustbench_ode.training.trainer import Trainer

from .helpers import ConstantClassifier, train_tiny


@pytest.fixture(scope="module")
def digits_ode(tmp_path_factory) -> Path:
    """A small Neural ODE (dopri5) trained on the embedded digits for a few seconds."""
    out = tmp_path_factory.mktemp("ode") / "ode"
    Trainer(TrainConfig(model="odenet", dataset="digits", model_options={"channels": 8}, epochs=2, batch_size=64,
                        lr=1e-2, device="cpu"), out).run()
    return out


def _pgd_job(ckpt: Path, out: Path, **kw) -> AttackJob:
    base = dict(checkpoints=[ckpt], attacks=[AttackSpec.parse("pgd", {"steps": "10", "step_size": "0.02"})],
                eps=[0.1], out=out, n_samples=80, batch_size=40, device="cpu")
    return AttackJob(**(base | kw))


def test_pgd_robust_accuracy_on_a_digits_ode_equals_its_points_judged_one_image_at_a_time(digits_ode, tmp_path):
    batched, _ = run_job(_pgd_job(digits_ode, tmp_path / "batched"))
    job = _pgd_job(digits_ode, tmp_path / "alone")  # the same job, on the same engine, every decision alone
    ev = load_evaluation(job.checkpoints, job.out, "results.csv", n_samples=job.n_samples, batch_size=job.batch_size,
                         device=job.device, data_dir=None, ode_backend=job.ode_backend)
    runner = Runner(ResultStore(job.out / "results.csv"), ev.x, ev.y, job.batch_size, job.seed, ev.device,
                    ev.info.label, precision=resolve_precision(job.precision, ev.device), alone=lambda model: True)
    alone = runner.run(ev.targets, job.attacks, job.eps)
    assert batched[0]["ode_backend"] == "torchode"
    assert batched[0]["unverified"] == 0
    assert batched[0]["robust_acc"] < batched[0]["clean_acc"]  # the attack does something here
    assert (batched[0]["clean_acc"], batched[0]["robust_acc"]) == (alone[0]["clean_acc"], alone[0]["robust_acc"])


def test_the_ode_backend_is_part_of_a_cells_identity(digits_ode, tmp_path):
    run_job(_pgd_job(digits_ode, tmp_path))
    run_job(_pgd_job(digits_ode, tmp_path, ode_backend="torchdiffeq"))
    rows = ResultStore(tmp_path / "results.csv").rows
    assert sorted(r["ode_backend"] for r in rows) == ["torchdiffeq", "torchode"]


def test_an_unknown_ode_backend_is_a_user_error(digits_ode, tmp_path):
    with pytest.raises(UserError, match="ode_backend must be one of"):
        run_job(_pgd_job(digits_ode, tmp_path, ode_backend="scipy"))


class BatchCoupled(nn.Module):
    """Logits shifted by the batch's mean logits: alone an image gets its own decision, in a batch
    its neighbours push it; a stand-in for an adaptive solver that shares one step size."""

    def __init__(self, inner: nn.Module, coupling: float) -> None:
        super().__init__()
        self.inner, self.coupling = inner, coupling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return logits + self.coupling * (logits.mean(0, keepdim=True) - logits.detach())


def _runner(tmp_path: Path, digits, n: int = 100, **options) -> Runner:
    x, y = digits.test_x[:n], digits.test_y[:n]
    return Runner(ResultStore(tmp_path / "results.csv"), x, y, batch_size=n, seed=0, device=torch.device("cpu"),
                  dataset_label="digits", **options)


def _target(model: nn.Module, name: str = "m") -> Target:
    meta = {"weights_sha256": name * 64, "model": name, "dataset_info": {"num_classes": 10}}
    return Target(Path(name), model, meta)


def test_points_that_fail_rechecking_are_counted_unverified_and_attacked_further(trained, digits, tmp_path):
    def coupled(model: nn.Module) -> bool:  # the runner judges the coupled model one image at a time
        return isinstance(model, BatchCoupled)

    spec = AttackSpec.parse("pgd", {"steps": "5", "step_size": "0.02"})
    target = _target(BatchCoupled(trained, coupling=0.5).eval())
    further = _runner(tmp_path / "further", digits, alone=coupled).run([target], [spec], [0.08])[0]
    assert VERIFY_ROUNDS > 0  # the default attacks unconfirmed points further
    first_claims_only = _runner(tmp_path / "claims", digits, alone=coupled,
                                verify_rounds=0).run([target], [spec], [0.08])[0]
    assert further["unverified"] > 0
    assert further["unverified"] == first_claims_only["unverified"]
    assert further["robust_acc"] < first_claims_only["robust_acc"]


def test_a_boundary_sample_without_any_start_is_a_failed_start_and_never_robust(digits, tmp_path):
    spec = AttackSpec.parse("boundary", {"steps": "5"})
    rows = _runner(tmp_path, digits, n=40).run([_target(ConstantClassifier())], [spec], [0.5, 3.0])
    n_zero = int((digits.test_y[:40] == 0).sum())
    assert n_zero > 0
    for row in rows:
        assert row["clean_acc"] == pytest.approx(n_zero / 40, abs=1e-6)
        assert row["failed_starts"] == n_zero
        assert row["robust_acc"] == 0.0


def test_transfer_runs_the_whole_source_budget_on_every_sample_the_target_gets_right(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    train_tiny(good, epochs=2)
    train_tiny(bad, epochs=1, lr=1e-6)  # an untrained source: it misclassifies most samples already
    steps = 4
    spec = AttackSpec.parse("pgd", {"steps": str(steps)})
    rows, _ = run_job(AttackJob(checkpoints=[good], attacks=[spec], eps=[0.1], out=tmp_path / "o", n_samples=50,
                                batch_size=25, device="cpu", source=bad))
    row = rows[0]
    n_correct = round(row["clean_acc"] * row["n"])
    assert row["grad_calls"] == n_correct * steps
    assert row["unverified"] == ""


def test_quickstart_refuses_a_run_dir_trained_with_other_settings(tmp_path):
    train_tiny(tmp_path / "resnet20", epochs=1)
    with pytest.raises(UserError, match="other settings"):
        quickstart.run_quickstart(tmp_path, "cpu", SILENT)


def test_results_written_before_the_ode_backend_column_still_load(tmp_path):
    row = {"checkpoint_sha": "a", "source_sha": "", "attack": "pgd", "attack_args": "{}", "eps": 0.1, "n": 1,
           "seed": 0, "robust_acc": 0.5}
    pd.DataFrame([row]).to_csv(tmp_path / "results.csv", index=False)
    store = ResultStore(tmp_path / "results.csv")
    assert store.has(row | {"ode_backend": ""})

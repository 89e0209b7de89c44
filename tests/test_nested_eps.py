"""Nested ε grids: a larger radius attacks only the samples every smaller radius left robust, so
curves cannot rise, grids cost less, and an interrupted grid resumes to the identical table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_ode.evaluation.request import AttackSpec
from robustbench_ode.evaluation.runner import Runner
from robustbench_ode.evaluation.target import Target
from robustbench_ode.evaluation.request import AttackJob
from robustbench_ode.evaluation.session import run_job
from robustbench_ode.evaluation.store import ResultStore

from .helpers import ConstantClassifier, InterruptAtCell, odebench, train_tiny

STEPS = 5
DETERMINISTIC_PGD = AttackSpec.parse("pgd", {"steps": str(STEPS), "step_size": "0.02", "random_start": "false"})
RANDOM_PGD = AttackSpec.parse("pgd", {"steps": str(STEPS), "step_size": "0.02"})
GRID = [0.05, 0.1, 0.15, 0.2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nested") / "tiny"
    train_tiny(out, epochs=2)
    return out


def _job(ckpt: Path, out: Path, **kw) -> AttackJob:
    # fp32 gradients: under bf16 a claim the fp32 decision rejects is attacked further, which costs
    # gradient calls beyond STEPS per survivor (tests/test_precision.py covers that path)
    base = dict(checkpoints=[ckpt], attacks=[RANDOM_PGD], eps=GRID, out=out, n_samples=80, batch_size=40,
                device="cpu", precision="fp32")
    return AttackJob(**(base | kw))


def _by_eps(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["eps"])


def _csv_without_wall_time(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns="wall_s")


def test_nested_and_independent_grids_agree_at_the_first_radius_and_nested_is_never_higher(ckpt, tmp_path):
    attacks = [RANDOM_PGD, DETERMINISTIC_PGD]
    nested = pd.DataFrame(run_job(_job(ckpt, tmp_path / "n", attacks=attacks))[0]).sort_values(["attack_args", "eps"])
    independent = pd.DataFrame(run_job(_job(ckpt, tmp_path / "i", attacks=attacks, independent_eps=True))[0])
    independent = independent.sort_values(["attack_args", "eps"])
    assert set(nested["eps_mode"]) == {"nested"} and set(independent["eps_mode"]) == {"independent"}
    same = ["attack_args", "eps", "clean_acc", "robust_acc", "grad_calls", "queries", "unverified"]
    first = nested["eps"] == GRID[0]  # the same samples and cell seed: the same number, random starts included
    pd.testing.assert_frame_equal(nested.loc[first, same], independent.loc[first, same])
    deterministic = nested["attack_args"] == DETERMINISTIC_PGD.args_text
    assert (nested.loc[deterministic, "robust_acc"].values <= independent.loc[deterministic, "robust_acc"].values).all()
    curve = nested.loc[deterministic, "robust_acc"]
    assert curve.iloc[-1] < curve.iloc[0]  # the grid does something


class Noisy(nn.Module):
    """A randomised model (input noise from the global RNG): its numbers depend on the cell's seed."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.3 * torch.randn_like(x))


def test_the_first_radius_of_a_nested_grid_keeps_the_seed_and_number_of_its_independent_cell(trained, digits,
                                                                                             tmp_path):
    target = Target(Path("noisy"), Noisy(trained), {"weights_sha256": "n" * 64, "model": "noisy",
                                                    "dataset_info": {"num_classes": 10}})

    def first_row(nested: bool) -> dict:
        runner = Runner(ResultStore(tmp_path / f"{nested}.csv"), digits.test_x[:60], digits.test_y[:60], 30, 0,
                        torch.device("cpu"), "digits")
        row = runner.run([target], [RANDOM_PGD], [0.05, 0.1], nested=nested)[0]
        return {k: v for k, v in row.items() if k not in ("wall_s", "eps_mode")}

    assert first_row(nested=True) == first_row(nested=False)


class Periodic(nn.Module):
    """Right (class 0) while the mean pixel stays within 0.05 of 0.5 modulo 0.2: FGSM, one step of
    size ε up the gradient, breaks it at ε = 0.05 and 0.25 but not at 0.15 (its point lands in the
    next right band), so each radius attacked alone gives a curve that rises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cos(2 * math.pi * (x.mean((1, 2, 3)) - 0.5) / 0.2)
        return torch.stack([z, -z], 1)


def test_nested_robust_accuracy_never_rises_over_the_grid_even_where_each_radius_alone_does(tmp_path):
    x, y = torch.full((6, 1, 8, 8), 0.52), torch.zeros(6, dtype=torch.long)
    target = Target(Path("periodic"), Periodic(), {"weights_sha256": "p" * 64, "model": "periodic",
                                                   "dataset_info": {"num_classes": 2}})
    grid, fgsm = [0.0, 0.05, 0.15, 0.25], [AttackSpec.parse("fgsm", {})]

    def accuracies(nested: bool) -> list[float]:
        runner = Runner(ResultStore(tmp_path / "results.csv"), x, y, 6, 0, torch.device("cpu"), "synthetic")
        return [r["robust_acc"] for r in _by_eps(runner.run([target], fgsm, grid, nested=nested))]

    assert accuracies(nested=False) == [1.0, 0.0, 1.0, 0.0]
    assert accuracies(nested=True) == [1.0, 0.0, 0.0, 0.0]


def test_larger_radii_attack_only_the_survivors_of_smaller_ones(ckpt, tmp_path):
    nested = _by_eps(run_job(_job(ckpt, tmp_path / "n"))[0])
    independent = _by_eps(run_job(_job(ckpt, tmp_path / "i", independent_eps=True))[0])
    n = nested[0]["n"]
    for before, row, alone in zip(nested, nested[1:], independent[1:]):
        survivors = round(before["robust_acc"] * n)
        assert 0 < row["grad_calls"] <= STEPS * survivors  # what this cell spent, on the survivors only
        assert row["grad_calls"] < alone["grad_calls"]
    assert sum(r["grad_calls"] for r in nested) < sum(r["grad_calls"] for r in independent)


def test_an_interrupted_nested_grid_resumes_to_the_identical_csv(ckpt, tmp_path):
    run_job(_job(ckpt, tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        run_job(_job(ckpt, tmp_path / "cut"), on_cell=InterruptAtCell(3))
    assert len(ResultStore(tmp_path / "cut" / "results.csv").rows) == 2
    resumed = []
    run_job(_job(ckpt, tmp_path / "cut"), on_cell=resumed.append)
    assert len(resumed) == 2  # the finished radii were read back, not recomputed
    pd.testing.assert_frame_equal(_csv_without_wall_time(tmp_path / "cut" / "results.csv"),
                                  _csv_without_wall_time(tmp_path / "straight" / "results.csv"))


def test_a_radius_added_inside_a_nested_grid_recomputes_the_radii_above_it_as_a_fresh_run_would(ckpt, tmp_path):
    run_job(_job(ckpt, tmp_path / "fresh"))
    run_job(_job(ckpt, tmp_path / "grown", eps=[GRID[0], GRID[-1]]))
    cells = []
    run_job(_job(ckpt, tmp_path / "grown"), on_cell=cells.append)
    assert len(cells) == len(GRID) - 1  # the first radius is kept, everything above it recomputed
    pd.testing.assert_frame_equal(_csv_without_wall_time(tmp_path / "grown" / "results.csv"),
                                  _csv_without_wall_time(tmp_path / "fresh" / "results.csv"))


def test_results_without_an_eps_mode_column_read_as_independent_and_never_mix_with_nested_ones(ckpt, tmp_path):
    run_job(_job(ckpt, tmp_path, independent_eps=True))
    old = pd.read_csv(tmp_path / "results.csv", dtype=str, keep_default_na=False).drop(columns="eps_mode")
    old.to_csv(tmp_path / "results.csv", index=False)  # as written before nested grids existed
    reused = []
    run_job(_job(ckpt, tmp_path, independent_eps=True), on_cell=reused.append)
    assert reused == []  # the old rows are the independent cells
    computed = []
    nested, _ = run_job(_job(ckpt, tmp_path), on_cell=computed.append)
    assert len(computed) == len(GRID) and {r["eps_mode"] for r in nested} == {"nested"}
    modes = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)["eps_mode"]
    assert sorted(modes.value_counts().items()) == [("independent", len(GRID)), ("nested", len(GRID))]
    assert "pgd step_size=0.02 steps=5 (independent ε) |" in (tmp_path / "results.md").read_text()


def test_transfer_grids_nest_too_crafting_with_the_whole_budget_on_the_targets_survivors(ckpt, tmp_path):
    source = tmp_path / "source"
    train_tiny(source, epochs=1, seed=1)
    rows = _by_eps(run_job(_job(ckpt, tmp_path / "t", source=source))[0])
    n = rows[0]["n"]
    assert rows[0]["grad_calls"] == STEPS * round(rows[0]["clean_acc"] * n)
    for before, row in zip(rows, rows[1:]):
        assert row["grad_calls"] == STEPS * round(before["robust_acc"] * n)


def test_a_minimal_perturbation_attack_is_one_search_per_grid_in_either_mode(digits, tmp_path):
    x, y = digits.test_x[:20], digits.test_y[:20]
    # class 0 for every input: the Boundary Attack finds no start on any other class's sample
    target = Target(Path("c"), ConstantClassifier(), {"weights_sha256": "c" * 64, "model": "c",
                                                      "dataset_info": {"num_classes": 10}})
    cells = []
    runner = Runner(ResultStore(tmp_path / "results.csv"), x, y, 20, 0, torch.device("cpu"), "digits",
                    on_cell=cells.append)
    boundary = [AttackSpec.parse("boundary", {"steps": "5"})]
    first = runner.run([target], boundary, [0.5, 3.0], nested=False)
    again = runner.run([target], boundary, [0.5, 3.0], nested=True)
    assert len(cells) == 1 and first == again
    assert {r["eps_mode"] for r in first} == {"nested"}


def test_the_cli_switch_attacks_each_radius_independently_and_provenance_says_so(ckpt, tmp_path):
    grid = ["-a", "pgd", "--attack-arg", "steps=2", "--eps", "0.1,0.2", "--n-samples", "20", "--device", "cpu"]
    assert odebench("attack", "-c", ckpt, *grid, "--out", tmp_path).returncode == 0
    proc = odebench("attack", "-c", ckpt, *grid, "--independent-eps", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    modes = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)["eps_mode"].tolist()
    assert modes == ["nested", "nested", "independent", "independent"]
    runs = [json.loads(line) for line in (tmp_path / "provenance.jsonl").read_text().splitlines()]
    assert [r["eps_mode"] for r in runs] == ["nested", "independent"]

"""`odebench converge`: robust accuracy vs attack budget, worst case so far, with a convergence verdict."""
from __future__ import annotations

import pandas as pd
import pytest
from safetensors import safe_open

from robustbench_ode.evaluation.budget import LADDER, BudgetJob, parse_budgets, run_budget_job
from robustbench_ode.evaluation.request import AttackJob, AttackSpec
from robustbench_ode.evaluation.session import run_job
from robustbench_ode.report.budget import budget_markdown, converged

from .helpers import CellReporter, InterruptAtCell, odebench, train_tiny
from .test_cli import one_line_error

EPS = [0.05, 0.1]
N = 100


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("budget") / "run"
    train_tiny(out, epochs=2)
    return out


def job(ckpt, out, budgets: str = "pgd10,pgd40,apgd-ce", **kw) -> BudgetJob:
    return BudgetJob(**({"checkpoints": [ckpt], "eps": EPS, "out": out, "budgets": parse_budgets(budgets),
                         "n_samples": N, "batch_size": 50, "device": "cpu"} | kw))


@pytest.fixture(scope="module")
def curve(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    rows, text = run_budget_job(job(ckpt, out))
    return out, pd.DataFrame(rows), text


def test_the_curve_never_rises_and_a_sample_broken_once_stays_broken(curve):
    out, df, _ = curve
    for eps, g in df.groupby("eps"):
        assert list(g["budget"]) == ["pgd10", "pgd40", "apgd-ce"]
        assert g["robust_acc"].is_monotonic_decreasing
        assert g["grad_calls"].is_monotonic_increasing
        state = next((out / "state").glob(f"*-eps{eps:.10g}-*.safetensors"))
        with safe_open(str(state), framework="pt") as fh:
            masks = [fh.get_tensor(f"step{i}") for i in range(3)]
        for before, after in zip(masks, masks[1:]):
            assert not (after & ~before).any()
        assert [int(m.sum()) for m in masks] == [round(a * N) for a in g["robust_acc"]]
    assert df["newly_broken"].iloc[1:].gt(0).any(), "no later budget broke anything: the test checks nothing"


def test_each_budget_attacks_only_the_samples_still_robust(curve):
    out, df, _ = curve
    steps = pd.read_csv(out / "steps.csv")
    for eps, g in df.groupby("eps"):
        attacked = list(steps[steps["eps"] == eps]["attacked"])
        expected_first = round(g["clean_acc"].iloc[0] * N)
        assert attacked == [expected_first] + [round(a * N) for a in g["robust_acc"].iloc[:-1]]


def test_the_first_point_is_pgd10_as_odebench_attack_measures_it(ckpt, curve, tmp_path):
    _, df, _ = curve
    first = df[df["budget"] == "pgd10"]
    spec = LADDER[0].spec(0.05, 0.01)
    rows, _ = run_job(AttackJob(checkpoints=[ckpt], attacks=[AttackSpec.parse("pgd", dict(spec.options))], eps=EPS,
                                out=tmp_path, n_samples=N, batch_size=50, device="cpu", independent_eps=True))
    assert [r["robust_acc"] for r in rows] == list(first["robust_acc"])
    assert [r["attack_args"] for r in rows] == list(first["attack_args"])
    assert [round(r["grad_calls"] / N, 2) for r in rows] == list(first["grad_calls"])


def test_an_interrupted_run_resumes_without_redoing_finished_budgets(ckpt, curve, tmp_path):
    _, straight, _ = curve
    stop = InterruptAtCell(2)
    with pytest.raises(KeyboardInterrupt):
        run_budget_job(job(ckpt, tmp_path, eps=EPS[:1]), CellReporter(stop))
    resumed, _ = run_budget_job(job(ckpt, tmp_path, eps=EPS[:1]), CellReporter(stop.cells.append))
    assert len(stop.cells) == 2 + 2  # the resumed run starts at the second budget
    drop = ["wall_s"]
    expected = straight[straight["eps"] == EPS[0]].drop(columns=drop).reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.DataFrame(resumed).drop(columns=drop), expected)


def test_a_changed_rung_reruns_it_and_every_rung_after_it(ckpt, tmp_path):
    run_budget_job(job(ckpt, tmp_path / "a", budgets="pgd10,apgd-ce", eps=EPS[1:]))
    cells: list[str] = []
    changed, _ = run_budget_job(job(ckpt, tmp_path / "a", budgets="pgd10,apgd-ce", eps=EPS[1:], step_size=None),
                                CellReporter(cells.append))
    fresh, _ = run_budget_job(job(ckpt, tmp_path / "b", budgets="pgd10,apgd-ce", eps=EPS[1:], step_size=None))
    assert len(cells) == 2
    assert [r["robust_acc"] for r in changed] == [r["robust_acc"] for r in fresh]


@pytest.mark.parametrize("accs, verdict", [
    ([0.50], None), ([0.50, 0.50], True), ([0.50, 0.495], True), ([0.50, 0.49], True), ([0.50, 0.489], False),
    ([0.90, 0.30, 0.30], True), ([0.30, 0.30, 0.20], False),
])
def test_the_converged_rule_compares_the_last_two_budgets_within_one_point(accs, verdict):
    assert converged(accs) is verdict


def test_the_table_says_converged_per_eps_from_the_last_two_budgets():
    row = {"model": "m", "checkpoint_sha": "s", "dataset": "d", "eps_scale": 1.0, "n": 100, "clean_acc": 0.9}
    df = pd.DataFrame([row | {"eps": 0.1, "budget": "pgd10", "robust_acc": 0.6},
                       row | {"eps": 0.1, "budget": "apgd-t", "robust_acc": 0.595},
                       row | {"eps": 0.2, "budget": "pgd10", "robust_acc": 0.4},
                       row | {"eps": 0.2, "budget": "apgd-t", "robust_acc": 0.2}])
    text = budget_markdown(df)
    assert "- ε=0.1: converged" in text and "- ε=0.2: NOT converged" in text
    assert "| apgd-t | 59.50 | 20.00 |" in text


def test_pgd_step_is_the_papers_or_scaled_with_eps():
    assert LADDER[1].spec(0.3, 0.01).options["step_size"] == 0.01
    assert LADDER[1].spec(0.3, None).options["step_size"] == pytest.approx(2.5 * 0.3 / 40)
    assert "step_size" not in LADDER[-1].spec(0.3, 0.01).options


def test_the_cli_writes_csv_markdown_plot_and_provenance(ckpt, tmp_path):
    proc = odebench("converge", "-c", ckpt, "--eps", "0.1", "--budgets", "pgd40,pgd10", "--n-samples", "40",
                    "--device", "cpu", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "converged" in proc.stdout
    for name in ("budget.csv", "budget.md", "budget.png", "provenance.jsonl", "steps.csv"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    assert list(pd.read_csv(tmp_path / "o" / "budget.csv")["budget"]) == ["pgd10", "pgd40"]


@pytest.mark.parametrize("args, message", [
    (["--eps", "0.1", "--budgets", "pgd7"], "unknown budget 'pgd7'"),
    (["--eps", "0.1", "--budgets", ","], "at least one budget"),
    (["--eps", "abc"], "not a number"),
    (["--eps", "3"], "above 1"),
    (["--eps", "0.1", "--step-size", "big"], "--step-size"),
    (["--eps", "0.1", "--step-size", "0"], "--step-size"),
    (["--eps", "0.1", "--n-samples", "0"], "--n-samples"),
    (["--eps", "0.1", "--ode-backend", "nope"], "--ode-backend"),
    (["--eps", "0.1", "--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_exit_code_2(ckpt, tmp_path, args, message):
    assert message in one_line_error(odebench("converge", "-c", ckpt, "--out", tmp_path / "o", *args))


def test_a_missing_checkpoint_or_an_out_that_is_a_file_is_one_line(ckpt, tmp_path):
    assert "does not exist" in one_line_error(odebench("converge", "-c", tmp_path / "nope", "--eps", "0.1"))
    (tmp_path / "taken").write_text("keep")
    assert "is a file" in one_line_error(odebench("converge", "-c", ckpt, "--eps", "0.1", "--out", tmp_path / "taken"))
    assert (tmp_path / "taken").read_text() == "keep"


def test_autoattacks_last_members_are_rungs_only_when_named():
    assert [b.label for b in parse_budgets(None)] == [b.label for b in LADDER]
    named = parse_budgets("square,autoattack,pgd10,fab-t,apgd-t")
    assert [b.label for b in named] == ["pgd10", "apgd-t", "fab-t", "square", "autoattack"]
    fab, square = named[2].spec(0.3, 0.01), named[3].spec(0.3, 0.01)
    assert (fab.name, fab.options["targets"], fab.options["steps"]) == ("fab", 9, 100)  # AutoAttack's FAB-T
    assert (square.name, square.options["queries"], square.options["p_init"]) == ("square", 5000, 0.8)

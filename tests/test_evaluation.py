"""The attack runner, its resumable store and the reports."""
import json

import pandas as pd
import pytest
import torch

from robustbench_ode.errors import UserError
from robustbench_ode.evaluation.request import AttackJob, AttackSpec, parse_eps
from robustbench_ode.evaluation.session import run_job
from robustbench_ode.evaluation.store import CELL_COLUMNS, COLUMNS, KEY, LATER_KEYS, STR_COLUMNS, ResultStore
from robustbench_ode.report import render

from .helpers import ConstantClassifier, InterruptAtCell, train_tiny


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    train_tiny(root / "a", epochs=2)
    train_tiny(root / "b", epochs=2, seed=1)
    return root / "a", root / "b"


def job(ckpts, out, **kw) -> AttackJob:
    base = dict(checkpoints=list(ckpts), attacks=[AttackSpec.parse("fgsm", {}), AttackSpec.parse("pgd", {"steps": "5"})],
                eps=[0.0, 0.1, 0.3], out=out, n_samples=60, batch_size=30, device="cpu")
    return AttackJob(**(base | kw))


def test_eps_zero_gives_clean_accuracy_and_accuracy_never_rises_with_eps(ckpts, tmp_path):
    rows, _ = run_job(job(ckpts, tmp_path))
    df = pd.DataFrame(rows)
    for _, g in df.groupby(["model", "attack"]):
        g = g.sort_values("eps")
        assert g["robust_acc"].iloc[0] == g["clean_acc"].iloc[0]
        assert g["robust_acc"].is_monotonic_decreasing  # with the line above: never above clean accuracy


def test_each_row_records_settings_cost_and_time(ckpts, tmp_path):
    rows, _ = run_job(job(ckpts, tmp_path))
    row = next(r for r in rows if r["attack"] == "pgd" and r["eps"] == 0.3)
    assert json.loads(row["attack_args"])["steps"] == 5
    assert row["n"] == 60 and row["seed"] == 0 and row["norm"] == "linf"
    assert 0 < row["grad_calls"] <= 60 * 5
    assert (tmp_path / "provenance.jsonl").exists() and (tmp_path / "accuracy_vs_eps.png").stat().st_size > 0


def test_a_written_row_has_exactly_the_schemas_columns(ckpts, tmp_path):
    rows, _ = run_job(job(ckpts[:1], tmp_path, eps=[0.0, 0.1]))
    assert {r["attack"] for r in rows} == {"fgsm", "pgd", "worst case"}
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert list(pd.read_csv(tmp_path / "results.csv").columns) == list(COLUMNS)
    assert set(KEY) <= set(CELL_COLUMNS) and set(LATER_KEYS) <= set(KEY) and set(STR_COLUMNS) <= set(COLUMNS)


def test_a_rerun_skips_finished_cells_and_gives_the_same_table(ckpts, tmp_path):
    first, md1 = run_job(job(ckpts, tmp_path))
    again, md2 = run_job(job(ckpts, tmp_path))
    assert md1 == md2
    assert len(ResultStore(tmp_path / "results.csv").rows) == len(first)
    assert [r["wall_s"] for r in first] == [r["wall_s"] for r in again]  # read back, not recomputed


def test_an_interrupted_run_resumes_to_the_same_table_as_an_uninterrupted_one(ckpts, tmp_path):
    _, straight = run_job(job(ckpts, tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        run_job(job(ckpts, tmp_path / "cut"), on_cell=InterruptAtCell(4))
    assert len(ResultStore(tmp_path / "cut" / "results.csv").rows) == 3
    _, resumed = run_job(job(ckpts, tmp_path / "cut"))
    assert resumed == straight


def test_transfer_mode_crafts_on_the_source_and_evaluates_on_the_target(ckpts, tmp_path):
    a, b = ckpts
    rows, md = run_job(job([b], tmp_path, source=a, attacks=[AttackSpec.parse("fgsm", {})]))
    assert {r["source"] for r in rows} == {"a"} and {r["model"] for r in rows} == {"b"}
    assert "(from a)" in md


def test_the_paper_option_puts_published_numbers_beside_ours(ckpts, tmp_path):
    run_job(job(ckpts[:1], tmp_path, eps=[0.2, 0.3]))
    df = pd.read_csv(tmp_path / "results.csv")
    df["dataset"] = "MNIST"
    df["architecture"] = "resnet50"
    df.to_csv(tmp_path / "results.csv", index=False)
    text = render(tmp_path / "results.csv", paper="E2")
    assert "paper 25.20" in text and "paper 10.95" in text and "paper 0.00" in text and "Δ" in text


@pytest.mark.parametrize("values, scale, expected", [
    (["0.3"], 1, [0.3]), (["8/255"], 1, [8 / 255]), (["8,16"], 255, [8 / 255, 16 / 255]), (["0.1", "0.1"], 1, [0.1]),
])
def test_eps_lists_accept_decimals_fractions_and_a_scale(values, scale, expected):
    assert parse_eps(values, scale) == pytest.approx(expected)


@pytest.mark.parametrize("values, scale", [(["abc"], 1), (["2"], 1), (["-0.1"], 1), (["0.1"], 0), ([","], 1)])
def test_bad_eps_values_are_user_errors(values, scale):
    with pytest.raises(UserError):
        parse_eps(values, scale)


def test_a_csv_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not an odebench results CSV"):
        ResultStore(tmp_path / "results.csv")


def test_a_cell_that_looks_masked_prints_a_warning(tmp_path):
    """A constant model scored on one class keeps 100% at L∞ ε = 0.5, where every image can be made grey."""
    from robustbench_ode.data import load_dataset
    from robustbench_ode.evaluation.runner import Runner
    from robustbench_ode.evaluation.target import Target

    splits = load_dataset("digits")
    x, y = splits.test_x[splits.test_y == 0][:20], splits.test_y[splits.test_y == 0][:20]
    target = Target(tmp_path, ConstantClassifier(), {"model": "constant", "weights_sha256": "0" * 64,
                                           "dataset_info": splits.info.to_dict()})
    warnings = []
    runner = Runner(ResultStore(tmp_path / "results.csv"), x, y, 20, 0, torch.device("cpu"), "digits",
                    on_warning=warnings.append)
    runner.run([target], [AttackSpec.parse("pgd", {"steps": "3"})], [0.0, 0.5])
    assert len(warnings) == 1 and "above chance" in warnings[0]


def test_rows_over_different_sample_counts_never_share_a_table():
    from robustbench_ode.report.tables import markdown

    row = {"dataset": "MNIST", "model": "m", "architecture": "a", "training": "standard", "source": "",
           "attack": "boundary", "attack_args": "{}", "norm": "l2", "eps_scale": 1.0, "clean_acc": 0.9}
    df = pd.DataFrame([row | {"eps": 0.5, "n": 200, "robust_acc": 0.7},
                       row | {"eps": 0.5, "n": 100, "robust_acc": 0.8}, row | {"eps": 2.0, "n": 100, "robust_acc": 0.6}])
    old, new = markdown(df).split("n = 100")
    assert "n = 200" in old and "70.00" in old and "80.00" not in old
    assert "70.00" not in new and "80.00" in new and "60.00" in new


RANDOM_ATTACKS = [AttackSpec.parse("pgd", {"steps": "2"}), AttackSpec.parse("difgsm", {"steps": "3"}),
                  AttackSpec.parse("square", {"queries": "20"})]


def test_another_seed_is_another_draw_of_every_random_attack(ckpts, tmp_path):
    def cells(run_seed: int, **options) -> dict:
        specs = [AttackSpec.parse(s.name, {k: str(v) for k, v in (s.options | options).items()}) for s in RANDOM_ATTACKS]
        rows, _ = run_job(job(ckpts[:1], tmp_path / f"s{run_seed}-{options}", attacks=specs, eps=[0.2], n_samples=120,
                              seed=run_seed))
        return {r["attack"]: (r["robust_acc"], r["grad_calls"], r["queries"]) for r in rows if r["eps"] > 0}

    first, again, other = cells(0), cells(0), cells(1)
    assert first == again  # a seed is a fixed draw
    assert all(first[name] != other[name] for name in first), (first, other)  # --seed reaches every attack
    assert cells(0, seed=1) != first  # and so does the attack's own seed option

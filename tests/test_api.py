"""The Python API is the command line's engine: `evaluate` returns exactly the rows of results.csv,
`audit` the verdict table, and the example in docs/api.md runs."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

import robustbench_ode
from robustbench_ode.api import read_results
from robustbench_ode.checkpoint import load_checkpoint
from robustbench_ode.data import balanced_subset
from robustbench_ode.errors import UserError

from .helpers import ConstantClassifier, odebench, train_tiny

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ATTACKS = ["fgsm", ("pgd", {"steps": 5})]
CLI_GRID = ["-a", "fgsm", "-a", "pgd", "--attack-arg", "pgd.steps=5", "--eps", "0,0.1", "--n-samples", "50",
            "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    train_tiny(out, epochs=1)
    return out


@pytest.fixture(scope="module")
def cli_csv(ckpt, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("cli")
    proc = odebench("attack", "-c", ckpt, *CLI_GRID, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return read_results(out / "results.csv")


def test_the_api_dataframe_equals_the_cli_csv_for_the_same_model_attack_eps_and_samples(ckpt, cli_csv):
    df = robustbench_ode.evaluate(ckpt, "digits", attacks=ATTACKS, eps=[0, 0.1], n_samples=50)
    assert list(df.columns) == list(cli_csv.columns)
    pd.testing.assert_frame_equal(df.drop(columns="wall_s"), cli_csv.drop(columns="wall_s"))


def test_an_in_memory_module_gets_the_same_numbers_and_hash_as_its_checkpoint(ckpt, cli_csv):
    model, _ = load_checkpoint(ckpt)
    df = robustbench_ode.evaluate(model, "digits", attacks=ATTACKS, eps=[0, 0.1], n_samples=50, name="mine")
    assert list(df.columns) == list(cli_csv.columns)
    same = ["checkpoint_sha", "attack", "attack_args", "eps", "n", "clean_acc", "robust_acc", "grad_calls"]
    pd.testing.assert_frame_equal(df[same], cli_csv[same])
    assert set(df["model"]) == {"mine"} and df["code_sha"].str.len().eq(16).all()


def test_with_out_the_api_writes_the_files_the_cli_writes_and_reuses_finished_cells(ckpt, tmp_path):
    df = robustbench_ode.evaluate(ckpt, "digits", attacks=["fgsm"], eps=[0.1], n_samples=20, out=tmp_path)
    for name in ("results.csv", "results.md", "accuracy_vs_eps.png", "provenance.jsonl"):
        assert (tmp_path / name).exists()
    pd.testing.assert_frame_equal(df, read_results(tmp_path / "results.csv"))
    again = robustbench_ode.evaluate(ckpt, "digits", attacks=["fgsm"], eps=[0.1], n_samples=20, out=tmp_path)
    pd.testing.assert_frame_equal(again, df)  # read back: even wall_s is the first run's


def test_the_api_attacks_tensors_and_wraps_a_network_that_expects_normalised_input(ckpt, digits):
    model, meta = load_checkpoint(ckpt)
    x, y = digits.test_x[:40], digits.test_y[:40]
    plain = robustbench_ode.evaluate(model, (x, y), attacks=["fgsm"], eps=[0.1], n_samples=None)
    body = robustbench_ode.evaluate(model.body, (x, y), attacks=["fgsm"], eps=[0.1], n_samples=None,
                                    normalize=(meta["dataset_info"]["mean"], meta["dataset_info"]["std"]))
    assert plain["dataset"].iloc[0] == "tensors (1x8x8)" and plain["n"].iloc[0] == 40
    assert (body["clean_acc"].iloc[0], body["robust_acc"].iloc[0]) == (plain["clean_acc"].iloc[0],
                                                                       plain["robust_acc"].iloc[0])


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: robustbench_ode.evaluate(m, (x * 255, y), attacks=["fgsm"]), "pixels in [0, 1]"),
    (lambda m, x, y: robustbench_ode.evaluate(m, (x, y[:3]), attacks=["fgsm"]), "(N,) tensor of labels"),
    (lambda m, x, y: robustbench_ode.evaluate("not a model dir", "digits"), "does not exist"),
    (lambda m, x, y: robustbench_ode.evaluate(42, "digits"), "not a int"),
    (lambda m, x, y: robustbench_ode.evaluate(nn.Linear(64, 10), "digits"), "fails on digits images"),
    (lambda m, x, y: robustbench_ode.evaluate(m, "digits", attacks=["nope"]), "unknown attack"),
    (lambda m, x, y: robustbench_ode.evaluate(m, (x, y + 10), attacks=["fgsm"]), "labels must lie in 0..9"),
])
def test_bad_api_input_is_a_user_error_with_one_line(trained, digits, call, message):
    with pytest.raises(UserError) as info:
        call(trained, digits.test_x[:10], digits.test_y[:10])
    assert message in str(info.value) and "\n" not in str(info.value)


# The same mistakes made in Python and on the command line: (the setting, the front end's call, the bad value
# as a Python argument, the same on the command line, what a Python user reads, what the CLI prints)
MISTAKES = [
    ("eps_scale", "attack", {"eps_scale": 0}, ["--eps-scale", "0"],
     "eps_scale must be > 0, got 0", "--eps-scale must be > 0, got 0"),
    ("n_samples", "attack", {"n_samples": 0}, ["--n-samples", "0"],
     "n_samples must be >= 1, got 0", "--n-samples must be >= 1, got 0"),
    ("batch_size", "attack", {"batch_size": 0}, ["--batch-size", "0"],
     "batch_size must be >= 1, got 0", "--batch-size must be >= 1, got 0"),
    ("eps", "attack", {"eps": ["8"]}, ["--eps", "8"],
     "eps 8 is above 1 in pixel units", "--eps 8 is above 1 in pixel units"),
    ("ode_backend", "attack", {"ode_backend": "scipy"}, ["--ode-backend", "scipy"],
     "ode_backend must be one of", "--ode-backend must be one of"),
    ("precision", "attack", {"precision": "fp16"}, ["--precision", "fp16"],
     "precision must be one of", "--precision must be one of"),
    ("out", "attack", {"out": "BAD_OUT"}, ["--out", "BAD_OUT"],
     "is not a results CSV; choose another out", "is not a results CSV; choose another --out"),
    ("large_eps", "audit", {"large_eps": 2}, ["--large-eps", "2"],
     "large_eps must be in (0, 1] (pixel units)", "--large-eps must be in (0, 1] (pixel units)"),
    ("square_queries", "audit", {"square_queries": -1}, ["--square-queries", "-1"],
     "square_queries must be >= 0, got -1", "--square-queries must be >= 0, got -1"),
    ("augment", "train", {"augment": "rotate:10"}, ["--augment", "rotate:10"],
     "augment 'rotate:10': unknown augmentation 'rotate'", "--augment 'rotate:10': unknown augmentation 'rotate'"),
]


def _bad_out(tmp_path: Path) -> Path:
    """An output folder holding a results.csv that is not one (an empty file)."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.csv").write_text("")
    return tmp_path / "bad"


@pytest.mark.parametrize("name, command, kwargs, args, message, cli_message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_an_api_call_with_a_bad_argument_names_the_parameter_not_a_flag(ckpt, digits, tmp_path, name, command, kwargs,
                                                                         args, message, cli_message):
    from robustbench_ode.training.config import TrainConfig
    from robustbench_ode.training.trainer import Trainer

    from .helpers import TINY

    kwargs = {k: _bad_out(tmp_path) if v == "BAD_OUT" else v for k, v in kwargs.items()}
    calls = {
        "attack": lambda: robustbench_ode.evaluate(ckpt, "digits", **({"attacks": ["fgsm"], "eps": [0.1],
                                                                        "n_samples": 20} | kwargs)),
        "audit": lambda: robustbench_ode.audit(ckpt, digits.test_x[:20], digits.test_y[:20], **kwargs),
        "train": lambda: Trainer(TrainConfig(**(TINY | kwargs)), tmp_path / "run").run(),
    }
    with pytest.raises(UserError) as err:
        calls[command]()
    text = str(err.value)
    assert message in text and re.search(rf"(?<![\w-]){name}\b", text), text
    assert "--" not in text and "\n" not in text, text


@pytest.mark.parametrize("name, command, kwargs, args, message, cli_message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_the_same_mistake_on_the_command_line_names_the_flag(ckpt, tmp_path, name, command, kwargs, args, message,
                                                             cli_message):
    args = [str(_bad_out(tmp_path)) if a == "BAD_OUT" else a for a in args]
    base = {"attack": ["attack", "-c", ckpt, "-a", "fgsm", "--eps", "0.1", "--n-samples", "20"],
            "audit": ["audit", ckpt, "--n-samples", "20"],
            "train": ["train", "--model", "resnet_small", "--epochs", "1"]}[command]
    proc = odebench(*base, "--device", "cpu", "--out", tmp_path / "o", *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and cli_message in lines[0], proc.stderr
    assert "\x1f" not in proc.stderr  # no unrendered mark of errors.option


def test_audit_returns_the_verdict_table_and_names_the_checks_that_do_not_apply(trained, digits, tmp_path):
    idx = balanced_subset(digits.test_y, 30)
    table = robustbench_ode.audit(trained, digits.test_x[idx], digits.test_y[idx], apgd_steps=5, square_queries=20,
                                  spsa_steps=2, spsa_samples=4, out=tmp_path)
    from robustbench_ode.diagnostics.checks import CHECKS

    assert list(table.columns) == ["check", "verdict", "numbers", "explanation", "seconds"]
    assert len(table) == len(CHECKS) + 4  # and the model checks before them
    assert table["check"].tolist()[:4] == ["model check: outputs", "model check: randomness",
                                           "model check: input gradient", "model check: gradients in forward"]
    assert table.attrs["verdict"].startswith("verdict: PASS")
    assert table.attrs["not_applicable"].startswith("not applicable: ODE solver surrogate")
    assert table.attrs["verdict"] in (tmp_path / "audit.md").read_text()


def test_robustbench_ode_audit_is_the_api_function_and_the_checks_subpackage_has_its_own_name():
    import robustbench_ode.diagnostics.checks  # noqa: F401  (binds robustbench_ode.diagnostics, nothing else)
    from robustbench_ode import api

    assert robustbench_ode.audit is api.audit and robustbench_ode.evaluate is api.evaluate
    assert inspect.isfunction(robustbench_ode.audit) and type(robustbench_ode).__name__ == "module"
    assert robustbench_ode.diagnostics.run_checks is robustbench_ode.diagnostics.checks.run_checks


def test_the_example_in_docs_api_md_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    exec(compile(blocks[-1], str(DOCS), "exec"), {"__name__": "docs_api_example"})
    printed = capsys.readouterr().out
    assert "verdict: PASS" in printed and "not applicable: ODE solver surrogate" in printed
    assert printed.splitlines()[0] in DOCS.read_text()  # the documented output has the printed columns


def test_the_api_prints_nothing_and_logs_progress_and_warnings(capsys, caplog):
    with caplog.at_level("INFO", logger="robustbench_ode"):
        robustbench_ode.evaluate(ConstantClassifier(), "digits", ["fgsm"], [0.1], n_samples=20)
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""
    assert any(r.levelname == "INFO" and "fgsm" in r.getMessage() for r in caplog.records)  # a cell started
    assert any(r.levelname == "WARNING" and "chance" in r.getMessage() for r in caplog.records)

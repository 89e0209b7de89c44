"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""
import subprocess
import sys

import pandas as pd
import pytest

from .helpers import odebench, odebench_subprocess, train_tiny


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    train_tiny(out, epochs=1)
    return out


def test_the_installed_entry_point_runs_and_fails_cleanly_in_a_fresh_process():
    assert odebench_subprocess("list", "attacks").returncode == 0
    assert "unknown model 'nope'" in one_line_error(odebench_subprocess("train", "--model", "nope"))


def test_list_shows_every_registry_with_options():
    proc = odebench("list")
    assert proc.returncode == 0
    for name in ("resnet56", "odenet_mnist", "pgd", "boundary", "digits", "mnist", "standard"):
        assert name in proc.stdout
    assert "h=1.0" in proc.stdout


def test_train_writes_a_checkpoint_and_prints_test_accuracy(tmp_path):
    proc = odebench("train", "--model", "resnet_small", "--model-arg", "width=4", "--epochs", "1",
                    "--device", "cpu", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "meta.json").exists()


def test_train_reads_a_toml_config(tmp_path):
    (tmp_path / "c.toml").write_text('model = "resnet_small"\nepochs = 1\n[model_options]\nwidth = 4\n')
    proc = odebench("train", "--config", tmp_path / "c.toml", "--device", "cpu", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--model", "resnet56", "--dataset", "nope"], "unknown dataset"),
    (["train", "--model", "resnet56", "--model-arg", "h=abc"], "expects float"),
    (["train", "--model", "resnet56", "--model-arg", "depth=3"], "no option 'depth'"),
    (["train", "--model", "resnet56", "--model-arg", "oops"], "key=value"),
    (["train", "--model", "resnet56", "--epochs", "-1"], "--epochs"),
    (["train", "--model", "resnet56", "--epochs", "two"], "epochs"),
    (["train", "--model", "resnet56", "--device", "tpu"], "--device"),
    (["train", "--model", "resnet56", "--dataset", "mnist", "--data-dir", "/nonexistent"], "MNIST"),
    (["train", "--model", "resnet56", "--dataset", "mnist", "--data-dir", "/nonexistent"], "pass --download"),
    (["train", "--model", "resnet56", "--config", "/nonexistent.toml"], "config file"),
    (["train", "--bogus-flag"], "No such option"),
    (["attack", "-c", "/nonexistent", "--eps", "0.1"], "does not exist"),
    (["report", "/nonexistent.csv"], "does not exist"),
    (["list", "toys"], "cannot list"),
])
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, args, message):
    assert message in one_line_error(odebench(*args, "--out", tmp_path / "o") if args[0] == "train" else odebench(*args))


@pytest.mark.parametrize("args, message", [
    (["--eps", "abc"], "not a number"),
    (["--eps", "3"], "only L2 attacks take radii above 1"),
    (["--eps", "3", "-a", "pgd", "-a", "boundary"], "only L2 attacks take radii above 1"),
    (["--eps", "0.1", "--attack", "nope"], "unknown attack"),
    (["--eps", "0.1", "--attack-arg", "steps=x"], "expects int"),
    (["--eps", "0.1", "--attack-arg", "warp=9"], "no chosen attack has option"),
    (["--eps", "0.1", "--n-samples", "0"], "--n-samples"),
    (["--eps", "0.1", "--paper", "E9"], "--paper"),
    (["--eps", "0.1", "--ode-extras"], "add -a autoattack"),
    (["--eps", "0.1", "--ode-backend", "scipy"], "--ode-backend"),
])
def test_bad_attack_input_gives_one_line_and_exit_code_2(ckpt, tmp_path, args, message):
    assert message in one_line_error(odebench("attack", "-c", ckpt, "--out", tmp_path / "o", *args))


def test_a_user_error_names_settings_as_flags_only_on_the_command_line():
    from robustbench_ode.cli import flag
    from robustbench_ode.errors import UserError, option

    err = UserError(f"{option('lr_step')} must be >= 1, got 0; see {option('schedule')}")
    assert str(err) == "lr_step must be >= 1, got 0; see schedule"
    assert err.render(flag) == "--lr-step must be >= 1, got 0; see --schedule"
    assert err.options == ["lr_step", "schedule"]


def test_no_module_below_the_cli_imports_it():
    """Training, evaluation, audit and experiments run without the CLI (Python API, other front ends)."""
    code = ("import sys, robustbench_ode.experiments.reproduce, robustbench_ode.experiments.quickstart, "
            "robustbench_ode.audit.command, robustbench_ode.evaluation.budget, robustbench_ode.models; "
            "print(sorted(m for m in sys.modules if m.startswith('robustbench_ode.cli')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["train", "attack"])
def test_out_naming_an_existing_file_gives_one_line_and_exit_code_2(ckpt, tmp_path, command):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    args = ["--model", "resnet_small", "--epochs", "1"] if command == "train" else ["-c", ckpt, "--eps", "0.1"]
    assert "is a file" in one_line_error(odebench(command, *args, "--out", taken))
    assert taken.read_text() == "keep me"


def test_l2_attacks_take_radii_above_one(ckpt, tmp_path):
    proc = odebench("attack", "-c", ckpt, "-a", "pgd", "--attack-arg", "norm=l2", "--attack-arg", "steps=3",
                    "--eps", "0,2", "--n-samples", "20", "--device", "cpu", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "o" / "results.csv")
    assert sorted(rows["eps"]) == [0.0, 2.0] and set(rows["norm"]) == {"l2"}


def test_attack_then_report_writes_csv_markdown_and_plot(ckpt, tmp_path):
    proc = odebench("attack", "-c", ckpt, "-a", "fgsm", "--eps", "0,0.2", "--n-samples", "40", "--device", "cpu",
                    "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "| fgsm |" in proc.stdout
    for name in ("results.csv", "results.md", "accuracy_vs_eps.png"):
        assert (tmp_path / "o" / name).exists()
    (tmp_path / "o" / "results.md").unlink()
    assert odebench("report", tmp_path / "o" / "results.csv").returncode == 0
    assert (tmp_path / "o" / "results.md").exists()


def test_a_corrupt_checkpoint_leaves_existing_results_untouched(ckpt, tmp_path):
    out = tmp_path / "o"
    assert odebench("attack", "-c", ckpt, "-a", "fgsm", "--eps", "0.1", "--n-samples", "20", "--out", out).returncode == 0
    before = (out / "results.csv").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text("{")
    one_line_error(odebench("attack", "-c", ckpt, "-c", bad, "--eps", "0.1", "--out", out))
    assert (out / "results.csv").read_bytes() == before

"""The command line as a user runs it: real subprocesses, exit codes, one-line errors."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

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


def test_train_takes_its_settings_from_a_toml_config_and_a_flag_overrides_the_file(tmp_path):
    (tmp_path / "c.toml").write_text('model = "resnet_small"\nepochs = 3\nbatch_size = 32\nlr = 0.02\n'
                                     'schedule = "constant"\n[model_options]\nwidth = 4\n')
    proc = odebench("train", "--config", tmp_path / "c.toml", "--epochs", "1", "--device", "cpu",
                    "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"], config["batch_size"], config["lr"], config["schedule"]) == ("resnet_small", 32, 0.02,
                                                                                         "constant")  # the file's
    assert config["model_options"] == {"width": 4}
    assert config["epochs"] == 1  # the flag's, not the file's 3
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["model_options"]["width"] == 4


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
            "robustbench_ode.diagnostics.command, robustbench_ode.evaluation.budget, robustbench_ode.models; "
            "print(sorted(m for m in sys.modules if m.startswith('robustbench_ode.cli')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


PACKAGE = Path(__file__).resolve().parents[1] / "robustbench_ode"
FLAG = re.compile(r"(?<![\w-])--[a-z{]")  # --eps-scale, or one built by hand: f"--{name}"
# Command lines suggested for the user to type (not settings they passed), the only flags allowed below the CLI
COMMAND_SUGGESTIONS = {
    "weight_files.py": ["OUT.safetensors --key state_dict"],  # odebench convert FILE OUT.safetensors --key ...
    "checkpoint.py": ["(--model-file FILE:FACTORY --weights, --model NAME --weights;"],
}


def _domain_modules() -> list[Path]:
    """Every module of the package except the command line's (the `cli` subpackage)."""
    return [path for path in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "cli") not in path.parents]


def _user_errors(path: Path) -> list[tuple[int, str]]:
    """(line, source) of every `UserError(...)` call in the module."""
    source = path.read_text()
    return [(node.lineno, ast.get_source_segment(source, node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "UserError"]


def test_no_module_below_the_cli_spells_a_flag_in_a_user_error():
    """Domain code names a setting with `errors.option()`, so the Python API reads `eps_scale` and only
    the CLI writes `--eps-scale`; a command line suggested for the user to type is listed above."""
    calls, spelled = 0, []
    for path in _domain_modules():
        for line, call in _user_errors(path):
            calls += 1
            for suggestion in COMMAND_SUGGESTIONS.get(path.name, []):
                call = call.replace(suggestion, "")
            if FLAG.search(call):
                spelled.append(f"{path.relative_to(PACKAGE)}:{line}: {FLAG.search(call).group()}")
    assert calls > 100  # the scan sees the package's messages
    assert not spelled, spelled


def _cli_commands():
    import typer.main

    from robustbench_ode.cli import app

    todo, commands = [typer.main.get_command(app)], []
    while todo:
        command = todo.pop()
        subcommands = getattr(command, "commands", None)
        todo.extend(subcommands.values()) if subcommands else commands.append(command)
    return commands


def test_flag_spells_every_option_of_every_command_as_the_command_line_accepts_it():
    from robustbench_ode.cli import flag

    options = [(command.name, param) for command in _cli_commands() for param in command.params
               if param.param_type_name == "option"]
    assert len(options) > 100
    for command, param in options:
        assert flag(param.name) in param.opts, (command, param.name, param.opts)
    assert flag("attack_name") == "--attack" and flag("eps_scale") == "--eps-scale"


def test_every_setting_a_message_names_is_a_parameter_of_some_command():
    """`option('name')` in domain code names a CLI parameter (what `flag` can spell), not a typo."""
    parameters = {param.name for command in _cli_commands() for param in command.params}
    named = {name for path in _domain_modules()
             for name in re.findall(r"""\boption\(['"](\w+)['"]\)""", path.read_text())}
    assert {"eps_scale", "n_samples", "model_file", "augment", "time_points", "sizes"} <= named
    assert named <= parameters, sorted(named - parameters)


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

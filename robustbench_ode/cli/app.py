"""The Typer application every command registers on, its consoles, and how settings are spelled as flags."""
from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adversarial-robustness benchmark for Neural ODEs and ResNet-family classifiers.",
)
console = Console()
err_console = Console(stderr=True)


_FLAGS = {"attack_name": "--attack"}


def flag(name: str) -> str:
    """The flag of a setting a UserError names (`errors.option`): `grad_solver` -> `--grad-solver`,
    as Typer derives flags from parameter names (`_FLAGS` holds the parameters named otherwise)."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def fail(message: str, code: int) -> None:
    """Print `message` as one red `error:` line on stderr and exit with `code`."""
    err_console.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    sys.exit(code)

"""`odebench converge` and `odebench convert`: run the work with progress, print tables."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from .cli_reporter import RichReporter
from .convert import convert
from .evaluation.budget import BudgetJob, run_budget_job


def run_converge_command(job: BudgetJob, console: Console) -> str:
    """Run the budget ladders with one progress bar per rung; print the Markdown."""
    return run_budget_job(job, RichReporter(console))[1]


def run_convert_command(src: Path, dst: Path, key: str | None, strip_prefix: str, console: Console) -> None:
    """Convert safely and print the tensors written and the globals the file named."""
    result = convert(src, dst, key, strip_prefix)
    table = Table(title=f"{len(result.tensors)} tensors written to {dst}")
    for column in ("name", "shape", "dtype"):
        table.add_column(column)
    for name, tensor in result.tensors.items():
        table.add_row(name, "×".join(map(str, tensor.shape)) or "scalar", str(tensor.dtype).removeprefix("torch."))
    console.print(table)
    console.print("globals the file names (stubbed, never imported): " + (", ".join(result.classes) or "none"),
                  markup=False, highlight=False, soft_wrap=True)
    if result.calls:
        calls = ", ".join(f"{name} ×{count}" for name, count in sorted(result.calls.items()))
        console.print(f"calls it asks for when loaded (none made): {calls}", markup=False, highlight=False,
                      soft_wrap=True)

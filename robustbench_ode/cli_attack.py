"""Runs an attack job with a rich progress bar per cell and prints the resulting table."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .evaluation.session import AttackJob, run_job


@contextmanager
def cell_progress(console: Console) -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None]]]:
    """One rich progress bar per cell: yields (on_cell(label), progress(done, total)) callbacks."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bars:
        current: dict[str, int] = {}

        def on_cell(label: str) -> None:
            if "task" in current:
                bars.update(current["task"], visible=False)
            current["task"] = bars.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bars.update(current["task"], completed=done, total=total)

        yield on_cell, progress


def run_attack_command(job: AttackJob, console: Console) -> str:
    """Run the job with one progress bar per cell (samples attacked); print the Markdown table."""
    def on_warning(message: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    with cell_progress(console) as (on_cell, progress):
        _, text = run_job(job, on_cell, progress, on_warning)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {job.out / 'results.csv'}, results.md, accuracy_vs_eps.png")
    return text

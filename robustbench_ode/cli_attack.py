"""Runs an attack job with a progress line per cell and prints the resulting table."""
from __future__ import annotations

from rich.console import Console

from .evaluation.session import AttackJob, run_job


def run_attack_command(job: AttackJob, console: Console) -> str:
    """Run the job, showing which cell is being computed; print the Markdown table."""
    with console.status("loading checkpoints and data") as status:
        def on_cell(label: str) -> None:
            status.update(f"attacking {label}")
            console.print(f"[dim]cell[/dim] {label}", highlight=False)

        _, text = run_job(job, on_cell)
    console.print(text, markup=False, highlight=False)
    console.print(f"wrote {job.out / 'results.csv'}, results.md, accuracy_vs_eps.png")
    return text

"""`odebench attack`'s presentation: the attack job (`evaluation.attack_progress`) drawn on the console."""
from __future__ import annotations

from rich.console import Console

from .cli_reporter import RichReporter
from .evaluation.attack_progress import run_attack_job
from .evaluation.request import AttackJob


def run_attack_command(job: AttackJob, console: Console) -> str:
    """Run the job with one progress bar per cell (samples attacked); print the Markdown table."""
    return run_attack_job(job, RichReporter(console))

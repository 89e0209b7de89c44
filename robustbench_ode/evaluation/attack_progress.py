"""Attack grids with their progress reported: the body of `odebench attack` (also used by
`quickstart` and `reproduce`) and the Python API's `evaluate`, one progress bar per cell, the
models' warnings as notes and the runner's notes as lines."""
from __future__ import annotations

from ..progress import SILENT, Reporter
from .request import AttackJob
from .session import Evaluation, run_evaluation, run_job


def run_attack_job(job: AttackJob, reporter: Reporter = SILENT) -> str:
    """Load and run the job; report and return the Markdown table."""
    with reporter.bars() as bars:
        _, text = run_job(job, bars.start, bars.update, lambda message: reporter.note("warning:", message),
                          reporter.line)
    reporter.block(text)
    reporter.line(f"wrote {job.out / 'results.csv'}, results.md, accuracy_vs_eps.png")
    return text


def run_loaded(ev: Evaluation, job: AttackJob, reporter: Reporter = SILENT, report: bool = True) -> list[dict]:
    """Run the job's grid on models and samples already loaded (`session.run_evaluation`); return its rows."""
    with reporter.bars() as bars:
        return run_evaluation(ev, job, bars.start, bars.update, lambda message: reporter.note("warning:", message),
                              report=report, on_note=reporter.line)[0]

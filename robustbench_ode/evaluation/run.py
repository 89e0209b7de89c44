"""Run an attack job while reporting progress: the body of `odebench attack`, also used by
`quickstart` and `reproduce` (and callable from Python with no reporter)."""
from __future__ import annotations

from ..reporting import SILENT, Reporter
from .request import AttackJob
from .session import run_job


def run_attack_job(job: AttackJob, reporter: Reporter = SILENT) -> str:
    """Run the job with one progress bar per cell (samples attacked) and warnings as notes; report
    and return the Markdown table."""
    with reporter.bars() as bars:
        _, text = run_job(job, bars.start, bars.update, lambda message: reporter.note("warning:", message),
                          reporter.line)
    reporter.block(text)
    reporter.line(f"wrote {job.out / 'results.csv'}, results.md, accuracy_vs_eps.png")
    return text

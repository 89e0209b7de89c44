"""`odebench converge`: robust accuracy against a ladder of attack budgets, drawn live."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console
from .options import ODE_BACKEND, PRECISION, read_checkpoints


@app.command()
def converge(
    checkpoint: list[Path] = typer.Option(..., "--checkpoint", "-c", help="checkpoint dir (repeatable)"),
    eps: list[str] = typer.Option(..., "--eps", "-e", help="L∞ ε values: 0.3, 8/255, or comma lists (repeatable)"),
    eps_scale: float = typer.Option(1.0, help="divide --eps by this (255 for a [0,255] grid)"),
    budgets: Optional[str] = typer.Option(None, help="comma list of rungs to run (default all, always in ladder order): "
                                          "pgd10,pgd40,pgd100,pgd1000,pgd1000x5,apgd-ce,apgd-t,autoattack"),
    step_size: str = typer.Option("0.01", help="PGD rungs' step in pixel units (the paper's 0.01), or 'scaled' (2.5·ε/steps)"),
    n_samples: int = typer.Option(1000, help="test images to evaluate (class-balanced, deterministic)"),
    batch_size: int = typer.Option(250, help="attack batch size"),
    seed: int = typer.Option(0, help="random seed (each rung derives its own from it, as odebench attack does)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    ode_backend: str = ODE_BACKEND,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/converge"), "--out", "-o", help="output dir (budget.csv/.md/.png, state/)"),
) -> None:
    """Robust accuracy vs attack budget (PGD-10 ... AutoAttack), worst case so far; says whether it converged."""
    from ..evaluation.request import parse_eps

    paths, radii = read_checkpoints(checkpoint), parse_eps(eps, eps_scale)
    from ..evaluation.budget import run_budget_job
    from .rich_reporter import RichReporter
    from ..evaluation.budget import BudgetJob, parse_budgets, parse_step_size

    job = BudgetJob(checkpoints=paths, eps=radii, out=out, budgets=parse_budgets(budgets),
                    step_size=parse_step_size(step_size), eps_scale=eps_scale, n_samples=n_samples,
                    batch_size=batch_size, seed=seed, device=device, data_dir=data_dir, ode_backend=ode_backend,
                    precision=precision)
    run_budget_job(job, RichReporter(console))

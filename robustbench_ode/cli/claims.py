"""`odebench claims list` and `odebench claims check`: published robustness claims, checked."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .app import app, console
from .options import PRECISION


claims_app = typer.Typer(no_args_is_help=True, help="Published robustness claims: list them, check them on the released weights.")
app.add_typer(claims_app, name="claims")


@claims_app.command("list")
def claims_list(
    ledger: Optional[Path] = typer.Option(None, help="a folder of claim TOML files (default: odebench's published ledger)"),
) -> None:
    """The claims in the ledger: paper, model, dataset, published numbers and where the weights are."""
    from ..claims import load_ledger

    claims = load_ledger(ledger).values()
    table = Table(title="published claims")
    for column in ("name", "model", "data · threat", "published: attack ε → robust %"):
        table.add_column(column, style="bold" if column == "name" else None, no_wrap=column == "name")
    for claim in claims:
        numbers = ", ".join(f"{n.attack} {n.eps:g} → {n.robust_acc:g}" for n in claim.numbers)
        table.add_row(claim.name, claim.model, f"{claim.dataset} ({claim.sampling.n}) · {claim.threat_model}", numbers)
    console.print(table)
    for claim in claims:
        console.print(f"[bold]{claim.name}[/bold]: {claim.paper}. {claim.title}. Weights: {claim.weights.url} "
                      f"(SHA-256 {claim.weights.sha256}; {claim.weights.licence})", highlight=False)


@claims_app.command("check")
def claims_check(
    name: str = typer.Argument(..., help="the claim (odebench claims list)"),
    weights: Path = typer.Option(..., "--weights", help="the released weights as downloaded (a pickled model is read "
                                 "without running its code) or their tensors (.safetensors, state dict)"),
    n_samples: Optional[int] = typer.Option(None, help="images for the ladder and the audit (default: the claim's, "
                                            "the first of the protocol's images)"),
    protocol_samples: Optional[int] = typer.Option(None, help="cut the published protocol to its first N images "
                                                   "(default: all, as published)"),
    budgets: Optional[str] = typer.Option(None, help="the ladder's rungs (default: the claim's; see odebench converge)"),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="run the gradient-masking audit too"),
    ledger: Optional[Path] = typer.Option(None, help="a folder of claim TOML files (default: odebench's published ledger)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed of the attacks"),
    precision: str = PRECISION,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default runs/claims/NAME)"),
) -> None:
    """Run a claim's published protocol, then the converged ladder and the audit; print claimed vs measured."""
    from ..claims import get_claim

    claim = get_claim(name, ledger)
    from ..claims.check import check_claim, claim_markdown
    from .rich_reporter import RichReporter

    report = check_claim(claim, weights, out or Path("runs/claims") / name, data_dir=data_dir, n_samples=n_samples,
                         protocol_samples=protocol_samples, budgets=budgets, audit=audit, device=device, seed=seed,
                         precision=precision, reporter=RichReporter(console))
    console.print(claim_markdown(report), markup=False, highlight=False)

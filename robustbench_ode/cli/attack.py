"""`odebench attack` (a grid of checkpoints x attacks x ε) and `odebench report` (its tables re-rendered)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from ..parsing import parse_kv
from ..registry import ATTACKS
from .app import app, console
from .options import (DATASET, MODEL, MODEL_FILE, NORMALIZE, ODE_BACKEND, PRECISION, TORCHSCRIPT, WEIGHTS,
                      model_source, read_checkpoints)


@app.command()
def attack(
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", "-c", help="checkpoint dir to attack (repeatable)"),
    attack_name: list[str] = typer.Option(["pgd"], "--attack", "-a", help="registered attack (repeatable)"),
    attack_arg: Optional[list[str]] = typer.Option(None, "--attack-arg", help="attack option key=value, or name.key=value for one of several attacks"),
    eps: list[str] = typer.Option(..., "--eps", "-e", help="ε values: 0.3, 8/255, or comma lists (repeatable)"),
    eps_scale: float = typer.Option(1.0, help="divide --eps by this (255 for the paper's [0,255] CIFAR grid)"),
    independent_eps: bool = typer.Option(False, "--independent-eps", help="attack every radius on every correctly "
                                         "classified sample (default: nested, a larger radius attacks only the "
                                         "samples the smaller ones left robust)"),
    n_samples: int = typer.Option(1000, help="test images to evaluate (class-balanced, deterministic)"),
    batch_size: int = typer.Option(250, help="attack batch size"),
    seed: int = typer.Option(0, help="random seed of every attack's random starts, transforms and proposals (with each attack's own seed option)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    source: Optional[Path] = typer.Option(None, help="transfer mode: craft on this checkpoint, evaluate on --checkpoint "
                                          "(or on your model; --model-as-source crafts on your model)"),
    grad_solver: Optional[str] = typer.Option(
        None, help="ODE models: take gradients through this solver while the model's own decides, "
        "e.g. rk4:step_size=0.05 or dopri5:adjoint=false (gradient attacks only)"),
    eot: int = typer.Option(1, help="average each gradient over this many passes (EOT, for randomised models)"),
    ode_backend: str = ODE_BACKEND,
    precision: str = PRECISION,
    ode_extras: bool = typer.Option(False, "--ode-extras", help="autoattack: add PGD through a fixed-step surrogate "
                                    "solver, SPSA and the CW margin loss (attacks that break ODEs PGD does not)"),
    paper: Optional[str] = typer.Option(None, help="add the paper's numbers side by side (E1..E5)"),
    out: Path = typer.Option(Path("runs/attack"), "--out", "-o", help="output dir (results.csv/.md, plot)"),
    model_file: Optional[str] = MODEL_FILE,
    weights: Optional[Path] = WEIGHTS,
    torchscript: Optional[Path] = TORCHSCRIPT,
    model: Optional[str] = MODEL,
    normalize: Optional[str] = NORMALIZE,
    dataset: Optional[str] = DATASET,
    model_as_source: bool = typer.Option(False, "--model-as-source", help="transfer mode: craft on the --model-file/"
                                         "--torchscript/--model model, evaluate on the --checkpoint models"),
) -> None:
    """Attack checkpoints (or your own model) over an ε grid; write results.csv, results.md and accuracy_vs_eps.png."""
    from ..evaluation.request import AttackJob, parse_eps

    if ode_extras:
        if "autoattack" not in attack_name:
            raise UserError("--ode-extras adds members to the autoattack ensemble: add -a autoattack")
        attack_arg = [*(attack_arg or []), "autoattack.ode_extras=true"]
    specs = _attack_specs(attack_name, attack_arg, grad_solver, eot)
    l2 = all(spec.norm == "l2" for spec in specs)
    job = AttackJob(
        checkpoints=read_checkpoints(checkpoint or []), attacks=specs, eps=parse_eps(eps, eps_scale, l2),
        out=out, eps_scale=eps_scale, n_samples=n_samples, batch_size=batch_size, seed=seed, device=device,
        data_dir=data_dir, source=source and read_checkpoints([source])[0], paper=_paper_name(paper),
        ode_backend=ode_backend, precision=precision,
        model=model_source(model_file, weights, torchscript, model, normalize), model_as_source=model_as_source,
        dataset=dataset, independent_eps=independent_eps,
    )
    from ..evaluation.attack_progress import run_attack_job  # torch and the engine: only once the arguments are valid
    from .rich_reporter import RichReporter

    run_attack_job(job, RichReporter(console))


def _attack_specs(names: list[str], raw_args: list[str] | None, grad_solver: str | None = None, eot: int = 1) -> list:
    """Attack specs; 'key=value' applies to every attack that has the option, 'name.key=value' to one.
    `grad_solver` and `eot` apply to every attack (all must be gradient attacks)."""
    from ..evaluation.request import AttackSpec

    specs = []
    pairs = parse_kv(raw_args, "--attack-arg")
    for name in names:
        entry = ATTACKS.get(name)
        mine = {}
        for key, value in pairs.items():
            owner, _, opt = key.rpartition(".")
            if owner == name or (not owner and opt in entry.options):
                mine[opt] = value
        specs.append(AttackSpec.parse(name, mine, grad_solver, eot))
    for key in pairs:
        owner, _, opt = key.rpartition(".")
        if owner and owner not in names:
            raise UserError(f"--attack-arg {key}: '{owner}' is not one of the --attack names")
        if not owner and not any(opt in ATTACKS.get(n).options for n in names):
            raise UserError(f"--attack-arg {key}: no chosen attack has option '{opt}'")
    return specs


def _paper_name(paper: str | None) -> str | None:
    from ..report.published import PAPER

    if paper is not None and paper.upper() not in PAPER:
        raise UserError(f"--paper must be one of {', '.join(PAPER)}, got '{paper}'")
    return paper.upper() if paper else None


@app.command()
def report(
    results: Path = typer.Argument(..., help="results.csv written by odebench attack"),
    paper: Optional[str] = typer.Option(None, help="add the paper's numbers side by side (E1..E5)"),
    out: Optional[Path] = typer.Option(None, help="where to write results.md and the plot (default: beside the CSV)"),
) -> None:
    """Re-render results.md and accuracy_vs_eps.png from a results CSV."""
    if not results.is_file():
        raise UserError(f"results file '{results}' does not exist")
    from ..evaluation.store import ResultStore
    from ..report import render

    ResultStore(results)  # validates that it is ours
    console.print(render(results, out, _paper_name(paper)), markup=False, highlight=False, soft_wrap=True)

"""`odebench quickstart` (the main job, offline) and `odebench reproduce` (the paper's experiments)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console
from .options import PRECISION_ALL


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="where models and results go"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed"),
    precision: str = PRECISION_ALL,
) -> None:
    """Main job, offline: train a ResNet and a Neural ODE on the embedded digits, attack with FGSM and PGD."""
    from .rich_reporter import RichReporter
    from ..experiments.quickstart import run_quickstart

    run_quickstart(out, device, RichReporter(console), seed, precision)


@app.command()
def reproduce(
    experiments: list[str] = typer.Argument(..., help="E1 E2 E3 E4 E5, or all"),
    preset: str = typer.Option("cpu", help="paper (exact settings), cpu (about an hour each on 2 cores), strong (MNIST twins trained to convergence), published (Yan et al.'s exact pair with their 100-epoch recipe) or fast (smoke run)"),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", "-o", help="root of checkpoints and results"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    only: Optional[str] = typer.Option(None, help="run one half of a two-dataset experiment: mnist or cifar10"),
    cifar: Optional[str] = typer.Option(None, help="dataset for CIFAR-10 (default: cifar10 if its files exist, else cifar10-jpeg)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed"),
    precision: str = PRECISION_ALL,
    zoo: Optional[Path] = typer.Option(Path("zoo"), help="finished checkpoints to use instead of training "
                                       "(<zoo>/<preset>/<dataset>/<key>/, taken only if trained with the same settings)"),
) -> None:
    """Reproduce the paper's experiments: train missing checkpoints, attack, compare with the published numbers."""
    from ..experiments.paper_specs import experiment_names
    from ..experiments.presets import check_preset

    check_preset(preset)
    experiment_names(experiments)
    from .rich_reporter import RichReporter
    from ..experiments.reproduce import reproduce as run

    run(experiments, preset, out, data_dir, device, seed, only, cifar, RichReporter(console), precision, zoo)

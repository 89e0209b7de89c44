"""`odebench audit` (gradient masking) and `odebench stability` (perturbation growth along depth)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console
from .options import (DATASET, MODEL, MODEL_FILE, NORMALIZE, ODE_BACKEND, TORCHSCRIPT, WEIGHTS, model_source,
                      read_checkpoints)


@app.command()
def audit(
    checkpoint: Optional[Path] = typer.Argument(None, help="checkpoint dir to audit (or your model: --model-file, ...)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    n_samples: int = typer.Option(200, help="test images (class-balanced, deterministic)"),
    eps: Optional[str] = typer.Option(None, help="L∞ radius the attacks are compared at (default 0.1 grey, 8/255 colour)"),
    large_eps: str = typer.Option("0.5", help="L∞ radius where accuracy must reach chance"),
    square_queries: Optional[int] = typer.Option(None, help="Square attack queries per image (default 300)"),
    spsa_steps: Optional[int] = typer.Option(None, help="SPSA steps (default 10)"),
    spsa_samples: Optional[int] = typer.Option(None, help="SPSA perturbation pairs per step (default 16)"),
    boundary_steps: Optional[int] = typer.Option(None, help="Boundary attack steps (default 0: skipped; e.g. 1000)"),
    apgd_steps: Optional[int] = typer.Option(None, help="APGD-CE steps (default 100)"),
    ode_backend: str = ODE_BACKEND,
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default <checkpoint>/audit, "
                                       "runs/audit/<model> for your model)"),
    seed: int = typer.Option(0, help="seed of the attacks"),
    model_file: Optional[str] = MODEL_FILE,
    weights: Optional[Path] = WEIGHTS,
    torchscript: Optional[Path] = TORCHSCRIPT,
    model: Optional[str] = MODEL,
    normalize: Optional[str] = NORMALIZE,
    dataset: Optional[str] = DATASET,
    precision: str = typer.Option("fp32", help="gradient attacks' gradients: fp32 (default: the audit judges "
                                  "gradient quality, and bf16's weaker gradients would read as masking), auto or bf16"),
) -> None:
    """Check a checkpoint (or your own model) for gradient masking (Carlini et al. 2019); write audit.md / audit.json."""
    if checkpoint is not None:
        read_checkpoints([checkpoint])
    source = model_source(model_file, weights, torchscript, model, normalize)
    from ..diagnostics.command import parse_radius, run_audit
    from .rich_reporter import RichReporter

    run_audit(checkpoint, RichReporter(console), model=source,
              dataset=dataset, data_dir=data_dir, n_samples=n_samples,
              eps=None if eps is None else parse_radius("eps", eps), large_eps=parse_radius("large_eps", large_eps),
              device=device, out=out, seed=seed, ode_backend=ode_backend, precision=precision,
              square_queries=square_queries, spsa_steps=spsa_steps,
              spsa_samples=spsa_samples, boundary_steps=boundary_steps, apgd_steps=apgd_steps)


@app.command()
def stability(
    checkpoints: Optional[list[Path]] = typer.Argument(None, help="checkpoint dirs to measure"),
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", "-c", help="more checkpoints (repeatable)"),
    n_samples: int = typer.Option(64, help="test images (class-balanced, deterministic)"),
    sizes: str = typer.Option("1e-3,1e-2,1e-1", help="L2 sizes of the input perturbations, comma list"),
    kinds: str = typer.Option("random,adversarial", help="perturbation directions: random (Gaussian), adversarial (FGSM)"),
    time_points: int = typer.Option(11, help="time grid points for Neural ODEs"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default <checkpoint>/stability, or runs/stability for several)"),
    seed: int = typer.Option(0, help="seed of the random perturbations"),
    model_file: Optional[str] = MODEL_FILE,
    weights: Optional[Path] = WEIGHTS,
    torchscript: Optional[Path] = TORCHSCRIPT,
    model: Optional[str] = MODEL,
    normalize: Optional[str] = NORMALIZE,
    dataset: Optional[str] = DATASET,
) -> None:
    """Measure how input perturbations grow along depth (paper's Theorem 3.1); CSV, plot, summary."""
    paths = read_checkpoints([*(checkpoints or []), *(checkpoint or [])])
    source = model_source(model_file, weights, torchscript, model, normalize)
    from ..diagnostics.command import parse_kinds, parse_sizes, run_stability
    from .rich_reporter import RichReporter

    run_stability(paths, RichReporter(console), model=source, dataset=dataset,
                  n_samples=n_samples, sizes=parse_sizes(sizes),
                  kinds=parse_kinds(kinds), points=time_points, data_dir=data_dir, device=device, out=out, seed=seed)

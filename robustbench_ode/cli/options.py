"""Options several commands share (a model given as code, precision, ODE backend) and the argument
checks they share, made before torch is imported."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..ode_backends import DEFAULT_ODE_BACKEND, ODE_BACKENDS


# A model given as code instead of a checkpoint (attack, audit, stability): see user_model.py
MODEL_FILE = typer.Option(None, "--model-file", help="your model: FILE.py:FACTORY or package.module:FACTORY, "
                          "a function that returns an nn.Module (weights from --weights)")
WEIGHTS = typer.Option(None, "--weights", help="weights for --model-file / --model: .safetensors, or a .pt/.pth "
                       "state dict (read with torch.load(weights_only=True))")
TORCHSCRIPT = typer.Option(None, "--torchscript", help="your model as a TorchScript file (scripted or traced)")
MODEL = typer.Option(None, "--model", help="a registered model (odebench list models, e.g. yan2020_ode) or "
                     "timm:NAME, a timm architecture (pip install odebench\\[timm]); weights from --weights, "
                     "nothing is downloaded")
NORMALIZE = typer.Option(None, "--normalize", help="your model expects normalised input: MEANS/STDS, one value or one "
                         "per channel each (0.1307/0.3081, 0.49,0.48,0.45/0.25,0.24,0.26), or 'dataset'; "
                         "ε stays in [0, 1] pixel units")
PRECISION = typer.Option("auto", help="attack gradients in bf16 where this machine computes it natively (auto), "
                         "or fp32 / bf16; every reported decision is fp32")
PRECISION_ALL = typer.Option("auto", help="training steps and attack gradients in bf16 where this machine computes "
                             "it natively (auto), or fp32 / bf16; every reported accuracy and decision is fp32")
BACKEND_CHOICES = [f"{name} ({meaning})" for name, meaning in ODE_BACKENDS.items()]
ODE_BACKEND = typer.Option(DEFAULT_ODE_BACKEND, help=f"adaptive ODEs: {', '.join(BACKEND_CHOICES[:-1])} or "
                           f"{BACKEND_CHOICES[-1]}")
DATASET = typer.Option(None, "--dataset", "-d", help="dataset to evaluate on (default: the checkpoints', else digits)")


def read_checkpoints(paths: list[Path]) -> list[Path]:
    """`paths`, each read as a checkpoint's metadata first: a missing or foreign one is answered before
    torch loads."""
    from ..checkpoint import read_meta

    for path in paths:
        read_meta(path)
    return paths


def model_source(model_file: str | None, weights: Path | None, torchscript: Path | None, model: str | None,
                 normalize: str | None) -> Any:
    """The model given as code (`--model-file`, `--torchscript`, `--model`), or None; bad combinations are
    UserErrors (checked when the command runs, with the model machinery imported)."""
    from ..user_model import ModelSource

    return ModelSource.from_options(model_file, weights, torchscript, model, normalize)




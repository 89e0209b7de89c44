"""`odebench train`: a TrainConfig from flags and a TOML file, validated, then a training run drawn live."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import UserError
from ..parsing import parse_kv
from .app import app, console


def _load_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from ..runinfo import read_toml
    from ..training.config import TrainConfig

    data = read_toml(path, "config file")

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"config file '{path}': unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data


@app.command()
def train(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered model name (odebench list models)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="registered dataset (default: digits)"),
    model_arg: Optional[list[str]] = typer.Option(None, "--model-arg", help="model option key=value (repeatable)"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with TrainConfig keys; flags override it"),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default 10)"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default 128)"),
    optimizer: Optional[str] = typer.Option(None, help="auto (Adam for Neural ODEs, SGD otherwise), sgd or adam"),
    lr: Optional[float] = typer.Option(None, help="initial learning rate (auto: 1e-3 Adam, 0.1 SGD)"),
    weight_decay: Optional[float] = typer.Option(None, help="weight decay (auto: 1e-4 SGD, 0 Adam)"),
    schedule: Optional[str] = typer.Option(None, help="auto, halve (every --lr-step epochs), multistep (/10 at 50%,75%), constant, onecycle (per batch: warm-up then cosine)"),
    lr_step: Optional[int] = typer.Option(None, help="epochs between halvings for the halve schedule (50)"),
    milestones: Optional[str] = typer.Option(None, help="multistep schedule: epochs after which lr *= --gamma, "
                                             "e.g. 30,60,90 (default: 50% and 75% of --epochs)"),
    gamma: Optional[float] = typer.Option(None, help="multistep schedule: lr factor at each milestone (default 0.1)"),
    snapshots: Optional[str] = typer.Option(None, help="also write a checkpoint after these epochs, e.g. 4,8,16, "
                                            "into RUN/epoch-004 ... (may change on --resume)"),
    train_solver: Optional[str] = typer.Option(None, help="ODE models: integrate training steps with this solver, "
                                               "e.g. rk4:step_size=0.25 (the model's own solver gives the test "
                                               "accuracy and every attack)"),
    method: Optional[str] = typer.Option(None, help="training method: standard, or an adversarial one (odebench list)"),
    method_arg: Optional[list[str]] = typer.Option(None, "--method-arg", help="method option key=value"),
    augment: Optional[str] = typer.Option(None, help="training-input augmentations, '+'-separated: crop:PAD, flip, "
                                          "gaussian:SIGMA[,SIGMA...][:p=P]; e.g. crop:4+flip or gaussian:100/255 "
                                          "(training batches only; composes with --method)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    download: bool = typer.Option(False, help="let torchvision download missing datasets"),
    subset: Optional[int] = typer.Option(None, help="class-balanced training subset of N images"),
    test_subset: Optional[int] = typer.Option(None, help="class-balanced test subset of N images for the checkpoint's "
                                              "clean accuracy (default: the whole test split)"),
    seed: Optional[int] = typer.Option(None, help="random seed (default 0)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda"),
    precision: Optional[str] = typer.Option(None, help="auto (default: bf16 autocast where the hardware computes bf16 "
                                            "natively, else fp32), fp32 or bf16; test accuracy is measured in fp32"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="channels_last layout for BatchNorm conv nets (default: with bf16 on CPU)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<model>-<dataset>-s<seed>)"),
    resume: bool = typer.Option(False, help="continue an interrupted run in --out from its last completed epoch"),
) -> None:
    """Train a registered model (or resume) and write a safe checkpoint into the run dir."""
    from ..training.config import TrainConfig

    values = _load_toml(config)
    flags = dict(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                 weight_decay=weight_decay, schedule=schedule, lr_step=lr_step, method=method, augment=augment,
                 milestones=_epochs(milestones, "--milestones"), gamma=gamma, snapshots=_epochs(snapshots, "--snapshots"),
                 train_solver=train_solver,
                 data_dir=data_dir, subset=subset, test_subset=test_subset, seed=seed, device=device, precision=precision,
                 channels_last=channels_last)
    values.update({k: v for k, v in flags.items() if v is not None})
    if download:
        values["download"] = True
    values["model_options"] = {**values.get("model_options", {}), **parse_kv(model_arg, "--model-arg")}
    values["method_options"] = {**values.get("method_options", {}), **parse_kv(method_arg, "--method-arg")}
    if "model" not in values:
        raise UserError("--model is required (see: odebench list models)")
    cfg = TrainConfig(**values)
    cfg.validate()
    run_dir = out or Path("runs") / f"{cfg.model}-{cfg.dataset}-s{cfg.seed}"
    from ..training.train_progress import run_training  # torch and the engine: only once the arguments are valid
    from .rich_reporter import RichReporter

    run_training(cfg, run_dir, resume, RichReporter(console))


def _epochs(text: Optional[str], flag_name: str) -> Optional[list[int]]:
    """'30,60,90' -> [30, 60, 90]; None stays None; anything else is a UserError naming the flag."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{flag_name} '{text}': give comma-separated epochs, e.g. 30,60,90") from None

"""Small builders shared by the CLI, checkpoint, training and evaluation tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from robustbench_ode.training.trainer import TrainConfig, Trainer

TINY = {"model": "resnet_small", "dataset": "digits", "model_options": {"width": "4"}, "epochs": 2,
        "batch_size": 64, "lr": 0.05, "device": "cpu"}


def train_tiny(out: Path, **overrides) -> dict:
    """Train the tiny digits ResNet into `out` (a few seconds) and return its metadata."""
    return Trainer(TrainConfig(**(TINY | overrides)), out).run()


def odebench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI entry point the way a user does, capturing its output."""
    return subprocess.run([sys.executable, "-m", "robustbench_ode", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)

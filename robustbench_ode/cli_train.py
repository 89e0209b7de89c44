"""`odebench train`'s presentation: the training run (`training.train_progress`) drawn on the console."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .cli_reporter import RichReporter
from .training import train_progress
from .training.config import TrainConfig


def run_training(cfg: TrainConfig, out: Path, resume: bool, console: Console) -> dict:
    """Train with a live progress bar and a line per epoch, then print the test accuracy."""
    return train_progress.run_training(cfg, out, resume, RichReporter(console))

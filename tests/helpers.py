"""Small builders shared by the CLI, checkpoint, training and evaluation tests."""
from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest.mock import patch

from robustbench_ode.training.trainer import TrainConfig, Trainer

TINY = {"model": "resnet_small", "dataset": "digits", "model_options": {"width": "4"}, "epochs": 2,
        "batch_size": 64, "lr": 0.05, "device": "cpu"}


def train_tiny(out: Path, **overrides) -> dict:
    """Train the tiny digits ResNet into `out` (a few seconds) and return its metadata."""
    return Trainer(TrainConfig(**(TINY | overrides)), out).run()


def odebench_subprocess(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, exactly as a user does (slow: imports torch each time)."""
    return subprocess.run([sys.executable, "-m", "robustbench_ode", *map(str, args)], capture_output=True, text=True)


def odebench(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI's `main()` in this process with its exit code and captured stdout / stderr."""
    from robustbench_ode.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), patch.object(sys, "argv", ["odebench", *map(str, args)]):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

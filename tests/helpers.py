"""Small builders shared by the CLI, checkpoint, training and evaluation tests."""
from __future__ import annotations

import io
import subprocess
import sys
from contextlib import nullcontext, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest.mock import patch

import pytest
import torch

from robustbench_ode.progress import SilentReporter
from robustbench_ode.training.config import TrainConfig
from robustbench_ode.training.trainer import Trainer

# The vector field of the tests' user ODEs, as source text for the model files they write (it needs
# `torch` and `nn` imported above it)
CONV_FIELD = '''

class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, t, y):
        return torch.tanh(self.conv(y))

'''

TINY = {"model": "resnet_small", "dataset": "digits", "model_options": {"width": "4"}, "epochs": 2,
        "batch_size": 64, "lr": 0.05, "device": "cpu"}


def train_tiny(out: Path, **overrides) -> dict:
    """Train the tiny digits ResNet into `out` (a few seconds) and return its metadata."""
    return Trainer(TrainConfig(**(TINY | overrides)), out).run()


class ConstantClassifier(torch.nn.Module):
    """Predicts class 0 (of 10) for every input, with a zero input gradient: no attack can move it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 1.0
        return logits + 0 * x.flatten(1).sum(1, keepdim=True)


class InterruptAtCell:
    """An `on_cell` callback that records each cell's label and interrupts at the `n`-th, as Ctrl-C would."""

    def __init__(self, n: int) -> None:
        self.n, self.cells = n, []

    def __call__(self, label: str) -> None:
        self.cells.append(label)
        if len(self.cells) == self.n:
            raise KeyboardInterrupt



class CellReporter(SilentReporter):
    """A silent `progress.Reporter` that is its own progress bars: each bar's label (a cell, a rung)
    goes to `on_cell`."""

    def __init__(self, on_cell) -> None:
        self.start = lambda label, total=None: on_cell(label)

    def bars(self, transient: bool = False):
        return nullcontext(self)

    def update(self, *args, **kwargs) -> None:
        pass

def stop_after_first_epoch(record: dict) -> None:
    """An `on_epoch` callback that interrupts a run after its first epoch, as Ctrl-C would."""
    if record["epoch"] == 1:
        raise KeyboardInterrupt


def cut_and_resume(cfg: dict, out: Path, resumed_cfg: dict | None = None) -> Trainer:
    """Train `cfg` into `out`, interrupted after the first epoch, then resume it (with
    `resumed_cfg` if given) to the end; return the resumed trainer."""
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(**cfg), out).run(on_epoch=stop_after_first_epoch)
    resumed = Trainer(TrainConfig(**(resumed_cfg or cfg)), out, resume=True)
    resumed.run()
    return resumed


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every parameter and buffer of `a` equals `b`'s, bit for bit."""
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


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

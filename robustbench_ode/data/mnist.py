"""`mnist`: LeCun et al.'s 28x28 handwritten digits, read through torchvision from `<root>/MNIST/raw`."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..errors import UserError, option
from ..registry import DATASETS
from .base import DatasetInfo, Splits, default_data_dir
from .downloads import fetch_quietly, one_line, require_files

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
OFFICIAL_TRAIN_SIZE = 60_000

INFO = DatasetInfo(
    name="mnist",
    label="MNIST",
    in_channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
)


@DATASETS.register("mnist", "MNIST 28x28 digits via torchvision, from <data-dir>/MNIST/raw (--download)")
def mnist(root: Path | None = None, download: bool = False) -> Splits:
    """Load MNIST; a training set smaller than the official 60,000 is stated in the info's note."""
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else default_data_dir()
    if download:
        fetch_quietly(lambda: MNIST(str(root), train=True, download=True), "MNIST", root)
    raw = root / "MNIST" / "raw"
    hint = f"pass {option('download')} to fetch it, or {option('data_dir')} to point at the folder holding MNIST/"
    require_files("MNIST", raw, FILES, hint)
    try:
        train, test = MNIST(str(root), train=True), MNIST(str(root), train=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"MNIST files in {raw} are unreadable: {one_line(exc)}") from exc
    info = INFO
    n_train = len(train.targets)
    if n_train < OFFICIAL_TRAIN_SIZE:
        info = replace(INFO, note=_subset_note(n_train))
    return Splits(info, _pixels(train.data), train.targets.long(), _pixels(test.data), test.targets.long())


def _subset_note(n_train: int) -> str:
    size = f"{n_train // 1000}k" if n_train % 1000 == 0 else f"{n_train:,}-image"
    return f"train: {size} subset of official MNIST train ({OFFICIAL_TRAIN_SIZE:,})"


def _pixels(data: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 in [0, 1]."""
    return data.unsqueeze(1).float().div_(255)

"""`digits`: the embedded offline default, scikit-learn's bundled 8x8 handwritten digits.

Why this one: it is *real* data (1,797 digits written by 43 people, UCI ML repository), it ships
inside the scikit-learn wheel so a fresh offline machine has it, and it is small enough that a
ResNet and a Neural ODE train on 2 CPU cores in well under a minute. Split: stratified 80/20 with
a fixed seed (1,437 train / 360 test), the same on every machine.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..registry import DATASETS
from .base import DatasetInfo, Splits

INFO = DatasetInfo(
    name="digits",
    label="digits (sklearn 8x8)",
    in_channels=1,
    image_size=8,
    num_classes=10,
    mean=(0.3048,),
    std=(0.3836,),
    note="scikit-learn's bundled UCI handwritten digits, 8x8, 17 grey levels; offline default",
)


@DATASETS.register("digits", "Embedded offline default: sklearn's real 8x8 handwritten digits (1437/360)")
def digits(root: Path | None = None, download: bool = False) -> Splits:
    """Load the bundled digits; `root` and `download` are accepted for a uniform call and ignored."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_tr, idx_te = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.2, random_state=0, stratify=y.numpy()
    )
    idx_tr, idx_te = torch.as_tensor(sorted(idx_tr)), torch.as_tensor(sorted(idx_te))
    return Splits(INFO, x[idx_tr], y[idx_tr], x[idx_te], y[idx_te])

"""What every dataset returns: float image tensors in [0, 1], labels, and a description.

Normalisation is *not* applied here: models normalise inside (see `models.base`), so ε is always
in pixel units.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import torch
from torch import Tensor

from ..errors import UserError, option
from ..registry import DATASETS


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and naming facts a model builder and a report need about a dataset."""

    name: str
    label: str  # how tables name it, e.g. "CIFAR-10 (JPEG q75 copy)"
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    note: str = ""

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


@dataclass
class Splits:
    """Train and test tensors: x float32 (N, C, H, W) in [0, 1], y int64 (N,)."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    extra: dict = field(default_factory=dict)


def default_data_dir() -> Path:
    """`$ODEBENCH_DATA`, else `./data`."""
    return Path(os.environ.get("ODEBENCH_DATA", "data"))


def balanced_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of a deterministic, class-balanced subset of size n (sorted, so order is stable).

    Each class gets n // C samples (the first n % C classes one more); a class with fewer samples
    gives all it has.
    """
    if n <= 0:
        raise UserError(f"{option('subset')} must be positive, got {n}")
    if n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per, rest = divmod(n, len(classes))
    picked = []
    for i, c in enumerate(classes.tolist()):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        picked.append(idx[: per + (1 if i < rest else 0)])
    return torch.sort(torch.cat(picked)).values


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    subset: int | None = None,
    test_subset: int | None = None,
) -> Splits:
    """Load a registered dataset; `subset` / `test_subset` take class-balanced subsets."""
    entry = DATASETS.get(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    splits: Splits = entry.builder(root=root, download=download)
    if subset is not None:
        idx = balanced_subset(splits.train_y, subset)
        splits.train_x, splits.train_y = splits.train_x[idx], splits.train_y[idx]
    if test_subset is not None:
        idx = balanced_subset(splits.test_y, test_subset)
        splits.test_x, splits.test_y = splits.test_x[idx], splits.test_y[idx]
    return splits


@overload
def load_samples(data: str, data_dir: str | Path | None = None,
                 n_samples: int | None = None) -> tuple[Tensor, Tensor, DatasetInfo]: ...


@overload
def load_samples(data: tuple[Tensor, Tensor], data_dir: str | Path | None = None,
                 n_samples: int | None = None) -> tuple[Tensor, Tensor, None]: ...


def load_samples(data: str | tuple[Tensor, Tensor], data_dir: str | Path | None = None,
                 n_samples: int | None = None) -> tuple[Tensor, Tensor, DatasetInfo | None]:
    """The images an evaluation or audit works on: the test split of the registered dataset `data`
    (read from `data_dir`) with its description, or given `(x, y)` tensors (float pixels in [0, 1];
    no description), cut to a deterministic, class-balanced subset of `n_samples` (None: all)."""
    check_sample_count(n_samples)
    if isinstance(data, str):
        splits = load_dataset(data, data_dir)
        x, y, info = splits.test_x, splits.test_y, splits.info
    else:
        (x, y), info = _checked_tensors(data), None
    if n_samples is not None:
        idx = balanced_subset(y, n_samples)
        x, y = x[idx], y[idx]
    return x, y, info


def check_sample_count(n_samples: int | None) -> None:
    """How many test images to use: None (all) or at least one."""
    if n_samples is not None and n_samples < 1:
        raise UserError(f"{option('n_samples')} must be >= 1, got {n_samples}")


def _checked_tensors(data: object) -> tuple[Tensor, Tensor]:
    """Given samples as float32 (N, C, H, W) pixels in [0, 1] and int64 (N,) labels. Only the Python API
    passes tensors, so its messages name its parameter `data` as it is (no CLI flag spells it)."""
    try:
        x, y = data  # type: ignore[misc]
    except (TypeError, ValueError):
        raise UserError("data must be a registered dataset name or an (x, y) pair of tensors") from None
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)) or x.dim() != 4 or y.shape != (len(x),):
        raise UserError("data (x, y): x must be a (N, C, H, W) tensor and y a (N,) tensor of labels")
    if not x.is_floating_point() or len(x) == 0 or float(x.min()) < 0 or float(x.max()) > 1:
        raise UserError("data (x, y): x must hold float pixels in [0, 1] (ε is in pixel units)")
    return x.float(), y.long()


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a (N, C, H, W) tensor, rounded for stable metadata."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())

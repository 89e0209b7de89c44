"""Datasets, registered by name; importing this package registers them all."""
from . import cifar10, digits, imagefolder, mnist  # noqa: F401
from .base import DatasetInfo, Splits, balanced_subset, default_data_dir, load_dataset

__all__ = ["DatasetInfo", "Splits", "balanced_subset", "default_data_dir", "load_dataset"]

"""Datasets, registered by name; importing this package registers them all."""
from . import cifar10, digits, imagefolder, mnist  # noqa: F401
from .base import DatasetInfo, Splits, balanced_subset, check_sample_count, default_data_dir, load_dataset, load_samples

__all__ = ["DatasetInfo", "Splits", "balanced_subset", "check_sample_count", "default_data_dir", "load_dataset",
           "load_samples"]

"""`cifar10` (Krizhevsky 2009, the official python batches) and `cifar10-jpeg` (a JPEG image-folder copy).

`cifar10` downloads through torchvision (which checks the archive's md5) but reads the batches
with a restricted unpickler of its own: it accepts only numpy arrays and plain containers, so a
batch file cannot run code, and it does not re-hash 180 MB on every load.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError, option
from ..registry import DATASETS
from .base import DatasetInfo, Splits, default_data_dir
from .downloads import fetch_quietly, one_line, require_files
from .imagefolder import load_tree, to_splits

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
JPEG_FOLDER = "CIFAR10-JPEG"

INFO = DatasetInfo(
    name="cifar10", label="CIFAR-10", in_channels=3, image_size=32, num_classes=10, mean=MEAN, std=STD
)
JPEG_INFO = DatasetInfo(
    name="cifar10-jpeg",
    label="CIFAR-10 (JPEG q75 copy)",
    in_channels=3,
    image_size=32,
    num_classes=10,
    mean=MEAN,
    std=STD,
    note="all 60,000 CIFAR-10 images re-encoded as JPEG quality 75 (lossy, not bit-identical to the "
    "official files), official train/test split and label order",
)


@DATASETS.register("cifar10", "CIFAR-10, official python batches in <data-dir>/cifar-10-batches-py (--download)")
def cifar10(root: Path | None = None, download: bool = False) -> Splits:
    """Load the official CIFAR-10 batches (50,000 train / 10,000 test, 3x32x32)."""
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else default_data_dir()
    if download:
        fetch_quietly(lambda: CIFAR10(str(root), train=False, download=True), "CIFAR-10", root)
    folder = root / CIFAR10.base_folder
    train_files = [name for name, _ in CIFAR10.train_list]
    test_files = [name for name, _ in CIFAR10.test_list]
    hint = f"pass {option('download')} to fetch them"
    if (root / JPEG_FOLDER).is_dir():
        hint += f"; {root / JPEG_FOLDER} exists: use the dataset 'cifar10-jpeg' for that JPEG copy"
    require_files("CIFAR-10", folder, train_files + test_files, hint)
    train_x, train_y = read_batches(folder, train_files)
    test_x, test_y = read_batches(folder, test_files)
    return Splits(INFO, train_x.float().div_(255), train_y, test_x.float().div_(255), test_y)


@DATASETS.register("cifar10-jpeg", "All 60k CIFAR-10 images as JPEG q75: the image folder <data-dir>/CIFAR10-JPEG")
def cifar10_jpeg(root: Path | None = None, download: bool = False) -> Splits:
    """Load `<root>/CIFAR10-JPEG/{train,test}/<class>/*.jpg`; there is nothing to download."""
    root = Path(root) if root is not None else default_data_dir()
    tree_root = root / JPEG_FOLDER
    if not tree_root.is_dir():
        raise UserError(
            f"CIFAR-10 JPEG copy not found: expected the image folder {tree_root}/{{train,test}}/<class>/*.jpg "
            f"(it cannot be downloaded; the dataset 'cifar10' with {option('download')} fetches the official files)"
        )
    tree = load_tree(tree_root)
    if tuple(tree["classes"]) != CLASSES:
        raise UserError(f"{tree_root} does not hold CIFAR-10's classes {list(CLASSES)}: found {tree['classes']}")
    if tuple(tree["train_x"].shape[1:]) != (3, 32, 32):
        raise UserError(f"{tree_root} images are {tuple(tree['train_x'].shape[1:])}, CIFAR-10's are (3, 32, 32)")
    return to_splits(tree, JPEG_INFO)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy uint8/int arrays only; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x, as the official files are
        ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 protocol-2 pickles store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR python batches -> uint8 (N, 3, 32, 32) images and int64 labels, in file order."""
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                entry = _ArrayUnpickler(handle, encoding="latin1").load()
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in entry["labels"])
        except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise UserError(f"{path} is not a CIFAR-10 python batch: {one_line(exc)}") from exc
        if len(labels) != sum(len(x) for x in images):
            raise UserError(f"{path} has {len(entry['labels'])} labels for {len(images[-1])} images")
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

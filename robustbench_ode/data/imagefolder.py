"""`imagefolder`: any `<root>/{train,test}/<class>/*.{png,jpg,jpeg}` tree, read the ImageFolder way.

Conventions are torchvision ImageFolder's: a class's label is its position among the sorted class
names, files are taken in sorted order, other extensions are ignored; hidden entries (names
starting with '.') are skipped too. Every image must have one square size; grey images are kept as
one channel unless colour images are mixed in, then all become RGB. Images are decoded once and
cached as uint8 keyed by the tree's content (`tensor_cache`), so later loads take about a second.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..registry import DATASETS
from . import tensor_cache
from .base import DatasetInfo, Splits, channel_stats, default_data_dir
from .downloads import one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA")
SPLITS = ("train", "test")


class ImageFile(NamedTuple):
    """One listed image: path relative to the tree (POSIX), size, mtime_ns, label."""

    rel: str
    size: int
    mtime_ns: int
    label: int


@DATASETS.register("imagefolder", "Any <data-dir>/{train,test}/<class>/*.png|jpg tree; decoded once, then cached")
def imagefolder(root: Path | None = None, download: bool = False) -> Splits:
    """Load the tree at `root` (here `--data-dir` is the tree itself); `download` does not apply."""
    root = Path(root) if root is not None else default_data_dir()
    tree = load_tree(root)
    classes = tree["classes"]
    info = DatasetInfo(
        name="imagefolder",
        label=f"image folder '{root.resolve().name}'",
        in_channels=tree["train_x"].shape[1],
        image_size=tree["train_x"].shape[-1],
        num_classes=len(classes),
        mean=tuple(tree["mean"]),
        std=tuple(tree["std"]),
        note=f"{len(tree['train_y'])} train / {len(tree['test_y'])} test images in {len(classes)} classes "
        f"from {root.resolve()}",
    )
    return to_splits(tree, info)


def load_tree(root: Path) -> dict[str, Any]:
    """The tree as uint8 tensors: classes, train_x/y, test_x/y, mean, std (from the cache if valid)."""
    classes, listing = list_tree(root)
    key = tensor_cache.fingerprint((f.rel, f.size, f.mtime_ns) for split in SPLITS for f in listing[split])
    cached = tensor_cache.load(root, key)
    if cached is not None:
        return cached
    images = {split: [decode(root / f.rel) for f in listing[split]] for split in SPLITS}
    _check_sizes(root, listing, images)
    channels = max(img.shape[0] for split in SPLITS for img in images[split])
    tree: dict[str, Any] = {"classes": classes}
    for split in SPLITS:
        x = torch.empty((len(images[split]), channels, *images[split][0].shape[-2:]), dtype=torch.uint8)
        for i, img in enumerate(images[split]):
            x[i] = img  # a grey image broadcasts to RGB when colour ones are mixed in
        tree[f"{split}_x"] = x
        tree[f"{split}_y"] = torch.tensor([f.label for f in listing[split]], dtype=torch.int64)
    tree["mean"], tree["std"] = map(list, channel_stats(tree["train_x"].float().div_(255)))
    tensor_cache.save(root, key, tree)
    return tree


def to_splits(tree: dict[str, Any], info: DatasetInfo) -> Splits:
    """uint8 tree -> float32 [0, 1] Splits, with the class names in `extra`."""
    return Splits(
        info,
        tree["train_x"].float().div_(255),
        tree["train_y"],
        tree["test_x"].float().div_(255),
        tree["test_y"],
        extra={"classes": list(tree["classes"])},
    )


def list_tree(root: Path) -> tuple[list[str], dict[str, list[ImageFile]]]:
    """Sorted class names and each split's image files; a malformed tree is a UserError."""
    layout = f"expected {root}/train/<class>/*.png|jpg|jpeg and {root}/test/<class>/..."
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist ({layout})")
    for split in SPLITS:
        if not (root / split).is_dir():
            raise UserError(f"image folder {root} has no {split}/ folder ({layout})")
    names = {split: {e.name for e in os.scandir(root / split) if e.is_dir() and not e.name.startswith(".")}
             for split in SPLITS}
    classes = sorted(names["train"] | names["test"])
    if not classes:
        raise UserError(f"image folder {root} has no class folders ({layout})")
    for cls in classes:
        if cls not in names["train"] or cls not in names["test"]:
            has, lacks = ("train", "test") if cls in names["train"] else ("test", "train")
            raise UserError(f"class '{cls}' of image folder {root} is in {has}/ but not in {lacks}/")
    listing: dict[str, list[ImageFile]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        for label, cls in enumerate(classes):
            entries = sorted(
                (e.name, e.stat()) for e in os.scandir(root / split / cls)
                if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not entries:
                raise UserError(f"class folder {root / split / cls} has no .png/.jpg/.jpeg images")
            listing[split].extend(
                ImageFile(f"{split}/{cls}/{name}", st.st_size, st.st_mtime_ns, label) for name, st in entries
            )
    return classes, listing


def decode(path: Path) -> torch.Tensor:
    """One 8-bit PNG/JPEG file -> uint8 (C, H, W) with C = 1 (grey) or 3 (colour); alpha is dropped."""
    try:
        with Image.open(path, formats=("PNG", "JPEG")) as img:
            pixels = np.array(img.convert("L" if img.mode in GREY_MODES else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # unreadable files raise OSError
        raise UserError(f"{path} is not a readable image ({one_line(exc)[:120]})") from exc
    x = torch.from_numpy(pixels)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


def _check_sizes(root: Path, listing: dict[str, list[ImageFile]], images: dict[str, list[torch.Tensor]]) -> None:
    """All images one square size; otherwise name the first offender."""
    first_path, first = root / listing["train"][0].rel, images["train"][0]
    height, width = first.shape[-2:]
    if height != width:
        raise UserError(f"{first_path} is {height}x{width}: image folders must hold square images")
    for split in SPLITS:
        for file, img in zip(listing[split], images[split]):
            if img.shape[-2:] != first.shape[-2:]:
                raise UserError(
                    f"{root / file.rel} is {img.shape[-2]}x{img.shape[-1]} but {first_path} is {height}x{width}: "
                    "all images of an image folder must have the same size"
                )

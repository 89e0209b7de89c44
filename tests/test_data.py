"""Datasets: every registered one yields float NCHW pixels in [0, 1]; image folders cache and fail clearly."""
from __future__ import annotations

import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_ode.data import DatasetInfo, balanced_subset, imagefolder, load_dataset, load_samples, tensor_cache
from robustbench_ode.data.base import channel_stats
from robustbench_ode.data.cifar10 import CLASSES as CIFAR10_CLASSES
from robustbench_ode.errors import UserError
from robustbench_ode.registry import DATASETS

# ---------------------------------------------------------------- small data written by the tests

TREE_CLASSES = ("zebra", "ant", "mole")  # created in this order; labels follow sorted order: ant, mole, zebra
TREE_FILES = ("b.png", "a.png", "c.jpg")  # sorted order: a.png, b.png, c.jpg
SIDE = 6


def pixel_value(split: str, cls: str, name: str) -> int:
    """The flat grey level the test tree gives one file: distinct per (split, class, file)."""
    return 20 * sorted(TREE_CLASSES).index(cls) + 5 * sorted(TREE_FILES).index(name) + (100 if split == "test" else 0)


def write_image(path: Path, value: int | tuple[int, int, int], side: int = SIDE, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (side, side) if mode == "L" else (side, side, 3)
    Image.fromarray(np.broadcast_to(np.asarray(value, dtype=np.uint8), shape).copy()).save(path, quality=95)


def write_tree(root: Path) -> Path:
    """A 3-class image folder of flat 6x6 RGB PNGs and JPEGs, two splits."""
    for split in ("train", "test"):
        for cls in TREE_CLASSES:
            for name in TREE_FILES:
                write_image(root / split / cls / name, pixel_value(split, cls, name))
    return root


def write_cifar_batches(root: Path, per_batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny files in the official `cifar-10-batches-py` pickle layout; returns the images and labels written.

    Python 3 writes numpy arrays as `numpy._core...`; the official files (numpy 1.x, Python 2) say
    `numpy.core...`, so that name is written here, as there.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, per_batch).tolist()
        entry = {"batch_label": name, "labels": batch_labels, "data": data,
                 "filenames": [f"{i}.png" for i in range(per_batch)]}
        blob = pickle.dumps(entry, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(blob)
        images.append(torch.from_numpy(data).reshape(-1, 3, 32, 32))
        labels += batch_labels
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return torch.cat(images), torch.tensor(labels)


def root_for(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Where each registered dataset's data comes from in these tests."""
    if name == "digits":
        return None
    if name == "imagefolder":
        return write_tree(tmp_path / "tree")
    if name == "cifar10":
        write_cifar_batches(tmp_path)
        return tmp_path
    shared: Path = request.getfixturevalue("shared_data")
    needs = {"mnist": "MNIST/raw", "cifar10-jpeg": "CIFAR10-JPEG"}
    if name not in needs:
        pytest.fail(f"no test data for dataset '{name}': add it to root_for")
    if not (shared / needs[name]).is_dir():
        pytest.skip(f"{shared / needs[name]} not present")
    return shared


# ---------------------------------------------------------------- every registered dataset


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "cifar10-jpeg" else n  # decodes 60k JPEGs
                                  for n in DATASETS.names()])
def test_every_dataset_gives_float_nchw_pixels_in_unit_range_and_matching_info(name, request, tmp_path):
    s = load_dataset(name, root_for(name, request, tmp_path))
    info = s.info
    assert info.name == name
    for x, y in ((s.train_x, s.train_y), (s.test_x, s.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), info.in_channels, info.image_size, info.image_size)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert 0 <= y.min() and y.max() < info.num_classes
    assert len(info.mean) == len(info.std) == info.in_channels
    assert all(0 < m < 1 for m in info.mean) and all(0 < v < 1 for v in info.std)
    assert DATASETS.get(name).description and info.label
    assert DatasetInfo.from_dict(info.to_dict()) == info


# ---------------------------------------------------------------- digits and balanced subsets


def test_digits_split_is_deterministic_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    total = len(a.train_y) + len(a.test_y)
    assert len(a.test_y) == math.ceil(0.2 * total)
    per_class = torch.bincount(torch.cat([a.train_y, a.test_y]))
    expected_test = 0.2 * per_class.double()
    assert (torch.bincount(a.test_y).double() - expected_test).abs().max() <= 1


def test_balanced_subset_is_class_balanced_sorted_and_deterministic():
    y = torch.arange(10).repeat_interleave(torch.tensor([30, 25, 20, 40, 33, 31, 29, 28, 27, 26]))
    idx = balanced_subset(y, 23, seed=3)
    counts = torch.bincount(y[idx], minlength=10)
    assert counts.tolist() == [3, 3, 3] + [2] * 7  # 23 = 10 * 2 + 3: the first 3 classes get one more
    assert torch.equal(idx, torch.sort(idx).values) and len(idx.unique()) == len(idx)
    assert torch.equal(idx, balanced_subset(y, 23, seed=3))
    assert not torch.equal(idx, balanced_subset(y, 23, seed=4))


def test_balanced_subset_gives_a_small_class_all_it_has_and_rejects_nonpositive_sizes():
    y = torch.tensor([0] * 50 + [1] * 2)
    assert torch.bincount(y[balanced_subset(y, 20)]).tolist() == [10, 2]
    assert torch.equal(balanced_subset(y, 100), torch.arange(len(y)))
    with pytest.raises(UserError, match="positive"):
        balanced_subset(y, 0)


# ---------------------------------------------------------------- image folders


def test_one_loader_gives_the_cli_the_audit_and_the_api_the_same_class_balanced_test_images():
    splits = load_dataset("digits")
    x, y, info = load_samples("digits", None, 50)
    idx = balanced_subset(splits.test_y, 50)
    assert torch.equal(x, splits.test_x[idx]) and torch.equal(y, splits.test_y[idx]) and info == splits.info
    given_x, given_y, no_info = load_samples((splits.test_x, splits.test_y), n_samples=50)
    assert no_info is None and torch.equal(given_x, x) and torch.equal(given_y, y)
    assert len(load_samples("digits")[1]) == len(splits.test_y)  # None: every test image
    for data, n, message in [("digits", 0, "n_samples must be >= 1, got 0"), (42, None, "pair of tensors"),
                             ((x[0], y), None, r"x must be a \(N, C, H, W\) tensor"),
                             ((x * 2, y), None, r"float pixels in \[0, 1\]")]:
        with pytest.raises(UserError, match=message):
            load_samples(data, None, n)


def test_image_folder_follows_sorted_class_and_file_order(tmp_path):
    s = load_dataset("imagefolder", write_tree(tmp_path))
    classes = sorted(TREE_CLASSES)
    assert s.extra["classes"] == classes
    assert (s.info.in_channels, s.info.image_size, s.info.num_classes) == (3, SIDE, len(classes))
    assert (s.info.mean, s.info.std) == channel_stats(s.train_x)
    for split, x, y in (("train", s.train_x, s.train_y), ("test", s.test_x, s.test_y)):
        order = [(cls, name) for cls in classes for name in sorted(TREE_FILES)]
        assert y.tolist() == [classes.index(cls) for cls, _ in order]
        expected = torch.tensor([pixel_value(split, cls, name) for cls, name in order], dtype=torch.float32) / 255
        error = (x - expected.view(-1, 1, 1, 1)).abs().amax(dim=(1, 2, 3))
        lossless = torch.tensor([name.endswith(".png") for _, name in order])
        assert error[lossless].max() == 0  # PNG: exact
        assert error[~lossless].max() < 3 / 255  # JPEG of a flat image: nearly


def test_image_folder_keeps_grey_images_grey_and_makes_mixed_ones_rgb(tmp_path):
    grey = tmp_path / "grey"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            write_image(grey / split / cls / "0.png", 77, mode="L")
    assert load_dataset("imagefolder", grey).info.in_channels == 1
    write_image(grey / "test" / "b" / "1.png", (10, 20, 30))
    s = load_dataset("imagefolder", grey)
    assert s.info.in_channels == 3
    assert torch.equal(s.train_x[0], torch.full((3, SIDE, SIDE), 77 / 255))


def test_image_folder_second_load_uses_the_cache_without_decoding(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree")
    first = load_dataset("imagefolder", root)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(imagefolder, "decode", no_decoding)
    again = load_dataset("imagefolder", root)
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)
    assert again.info == first.info
    cache_files = list((root / tensor_cache.CACHE_DIRNAME).iterdir())
    assert len(cache_files) == 1 and cache_files[0].suffix == ".pt"  # no temp file left behind
    assert set(torch.load(cache_files[0], weights_only=True)) >= {"train_x", "train_y", "test_x", "test_y"}


def _edit_keeping_size(root: Path) -> None:
    """Same size, new content: only the modification time can tell."""
    path, donor = root / "train" / "mole" / "b.png", root / "train" / "mole" / "a.png"
    assert path.stat().st_size == donor.stat().st_size
    mtime_ns = path.stat().st_mtime_ns
    path.write_bytes(donor.read_bytes())
    os.utime(path, ns=(mtime_ns + 1, mtime_ns + 1))  # a distinct mtime even on coarse clocks


def _add(root: Path) -> None:
    write_image(root / "train" / "ant" / "d.png", 250)


def _remove(root: Path) -> None:
    (root / "train" / "ant" / "b.png").unlink()


@pytest.mark.parametrize("change", [_edit_keeping_size, _add, _remove], ids=["edit", "add", "remove"])
def test_image_folder_cache_is_rebuilt_when_a_file_changes(tmp_path, monkeypatch, change):
    root = write_tree(tmp_path / "tree")
    before = load_dataset("imagefolder", root)
    change(root)
    decoded = []
    real_decode = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda path: decoded.append(path) or real_decode(path))
    after = load_dataset("imagefolder", root)
    assert len(decoded) == len(after.train_y) + len(after.test_y)
    assert not torch.equal(before.train_x, after.train_x)
    assert len(list((root / tensor_cache.CACHE_DIRNAME).glob("*.pt"))) == 1  # the stale cache is gone


def test_read_only_image_folder_is_cached_outside_the_tree(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree")
    monkeypatch.setenv("ODEBENCH_CACHE", str(tmp_path / "user-cache"))
    root.chmod(0o555)
    try:
        load_dataset("imagefolder", root)
        monkeypatch.setattr(imagefolder, "decode", lambda path: pytest.fail("cache not reused"))
        load_dataset("imagefolder", root)
    finally:
        root.chmod(0o755)
    assert not (root / tensor_cache.CACHE_DIRNAME).exists()
    assert len(list((tmp_path / "user-cache").glob("*.pt"))) == 1


def _no_test_split(root):
    shutil.rmtree(root / "test")


def _class_in_train_only(root):
    write_image(root / "train" / "yak" / "a.png", 9)


def _empty_class(root):
    for f in (root / "test" / "mole").iterdir():
        f.unlink()


def _unreadable_file(root):
    (root / "train" / "ant" / "broken.png").write_bytes(b"this is not a PNG")


def _mixed_sizes(root):
    write_image(root / "test" / "zebra" / "big.png", 9, side=SIDE + 1)


def _not_square(root):
    for split in ("train", "test"):
        for cls in TREE_CLASSES:
            for name in TREE_FILES:
                path = root / split / cls / name
                Image.new("RGB", (SIDE, SIDE + 2)).save(path)


def _no_classes(root):
    for split in ("train", "test"):
        shutil.rmtree(root / split)
        (root / split).mkdir()


@pytest.mark.parametrize(
    "breakage, message",
    [
        pytest.param(_no_test_split, r"has no test/ folder", id="no-test-split"),
        pytest.param(_class_in_train_only, r"class 'yak' .* is in train/ but not in test/", id="class-in-one-split"),
        pytest.param(_empty_class, r"test/mole has no \.png/\.jpg/\.jpeg images", id="empty-class"),
        pytest.param(_unreadable_file, r"broken\.png is not a readable image", id="unreadable-file"),
        pytest.param(_mixed_sizes, r"big\.png is 7x7 but .* is 6x6", id="mixed-sizes"),
        pytest.param(_not_square, r"is 8x6: image folders must hold square images", id="not-square"),
        pytest.param(_no_classes, r"has no class folders", id="no-classes"),
    ],
)
def test_bad_image_folder_is_a_one_line_user_error(tmp_path, breakage, message):
    root = write_tree(tmp_path / "tree")
    breakage(root)
    with pytest.raises(UserError, match=message) as err:
        load_dataset("imagefolder", root)
    assert "\n" not in str(err.value)


def test_missing_image_folder_names_the_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("imagefolder", tmp_path / "nowhere")


# ---------------------------------------------------------------- official-file datasets


def test_missing_mnist_names_the_expected_files_and_download(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("mnist", tmp_path)
    text = str(err.value)
    assert f"{tmp_path}/MNIST/raw/" in text and "train-images-idx3-ubyte" in text and "pass download" in text
    assert "\n" not in text


def test_partly_missing_mnist_lists_only_the_missing_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(UserError, match=r"missing: train-labels-idx1-ubyte, t10k-images"):
        load_dataset("mnist", tmp_path)


def test_missing_cifar10_names_the_batches_and_points_to_a_jpeg_copy(tmp_path):
    with pytest.raises(UserError, match=r"cifar-10-batches-py/\{data_batch_1,.*test_batch\}.*pass download") as err:
        load_dataset("cifar10", tmp_path)
    assert "cifar10-jpeg" not in str(err.value)
    (tmp_path / "CIFAR10-JPEG").mkdir()
    with pytest.raises(UserError, match=r"CIFAR10-JPEG exists: use the dataset 'cifar10-jpeg'"):
        load_dataset("cifar10", tmp_path)


def test_missing_cifar10_jpeg_names_the_expected_folder(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}/CIFAR10-JPEG"):
        load_dataset("cifar10-jpeg", tmp_path)


def test_cifar10_reads_the_official_pickle_layout_in_file_order(tmp_path):
    images, labels = write_cifar_batches(tmp_path)
    s = load_dataset("cifar10", tmp_path)
    n_train = len(labels) * 5 // 6
    assert torch.equal(s.train_y, labels[:n_train]) and torch.equal(s.test_y, labels[n_train:])
    assert torch.equal(s.train_x, images[:n_train].float() / 255)  # planes are R, G, B, each row-major
    assert torch.equal(s.test_x, images[n_train:].float() / 255)


def test_cifar10_batch_that_would_run_code_is_refused(tmp_path):
    write_cifar_batches(tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Payload()}, protocol=2))
    with pytest.raises(UserError, match=r"test_batch is not a CIFAR-10 python batch: refusing to load \w+\.print"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- the real data, where present


def test_cifar10_jpeg_is_the_full_cifar10_split(shared_data):
    if not (shared_data / "CIFAR10-JPEG").is_dir():
        pytest.skip(f"{shared_data / 'CIFAR10-JPEG'} not present")
    s = load_dataset("cifar10-jpeg", shared_data)
    assert s.train_x.shape == (50_000, 3, 32, 32) and s.test_x.shape == (10_000, 3, 32, 32)
    assert torch.bincount(s.train_y).tolist() == [5_000] * 10
    assert torch.bincount(s.test_y).tolist() == [1_000] * 10
    assert s.extra["classes"] == list(CIFAR10_CLASSES)
    assert "JPEG" in s.info.label and s.info.note


def test_mnist_states_a_reduced_training_set_in_its_note(shared_data):
    if not (shared_data / "MNIST" / "raw").is_dir():
        pytest.skip(f"{shared_data / 'MNIST/raw'} not present")
    s = load_dataset("mnist", shared_data)
    assert len(s.test_y) == 10_000
    if len(s.train_y) < 60_000:
        assert f"{len(s.train_y) // 1000}k subset" in s.info.note
    else:
        assert s.info.note == ""

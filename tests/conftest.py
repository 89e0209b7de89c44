"""Fixtures shared by every test file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data (MNIST/raw, CIFAR10-JPEG): `$ODEBENCH_SHARED_DATA`, else `<repo>/../shared/data`."""
    path = Path(os.environ.get("ODEBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set ODEBENCH_SHARED_DATA to the folder with MNIST/, CIFAR10-JPEG/)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run fastest on one thread; two threads on a busy 2-core box crawl."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """The embedded offline dataset, loaded once."""
    from robustbench_ode.data import load_dataset

    return load_dataset("digits")

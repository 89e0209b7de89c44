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


@pytest.fixture(scope="module")
def trained(digits):
    """A 64-64-10 MLP trained full-batch on digits for a second (~95% test accuracy)."""
    import torch
    from torch import nn

    from robustbench_ode.models.base import ImageClassifier

    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = ImageClassifier(digits.info, body)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(digits.train_x), digits.train_y).backward()
        opt.step()
    return model.eval()

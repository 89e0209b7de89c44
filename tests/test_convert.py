"""`odebench convert`: third-party checkpoints to safetensors without running any of their code."""
from __future__ import annotations

import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robustbench_ode.convert import convert
from robustbench_ode.errors import UserError

from .helpers import odebench
from .test_cli import one_line_error

pytestmark = pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # torch.save of a test-local class

FOREIGN = "third_party_models"  # the module a published model's class lives in: absent here


def plant(path: str) -> None:
    """What a hostile pickle runs when loaded normally: leaves a marker file."""
    Path(path).write_text("code ran")


class Trap:
    """Pickles as a call to `plant`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return plant, (self.marker,)


class ShellTrap:
    """Pickles as a call to os.system (a harmless `touch` here)."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch '{marker}'"

    def __reduce__(self):
        return os.system, (self.command,)


class Net(nn.Module):
    """A model with a tied weight, BatchNorm buffers, a non-persistent buffer and two traps."""

    def __init__(self, markers: tuple[Path, Path]) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(12, 4)
        self.tied = nn.Linear(12, 4)
        self.tied.weight = self.head.weight
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.trap, self.shell = Trap(markers[0]), ShellTrap(markers[1])


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], tuple[Path, Path]]:
    """A whole-module pickle whose class lives in a module that does not exist, and its state dict."""
    markers = (tmp_path / "plant_marker", tmp_path / "shell_marker")
    torch.manual_seed(0)
    model = Net(markers)
    model.features[1].running_mean.uniform_()
    foreign = types.ModuleType(FOREIGN)
    foreign.Net = Net
    Net.__module__ = FOREIGN
    sys.modules[FOREIGN] = foreign
    try:
        torch.save(model, tmp_path / "model.pth")
        torch.save(model, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    finally:
        del sys.modules[FOREIGN]
        Net.__module__ = __name__
    return tmp_path / "model.pth", {k: v.clone() for k, v in model.state_dict().items()}, markers


def assert_same_tensors(path: Path, expected: dict[str, torch.Tensor]) -> None:
    got = load_file(str(path))
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


@pytest.mark.parametrize("name", ["model.pth", "legacy.pth"])
def test_a_hostile_whole_module_pickle_gives_exactly_its_state_dict_and_runs_nothing(hostile, tmp_path, name):
    _, state, markers = hostile
    result = convert(tmp_path / name, tmp_path / "out.safetensors")
    assert_same_tensors(tmp_path / "out.safetensors", state)
    assert not any(m.exists() for m in markers)
    assert FOREIGN not in sys.modules
    assert f"{FOREIGN}.Net" in result.classes and "torch.nn.modules.conv.Conv2d" in result.classes
    assert result.calls[f"{plant.__module__}.plant"] == 1 and result.calls[f"{os.system.__module__}.system"] == 1


def test_the_traps_are_live_when_the_file_is_loaded_normally(hostile):
    """The control: torch.load with weights_only=False runs both calls the converter refused."""
    path, _, markers = hostile
    foreign = types.ModuleType(FOREIGN)
    foreign.Net = Net
    sys.modules[FOREIGN] = foreign
    try:
        torch.load(path, weights_only=False)
    finally:
        del sys.modules[FOREIGN]
    assert all(m.exists() for m in markers)


def test_a_plain_pickle_that_calls_os_system_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "shell_marker"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(ShellTrap(marker), protocol=2))
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        convert(tmp_path / "evil.pth", tmp_path / "out.safetensors")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_plain_state_dicts_and_checkpoint_dicts(tmp_path):
    torch.manual_seed(1)
    state = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).state_dict()
    torch.save(state, tmp_path / "sd.pth")
    result = convert(tmp_path / "sd.pth", tmp_path / "sd.safetensors")
    assert_same_tensors(tmp_path / "sd.safetensors", state)
    assert result.classes == [] and result.calls == {}
    torch.save({"model": state, "optimizer": {"lr": torch.ones(1)}, "epoch": 7}, tmp_path / "ck.pth")
    convert(tmp_path / "ck.pth", tmp_path / "ck.safetensors")
    assert_same_tensors(tmp_path / "ck.safetensors", state)
    torch.save({"ema": {"net": {f"module.{k}": v for k, v in state.items()}}}, tmp_path / "dp.pth")
    convert(tmp_path / "dp.pth", tmp_path / "dp.safetensors", key="ema.net", strip_prefix="module.")
    assert_same_tensors(tmp_path / "dp.safetensors", state)


def test_the_cli_prints_names_shapes_dtypes_and_the_classes_to_write(hostile, tmp_path):
    path, state, _ = hostile
    proc = odebench("convert", path, tmp_path / "out.safetensors")
    assert proc.returncode == 0, proc.stderr
    for name in state:
        assert name in proc.stdout
    assert "3×1×3×3" in proc.stdout and "int64" in proc.stdout and f"{FOREIGN}.Net" in proc.stdout


@pytest.mark.parametrize("make, args, message", [
    (lambda p: p.write_bytes(os.urandom(256)), [], "not a PyTorch checkpoint"),
    (lambda p: p.write_text("not a checkpoint"), [], "not a PyTorch checkpoint"),
    (lambda p: zipfile.ZipFile(p, "w").close(), [], "not a torch.save checkpoint"),
    (lambda p: p.write_bytes(pickle.dumps({"epoch": 3}, protocol=2)), [], "not a PyTorch checkpoint"),
    (lambda p: torch.save({"epoch": 3}, p), [], "holds no tensors"),
    (lambda p: torch.save({"w": torch.ones(1)}, p), ["--key", "nope"], "no 'nope'"),
    (lambda p: None, [], "does not exist"),
])
def test_unreadable_input_is_one_line_and_exit_code_2(tmp_path, make, args, message):
    make(tmp_path / "in.pth")
    assert message in one_line_error(odebench("convert", tmp_path / "in.pth", tmp_path / "out.safetensors", *args))
    assert not (tmp_path / "out.safetensors").exists()

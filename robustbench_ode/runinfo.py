"""Provenance recorded next to every result: versions, device, seed, and the command line."""
from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError, option
from .registry import loaded_plugins
from .version import __version__

if TYPE_CHECKING:  # torch is imported where a function needs it: the CLI starts without it
    import torch


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, loaded plugins (`plugin DIST`) included."""
    import foolbox
    import torch
    import torchdiffeq
    import torchvision

    return {
        "odebench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchdiffeq": getattr(torchdiffeq, "__version__", "unknown"),
        "foolbox": foolbox.__version__,
        **{f"plugin {dist}": version for dist, version in loaded_plugins().items()},
    }


def device_description(device: torch.device) -> str:
    """A human-readable description of the compute device."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a UserError. Under torchrun the
    process first joins its group, and CUDA then means its own GPU (see `distributed.init`)."""
    import torch

    from . import distributed

    distributed.init()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option('device')} cuda requested but no CUDA GPU is available "
                        f"(use {option('device')} cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"{option('device')} must be auto, cpu or cuda, got '{name}'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def provenance(seed: int, device: torch.device) -> dict[str, Any]:
    """Everything needed to say where and how a result was produced."""
    from .precision import cpu_description

    return {
        "seed": seed,
        "device": str(device),
        "device_name": device_description(device),
        "cpu": cpu_description(),  # model and speed-deciding flags (avx2, avx512_bf16, amx_bf16...)
        "versions": versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def file_mode() -> int:
    """The mode a new file gets under the process's umask (read by setting it, then restoring it):
    temporary files (`mkstemp`, safetensors) are 0600, results and checkpoints are shared files."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def shared(path: Path) -> Path:
    """Give a file written by a library that creates 0600 files (safetensors) the umask's mode."""
    os.chmod(path, file_mode())
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that a crash leaves either the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; results are shared files like any other
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file `path` as a dict; unreadable or invalid is a UserError naming `what` ('config file')."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except OSError:
        raise UserError(f"cannot read {what} '{path}'") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} '{path}' is not valid TOML: {exc}") from None

"""Safe checkpoints: safetensors weights (cannot run code when loaded) + JSON metadata.

A checkpoint is a directory with `model.safetensors` and `meta.json`. The metadata names the
registered model and its options, so loading rebuilds the model from the registry and gives
bit-identical logits; a SHA-256 of the weights file guards against tampering.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .runinfo import atomic_write_json, shared

if TYPE_CHECKING:  # torch and safetensors are imported by the functions that need them: `read_meta` is light
    import torch
    from torch import nn

FORMAT = "odebench-checkpoint/1"
WEIGHTS = "model.safetensors"
META = "meta.json"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write weights then metadata (with the weights' hash), each atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    shared(tmp).replace(path / WEIGHTS)
    atomic_write_json(path / META, {**meta, "format": FORMAT, "weights_sha256": sha256_file(path / WEIGHTS)})


def read_meta(path: Path) -> dict[str, Any]:
    """Read and validate a checkpoint's metadata; anything not ours is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist")
    given = path
    if path.is_file():
        path = path.parent
    meta_file = path / META
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError):
        if given.is_file():
            raise UserError(f"'{given}' is a file, not an odebench checkpoint directory (no {META} beside it); "
                            "weights go with the network they belong to: a model given as code with its weights "
                            "(--model-file FILE:FACTORY --weights, --model NAME --weights; in Python load them "
                            "into your nn.Module and pass the module)") from None
        raise UserError(f"'{path}' is not an odebench checkpoint (no readable {META})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"'{path}' is not an odebench checkpoint (format is not {FORMAT})")
    return meta


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the registry and load verified weights; returns (model, meta)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .data.base import DatasetInfo
    from .models import build_model
    from .models.base import fast_layout

    meta = read_meta(path)
    path = Path(path)
    if path.is_file():
        path = path.parent
    weights = path / WEIGHTS
    if not weights.exists():
        raise UserError(f"checkpoint '{path}' has no {WEIGHTS}")
    if sha256_file(weights) != meta.get("weights_sha256"):
        raise UserError(f"checkpoint '{path}': weights hash does not match meta.json (file altered?)")
    try:
        info = DatasetInfo.from_dict(meta["dataset_info"])
        model = build_model(meta["model"], info, **meta.get("model_options", {}))
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"checkpoint '{path}' cannot be loaded: {str(exc).splitlines()[0]}") from None
    return fast_layout(model.to(device), meta.get("training", {}).get("channels_last", False)).eval(), meta

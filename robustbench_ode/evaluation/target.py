"""What an evaluation attacks: a model with its identity (a checkpoint, or a model given as code with
its metadata) and the ODE backend its adaptive blocks run on."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..model_checks import Finding
from ..models.base import use_ode_backend
from ..models.intercept import Integrated
from ..models.ode_block import ODEBlock, is_fixed_step
from ..ode_backends import AS_TRAINED, DEFAULT_ODE_BACKEND, check_ode_backend


@dataclass
class Target:
    """A loaded model to attack (or to craft transfer examples on): a checkpoint, or a model
    given as code (`from_module`) with the same kind of `meta`."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    ode_backend: str = ""  # the backend of its adaptive ODE blocks ('' without any)
    label: str = ""  # how tables name it ('': the checkpoint directory's name)
    findings: list[Finding] = field(default_factory=list)  # model_checks.inspect_model, once per run

    @property
    def sha(self) -> str:
        return self.meta["weights_sha256"][:16]

    @property
    def code_sha(self) -> str:
        """The model's source file hash ('' for a checkpoint, whose code is odebench's registry)."""
        return self.meta.get("source_sha256", "")[:16]

    @property
    def name(self) -> str:
        return self.label or self.path.name

    @classmethod
    def load(cls, path: Path, device: torch.device, ode_backend: str = DEFAULT_ODE_BACKEND) -> "Target":
        """Load a checkpoint; adaptive ODE blocks integrate with `ode_backend` ('model': as trained)."""
        model, meta = load_checkpoint(path, device)
        return cls(Path(path), model, meta, ode_backend_of(model, ode_backend))

    @classmethod
    def from_module(cls, model: nn.Module, meta: dict[str, Any], device: torch.device,
                    ode_backend: str = DEFAULT_ODE_BACKEND, path: Path | None = None, label: str = "") -> "Target":
        """An in-memory model ([0, 1] pixels -> logits) described by `meta`: `model`, `dataset`,
        `dataset_info` and `weights_sha256` as in a checkpoint's meta.json, optionally
        `source_sha256` and `method` (see `user_model.module_meta`). Its adaptive ODE blocks are
        switched to `ode_backend` in place."""
        missing = [k for k in ("model", "dataset", "dataset_info", "weights_sha256") if k not in meta]
        if missing:
            raise UserError(f"model metadata lacks {', '.join(missing)}")
        model = model.to(device).eval()
        return cls(Path(path) if path is not None else Path(meta["model"]), model, meta,
                   ode_backend_of(model, ode_backend), label)


def ode_backend_of(model: nn.Module, backend: str) -> str:
    """Switch the adaptive ODE blocks of `model` to `backend` (unless 'model'); return the one in use.

    '' for a model without adaptive ODE blocks (nothing to choose). A model that calls torchdiffeq
    or torchode itself (`intercept.Integrated`) keeps its library, named here; where that is an
    adaptive torchdiffeq solve, every verdict is made one image at a time (`batch_dependent`).
    """
    if check_ode_backend(backend) != AS_TRAINED:
        use_ode_backend(model, backend)
    blocks = [m.config for m in model.modules() if isinstance(m, ODEBlock)]
    own = [s.library for m in model.modules() if isinstance(m, Integrated) for s in m.solves if s.adaptive]
    adaptive = sorted({c.backend for c in blocks if not is_fixed_step(c.solver)} | set(own))
    return ",".join(adaptive)

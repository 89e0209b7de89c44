"""The attack runner: checkpoints x attacks x ε grid -> result rows in a resumable store.

Robust accuracy counts a sample only if it is classified correctly on the clean input *and* on the
adversarial one. Samples already misclassified are not attacked. Every cell gets its own seed
derived from (seed, cell), so a resumed run and an uninterrupted one produce identical tables.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..attacks.base import Attack
from ..attacks.gradient_from import GradientFrom
from ..audit.masking import looks_masked
from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..models.base import nfe_of, parse_solver_spec, solver_surrogate
from ..registry import ATTACKS
from ..runinfo import seed_everything
from .store import ResultStore


@dataclass
class Target:
    """A loaded checkpoint to attack (or to craft transfer examples on)."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]

    @property
    def sha(self) -> str:
        return self.meta["weights_sha256"][:16]

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path, device: torch.device) -> "Target":
        model, meta = load_checkpoint(path, device)
        return cls(Path(path), model, meta)


@dataclass
class AttackSpec:
    """A registered attack name with parsed options, and how a gradient attack takes gradients.

    `grad_solver` ('rk4:step_size=0.05', see `models.base.parse_solver_spec`) makes the attack
    differentiate an ODE model through that solver while the model's own solver decides
    (`GradientFrom`); `eot` averages each gradient over that many passes (randomised models).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    grad_solver: str | None = None
    eot: int = 1

    def __post_init__(self) -> None:
        if self.eot < 1:
            raise UserError(f"--eot must be >= 1, got {self.eot}")
        if (self.grad_solver or self.eot > 1) and not ATTACKS.get(self.name).builder.uses_gradients:
            raise UserError(f"attack '{self.name}' uses no gradients: --grad-solver and --eot apply to gradient attacks")
        if self.grad_solver:
            parse_solver_spec(self.grad_solver)  # fail before any work

    @classmethod
    def parse(cls, name: str, raw: dict[str, str], grad_solver: str | None = None, eot: int = 1) -> "AttackSpec":
        return cls(name, ATTACKS.get(name).parse_options(raw), grad_solver, eot)

    def build(self) -> Attack:
        attack = ATTACKS.get(self.name).builder(**self.options)
        attack.eot = self.eot
        return attack

    def crafting_model(self, model: nn.Module) -> nn.Module:
        """The model the attack runs on: `model` itself, or `model` differentiated through `grad_solver`."""
        if not self.grad_solver:
            return model
        return GradientFrom(model, solver_surrogate(model, **parse_solver_spec(self.grad_solver)))

    @property
    def args_text(self) -> str:
        """Options as JSON (the result store's key): gradient settings appear only when not default."""
        extra = ({"grad_solver": self.grad_solver} if self.grad_solver else {}) | ({"eot": self.eot} if self.eot > 1 else {})
        return json.dumps(self.options | extra, sort_keys=True)


def cell_seed(seed: int, *parts: Any) -> int:
    """A seed for one cell, independent of which other cells ran before it."""
    digest = hashlib.sha256(json.dumps([seed, *map(str, parts)]).encode()).hexdigest()
    return int(digest[:8], 16)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """Predicted labels (on CPU) and the forward NFE of each batch (empty for non-ODE models)."""
    model.eval()
    preds, nfes = [], []
    for i in range(0, len(x), batch_size):
        preds.append(model(x[i : i + batch_size].to(device)).argmax(1).cpu())
        nfe = nfe_of(model)
        if nfe is not None:
            nfes.append(nfe["nfe_forward"])
    return torch.cat(preds), nfes


Progress = Callable[[int, int], None]


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
            batch_size: int, device: torch.device, progress: Progress | None = None) -> torch.Tensor:
    """Apply `fn(x_batch, y_batch)` on the device batch by batch; concatenate results on the CPU."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(fn(x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)).cpu())
        if progress:
            progress(min(i + batch_size, len(x)), len(x))
    return torch.cat(out) if out else torch.zeros(0)


class Runner:
    """Evaluates every (target, attack, ε) cell not yet in the store."""

    def __init__(self, store: ResultStore, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device, dataset_label: str, eps_scale: float = 1.0,
                 on_cell: Callable[[str], None] | None = None, progress: Progress | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.store, self.x, self.y = store, x, y
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.dataset_label, self.eps_scale = dataset_label, eps_scale
        self.on_cell = on_cell or (lambda _msg: None)
        self.progress = progress
        self.on_warning = on_warning or (lambda _msg: None)
        self._clean: dict[str, tuple[torch.Tensor, list[int]]] = {}

    def clean(self, target: Target) -> tuple[torch.Tensor, list[int]]:
        """Per-sample clean correctness and forward NFEs, cached per checkpoint."""
        if target.sha not in self._clean:
            pred, nfes = predict(target.model, self.x, self.batch_size, self.device)
            self._clean[target.sha] = (pred == self.y, nfes)
        return self._clean[target.sha]

    def _row(self, target: Target, spec: AttackSpec, attack: Attack, eps: float, source: Target | None) -> dict[str, Any]:
        return {
            "dataset": self.dataset_label,
            "model": target.name,
            "architecture": target.meta["model"],
            "training": target.meta.get("method", "standard"),
            "checkpoint": str(target.path),
            "checkpoint_sha": target.sha,
            "source": source.name if source else "",
            "source_sha": source.sha if source else "",
            "attack": spec.name,
            "attack_args": spec.args_text,
            "norm": attack.norm,
            "eps": float(eps),
            "eps_scale": self.eps_scale,
            "n": len(self.y),
            "seed": self.seed,
        }

    def run(self, targets: list[Target], specs: list[AttackSpec], eps_list: list[float],
            source: Target | None = None) -> list[dict[str, Any]]:
        """Run all cells (skipping finished ones); return the rows of this grid."""
        rows = []
        for target in targets:
            for spec in specs:
                attack = spec.build()
                todo = [e for e in eps_list if not self.store.has(self._row(target, spec, attack, e, source))]
                if todo:
                    if attack.kind == "minimal":
                        self.store.add(self._minimal_cells(target, spec, todo, source))
                    else:
                        for eps in todo:
                            self.store.add([self._bounded_cell(target, spec, eps, source)])
                series = [self.store.get(self._row(target, spec, attack, e, source)) for e in eps_list]
                warning = looks_masked(series, num_classes=target.meta["dataset_info"]["num_classes"])
                if warning:
                    self.on_warning(f"{target.name} · {spec.name}: {warning}")
                rows += series
        return rows

    def _finish(self, row: dict[str, Any], correct: torch.Tensor, robust: torch.Tensor, attack: Attack,
                nfes: list[int], t0: float) -> dict[str, Any]:
        row.update(
            clean_acc=round(correct.float().mean().item(), 6),
            robust_acc=round((correct & robust).float().mean().item(), 6),
            grad_calls=int(attack.grad_calls),
            queries=int(attack.queries),
            nfe_forward=round(sum(nfes) / len(nfes), 1) if nfes else "",
            wall_s=round(time.perf_counter() - t0, 3),
        )
        return row

    def _craft(self, attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return batched(lambda xb, yb: attack(model, xb, yb, eps), x, y, self.batch_size, self.device, self.progress)

    def _bounded_cell(self, target: Target, spec: AttackSpec, eps: float, source: Target | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, source.sha if source else "", spec.name, spec.args_text, eps))
        attack = spec.build()
        row = self._row(target, spec, attack, eps, source)
        self.on_cell(f"{target.name} · {spec.name} · ε={eps * self.eps_scale:g}" + (f" (from {source.name})" if source else ""))
        correct, nfes = self.clean(target)
        robust = correct.clone()
        if eps > 0:
            if source is None:
                idx = torch.nonzero(correct).flatten()  # misclassified samples need no attack
                x_adv = self._craft(attack, spec.crafting_model(target.model), self.x[idx], self.y[idx], eps)
                pred, _ = predict(target.model, x_adv, self.batch_size, self.device)
                robust[idx] = pred == self.y[idx]
            else:
                x_adv = self._craft(attack, spec.crafting_model(source.model), self.x, self.y, eps)
                pred, _ = predict(target.model, x_adv, self.batch_size, self.device)
                robust = pred == self.y
        return self._finish(row, correct, robust, attack, nfes, t0)

    def _minimal_cells(self, target: Target, spec: AttackSpec, eps_todo: list[float],
                       source: Target | None) -> list[dict[str, Any]]:
        """A minimisation attack runs once; accuracy at ε is the share whose smallest perturbation > ε."""
        if source is not None:
            raise UserError(f"attack '{spec.name}' is a minimisation attack and has no transfer mode")
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, spec.name, spec.args_text))
        attack = spec.build()
        self.on_cell(f"{target.name} · {spec.name} (minimal perturbation search)")
        correct, nfes = self.clean(target)
        idx = torch.nonzero(correct).flatten()
        dist = torch.full((len(self.y),), 0.0)
        dist[idx] = batched(lambda xb, yb: attack.min_perturbation(target.model, xb, yb), self.x[idx], self.y[idx],
                            self.batch_size, self.device, self.progress)
        rows = []
        for eps in eps_todo:
            row = self._row(target, spec, attack, eps, source)
            rows.append(self._finish(row, correct, dist > eps, attack, nfes, t0))
        return rows

"""The attack runner: checkpoints x attacks x ε grid -> result rows in a resumable store.

Robust accuracy counts a sample only if it is classified correctly on the clean input *and* on the
adversarial one. Samples already misclassified are not attacked. Every cell gets its own seed
derived from (seed, cell), so a resumed run and an uninterrupted one produce identical tables.

Verdicts that cannot be inflated:
- Every count is made by the model's *decision*: batched where the model is batch-independent,
  one image at a time where it is not (an adaptive ODE on torchdiffeq, whose step size is shared
  by the batch) or where it is random (`--eot`). Adaptive ODEs are evaluated with the torchode
  backend (a step size per sample) unless the job asks otherwise.
- Verify before counting: a point the attack called adversarial (`Attack.claimed`) that the
  decision does not find adversarial is counted in `unverified` and attacked further, alone (so
  the attack's own checks are the decision), with other seeds; it is never counted robust on
  the strength of the attack's first claim.
- Minimisation attacks (Boundary): a sample for which no adversarial start was found
  (`failed_starts`) is not robust at any radius; it is reported in its own column.
- Transfer: the source attack runs its whole budget (no early stop) on every sample the target
  classifies correctly, whether or not the source does.
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

from ..attacks.base import Attack, eval_mode
from ..attacks.gradient_from import GradientFrom
from ..audit.masking import looks_masked
from ..checkpoint import load_checkpoint
from ..errors import UserError
from ..models.ode_block import ODEBlock, is_fixed_step
from ..models.base import batch_dependent, nfe_of, parse_solver_spec, solver_surrogate, use_ode_backend
from ..registry import ATTACKS
from ..runinfo import seed_everything
from .store import ResultStore


@dataclass
class Target:
    """A loaded checkpoint to attack (or to craft transfer examples on)."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    ode_backend: str = ""  # the backend of its adaptive ODE blocks ('' without any)

    @property
    def sha(self) -> str:
        return self.meta["weights_sha256"][:16]

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path, device: torch.device, ode_backend: str = "torchode") -> "Target":
        """Load a checkpoint; adaptive ODE blocks integrate with `ode_backend` ('model': as trained)."""
        model, meta = load_checkpoint(path, device)
        return cls(Path(path), model, meta, ode_backend_of(model, ode_backend))


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


ODE_BACKENDS = ("torchode", "torchdiffeq", "model")
VERIFY_ROUNDS = 3  # further attacks on a point that failed re-checking, each alone with a new seed


def ode_backend_of(model: nn.Module, backend: str) -> str:
    """Switch the adaptive ODE blocks of `model` to `backend` (unless 'model'); return the one in use.

    '' for a model without adaptive ODE blocks (nothing to choose).
    """
    if backend not in ODE_BACKENDS:
        raise UserError(f"--ode-backend must be one of {', '.join(ODE_BACKENDS)}, got '{backend}'")
    if backend != "model":
        use_ode_backend(model, backend)
    blocks = [m.config for m in model.modules() if isinstance(m, ODEBlock)]
    adaptive = sorted({c.backend for c in blocks if not is_fixed_step(c.solver)})
    return ",".join(adaptive)


def cell_seed(seed: int, *parts: Any) -> int:
    """A seed for one cell, independent of which other cells ran before it."""
    digest = hashlib.sha256(json.dumps([seed, *map(str, parts)]).encode()).hexdigest()
    return int(digest[:8], 16)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
            per_sample: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Predicted labels (on CPU) and the forward NFE of each batch (empty for non-ODE models).

    `per_sample` decides one image at a time (for models whose output depends on the batch).
    """
    model.eval()
    preds, nfes = [], []
    batch_size = 1 if per_sample else batch_size
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
        """Per-sample clean correctness (the model's decision) and forward NFEs, cached per checkpoint."""
        if target.sha not in self._clean:
            pred, nfes = predict(target.model, self.x, self.batch_size, self.device, batch_dependent(target.model))
            self._clean[target.sha] = (pred == self.y, nfes)
        return self._clean[target.sha]

    def decide(self, target: Target, spec: AttackSpec, x: torch.Tensor) -> torch.Tensor:
        """The model's reported decision on `x`: one image at a time where batches could change it."""
        per_sample = batch_dependent(target.model) or spec.eot > 1
        return predict(target.model, x, self.batch_size, self.device, per_sample)[0]

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
            "ode_backend": target.ode_backend,
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
                            self.store.add([self.bounded_cell(target, spec, eps, source)[0]])
                series = [self.store.get(self._row(target, spec, attack, e, source)) for e in eps_list]
                warning = looks_masked(series, num_classes=target.meta["dataset_info"]["num_classes"])
                if warning:
                    self.on_warning(f"{target.name} · {spec.name}: {warning}")
                rows += series
        return rows

    def _finish(self, row: dict[str, Any], correct: torch.Tensor, robust: torch.Tensor, attack: Attack,
                nfes: list[int], t0: float, unverified: int | str = 0) -> dict[str, Any]:
        stats = dict(attack.stats)
        failed = stats.pop("failed_starts", 0) if attack.kind == "minimal" else ""
        row.update(
            clean_acc=round(correct.float().mean().item(), 6),
            robust_acc=round((correct & robust).float().mean().item(), 6),
            unverified=unverified,
            failed_starts=failed,
            attack_stats=json.dumps(stats, sort_keys=True) if stats else "",
            grad_calls=int(attack.grad_calls),
            queries=int(attack.queries),
            nfe_forward=round(sum(nfes) / len(nfes), 1) if nfes else "",
            wall_s=round(time.perf_counter() - t0, 3),
        )
        return row

    def _craft(self, attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Adversarial points batch by batch, and the mask of those the attack claimed adversarial."""
        claims: list[torch.Tensor] = []

        def one_batch(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            x_adv = attack(model, xb, yb, eps)
            claimed = attack.claimed if attack.claimed is not None else torch.zeros(len(xb), dtype=torch.bool)
            claims.append(claimed.cpu())
            return x_adv

        x_adv = batched(one_batch, x, y, self.batch_size, self.device, self.progress)
        return x_adv, (torch.cat(claims) if claims else torch.zeros(0, dtype=torch.bool))

    def bounded_cell(self, target: Target, spec: AttackSpec, eps: float,
                     source: Target | None = None) -> tuple[dict[str, Any], torch.Tensor]:
        """One bounded cell: its result row and the per-sample verdict it counts (correct and robust)."""
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, source.sha if source else "", spec.name, spec.args_text, eps))
        attack = spec.build()
        row = self._row(target, spec, attack, eps, source)
        self.on_cell(f"{target.name} · {spec.name} · ε={eps * self.eps_scale:g}" + (f" (from {source.name})" if source else ""))
        correct, nfes = self.clean(target)
        robust = correct.clone()
        unverified: int | str = 0 if source is None else ""
        if eps > 0:
            idx = torch.nonzero(correct).flatten()  # misclassified samples need no attack
            x, y = self.x[idx], self.y[idx]
            if source is None:
                x_adv, claimed = self._craft(attack, spec.crafting_model(target.model), x, y, eps)
                fooled = self.decide(target, spec, x_adv) != y
                failed = torch.nonzero(claimed & ~fooled).flatten()
                unverified = len(failed)
                if unverified:
                    self._attack_further(attack, spec, target, x, y, x_adv, fooled, failed, eps)
            else:
                attack.early_stop = False  # the whole budget on every sample: see the module docstring
                x_adv, _ = self._craft(attack, spec.crafting_model(source.model), x, y, eps)
                fooled = self.decide(target, spec, x_adv) != y
            robust[idx] = ~fooled
        return self._finish(row, correct, robust, attack, nfes, t0, unverified), correct & robust

    def _attack_further(self, attack: Attack, spec: AttackSpec, target: Target, x: torch.Tensor, y: torch.Tensor,
                        x_adv: torch.Tensor, fooled: torch.Tensor, failed: torch.Tensor, eps: float) -> None:
        """Re-attack each point that failed re-checking on its own, with new seeds; update in place.

        Alone in its batch, the attack's success checks see exactly the decision that counts.
        """
        model = spec.crafting_model(target.model)
        base_seed = getattr(attack, "seed", None)
        for i in failed.tolist():
            for r in range(1, VERIFY_ROUNDS + 1):
                if base_seed is not None:
                    attack.seed = base_seed + r
                xi = attack(model, x[i : i + 1].to(self.device), y[i : i + 1].to(self.device), eps).cpu()
                if bool(self.decide(target, spec, xi)[0] != y[i]):
                    x_adv[i], fooled[i] = xi[0], True
                    break
        if base_seed is not None:
            attack.seed = base_seed

    def _minimal_cells(self, target: Target, spec: AttackSpec, eps_todo: list[float],
                       source: Target | None) -> list[dict[str, Any]]:
        """A minimisation attack runs once; accuracy at ε is the share whose smallest perturbation > ε.

        Each found point is re-checked by the decision (one that fails is searched again alone);
        a sample with no adversarial start (distance inf) is robust at no radius.
        """
        if source is not None:
            raise UserError(f"attack '{spec.name}' is a minimisation attack and has no transfer mode")
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, spec.name, spec.args_text))
        attack = spec.build()
        attack.pool = (self.x.to(self.device), self.y.to(self.device))  # dataset-based starts
        self.on_cell(f"{target.name} · {spec.name} (minimal perturbation search)")
        correct, nfes = self.clean(target)
        idx = torch.nonzero(correct).flatten()
        x, y = self.x[idx], self.y[idx]
        points: list[torch.Tensor] = []

        def one_batch(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with eval_mode(target.model):
                x_adv, norms = attack.minimal(target.model, xb, yb)
            points.append(x_adv.cpu())
            return norms

        found = batched(one_batch, x, y, self.batch_size, self.device, self.progress)
        x_adv = torch.cat(points) if points else x.clone()
        finite = torch.isfinite(found)
        failed = torch.nonzero(finite & (self.decide(target, spec, x_adv) == y)).flatten()
        for i in failed.tolist():  # a point the decision does not confirm: search again on its own
            with eval_mode(target.model):
                xi, ni = attack.minimal(target.model, x[i : i + 1].to(self.device), y[i : i + 1].to(self.device))
            ok = torch.isfinite(ni[0]) and bool(self.decide(target, spec, xi.cpu())[0] != y[i])
            found[i] = ni[0].cpu() if ok else torch.inf
        dist = torch.full((len(self.y),), 0.0)
        dist[idx] = found.float()
        rows = []
        for eps in eps_todo:
            row = self._row(target, spec, attack, eps, source)
            robust = (dist > eps) & torch.isfinite(dist)  # no start found: not robust, see failed_starts
            rows.append(self._finish(row, correct, robust, attack, nfes, t0, len(failed)))
        return rows

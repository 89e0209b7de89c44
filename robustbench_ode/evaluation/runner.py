"""The attack runner: checkpoints x attacks x ε grid -> result rows in a resumable store.

Robust accuracy counts a sample only if it is classified correctly on the clean input *and* on the
adversarial one. Samples already misclassified are not attacked. The run's seed reaches every
random number: an attack draws per sample from (its own `seed` option, the run's seed, the
sample; `Runner.build`), and each cell seeds the global RNG (random models) from (seed, cell), so
a resumed run and an uninterrupted one produce identical tables and another seed is another draw.

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
  classifies correctly (in a nested grid: that no smaller radius broke), whether or not the source
  does.

Nested ε grids (the default for bounded attacks): a sample broken at ε1 is broken at every larger
radius, so each radius attacks only the samples the smaller radii of the grid left robust, and
"robust at ε" is "survived this attack at every radius <= ε of the grid"; each cell keeps its own
seed, so the smallest radius gives the number an independent cell gives. The per-sample verdicts a
chain depends on are kept for an exact resume (`evaluation.nested`). Minimisation attacks are
nested by construction (one search per grid). `Runner.run(..., nested=False)` attacks every radius
independently; the CSV's `eps_mode` says which, and is part of a cell's key.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable

import torch
from torch import nn

from ..attacks.base import Attack, eval_mode
from ..attacks.sampling import with_run_seed
from ..errors import UserError
from ..models.base import batch_dependent
from ..precision import FP32, Precision
from ..runinfo import seed_everything
from .request import AttackSpec
from .target import Target
from .masking import looks_masked, noise_tolerance
from .nested import INDEPENDENT, NESTED, chain_path, data_sha, load_chain, same_radius, save_chain
from .store import CELL_COLUMNS, OUTCOME_COLUMNS, ResultStore, schema_row
from .worst_case import keep_verdict, load_verdict, worst_case_row
from .verdict import VERIFY_ROUNDS, Cost, Progress, batched, on_shards, predict, robust_mask


def cell_seed(seed: int, *parts: Any) -> int:
    """A seed for one cell, independent of which other cells ran before it."""
    digest = hashlib.sha256(json.dumps([seed, *map(str, parts)]).encode()).hexdigest()
    return int(digest[:8], 16)


class Runner:
    """Evaluates every (target, attack, ε) cell not yet in the store."""

    def __init__(self, store: ResultStore, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device, dataset_label: str, eps_scale: float = 1.0,
                 on_cell: Callable[[str], None] | None = None, progress: Progress | None = None,
                 on_warning: Callable[[str], None] | None = None, precision: Precision = FP32,
                 on_note: Callable[[str], None] | None = None, *,
                 alone: Callable[[nn.Module], bool] = batch_dependent, verify_rounds: int = VERIFY_ROUNDS) -> None:
        self.store, self.x, self.y = store, x, y
        self.alone = alone  # which models are judged one image at a time (default: those a batch can sway)
        self.verify_rounds = verify_rounds  # further attacks on a claimed point its re-check did not confirm
        self.precision = precision  # of gradients only; every decision is the fp32 model's
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.dataset_label, self.eps_scale = dataset_label, eps_scale
        self.on_cell = on_cell or (lambda _msg: None)
        self.progress = progress
        self.on_warning = on_warning or (lambda _msg: None)
        self.on_note = on_note or (lambda _msg: None)  # what was not done and why (cells reused)
        self._clean: dict[str, tuple[torch.Tensor, list[int]]] = {}
        self._data_sha = ""

    def clean(self, target: Target) -> tuple[torch.Tensor, list[int]]:
        """Per-sample clean correctness (the model's decision) and forward NFEs, cached per model."""
        key = f"{target.sha}:{target.code_sha}"
        if key not in self._clean:
            pred, nfes = predict(target.model, self.x, self.batch_size, self.device, self.alone(target.model))
            self._clean[key] = (pred == self.y, nfes)
            self._warn_if_at_chance(target, pred)
        return self._clean[key]

    def _warn_if_at_chance(self, target: Target, pred: torch.Tensor) -> None:
        """A model whose clean accuracy is at chance is not the model meant (weights that did not
        load, another dataset than it was trained on, a model random at evaluation): say so once."""
        classes = int(target.meta["dataset_info"]["num_classes"])
        acc = (pred == self.y).float().mean().item()
        if acc <= 1 / classes + noise_tolerance(1 / classes, len(self.y)):
            self.on_warning(f"{target.name}: clean accuracy {acc:.1%} on {self.dataset_label} is at chance "
                            f"({1 / classes:.0%}): are these the weights and the dataset it was trained for?")

    def decide(self, target: Target, spec: AttackSpec, x: torch.Tensor) -> torch.Tensor:
        """The model's reported decision on `x`: one image at a time where batches could change it."""
        per_sample = self.alone(target.model) or spec.eot > 1
        return predict(target.model, x, self.batch_size, self.device, per_sample)[0]

    def build(self, spec: AttackSpec) -> Attack:
        """`spec`'s attack, its random numbers drawn from the run's seed as well as its own
        (`attacks.sampling.with_run_seed`): another `--seed` is another draw of every random start,
        transform, probe and proposal."""
        attack = spec.build()
        if isinstance(getattr(attack, "seed", None), int):
            return attack.with_options(seed=with_run_seed(attack.seed, self.seed))
        return attack

    def _row(self, target: Target, spec: AttackSpec, attack: Attack, eps: float, source: Target | None,
             eps_mode: str) -> dict[str, Any]:
        return schema_row(CELL_COLUMNS, {
            "dataset": self.dataset_label,
            "model": target.name,
            "architecture": target.meta["model"],
            "training": target.meta.get("method", "standard"),
            "checkpoint": str(target.path),
            "checkpoint_sha": target.sha,
            "code_sha": target.code_sha,
            "source": source.name if source else "",
            "source_sha": source.sha if source else "",
            "attack": spec.name,
            "attack_args": spec.args_text,
            "norm": attack.norm,
            "ode_backend": target.ode_backend,
            "precision": self.gradient_precision(spec, source or target).name,
            "eps": float(eps),
            "eps_mode": eps_mode,
            "eps_scale": self.eps_scale,
            "n": len(self.y),
            "seed": self.seed,
        })

    def gradient_precision(self, spec: AttackSpec, crafter: Target) -> Precision:
        """What the attack's gradients run in: the runner's precision where the attack uses
        gradients and the crafting model allows it (adaptive ODEs stay fp32), else fp32."""
        if not spec.uses_gradients:
            return FP32
        return self.precision.for_model(crafter.model)

    def run(self, targets: list[Target], specs: list[AttackSpec], eps_list: list[float],
            source: Target | None = None, nested: bool = True) -> list[dict[str, Any]]:
        """Run all cells (skipping finished ones); return the rows of this grid.

        `nested`: a bounded attack's larger radii attack only the samples its smaller radii left
        robust (see the module docstring); False attacks every radius independently.
        """
        rows = []
        for target in targets:
            members = []
            for spec in specs:
                attack = self.build(spec)
                mode = NESTED if nested or attack.kind == "minimal" else INDEPENDENT
                keys = [self._row(target, spec, attack, e, source, mode) for e in eps_list]
                todo = [e for e, key in zip(eps_list, keys) if not self.store.has(key)]
                if not todo:
                    self.on_note(f"{target.name} · {spec.name}: {len(keys)} finished cell{'s' * (len(keys) > 1)} "
                                 f"reused from {self.store.path.name}")
                if attack.kind == "minimal":
                    for row, robust in self._minimal_cells(target, spec, todo, source) if todo else []:
                        self._add(row, robust)
                elif nested:
                    self._nested_cells(target, spec, keys, source)
                else:
                    for eps in todo:
                        self._add(*self.bounded_cell(target, spec, eps, source))
                series = [self.store.get(key) for key in keys]
                warning = looks_masked(series, num_classes=target.meta["dataset_info"]["num_classes"])
                if warning:
                    self.on_warning(f"{target.name} · {spec.name}: {warning}")
                rows += series
                members.append(series)
            rows += self._worst_cases(target, members)
        return rows

    @property
    def data(self) -> str:
        """A hash of the test images and labels (what stored verdicts and chains belong to)."""
        if not self._data_sha:
            self._data_sha = data_sha(self.x, self.y)
        return self._data_sha

    def _add(self, row: dict[str, Any], robust: torch.Tensor) -> None:
        """Store a finished cell's row and its per-sample verdict (for the worst-case row)."""
        self.store.add([row])
        keep_verdict(self.store.path.parent, ResultStore.key(row), self.data, row["eps"], robust)

    def _worst_cases(self, target: Target, members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One `worst case` row per ε and norm run by two attacks or more (`worst_case`): a sample
        is robust only if every attack left it so. An ε whose member lacks a stored verdict
        (results written before verdicts were kept) gets none, with a warning."""
        cells: dict[tuple, list[dict[str, Any]]] = {}
        for series in members:
            for row in series:
                cells.setdefault((row["norm"], round(float(row["eps"]), 10)), []).append(row)
        rows = []
        for (norm, eps), group in cells.items():
            if len(group) < 2:
                continue
            masks = [load_verdict(self.store.path.parent, ResultStore.key(r), self.data) for r in group]
            if any(m is None for m in masks):
                self.on_warning(f"{target.name}: no worst-case row at {norm} ε={eps:g}: a cell's per-sample verdicts "
                                "were not kept (results from an older odebench); rerun it into a new --out")
                continue
            row = worst_case_row(group, masks)  # type: ignore[arg-type]
            old = self.store.get(row)
            if old is None:
                self.store.add([row])
            elif float(old["robust_acc"]) != row["robust_acc"] or float(old["wall_s"]) != row["wall_s"]:
                self.store.replace(old, row)  # a member was recomputed
            else:
                row = old
            rows.append(row)
        return rows

    def _finish(self, row: dict[str, Any], correct: torch.Tensor, robust: torch.Tensor, attack: Attack, cost: Cost,
                nfes: list[int], t0: float, unverified: int | str = 0) -> dict[str, Any]:
        stats = dict(cost.stats)
        failed = stats.pop("failed_starts", 0) if attack.kind == "minimal" else ""
        row.update(schema_row(OUTCOME_COLUMNS, dict(
            clean_acc=round(correct.float().mean().item(), 6),
            robust_acc=round((correct & robust).float().mean().item(), 6),
            unverified=unverified,
            failed_starts=failed,
            attack_stats=json.dumps(stats, sort_keys=True) if stats else "",
            grad_calls=int(cost.grad_calls),
            queries=int(cost.queries),
            nfe_forward=round(sum(nfes) / len(nfes), 1) if nfes else "",
            wall_s=round(time.perf_counter() - t0, 3),
        )))
        return row

    def bounded_cell(self, target: Target, spec: AttackSpec, eps: float, source: Target | None = None,
                     alive: torch.Tensor | None = None,
                     eps_mode: str = INDEPENDENT) -> tuple[dict[str, Any], torch.Tensor]:
        """One bounded cell: its result row and the per-sample verdict it counts (correct and robust).

        `alive`: the samples to attack, a nested grid's survivors of its smaller radii; None: every
        correctly classified sample. `eps_mode` is what the row records.
        """
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, source.sha if source else "", spec.name, spec.args_text, eps))
        attack = self.build(spec)
        row = self._row(target, spec, attack, eps, source, eps_mode)
        self.on_cell(f"{target.name} · {spec.name} · ε={eps * self.eps_scale:g}" + (f" (from {source.name})" if source else ""))
        correct, nfes = self.clean(target)
        crafter = spec.crafting_model((source or target).model)
        precision = self.gradient_precision(spec, source or target)
        robust, unverified, cost = robust_mask(
            attack, precision.differentiated(crafter),
            lambda x_adv: self.decide(target, spec, x_adv), self.x, self.y, correct if alive is None else alive, eps,
            self.batch_size, self.device, rounds=self.verify_rounds, transfer=source is not None, progress=self.progress,
            further=crafter)
        return self._finish(row, correct, robust, attack, cost, nfes, t0, "" if source else unverified), robust

    def _nested_cells(self, target: Target, spec: AttackSpec, keys: list[dict[str, Any]],
                      source: Target | None) -> None:
        """A nested grid (`keys`: its cells' rows): reuse the stored chain's longest prefix that
        matches the ascending grid and has its rows; drop the series' rows above it (computed after
        other radii), then attack each remaining radius on the survivors of the one below."""
        keys = sorted(keys, key=lambda key: key["eps"])
        if not keys:
            return
        series = ResultStore.series_key(keys[0])
        path = chain_path(self.store.path.parent, target.sha, spec.name, series)
        stored = load_chain(path, self.data)
        done = 0
        while (done < min(len(keys), len(stored.radii)) and same_radius(stored.radii[done], keys[done]["eps"])
               and self.store.has(keys[done])):
            done += 1
        if done == len(keys):
            return
        chain = stored.prefix(done)
        floor = chain.radii[-1] if done else -1.0
        stale = [r for r in self.store.rows if ResultStore.series_key(r) == series
                 and round(float(r["eps"]), 10) > round(floor, 10)]
        if stale:
            self.store.remove(stale)
        alive = chain.masks[-1] if done else None  # the first radius attacks as an independent cell does
        for key in keys[done:]:
            row, alive = self.bounded_cell(target, spec, key["eps"], source, alive, NESTED)
            self._add(row, alive)
            chain.append(key["eps"], alive)
            save_chain(path, self.data, chain)

    def _minimal_cells(self, target: Target, spec: AttackSpec, eps_todo: list[float],
                       source: Target | None) -> list[tuple[dict[str, Any], torch.Tensor]]:
        """A minimisation attack runs once; accuracy at ε is the share whose smallest perturbation > ε
        (each row with its per-sample verdict).

        Each found point is re-checked by the decision (one that fails is searched again alone);
        a sample with no adversarial start (distance inf) is robust at no radius.
        """
        if source is not None:
            raise UserError(f"attack '{spec.name}' is a minimisation attack and has no transfer mode")
        t0 = time.perf_counter()
        seed_everything(cell_seed(self.seed, target.sha, spec.name, spec.args_text))
        attack = self.build(spec).with_options(pool=(self.x.to(self.device), self.y.to(self.device)))  # dataset starts
        self.on_cell(f"{target.name} · {spec.name} (minimal perturbation search)")
        correct, nfes = self.clean(target)
        idx = torch.nonzero(correct).flatten()

        def work(rows: torch.Tensor) -> tuple[torch.Tensor, int, Cost]:  # this process's share (on_shards)
            x, y = self.x[idx[rows]], self.y[idx[rows]]
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
            return found, len(failed), Cost.of(attack)

        found, failed, cost = on_shards(attack, target.model, len(idx), work)
        dist = torch.full((len(self.y),), 0.0)
        dist[idx] = found.float()
        rows = []
        for eps in eps_todo:
            row = self._row(target, spec, attack, eps, source, NESTED)
            robust = (dist > eps) & torch.isfinite(dist)  # no start found: not robust, see failed_starts
            rows.append((self._finish(row, correct, robust, attack, cost, nfes, t0, failed), correct & robust))
        return rows

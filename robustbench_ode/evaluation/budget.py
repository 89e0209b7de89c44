"""Attack-budget curves (`odebench converge`): robust accuracy as the attack budget grows.

For each checkpoint and ε a ladder of attacks runs in order of increasing strength (PGD-10 ...
AutoAttack). Each rung attacks only the samples that every earlier rung left robust, so the
point of a rung is the per-sample worst case over all rungs up to it: the curve cannot rise, and
a sample a cheap attack broke stays broken. Every rung is one bounded cell of the `Runner`, made
exactly as `odebench attack` makes it (same cell seed, the model's own batch-independent
decision, claimed points verified and attacked further); `Runner.bounded_cell` hands back the
per-sample verdict it counts.

Resume: after each rung the cumulative robust mask is written (atomically) to
`<out>/state/<checkpoint>-<backend>-eps<ε>-n<n>-s<seed>.safetensors` with the rungs that
produced it. A rerun reuses the longest prefix of rungs whose attacks and options match and
whose test images are the same, and runs the rest.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError, option
from ..ode_backends import DEFAULT_ODE_BACKEND
from ..precision import FP32, Precision, resolve_precision
from ..progress import SILENT, SILENT_BARS, Bars, Reporter
from ..report.budget import budget_markdown, budget_plot
from ..runinfo import atomic_write_text, provenance, shared
from .request import AttackSpec
from .runner import Runner
from .target import Target
from .session import append_provenance, load_evaluation
from .store import ResultStore


@dataclass(frozen=True)
class Budget:
    """One rung of the ladder: a label and a registered attack with its options.

    PGD rungs get their step size from the job (`step_size`), the other attacks adapt their own.
    Each rung has its own `seed` option so it never retraces the random starts of another.
    """

    label: str
    attack: str
    options: dict[str, Any] = field(default_factory=dict)

    def spec(self, eps: float, step_size: float | None) -> AttackSpec:
        """The attack spec at radius `eps`; PGD steps are `step_size`, or 2.5·ε/steps when None."""
        options = dict(self.options)
        if self.attack == "pgd":
            options["step_size"] = step_size if step_size is not None else 2.5 * eps / options.get("steps", 40)
        return AttackSpec.parse(self.attack, options)


LADDER: tuple[Budget, ...] = (
    Budget("pgd10", "pgd", {"steps": 10, "seed": 0}),
    Budget("pgd40", "pgd", {"steps": 40, "seed": 1}),
    Budget("pgd100", "pgd", {"steps": 100, "seed": 2}),
    Budget("pgd1000", "pgd", {"steps": 1000, "seed": 3}),
    Budget("pgd1000x5", "pgd", {"steps": 1000, "restarts": 5, "seed": 4}),
    Budget("apgd-ce", "apgd", {"seed": 5}),
    Budget("apgd-t", "apgd", {"targets": 9, "seed": 6}),
    Budget("autoattack", "autoattack", {"seed": 7}),
)
# AutoAttack's last two members as rungs of their own, with its settings (asked for by name, never by
# default): "...,apgd-ce,apgd-t,fab-t,square" runs every member of the standard ensemble once, each
# on the survivors of all earlier rungs, without the "autoattack" rung's second APGD-CE and APGD-T.
MEMBERS: tuple[Budget, ...] = (
    Budget("fab-t", "fab", {"targets": 9, "steps": 100, "seed": 8}),
    Budget("square", "square", {"queries": 5000, "p_init": 0.8, "seed": 9}),
)
_ORDER: tuple[Budget, ...] = LADDER[:-1] + MEMBERS + LADDER[-1:]


def parse_budgets(text: str | None) -> list[Budget]:
    """'pgd10,apgd-ce' -> those rungs in ladder order (None: every rung of LADDER; fab-t and square
    only when named)."""
    if text is None:
        return list(LADDER)
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    known = {b.label for b in _ORDER}
    unknown = sorted(names - known)
    if unknown:
        raise UserError(f"{option('budgets')}: unknown budget '{unknown[0]}' (choose from {', '.join(b.label for b in _ORDER)})")
    if not names:
        raise UserError(f"{option('budgets')} needs at least one budget")
    return [b for b in _ORDER if b.label in names]


def parse_step_size(text: str) -> float | None:
    """'0.01' (pixel units) or 'scaled' (2.5·ε/steps, returned as None)."""
    if text.strip().lower() == "scaled":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{option('step_size')} must be a number or 'scaled', got '{text}'") from None
    if not value > 0 or value == float("inf"):
        raise UserError(f"{option('step_size')} must be > 0, got {text}")
    return value


@dataclass
class BudgetJob:
    """What the user asked `odebench converge` to do."""

    checkpoints: list[Path]
    eps: list[float]
    out: Path
    budgets: list[Budget] = field(default_factory=lambda: list(LADDER))
    step_size: float | None = 0.01  # PGD rungs; None: 2.5·ε/steps
    eps_scale: float = 1.0
    n_samples: int = 1000
    batch_size: int = 250
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    ode_backend: str = DEFAULT_ODE_BACKEND
    precision: str = "auto"  # of the attacks' gradients: auto, fp32 or bf16 (decisions stay fp32)


@dataclass
class _Step:
    """A finished rung: what ran, the cumulative robust mask after it, and its cost."""

    label: str
    attack: str
    attack_args: str
    robust: torch.Tensor
    grad_calls: int
    queries: int
    unverified: int
    wall_s: float

    def same_rung(self, budget: Budget, spec: AttackSpec) -> bool:
        return (self.label, self.attack, self.attack_args) == (budget.label, spec.name, spec.args_text)


def _state_path(out: Path, target: Target, eps: float, n: int, seed: int, precision: str) -> Path:
    suffix = "" if precision == "fp32" else f"-{precision}"  # fp32 states keep their pre-precision names
    return out / "state" / f"{target.sha}-{target.ode_backend or 'none'}-eps{eps:.10g}-n{n}-s{seed}{suffix}.safetensors"


def _load_steps(path: Path, data_sha: str) -> list[_Step]:
    """Finished rungs stored at `path` for these test images ([] when absent, foreign or stale)."""
    if not path.is_file():
        return []
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("data_sha") != data_sha:
                return []
            return [_Step(robust=fh.get_tensor(f"step{i}").bool(), **info)
                    for i, info in enumerate(json.loads(meta["steps"]))]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return []


def _save_steps(path: Path, data_sha: str, steps: list[_Step]) -> None:
    """Write the finished rungs atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = [{k: v for k, v in s.__dict__.items() if k != "robust"} for s in steps]
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({f"step{i}": s.robust.contiguous() for i, s in enumerate(steps)}, str(tmp),
              metadata={"data_sha": data_sha, "steps": json.dumps(info)})
    shared(tmp).replace(path)


def _data_sha(x: torch.Tensor, y: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes() + y.contiguous().numpy().tobytes()).hexdigest()[:16]


class BudgetCurves:
    """Runs the ladder for every (checkpoint, ε) of a job on fixed test images."""

    def __init__(self, job: BudgetJob, x: torch.Tensor, y: torch.Tensor, device: torch.device, dataset_label: str,
                 bars: Bars = SILENT_BARS, precision: Precision = FP32) -> None:
        self.job, self.x, self.y, self.device, self.dataset_label = job, x, y, device, dataset_label
        self.precision = precision
        self.bars = bars  # one bar per rung: its samples attacked
        self.steps_log = ResultStore(job.out / "steps.csv")
        self.data_sha = _data_sha(x, y)
        # every rung runs on all samples (clean decisions cached per checkpoint), attacking the survivors
        self.runner = Runner(self.steps_log, x, y, job.batch_size, job.seed, device, dataset_label, job.eps_scale,
                             progress=bars.update, precision=precision)

    def curve(self, target: Target, eps: float) -> list[dict[str, Any]]:
        """The rows of one (checkpoint, ε) curve, running only the rungs not stored yet."""
        n = len(self.y)
        correct = self.runner.clean(target)[0]
        precision = self.precision.for_model(target.model).name
        path = _state_path(self.job.out, target, eps, n, self.job.seed, precision)
        stored = _load_steps(path, self.data_sha)
        steps: list[_Step] = []
        for i, budget in enumerate(self.job.budgets):
            spec = budget.spec(eps, self.job.step_size)
            if i < len(stored) and stored[i].same_rung(budget, spec):
                steps.append(stored[i])
                continue
            stored = []  # a rung that differs invalidates every stored rung after it
            steps.append(self._rung(target, budget, spec, eps, steps[-1].robust if steps else correct))
            _save_steps(path, self.data_sha, steps)
        rows, grad_calls, queries, previous = [], 0, 0, correct
        for step in steps:
            grad_calls, queries = grad_calls + step.grad_calls, queries + step.queries
            rows.append({
                "dataset": self.dataset_label, "model": target.name, "architecture": target.meta["model"],
                "checkpoint_sha": target.sha, "eps": float(eps), "eps_scale": self.job.eps_scale,
                "budget": step.label, "attack": step.attack, "attack_args": step.attack_args,
                "grad_calls": round(grad_calls / n, 2), "queries": round(queries / n, 2),
                "clean_acc": round(correct.float().mean().item(), 6),
                "robust_acc": round(step.robust.float().mean().item(), 6),
                "newly_broken": int((previous & ~step.robust).sum()), "unverified": step.unverified,
                "n": n, "seed": self.job.seed, "ode_backend": target.ode_backend, "precision": precision,
                "wall_s": step.wall_s,
            })
            previous = step.robust
        return rows

    def _rung(self, target: Target, budget: Budget, spec: AttackSpec, eps: float, robust: torch.Tensor) -> _Step:
        """Attack the samples `robust` marks with one rung; the new cumulative mask and its cost."""
        t0 = time.perf_counter()
        alive = torch.nonzero(robust).flatten()
        after, grad_calls, queries, unverified = robust.clone(), 0, 0, 0
        if len(alive):
            self.bars.start(f"{target.name} · ε={eps * self.job.eps_scale:g} · {budget.label} "
                            f"on {len(alive)} samples")
            # on the full sample set with only the survivors attacked, so each sample's random start
            # (seeded by its index in the evaluated set) is the one `odebench attack` gives it
            row, after = self.runner.bounded_cell(target, spec, eps, alive=robust)
            grad_calls, queries, unverified = row["grad_calls"], row["queries"], int(row["unverified"])
            self.steps_log.add([row | {"budget": budget.label, "attacked": len(alive)}])
        return _Step(budget.label, spec.name, spec.args_text, after, grad_calls, queries, unverified,
                     round(time.perf_counter() - t0, 3))


def run_budget_job(job: BudgetJob, reporter: Reporter = SILENT) -> tuple[list[dict[str, Any]], str]:
    """Run every curve of the job with one progress bar per rung; write budget.csv, budget.md,
    budget.png; report and return the rows and the Markdown."""
    if not job.budgets or len({b.label for b in job.budgets}) != len(job.budgets):
        raise UserError("the budgets must be at least one, with distinct labels")
    with reporter.bars() as bars:
        rows, text = _run_curves(job, bars)
    reporter.block(text)
    reporter.line(f"wrote {job.out / 'budget.csv'}, budget.md, budget.png (rung state in {job.out / 'state'})")
    return rows, text


def _run_curves(job: BudgetJob, bars: Bars) -> tuple[list[dict[str, Any]], str]:
    """Load the job's models and samples, record provenance, run every curve, write the files."""
    ev = load_evaluation(job.checkpoints, job.out, "budget.csv, budget.md and the plot", n_samples=job.n_samples,
                         batch_size=job.batch_size, device=job.device, data_dir=job.data_dir,
                         ode_backend=job.ode_backend)
    precision = resolve_precision(job.precision, ev.device)
    append_provenance(job.out, provenance(job.seed, ev.device) | {
        "checkpoints": [str(p) for p in job.checkpoints], "eps": job.eps, "eps_scale": job.eps_scale,
        "budgets": [{"label": b.label, "attack": b.attack, "options": b.options} for b in job.budgets],
        "step_size": job.step_size if job.step_size is not None else "2.5*eps/steps",
        "n_samples": len(ev.y), "batch_size": job.batch_size, "dataset": ev.info.to_dict(),
        "ode_backend": job.ode_backend, **precision.to_dict(),
    })
    curves = BudgetCurves(job, ev.x, ev.y, ev.device, ev.info.label, bars, precision)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode(False):
        for target in ev.targets:
            for eps in job.eps:
                rows += curves.curve(target, eps)
    return rows, write_budget_files(rows, job.out)


def write_budget_files(rows: list[dict[str, Any]], out: Path) -> str:
    """Write the curves' rows as budget.csv, budget.md and budget.png in `out`; return the Markdown."""
    df = pd.DataFrame(rows)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_text(out / "budget.csv", buf.getvalue())
    text = budget_markdown(df)
    atomic_write_text(out / "budget.md", text)
    budget_plot(df, out / "budget.png")
    return text

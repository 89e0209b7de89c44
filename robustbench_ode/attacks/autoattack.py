"""AutoAttack: the standard ensemble of Croce & Hein (2020), optionally with ODE-specific members."""
from __future__ import annotations

import time
from typing import Callable

from torch import Tensor, nn

from ..errors import UserError
from ..models.base import has_ode_solver, solver_surrogate
from ..registry import ATTACKS
from .apgd import APGD
from .base import Attack, check_positive
from .fab import FAB
from .gradient_from import GradientFrom
from .pgd import PGD
from .spsa import SPSA
from .square import Square

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
RAND = ("apgd-ce", "apgd-dlr")
VERSIONS = ("standard", "rand")
ODE_EXTRAS = ("pgd-surrogate", "spsa", "cw")

# a member: its name and, given eps, the attack and the model it runs on (None: skip it)
Member = tuple[str, Callable[[nn.Module, float], "tuple[Attack, nn.Module] | None"]]


def ode_decider(model: nn.Module) -> nn.Module | None:
    """The ODE model that decides: `model`, or the one a `GradientFrom` wraps; None without a solver."""
    base = model.model if isinstance(model, GradientFrom) else model
    return base if has_ode_solver(base) else None


def ode_horizon(model: nn.Module) -> float | None:
    """The integration end time t1 of the model's (first) ODE block, if it exposes one."""
    for module in model.modules():
        t1 = getattr(getattr(module, "config", None), "t1", None)
        if t1 is not None:
            return float(t1)
    return None


@ATTACKS.register("autoattack", "Croce & Hein 2020 AutoAttack (L∞): APGD-CE, APGD-T, FAB-T, Square (+ ODE extras); "
                  "version=rand: APGD-CE, APGD-DLR with EOT 20")
class AutoAttack(Attack):
    """AutoAttack (Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
    Diverse Parameter-free Attacks", ICML 2020), standard or rand version. Norm: L∞.

    Members run in turn, each only on the samples no earlier member broke (and that the clean
    input does not already fool). Standard version: APGD-CE (100 steps), APGD-T (targeted DLR,
    100 steps towards each of the 9 most likely wrong classes), FAB-T (targeted FAB, 100 steps per
    target, 9 targets) and Square (5,000 queries, p_init 0.8). Rand version, for models that are
    random at evaluation: APGD-CE and APGD-DLR (100 steps, 1 restart), every gradient the mean over
    `eot_iter` = 20 draws of the model (EOT). A sample is robust only if every member fails: the
    result is the per-sample worst case. Every member's point is re-checked on the model (a
    counted query) before it counts; `stats["broken_by_<member>"]` counts the samples each member
    newly broke and `stats["seconds_<member>"]` the wall-clock seconds it took (its re-check
    included), and the members' `grad_calls` / `queries` add up in the ensemble's. The ensemble's
    `eot` (the rand version's `eot_iter` unless set above 1) is passed on to its gradient members,
    `early_stop` to all of them.

    `ode_extras=True` adds, for Neural ODEs, the attacks Huang et al. ("Adversarial Robustness of
    Neural ODEs Under Scrutiny", MSML 2022) found to break ODE models PGD does not, again each on
    the samples still unbroken: "pgd-surrogate" (PGD whose gradients come from the same weights
    integrated by fixed-step rk4 while the model's own solver decides, `GradientFrom`; skipped
    on models without an ODE solver, counted in `stats["skipped_pgd-surrogate"]`), "spsa"
    (gradient-free SPSA) and "cw" (L∞ PGD on the Carlini-Wagner margin loss).

    Options:
        norm: "linf" only (APGD and Square here are L∞ attacks).
        version: "standard" (default) or "rand" (APGD-CE and APGD-DLR with EOT, for randomised models).
        eot_iter: the rand version's EOT draws per gradient (AutoAttack: 20); `--eot k` > 1 overrides it.
        apgd_steps: iterations of APGD-CE and of APGD-T per target (AutoAttack: 100).
        targets: target classes of APGD-T and FAB-T (AutoAttack: 9; 0 leaves both members out).
        fab_steps: FAB-T iterations per target (AutoAttack: 100).
        square_queries: Square's queries per sample (AutoAttack: 5000).
        seed: seed of every member's randomness (AutoAttack: 0).
        ode_extras: add pgd-surrogate, spsa and cw after the standard members (default False).
        surrogate_step: rk4 step of pgd-surrogate; 0 = t1/10 of the model's ODE block.
        extra_steps: PGD iterations of pgd-surrogate and cw (default 100).
        extra_step_size: their L∞ step as a fraction of eps (default 0.25).
        spsa_steps: SPSA's Adam steps (default 100).
        spsa_samples: SPSA's perturbation pairs per step (default 128).

    Example::

        x_adv = ATTACKS.get("autoattack").build()(model, x, y, eps=8 / 255)
        cheap = ATTACKS.get("autoattack").build(apgd_steps=20, targets=3, fab_steps=20, square_queries=500)
        rand = ATTACKS.get("autoattack").build(version="rand")  # odebench: --attack-arg version=rand
    """

    name = "autoattack"
    norm = "linf"
    batch_independent = True  # every member is (FAB-T runs one restart)

    def __init__(
        self,
        *,
        norm: str = "linf",
        version: str = "standard",
        eot_iter: int = 20,
        apgd_steps: int = 100,
        targets: int = 9,
        fab_steps: int = 100,
        square_queries: int = 5000,
        seed: int = 0,
        ode_extras: bool = False,
        surrogate_step: float = 0.0,
        extra_steps: int = 100,
        extra_step_size: float = 0.25,
        spsa_steps: int = 100,
        spsa_samples: int = 128,
    ) -> None:
        super().__init__()
        if norm != "linf":
            raise UserError(f"attack '{self.name}': norm must be linf (its APGD and Square members are L∞ "
                            f"attacks), got {norm!r}")
        if version not in VERSIONS:
            raise UserError(f"attack '{self.name}': version must be one of {', '.join(VERSIONS)}, got {version!r}")
        check_positive(self.name, eot_iter=eot_iter, apgd_steps=apgd_steps, fab_steps=fab_steps,
                       extra_steps=extra_steps, extra_step_size=extra_step_size, spsa_steps=spsa_steps,
                       spsa_samples=spsa_samples)
        if targets < 0:
            raise UserError(f"attack '{self.name}': targets must be >= 0, got {targets}")
        if surrogate_step < 0:
            raise UserError(f"attack '{self.name}': surrogate_step must be >= 0 (0 = t1/10), got {surrogate_step}")
        self.version = version
        self.eot_iter = eot_iter
        self.apgd_steps = apgd_steps
        self.targets = targets
        self.fab_steps = fab_steps
        self.square_queries = square_queries
        self.seed = seed
        self.ode_extras = ode_extras
        self.surrogate_step = surrogate_step
        self.extra_steps = extra_steps
        self.extra_step_size = extra_step_size
        self.spsa_steps = spsa_steps
        self.spsa_samples = spsa_samples
        Square(queries=square_queries)  # validate the budget now, not at the first call

    @property
    def eot(self) -> int:
        """Passes per gradient of the gradient members: as set (`--eot`), except that the rand
        version averages over `eot_iter` draws unless set above 1."""
        if self.version == "rand" and self._eot == 1:
            return self.eot_iter
        return self._eot

    @eot.setter
    def eot(self, passes: int) -> None:
        self._eot = passes

    def members(self) -> list[Member]:
        """The members in order, each a name and a factory (eps-dependent: the PGD steps)."""
        def same(attack: Attack) -> Callable[[nn.Module, float], tuple[Attack, nn.Module]]:
            return lambda model, eps: (attack, model)

        members: list[Member] = [("apgd-ce", same(APGD(steps=self.apgd_steps, loss="ce", seed=self.seed)))]
        if self.version == "rand":
            members.append(("apgd-dlr", same(APGD(steps=self.apgd_steps, loss="dlr", seed=self.seed))))
        elif self.targets > 0:
            members += [
                ("apgd-t", same(APGD(steps=self.apgd_steps, targets=self.targets, seed=self.seed))),
                ("fab-t", same(FAB(steps=self.fab_steps, targets=self.targets, seed=self.seed))),
            ]
        if self.version == "standard":
            members.append(("square", same(Square(queries=self.square_queries, p_init=0.8, seed=self.seed))))
        if self.ode_extras:
            members += [
                ("pgd-surrogate", self._surrogate_pgd),
                ("spsa", same(SPSA(steps=self.spsa_steps, samples=self.spsa_samples, seed=self.seed))),
                ("cw", lambda model, eps: (self._pgd(eps, "margin"), model)),
            ]
        return members

    def _pgd(self, eps: float, loss: str) -> PGD:
        return PGD(steps=self.extra_steps, step_size=self.extra_step_size * eps, seed=self.seed, loss=loss)

    def _surrogate_pgd(self, model: nn.Module, eps: float) -> tuple[Attack, nn.Module] | None:
        """PGD deciding with the ODE model and differentiating it through fixed-step rk4; None
        for a model without an ODE solver."""
        decider = ode_decider(model)
        if decider is None:
            return None
        step = self.surrogate_step
        if step == 0:
            t1 = ode_horizon(decider)
            if t1 is None:
                raise UserError(f"attack '{self.name}': cannot read t1 of {type(decider).__name__}'s ODE block; "
                                "set surrogate_step")
            step = t1 / 10
        surrogate = solver_surrogate(decider, solver="rk4", step_size=step, adjoint=False, max_nfe=0)
        return self._pgd(eps, "ce"), GradientFrom(decider, surrogate)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        record = self.track(model, x, y)
        last = x.clone()  # each sample's latest member point, for those no member breaks
        for name, make in self.members():
            idx = record.pending()
            t0 = time.perf_counter()
            built = make(model, eps)
            if built is None:
                self.count(f"skipped_{name}", len(idx))
                continue
            attack, attacked = built
            broken = 0
            if len(idx) > 0:
                eot = {"eot": self.eot} if attack.uses_gradients else {}
                attack = attack.with_options(early_stop=self.early_stop, **eot)
                x_m = attack(attacked, x[idx], y[idx], eps, ids=self.ids[idx.cpu()])
                self.grad_calls += attack.grad_calls
                self.queries += attack.queries
                ok = self.succeeded(self.logits(model, x_m), y[idx])
                last[idx] = x_m
                record.record(idx, x_m, ok)
                if not self.early_stop:  # a member's point that fools the model settles the sample
                    record.finish(idx[ok], x_m[ok])
                broken = int(ok.sum())
            self.count(f"broken_by_{name}", broken)
            seconds = self.stats.get(f"seconds_{name}", 0) + time.perf_counter() - t0
            self.stats[f"seconds_{name}"] = round(seconds, 3)  # type: ignore[assignment]
        idx = record.pending()
        record.finish(idx, last[idx])
        return record.x_adv

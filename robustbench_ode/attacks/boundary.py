"""Boundary Attack (Brendel et al. 2018) through Foolbox 3: decision-based, minimal L2."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..registry import ATTACKS
from .ball import lp_norm
from .base import Attack, FirstAdversarial, check_positive, eval_mode


class _Counted(nn.Module):
    """Forwards to `model` and adds each batch size to `attack.queries`."""

    def __init__(self, model: nn.Module, attack: Attack) -> None:
        super().__init__()
        self.model = model
        self.count = attack

    def forward(self, x: Tensor) -> Tensor:
        self.count.queries += len(x)
        return self.model(x)


@ATTACKS.register("boundary", "Brendel et al. 2018 Boundary Attack (Foolbox 3): decision-based, minimal L2")
class Boundary(Attack):
    """Boundary Attack (Brendel, Rauber & Bethge, "Decision-Based Adversarial Attacks: Reliable
    Attacks Against Black-Box Machine Learning Models", ICLR 2018), run by Foolbox 3's
    `BoundaryAttack`. Norm: L2. Kind: minimal.

    Only the model's decisions are used. The walk needs an adversarial start per sample:
    1. Foolbox's `LinearSearchBlendedUniformNoiseAttack` (uniform noise blended towards the image
       until the label flips; up to 1,000 noise draws, then 51 blends);
    2. where no noise draw is misclassified, a start from `pool` (Foolbox's `DatasetAttack` idea,
       done in torch): the pool image nearest in L2 among those whose label differs from the
       sample's and that the model classifies correctly, so it is misclassified w.r.t. the
       sample's label (re-checked with the model before use).
    From its start each sample walks along the decision boundary towards the image, shrinking
    the L2 distance; a walk never moves away from its start.

    `min_perturbation` gives the smallest norm found per sample: 0 where the clean input is
    already misclassified, and **inf where no start was found** (neither noise nor pool). inf
    means "not attacked", not "robust": the runner must NOT count such a sample robust at any
    radius. The uniform call returns the found point where its norm is <= eps and `x` elsewhere;
    `claimed` marks the returned points Foolbox found adversarial. `early_stop` does not apply
    (the search always returns its best point).

    `stats` (accumulated over calls, zeroed by `reset_counters()`):
        failed_starts: samples with no start at all (their distance is inf).
        pool_starts: samples whose start came from `pool` (the noise search failed for them).

    Cost: every model call is counted in `queries` (per sample). The walk's budget is `steps`
    (default 1,000, the paper's; Foolbox's own default is 25,000): about 1.1 queries per step
    (one per step plus one every 10th for the step-size statistics), fewer if all samples
    converge. On top: the noise search (Foolbox queries the whole batch for every draw, so one
    sample without a noise start costs every sample in its batch up to 1,051 queries), one
    start check per sample, and for pool starts the pool images classified (in distance order,
    each at most once per call; about one per such sample for an accurate model) plus one check.

    Foolbox draws from torch's global RNG, so it runs under a forked RNG seeded with `seed`:
    results repeat and the caller's random state is untouched (numpy's is not used; the pool
    start is deterministic). Foolbox's "failed to draw sufficient random inputs" warning is
    kept off the console: those samples are counted instead.

    Options (the paper's setting is the default):
        steps: iterations of the walk (Foolbox's `steps`), the attack's budget.
        spherical_step: the paper's "orthogonal" step size (Foolbox's `spherical_step`).
        source_step: the paper's "initial" step towards the original (Foolbox's `source_step`).
        seed: seed of the random start and proposals.

    Attribute:
        pool: None or (images in [0, 1] shaped like a batch, their int labels): where starts
            come from when the noise search fails; the runner gives it the evaluated test set
            (`attack.with_options(pool=...)`).

    Example::

        attack = ATTACKS.get("boundary").build(steps=1000).with_options(pool=(test_x, test_y))
        norms = attack.min_perturbation(model, x, y)     # (N,) L2 norms, inf: no start
        x_adv = attack(model, x, y, eps=2.0)             # uniform call, L2 radius
    """

    name = "boundary"
    uses_gradients = False
    norm = "l2"
    kind = "minimal"

    def __init__(
        self, *, steps: int = 1000, spherical_step: float = 0.1, source_step: float = 0.1, seed: int = 0
    ) -> None:
        super().__init__()
        check_positive(self.name, steps=steps, spherical_step=spherical_step, source_step=source_step)
        self.steps = steps
        self.spherical_step = spherical_step
        self.source_step = source_step
        self.seed = seed
        self.pool: tuple[Tensor, Tensor] | None = None

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        x_adv, norms = self.minimal(model, x, y)
        inside = norms <= eps
        if self._record is not None:
            self._record.claimed = inside.clone()
        return torch.where(inside.view(-1, *([1] * (x.dim() - 1))), x_adv, x)

    def min_perturbation(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Smallest L2 norm (N,) of an adversarial found per sample (0: already wrong, inf: no start)."""
        with eval_mode(model):
            return self.minimal(model, x.detach(), y.detach())[1]

    def minimal(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Adversarial points and their L2 norms; `x` and inf where no start was found.

        The model must already be in eval mode (the uniform call and `min_perturbation` see to it).
        """
        import foolbox as fb  # imported here: heavy, and only this attack needs it

        record = FirstAdversarial(x)  # always early-stopping: a minimal search keeps its best point
        record.record(torch.arange(len(x), device=x.device), x, self.succeeded(self.logits(model, x), y))
        self._record = record
        norms = torch.where(record.found, 0.0, torch.inf).to(x.device)
        self.count("failed_starts", 0)
        self.count("pool_starts", 0)
        idx = record.pending()
        if len(idx) == 0:
            return record.x_adv, norms
        fmodel = fb.PyTorchModel(_Counted(model, self).eval(), bounds=(0, 1), device=x.device)
        x0, y0 = x[idx], y[idx]
        devices = [x.get_device()] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            torch.manual_seed(self.seed)
            # samples without a noise start are counted below (pool_starts / failed_starts)
            warnings.filterwarnings("ignore", message=".*failed to draw sufficient random inputs.*")
            starts = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50).run(
                fmodel, x0, fb.criteria.Misclassification(y0)
            )
            ok = self.succeeded(self.logits(model, starts), y0)
            need = torch.nonzero(~ok).flatten()
            if len(need) and self.pool is not None:
                pool_x, got = self._pool_starts(model, x0[need], y0[need], batch=len(x))
                sel = need[got]
                if len(sel):
                    verified = self.succeeded(self.logits(model, pool_x[got]), y0[sel])
                    starts[sel[verified]] = pool_x[got][verified]
                    ok[sel[verified]] = True
                    self.count("pool_starts", int(verified.sum()))
            self.count("failed_starts", int((~ok).sum()))
            if not ok.any():
                return record.x_adv, norms
            attack = fb.attacks.BoundaryAttack(
                steps=self.steps, spherical_step=self.spherical_step, source_step=self.source_step
            )
            advs = attack.run(fmodel, x0[ok], fb.criteria.Misclassification(y0[ok]), starting_points=starts[ok])
        record.x_adv[idx[ok]] = advs
        record.claimed[idx[ok]] = True
        norms[idx[ok]] = lp_norm(advs - x0[ok], "l2")
        return record.x_adv, norms

    def _pool_starts(self, model: nn.Module, x: Tensor, y: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """Per sample, the nearest (L2) pool image of another label that the model classifies
        correctly; returns the starts (`x` where none) and the mask of samples that got one.

        Pool images are classified lazily in distance order (chunks doubling from 1, forwards of
        at most `batch` images), each at most once per call, all counted in `queries`.
        """
        assert self.pool is not None
        px, py = self.pool
        px, py = px.to(x.device, x.dtype), py.to(x.device).long()
        if px.shape[1:] != x.shape[1:] or py.shape != (len(px),):
            raise ValueError(
                f"boundary pool of images {tuple(px.shape)} and labels {tuple(py.shape)} does not match "
                f"inputs of shape {tuple(x.shape[1:])}"
            )
        starts, choice = x.clone(), torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        if len(px) == 0:
            return starts, choice >= 0
        dist = torch.cdist(x.flatten(1), px.flatten(1))
        dist[py[None, :] == y[:, None]] = torch.inf
        order = dist.argsort(dim=1, stable=True)
        eligible = torch.isfinite(dist).sum(dim=1)
        correct = torch.full((len(px),), -1, dtype=torch.int8, device=x.device)  # -1: not asked yet
        start, width = 0, 1
        while True:
            rows = torch.nonzero((choice < 0) & (eligible > start)).flatten()
            if len(rows) == 0:
                break
            cols = order[rows, start : start + width]
            valid = torch.arange(start, start + cols.shape[1], device=x.device)[None, :] < eligible[rows, None]
            todo = torch.unique(cols[valid & (correct[cols] < 0)])
            for chunk in todo.split(max(1, batch)):
                wrong = self.succeeded(self.logits(model, px[chunk]), py[chunk])
                correct[chunk] = (~wrong).to(torch.int8)
            hit = valid & (correct[cols] == 1)
            has = hit.any(dim=1)
            first = hit.to(torch.int8).argmax(dim=1)
            choice[rows[has]] = cols[has, first[has]]
            start, width = start + cols.shape[1], width * 2
        found = choice >= 0
        starts[found] = px[choice[found]]
        return starts, found

"""The claims ledger: one TOML file per published robustness claim (`claims/published/*.toml`).

A claim names the paper, the registered architecture its released weights load into, where those
weights are published and the SHA-256 of the released file, the dataset and how the paper picked
its test images, the threat model, and the published numbers with the attack settings that gave
them. Released weights are never part of the ledger: it says where users download them.

Each file is data only; `load_claim` validates it and raises a UserError naming the file and the
field for anything missing or malformed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..runinfo import read_toml

if TYPE_CHECKING:  # reading the ledger needs no torch (`odebench claims` answers at once)
    import torch

LEDGER = Path(__file__).with_name("published")
SAMPLINGS = ("numpy-choice", "first", "balanced")
KINDS = ("empirical", "certified")


@dataclass(frozen=True)
class PublishedNumber:
    """One published robust accuracy (percent) under `attack` (a registered attack) at L∞ radius `eps`."""

    attack: str
    eps: float
    robust_acc: float
    options: dict[str, Any] = field(default_factory=dict)
    setting: str = ""  # how the paper ran the attack, in words


@dataclass(frozen=True)
class Weights:
    """Where the released weights live; the ledger never holds them."""

    repository: str
    file: str
    url: str
    sha256: str
    licence: str


@dataclass(frozen=True)
class Sampling:
    """How the paper chose its test images from the test split.

    numpy-choice: `np.random.seed(seed); np.random.choice(N, n + skip, replace=False)[skip:]`, as
    Yan et al.'s `adversarial_attack` does; first: the first n; balanced: odebench's class-balanced n.
    """

    method: str
    n: int
    seed: int = 0
    skip: int = 0

    def indices(self, labels: torch.Tensor) -> torch.Tensor:
        """The chosen test indices, in the paper's order."""
        import numpy as np
        import torch

        total = len(labels)
        if self.n + self.skip > total:
            raise UserError(f"the protocol needs {self.n + self.skip} test images; the test split has {total}")
        if self.method == "numpy-choice":
            picked = np.random.RandomState(self.seed).choice(total, self.n + self.skip, replace=False)[self.skip:]
            return torch.from_numpy(picked.astype(np.int64))
        if self.method == "first":
            return torch.arange(self.n)
        from ..data import balanced_subset

        return balanced_subset(labels, self.n)


@dataclass(frozen=True)
class Claim:
    """A published robustness claim, as its ledger file states it."""

    name: str
    title: str
    paper: str
    paper_url: str
    model: str
    model_options: dict[str, Any]
    kind: str
    weights: Weights
    dataset: str
    sampling: Sampling
    threat_model: str
    numbers: tuple[PublishedNumber, ...]
    ladder_eps: tuple[float, ...]
    ladder_budgets: str
    ladder_samples: int
    tolerance: float
    source: str
    path: Path

    @property
    def protocol_eps(self) -> dict[str, list[float]]:
        """The radii each published attack ran at, by attack."""
        out: dict[str, list[float]] = {}
        for number in self.numbers:
            out.setdefault(number.attack, []).append(number.eps)
        return out


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise UserError(f"{where}: missing '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _radius(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 or math.isnan(value):
        raise UserError(f"{where}: eps must be a number in [0, 1] (pixel units), got {value!r}")
    return float(value)


def load_claim(path: Path) -> Claim:
    """Parse and validate one ledger file."""
    where = str(path)
    data = read_toml(path, "claim file")
    kind = data.get("kind", "empirical")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    w = _get(data, "weights", dict, where)
    weights = Weights(*(str(_get(w, k, str, f"{where} [weights]")) for k in ("repository", "file", "url", "sha256", "licence")))
    p = _get(data, "protocol", dict, where)
    s = _get(p, "sampling", dict, f"{where} [protocol]")
    method = _get(s, "method", str, f"{where} [protocol.sampling]")
    if method not in SAMPLINGS:
        raise UserError(f"{where} [protocol.sampling]: method must be one of {', '.join(SAMPLINGS)}, got {method!r}")
    sampling = Sampling(method, _get(s, "n", int, where), int(s.get("seed", 0)), int(s.get("skip", 0)))
    if sampling.n < 1:
        raise UserError(f"{where} [protocol.sampling]: n must be >= 1")
    numbers = tuple(
        PublishedNumber(_get(n, "attack", str, f"{where} [[protocol.numbers]]"), _radius(n.get("eps"), where),
                        float(_get(n, "robust_acc", (int, float), where)), dict(n.get("options", {})), str(n.get("setting", "")))
        for n in _get(p, "numbers", list, f"{where} [protocol]"))
    if not numbers:
        raise UserError(f"{where}: [protocol] lists no published numbers")
    ladder = data.get("ladder", {})
    return Claim(
        name=_get(data, "name", str, where), title=_get(data, "title", str, where), paper=_get(data, "paper", str, where),
        paper_url=str(data.get("paper_url", "")), model=_get(data, "model", str, where),
        model_options=dict(data.get("model_options", {})), kind=kind, weights=weights,
        dataset=_get(p, "dataset", str, f"{where} [protocol]"), sampling=sampling,
        threat_model=str(p.get("threat_model", "Linf")), numbers=numbers,
        ladder_eps=tuple(_radius(e, f"{where} [ladder]") for e in ladder.get("eps", sorted({n.eps for n in numbers}))),
        ladder_budgets=str(ladder.get("budgets", "pgd10,pgd40,apgd-ce,apgd-t,fab-t,square")),
        ladder_samples=int(ladder.get("n_samples", 200)), tolerance=float(data.get("tolerance", 3.0)),
        source=str(p.get("source", "")), path=Path(path),
    )


def load_ledger(folder: Path | None = None) -> dict[str, Claim]:
    """Every claim of the ledger `folder` (default: the published one shipped with odebench), by name."""
    folder = Path(folder) if folder is not None else LEDGER
    if not folder.is_dir():
        raise UserError(f"claims ledger '{folder}' is not a folder")
    claims: dict[str, Claim] = {}
    for path in sorted(folder.glob("*.toml")):
        claim = load_claim(path)
        if claim.name in claims:
            raise UserError(f"claim '{claim.name}' is defined twice ({claims[claim.name].path.name}, {path.name})")
        claims[claim.name] = claim
    return claims


def get_claim(name: str, folder: Path | None = None) -> Claim:
    """The claim called `name`; an unknown name is a UserError listing the known ones."""
    claims = load_ledger(folder)
    if name not in claims:
        raise UserError(f"no claim '{name}' in the ledger (known: {', '.join(claims) or 'none'}; odebench claims list)")
    return claims[name]

"""The worst case over every attack run on a model: the number users publish.

A sample counts robust at ε only if it survived every attack of the grid at ε (AutoAttack's
reporting: the ensemble's accuracy is the share no member broke). Every finished cell keeps its
per-sample verdict (`<out>/state/verdict-<hash of the cell key>.safetensors`, the format of
`nested.Chain` with one radius), so a rerun that reuses finished cells still has them; the
`worst case` row is recomputed from them whenever its grid is run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..report.tables import attack_text
from .nested import INDEPENDENT, NESTED, Chain, load_chain, save_chain

WORST_CASE = "worst case"


def verdict_path(out: Path, key: tuple) -> Path:
    """Where the per-sample verdict of the cell with result-store key `key` is kept."""
    digest = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:20]
    return out / "state" / f"verdict-{digest}.safetensors"


def keep_verdict(out: Path, key: tuple, data: str, eps: float, robust: torch.Tensor) -> None:
    """Store a finished cell's per-sample verdict (correct and robust) for the test images `data`."""
    chain = Chain()
    chain.append(eps, robust)
    save_chain(verdict_path(out, key), data, chain)


def load_verdict(out: Path, key: tuple, data: str) -> torch.Tensor | None:
    """The stored verdict of a cell on the test images `data`; None when absent or stale."""
    chain = load_chain(verdict_path(out, key), data)
    return chain.masks[0] if chain.masks else None


def worst_case_row(members: list[dict[str, Any]], masks: list[torch.Tensor]) -> dict[str, Any]:
    """The `worst case` row over member cells at one ε (same model, source, norm and samples):
    robust accuracy is the share of samples robust in every member's verdict; budgets and wall
    time add up; `attack_stats` gives each member's own robust accuracy."""
    first = members[0]
    robust = torch.stack([m.bool() for m in masks]).all(dim=0)
    labels = [attack_text(m) for m in members]
    stats = {label: m["robust_acc"] for label, m in zip(labels, members)}
    total = lambda column: sum(float(m[column]) for m in members if m.get(column) not in ("", None))  # noqa: E731
    return first | {
        "attack": WORST_CASE,
        "attack_args": json.dumps({"of": ", ".join(labels)}),
        "precision": ",".join(sorted({str(m["precision"]) for m in members})),  # the members' gradients
        "eps_mode": INDEPENDENT if any(m.get("eps_mode") == INDEPENDENT for m in members) else NESTED,
        "robust_acc": round(robust.float().mean().item(), 6),
        "unverified": "",
        "failed_starts": "",
        "attack_stats": json.dumps(stats, sort_keys=True),
        "grad_calls": int(total("grad_calls")),
        "queries": int(total("queries")),
        "wall_s": round(total("wall_s"), 3),
    }

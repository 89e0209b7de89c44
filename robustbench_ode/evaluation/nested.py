"""Nested ε grids: the per-sample verdicts a chain of cells depends on, kept for an exact resume.

In a nested grid ε1 < ε2 < ... a sample broken at ε1 is broken at every larger radius (its
verified adversarial point lies in every larger ball of the same norm), so the cell at εk attacks
only the samples that survived ε1 .. εk-1, and "robust at ε" means survived the attack at every
radius of the grid up to ε. The cell at εk therefore depends on the radii below it and on which
samples they broke. After each cell the runner writes the chain so far, its radii and the
cumulative robust mask after each (`Chain`), atomically to
`<out>/state/nested-<checkpoint>-<attack>-<series>.safetensors` (`series`: a hash of the cell key
without ε), as `evaluation.budget` keeps its rungs. A rerun reuses the longest prefix of the grid
the file holds for the same test images and recomputes from the first radius it lacks, so an
interrupted grid resumes to exactly the table an uninterrupted one gives.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import distributed
from ..runinfo import shared

NESTED, INDEPENDENT = "nested", "independent"


@dataclass
class Chain:
    """The finished radii of one nested series, in grid order, and the robust mask after each."""

    radii: list[float] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)

    def prefix(self, k: int) -> "Chain":
        return Chain(self.radii[:k], self.masks[:k])

    def append(self, eps: float, robust: torch.Tensor) -> None:
        self.radii.append(float(eps))
        self.masks.append(robust.bool().contiguous())


def same_radius(a: float, b: float) -> bool:
    """Radii compare as the result store compares them (rounded, so CSV round trips agree)."""
    return round(float(a), 10) == round(float(b), 10)


def data_sha(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of the test images and labels a chain was computed on."""
    return hashlib.sha256(x.contiguous().numpy().tobytes() + y.contiguous().numpy().tobytes()).hexdigest()[:16]


def chain_path(out: Path, checkpoint_sha: str, attack: str, series: tuple) -> Path:
    """Where the chain of the series `series` (a cell key without ε) is kept."""
    digest = hashlib.sha256(json.dumps(series, default=str).encode()).hexdigest()[:16]
    return out / "state" / f"nested-{checkpoint_sha}-{attack}-{digest}.safetensors"


def load_chain(path: Path, data: str) -> Chain:
    """The chain stored at `path` for the test images hashed `data` (empty when absent, foreign or stale)."""
    if not path.is_file():
        return Chain()
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("data_sha") != data:
                return Chain()
            radii = [float(e) for e in json.loads(meta["radii"])]
            return Chain(radii, [fh.get_tensor(f"robust{i}").bool() for i in range(len(radii))])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return Chain()


def save_chain(path: Path, data: str, chain: Chain) -> None:
    """Write the chain atomically (a kill leaves the previous chain or this one); under torchrun
    only rank 0 writes (every process holds the same chain)."""
    if not distributed.is_main():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({f"robust{i}": m for i, m in enumerate(chain.masks)}, str(tmp),
              metadata={"data_sha": data, "radii": json.dumps(chain.radii)})
    shared(tmp).replace(path)

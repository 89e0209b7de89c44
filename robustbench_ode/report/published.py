"""Published numbers of the seed paper (../shared/paper/EXPERIMENTS.md), to print beside ours.

Accuracies in percent; ε in pixel units of [0, 1]. Figures (E1, E3, E4) have no table: their
published *shape* is given as text.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PaperTable:
    """Published robust accuracy by (dataset kind, attack, model kind) -> {ε: accuracy %}."""

    name: str
    title: str
    cells: dict[tuple[str, str, str], dict[float, float]] = field(default_factory=dict)
    clean: dict[tuple[str, str], float] = field(default_factory=dict)
    shape: str = ""


_M = (0.2, 0.3, 0.4, 0.5)
_C = tuple(e / 255 for e in (8, 12, 16, 20))

PAPER: dict[str, PaperTable] = {
    "E1": PaperTable(
        "E1", "Figure 1: ResNet56 with step size h under transferred FGSM (CIFAR-10)",
        shape="clean ~90% at h=1 falling to ~20-40% for h <= 1e-8; adversarial accuracy low (~10-30%) for every h",
    ),
    "E2": PaperTable(
        "E2", "Table 1: ResNet50 vs Neural ODE under FGSM and PGD (white-box)",
        cells={
            ("mnist", "fgsm", "resnet"): dict(zip(_M, (25.20, 10.95, 9.80, 9.75))),
            ("mnist", "fgsm", "odenet"): dict(zip(_M, (97.50, 97.46, 97.52, 97.48))),
            ("mnist", "pgd", "resnet"): dict(zip(_M, (0.0, 0.0, 0.0, 0.0))),
            ("mnist", "pgd", "odenet"): dict(zip(_M, (93.62, 90.55, 84.64, 75.23))),
            ("cifar10", "fgsm", "resnet"): dict(zip(_C, (4.65, 4.16, 3.60, 3.26))),
            ("cifar10", "fgsm", "odenet"): dict(zip(_C, (60.70, 60.65, 60.67, 60.67))),
            ("cifar10", "pgd", "resnet"): dict(zip(_C, (0.0, 0.0, 0.0, 0.0))),
            ("cifar10", "pgd", "odenet"): dict(zip(_C, (59.15, 56.93, 53.58, 49.53))),
        },
        clean={("mnist", "resnet"): 99.33, ("cifar10", "resnet"): 89.60,
               ("mnist", "odenet"): 99.05, ("cifar10", "odenet"): 69.94},
    ),
    "E3": PaperTable(
        "E3", "Figure 2: DI2-FGSM accuracy vs ε",
        shape="MNIST: Neural ODE stays near its clean accuracy while ResNet50 drops sharply; "
              "CIFAR-10: Neural ODE drops far less than ResNet50",
    ),
    "E4": PaperTable(
        "E4", "Figure 3: Boundary Attack accuracy vs ε",
        shape="MNIST: almost no effect on the Neural ODE; CIFAR-10: both fall, Neural ODE above ResNet50 for ε > 33/255",
    ),
    "E5": PaperTable(
        "E5", "Table 2: against adversarial training (CIFAR-10, PGD-20 at ε = 8/255)",
        cells={
            ("cifar10", "pgd", "preact_resnet18/pgd"): {8 / 255: 41.61},
            ("cifar10", "pgd", "preact_resnet18/trades"): {8 / 255: 44.50},
            ("cifar10", "pgd", "preact_resnet18/yopo"): {8 / 255: 44.72},
            ("cifar10", "pgd", "odenet"): {8 / 255: 59.06},
        },
        clean={("cifar10", "preact_resnet18/pgd"): 84.82, ("cifar10", "preact_resnet18/trades"): 86.14,
               ("cifar10", "preact_resnet18/yopo"): 83.99, ("cifar10", "odenet"): 69.94},
    ),
}


def dataset_kind(label_or_name: str) -> str:
    """'mnist' or 'cifar10' from a dataset name or label ('CIFAR-10 (JPEG q75 copy)' -> 'cifar10')."""
    text = label_or_name.lower().replace("-", "")
    return "cifar10" if "cifar10" in text else "mnist" if "mnist" in text else text


def model_kind(architecture: str, training: str = "standard") -> str:
    """How the paper names a model: 'odenet', 'resnet' (any h-ResNet) or 'preact_resnet18/<method>'.

    A discrete twin of an ODE net (`*_twin`) is none of the paper's models: it keeps its own name,
    so no published number is put beside it."""
    if architecture.endswith("_twin"):
        return architecture
    if architecture.startswith("odenet"):
        return "odenet"
    if architecture.startswith("preact"):
        return f"preact_resnet18/{training}"
    if architecture.startswith("resnet"):
        return "resnet"
    return architecture


def lookup(name: str, dataset: str, attack: str, architecture: str, training: str, eps: float) -> float | None:
    """The published accuracy (%) for a cell, or None when the paper has no such number."""
    table = PAPER.get(name)
    if table is None:
        return None
    cells = table.cells.get((dataset_kind(dataset), attack, model_kind(architecture, training)), {})
    for e, v in cells.items():
        if abs(e - eps) < 1e-6:
            return v
    return None


def lookup_clean(name: str, dataset: str, architecture: str, training: str) -> float | None:
    """The published clean accuracy (%) for a model, or None."""
    table = PAPER.get(name)
    return None if table is None else table.clean.get((dataset_kind(dataset), model_kind(architecture, training)))

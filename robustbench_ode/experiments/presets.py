"""Presets: the paper's exact settings, a CPU-sized version of each, a seconds-long smoke test, and
`strong`: E2-E4 on well-trained MNIST twins (docs/strong_models.md).

Every knob that a preset changes from the paper is listed in `Preset.changes()`, printed before a
run starts and recorded next to its results.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import UserError, option


@dataclass(frozen=True)
class Preset:
    """Settings that differ between presets; everything else comes from the paper."""

    name: str
    summary: str
    n_samples: int  # attacked test images per table
    boundary_samples: int  # the Boundary Attack costs ~1,070 queries per image
    autoattack_samples: int  # images for the AutoAttack row of E2 and E5 (beyond the paper)
    train_subset: dict[str, int | None]  # per dataset kind: class-balanced training subset
    # (model name, options, epochs, batch size) per role and dataset kind
    resnet: dict[str, tuple[str, dict[str, Any], int, int]]
    odenet: dict[str, tuple[str, dict[str, Any], int, int]]
    e1: tuple[str, dict[str, Any], int, int]  # the h-sweep ResNet56
    e1_source: tuple[str, dict[str, Any], int, int]
    e5_preact: tuple[str, dict[str, Any], int, int]
    e5_method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    e3_mnist_eps: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))
    e3_cifar_eps: tuple[float, ...] = tuple(range(0, 55, 5))
    boundary_steps: int = 1000
    autoattack_options: dict[str, Any] = field(default_factory=dict)  # budgets; {} = the standard version
    # extra L2 radii for E4 beyond the paper's grid: the Boundary Attack's ε is an L2 distance, and
    # on the paper's grid (the same numbers as its L∞ grids) no attack can succeed on MNIST
    e4_extra_eps: dict[str, tuple[float, ...]] = field(default_factory=dict)
    odenet_lr: dict[str, float] = field(default_factory=lambda: {"mnist": 1e-3, "cifar10": 1e-4})  # Table A1
    test_subset: int | None = None  # test images for each checkpoint's final clean accuracy (None: all)
    channels_last: bool | None = None  # faster ResNets on CPU (models.base.fast_layout); None: with bf16
    # per dataset kind, extra TrainConfig fields for E2-E4's ResNet / Neural ODE alone (a `subset` here
    # replaces train_subset; an `augment` runs before the preset's `augments`)
    resnet_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    odenet_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    # E2-E4's models: run-dir names of the (discrete, ODE) pair; the pair is trained once per entry
    # of `augments` (run-dir suffix -> --augment spec, "" = none); extra TrainConfig fields for them
    table1_keys: tuple[str, str] = ("resnet50", "odenet")
    augments: dict[str, str] = field(default_factory=lambda: {"": ""})
    table1_train: dict[str, Any] = field(default_factory=dict)
    # E2's ε grid per dataset kind (CIFAR in /255), and a smaller grid for its AutoAttack row ({}: the same)
    table1_eps: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"mnist": (0.2, 0.3, 0.4, 0.5), "cifar10": (8, 12, 16, 20)})
    autoattack_eps: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The dataset kinds this preset has models for."""
        return tuple(self.odenet)

    @property
    def has_autoattack_row(self) -> bool:
        """False when every dataset kind's AutoAttack grid is empty (E2's row is left out)."""
        return not self.autoattack_eps or any(self.autoattack_eps.values())

    def changes(self, experiment: str) -> list[str]:
        """Human-readable differences from the paper's settings that matter to `experiment`."""
        if self.name == "paper":
            return []
        out = [self.summary, f"attacked test images per table: {self.n_samples} (paper: full test set of 10,000)"]
        if experiment == "E4":
            if self.e4_extra_eps:
                out.append(f"E4 also reports larger L2 radii (MNIST {list(self.e4_extra_eps['mnist'])}, "
                           f"CIFAR {list(self.e4_extra_eps['cifar10'])}/255) beside the paper's grid")
            if self.boundary_samples != self.n_samples:
                out.append(f"Boundary Attack on {self.boundary_samples} images (it costs ~1,070 model calls per image)")
            if self.boundary_steps != PAPER.boundary_steps:
                out.append(f"Boundary Attack budget {self.boundary_steps} steps (paper: 1,000 queries)")
            out.append("L2 PGD-40 row (not in the paper) on the same images: the Boundary Attack's norm with gradients")
        if experiment in ("E2", "E5") and self.autoattack_samples != self.n_samples and self.has_autoattack_row:
            out.append(f"AutoAttack row (not in the paper) on {self.autoattack_samples} images")
        for kind, n in self.train_subset.items():
            if n:
                out.append(f"{kind}: trained on a class-balanced subset of {n} images"
                           + (" unless said otherwise below" if self.resnet_train or self.odenet_train else ""))
        roles = []
        if experiment in ("E2", "E3", "E4"):
            roles += [("ResNet50", self.resnet, PAPER.resnet), ("Neural ODE", self.odenet, PAPER.odenet)]
        if experiment == "E5":
            roles += [("Neural ODE", {"cifar10": self.odenet["cifar10"]}, PAPER.odenet)]
        for role, table, ref_table in roles:
            for kind, spec in table.items():
                if spec != ref_table[kind]:
                    out.append(f"{role} on {kind}: {_describe(spec)} (paper: {_describe(ref_table[kind])})")
        pairs = {"E1": [("h-sweep ResNet56", self.e1, PAPER.e1), ("transfer source", self.e1_source, PAPER.e1_source)],
                 "E5": [("PreAct-ResNet18", self.e5_preact, PAPER.e5_preact)]}.get(experiment, [])
        out += [f"{role}: {_describe(spec)} (paper: {_describe(ref)})" for role, spec, ref in pairs if spec != ref]
        if experiment in ("E3", "E4") and (self.e3_mnist_eps != PAPER.e3_mnist_eps or self.e3_cifar_eps != PAPER.e3_cifar_eps):
            out.append(f"ε grids: MNIST {list(self.e3_mnist_eps)}, CIFAR {list(self.e3_cifar_eps)}/255 "
                       "(paper: steps of 0.05 and 5/255)")
        if experiment in ("E2", "E3", "E4", "E5"):
            out += [f"Neural ODE on {kind}: Adam lr {lr:g} (paper: {PAPER.odenet_lr[kind]:g}; a few epochs need "
                    "a larger step than the paper's 200)" for kind, lr in self.odenet_lr.items() if lr != PAPER.odenet_lr[kind]]
        if experiment in ("E2", "E3", "E4"):
            if self.augments != PAPER.augments:
                out.append("each model trained once per augmentation: "
                           + ", ".join(a or "none" for a in self.augments.values()) + " (paper: none)")
            if self.table1_train:
                out.append(f"every model trained with {_options(self.table1_train)} (paper: Adam halved every 50 "
                           "epochs for the Neural ODE, SGD for the ResNet50)")
            out += [f"{role} on {kind} trained with {_recipe(options)}" for role, table in
                    (("ResNet50", self.resnet_train), ("Neural ODE", self.odenet_train)) for kind, options in table.items()]
        if experiment == "E2":
            out += [f"{kind} ε grid {list(grid)} (paper: {list(PAPER.table1_eps[kind])})"
                    for kind, grid in self.table1_eps.items() if grid != PAPER.table1_eps[kind]]
            out += [f"{kind}: AutoAttack at ε {list(grid)} only" if grid else
                    f"{kind}: no AutoAttack row (its numbers are in the budget curves of `odebench converge`)"
                    for kind, grid in self.autoattack_eps.items()]
        if experiment == "E5" and self.e5_method_options:
            out.append(f"adversarial-training options: {self.e5_method_options}")
        if self.test_subset:
            out.append(f"checkpoints' clean test accuracy measured on {self.test_subset} test images")
        return out


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _recipe(options: dict[str, Any]) -> str:
    """A role's training options in words ('subset=None' reads as all training images)."""
    return _options({k: v for k, v in options.items() if k != "subset"}) + (
        "" if "subset" not in options else ", on all training images" if options["subset"] is None
        else f", on {options['subset']} training images")


def _describe(spec: tuple[str, dict[str, Any], int, int]) -> str:
    name, options, epochs, batch = spec
    return f"{name}({_options(options)}) {epochs} epochs, batch {batch}"


PAPER = Preset(
    name="paper",
    summary="the paper's settings",
    n_samples=10000,
    boundary_samples=10000,
    autoattack_samples=10000,
    train_subset={"mnist": None, "cifar10": None},
    # ResNet50 epochs are not given in the paper: He et al.'s CIFAR schedule (~180 epochs) is used for both.
    resnet={"mnist": ("resnet50", {}, 100, 128), "cifar10": ("resnet50", {}, 180, 128)},
    odenet={"mnist": ("odenet_mnist", {}, 100, 32), "cifar10": ("odenet_cifar10", {}, 200, 32)},
    e1=("resnet56", {}, 180, 128),
    e1_source=("resnet_small", {}, 180, 128),
    e5_preact=("preact_resnet18", {}, 200, 128),
)

CPU = Preset(
    name="cpu",
    summary="CPU preset: each experiment sized to finish on 2 CPU cores in about an hour",
    n_samples=1000,
    boundary_samples=100,
    autoattack_samples=200,
    # MNIST: 10,000 images as when the data root held only that subset (60k is 6x the training time);
    # E2-E4's ResNets and MNIST Neural ODE train on every image (resnet_train, odenet_train)
    train_subset={"mnist": 10000, "cifar10": 10000},
    resnet={"mnist": ("resnet20", {}, 3, 128), "cifar10": ("resnet20", {}, 22, 128)},
    # a fast schedule for the ResNets: one-cycle SGD, the standard CIFAR crop + flip, all training
    # images; with `auto` precision (bf16 on AVX-512-BF16/AMX CPUs) the CIFAR one took 19.3 minutes
    # on 2 cores (docs/training.md). No label smoothing: it weakens cross-entropy attacks.
    resnet_train={kind: {"subset": None, "optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "schedule": "onecycle"}
                  | extra for kind, extra in (("mnist", {}), ("cifar10", {"augment": "crop:4+flip"}))},
    odenet={"mnist": ("odenet_mnist", {"channels": 32, "conv_layers": 2, "zero_init": True}, 3, 128),
            "cifar10": ("odenet_cifar10", {"channels": 32, "conv_layers": 2, "t1": 100.0, "zero_init": True}, 5, 32)},
    # the MNIST Neural ODE on every training image too, with a one-cycle schedule (Adam, peak 2e-3);
    # it stays fp32 (adaptive dopri5); batch 128 and zero_init (forward NFE ~74) make an epoch of
    # 60,000 images ~5 minutes on 2 cores (docs/REPRODUCTION.md)
    odenet_train={"mnist": {"subset": None, "schedule": "onecycle"}},
    e1=("resnet20", {}, 3, 128),
    e1_source=("resnet_small", {}, 3, 128),
    e5_preact=("preact_resnet18", {"width": 16}, 3, 128),
    e5_method_options={"pgd": {"steps": 3, "step_size": 4 / 255}, "trades": {"steps": 3, "step_size": 4 / 255},
                       "yopo": {"m": 3, "n": 3}},
    e3_mnist_eps=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    e3_cifar_eps=(0, 10, 20, 30, 40, 50),
    e4_extra_eps={"mnist": (1.0, 2.0, 3.0), "cifar10": (100, 200, 400)},
    odenet_lr={"mnist": 2e-3, "cifar10": 1e-3},
    channels_last=True,
)

FAST = Preset(
    name="fast",
    summary="fast preset: a smoke run of the same pipeline (tiny models, 1 epoch, few images); numbers are not meaningful",
    n_samples=30,
    boundary_samples=10,
    autoattack_samples=10,
    train_subset={"mnist": 300, "cifar10": 300},
    resnet={"mnist": ("resnet_small", {"width": 8}, 1, 64), "cifar10": ("resnet_small", {"width": 8}, 1, 64)},
    odenet={"mnist": ("odenet", {"channels": 8}, 1, 64), "cifar10": ("odenet", {"channels": 8}, 1, 64)},
    e1=("resnet_small", {"width": 4}, 1, 64),
    e1_source=("resnet_small", {"width": 4}, 1, 64),
    e5_preact=("preact_resnet18", {"width": 4}, 1, 64),
    e5_method_options={"pgd": {"steps": 2}, "trades": {"steps": 2}, "yopo": {"m": 2, "n": 2}},
    e3_mnist_eps=(0.0, 0.25, 0.5),
    e3_cifar_eps=(0, 25, 50),
    boundary_steps=50,
    autoattack_options={"apgd_steps": 5, "targets": 2, "fab_steps": 5, "square_queries": 20},
    test_subset=100,
)

# "ODE vs ResNet" with the block as the only difference, both nets trained to convergence (the
# issue "Settle the question on strong models"): Yan et al.'s (ICLR 2020) MNIST ODENet and its
# discrete twin, one residual block (models.odenet), each with and without Gaussian-noise training
# as their released code does it (half the images, sigma 50, 75 or 100 /255), on all 60,000 training
# images. A one-cycle schedule with bf16 autocast where native (fixed-step Euler: no step control to protect;
# every reported accuracy is measured in fp32) fits the four trainings into about an hour on two
# CPU cores; width, epochs and their measured cost: docs/strong_models.md.
STRONG_EPOCHS = 8
STRONG_LR = 2e-3
STRONG_NOISE = "gaussian:50/255,75/255,100/255:p=0.5"
STRONG = replace(
    CPU,
    name="strong",
    summary=("strong preset: MNIST only; E2-E4's ResNet50 and Neural ODE are Yan et al.'s (ICLR 2020) ODENet "
             "(odenet_yan: Euler, step 0.1 over [0, 1]) and its discrete twin (odenet_yan_twin: the same layers, "
             "one Euler step of size 1 = one residual block), both 64 channels, trained on all 60,000 images with "
             f"Adam and a one-cycle schedule peaking at {STRONG_LR:g} for {STRONG_EPOCHS} epochs, auto precision "
             "(bf16 autocast where the hardware computes it natively, as the zoo checkpoints were trained) "
             "(Yan et al.: Adam 1e-3 for 100 epochs, /5 at 30, 60, 90, fp32)"),
    train_subset={"mnist": None},
    resnet={"mnist": ("odenet_yan_twin", {}, STRONG_EPOCHS, 128)},
    odenet={"mnist": ("odenet_yan", {}, STRONG_EPOCHS, 128)},
    odenet_lr={"mnist": STRONG_LR},
    channels_last=False,
    resnet_train={},
    odenet_train={},
    table1_keys=("yan_twin", "yan_ode"),
    augments={"": "", "-noise": STRONG_NOISE},
    # the same recipe for both twins
    table1_train={"optimizer": "adam", "lr": STRONG_LR, "schedule": "onecycle"},
    table1_eps={"mnist": (0.15, 0.2, 0.3)},
    autoattack_eps={"mnist": ()},  # AutoAttack runs as the last rung of each model's budget curve
)

# Yan et al.'s released pair retrained from scratch with their recipe (issue "The published models
# settle the answer"): their exact architectures (models.yan2020), their training scripts'
# optimiser and schedule (mnist/main_{cnn,ode}_gaus.py, options.py: Adam 1e-3, weight decay 5e-4,
# batch 128, 100 epochs, lr x0.2 after epochs 30, 60 and 90) and noise (half the images, sigma 50,
# 75 or 100 /255, clamped). Snapshots at 4, 8, ..., 64 epochs give robustness against training length.
PUBLISHED_EPOCHS = 100
PUBLISHED_SNAPSHOTS = [4, 8, 16, 32, 64]
PUBLISHED = replace(
    STRONG,
    name="published",
    summary=("published preset: MNIST only; E2-E4's ResNet50 and Neural ODE are Yan et al.'s (ICLR 2020) released "
             "CNN and ODENet, layer for layer (yan2020_cnn, yan2020_ode), trained from scratch on all 60,000 images "
             "with their recipe: Adam 1e-3, weight decay 5e-4, batch 128, 100 epochs, lr x0.2 after epochs 30, 60, "
             "90, Gaussian noise on half the images (sigma 50, 75 or 100 /255); auto precision (bf16 autocast "
             "where native; their runs: fp32 on a GPU); the last epoch's weights (they kept the epoch with the best "
             "accuracy on their noisy test set); checkpoints also after epochs "
             + ", ".join(map(str, PUBLISHED_SNAPSHOTS))),
    resnet={"mnist": ("yan2020_cnn", {}, PUBLISHED_EPOCHS, 128)},
    odenet={"mnist": ("yan2020_ode", {}, PUBLISHED_EPOCHS, 128)},
    odenet_lr={"mnist": 1e-3},
    table1_keys=("yan_cnn", "yan_ode"),
    augments={"-noise": STRONG_NOISE},
    table1_train={"optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4, "schedule": "multistep",
                  "milestones": [30, 60, 90], "gamma": 0.2, "snapshots": PUBLISHED_SNAPSHOTS},
)

PRESETS = {p.name: p for p in (PAPER, CPU, FAST, STRONG, PUBLISHED)}


def check_preset(name: str) -> None:
    """A UserError naming `preset` unless `name` is one of PRESETS."""
    if name not in PRESETS:
        raise UserError(f"{option('preset')} must be one of {', '.join(PRESETS)}, got '{name}'")

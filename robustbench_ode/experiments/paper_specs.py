"""The seed paper's experiments E1-E5 (../shared/paper/EXPERIMENTS.md) built at a preset.

A preset may replace E2-E4's two models (the `strong` preset: an ODE net and its discrete twin,
each also trained with an augmentation) and E2's ε grids; `build` keeps the dataset kinds the
preset has models for.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..errors import UserError, option
from ..evaluation.request import AttackSpec
from ..training.config import TrainConfig
from .presets import Preset
from .spec import Experiment, ModelSpec, Part

KINDS = ("mnist", "cifar10")
E1_HS = [10.0 ** -k for k in range(11)]  # 1, 1e-1, ..., 1e-10


def _model(key: str, dataset: str, spec: tuple[str, dict[str, Any], int, int], subset: int | None,
           **train: Any) -> ModelSpec:
    name, options, epochs, batch = spec
    return ModelSpec(key, TrainConfig(model=name, dataset=dataset, model_options=dict(options), epochs=epochs,
                                      batch_size=batch, subset=subset, **train))


def table1_models(p: Preset, kind: str, dataset: str) -> list[ModelSpec]:
    """The ResNet50 and the Neural ODE that E2, E3 and E4 attack, once per augmentation of the preset
    (its run-dir suffix appended to both keys)."""
    resnet_key, ode_key = p.table1_keys
    roles = ((resnet_key, p.resnet[kind], p.resnet_train.get(kind, {})),
             (ode_key, p.odenet[kind], {"lr": p.odenet_lr[kind]} | p.odenet_train.get(kind, {})))
    models = []
    for suffix, augment in p.augments.items():
        for key, spec, role in roles:
            train = {"test_subset": p.test_subset, "subset": p.train_subset[kind]} | role | p.table1_train
            train["augment"] = "+".join(a for a in (role.get("augment", ""), augment) if a)
            models.append(_model(key + suffix, dataset, spec, train.pop("subset"), **train))
    return models


def _eps(kind: str, mnist: tuple[float, ...], cifar: tuple[float, ...]) -> tuple[list[float], float]:
    return (list(mnist), 1.0) if kind == "mnist" else ([e / 255 for e in cifar], 255.0)


def e1(p: Preset, datasets: dict[str, str]) -> list[Part]:
    """Figure 1: ResNet56 for h = 1 ... 1e-10 under FGSM transferred from a three-block ResNet."""
    dataset, subset = datasets["cifar10"], p.train_subset["cifar10"]
    models = []
    for h in E1_HS:
        name, options, epochs, batch = p.e1
        models.append(_model(f"e1-{name}-h{h:.0e}", dataset, (name, options | {"h": h}, epochs, batch), subset,
                             test_subset=p.test_subset))
    source = _model("e1-source", dataset, p.e1_source, subset, test_subset=p.test_subset)
    return [Part(dataset, models, [AttackSpec.parse("fgsm", {})], [0.0, 0.1, 0.3, 0.5],
                 n_samples=p.n_samples, source=source)]


def _autoattack(p: Preset) -> AttackSpec:
    """AutoAttack's standard ensemble (beyond the paper: the strongest check of its numbers)."""
    return AttackSpec.parse("autoattack", {k: str(v) for k, v in p.autoattack_options.items()})


def e2(p: Preset, datasets: dict[str, str]) -> list[Part]:
    """Table 1: FGSM and PGD-40 (step 0.01, random start) on ResNet50 vs Neural ODE; plus AutoAttack."""
    attacks = [AttackSpec.parse("fgsm", {}), AttackSpec.parse("pgd", {})]
    parts = []
    for kind, dataset in datasets.items():
        grid = p.table1_eps[kind]
        eps, scale = _eps(kind, grid, grid)
        aa_grid = p.autoattack_eps.get(kind, grid)
        aa_eps, _ = _eps(kind, aa_grid, aa_grid)
        models = table1_models(p, kind, dataset)
        parts.append(Part(dataset, models, attacks, [0.0] + eps, scale, p.n_samples))
        if aa_eps:  # the strong preset has its AutoAttack numbers in budget curves instead
            parts.append(Part(dataset, models, [_autoattack(p)], [0.0] + aa_eps, scale, p.autoattack_samples))
    return parts


def e3(p: Preset, datasets: dict[str, str]) -> list[Part]:
    """Figure 2: DI2-FGSM accuracy-vs-ε curves."""
    parts = []
    for kind, dataset in datasets.items():
        eps, scale = _eps(kind, p.e3_mnist_eps, p.e3_cifar_eps)
        parts.append(Part(dataset, table1_models(p, kind, dataset), [AttackSpec.parse("difgsm", {})], eps, scale,
                          p.n_samples))
    return parts


# L2 step of E4's gradient row (pixel units; 40 steps cross the largest radius of the CPU grid)
E4_L2_PGD_STEP = {"mnist": 0.1, "cifar10": 0.05}


def e4(p: Preset, datasets: dict[str, str]) -> list[Part]:
    """Figure 3: Boundary Attack (1,000 queries, steps 0.1/0.1). Its ε is an L2 distance.

    Beside it, not in the paper, L2 PGD-40 on the same images: a gradient attack in the same norm,
    which shows how much of what the decision-based search leaves is robustness (on the CPU
    preset's MNIST Neural ODE at L2 = 3: Boundary 91%, L2 PGD 7%; docs/REPRODUCTION.md)."""
    parts = []
    boundary = AttackSpec.parse("boundary", {"steps": str(p.boundary_steps)})
    for kind, dataset in datasets.items():
        grid = (p.e3_mnist_eps if kind == "mnist" else p.e3_cifar_eps) + p.e4_extra_eps.get(kind, ())
        eps, scale = _eps(kind, grid, grid)
        pgd_l2 = AttackSpec.parse("pgd", {"norm": "l2", "steps": "40", "step_size": str(E4_L2_PGD_STEP[kind])})
        parts.append(Part(dataset, table1_models(p, kind, dataset), [boundary, pgd_l2], eps, scale,
                          p.boundary_samples))
    return parts


def e5(p: Preset, datasets: dict[str, str]) -> list[Part]:
    """Table 2: PreAct-ResNet18 with PGD-AT / TRADES / YOPO vs a naturally trained Neural ODE, PGD-20 at 8/255."""
    dataset, subset = datasets["cifar10"], p.train_subset["cifar10"]
    models = []
    for method in ("pgd", "trades", "yopo"):
        name, options, epochs, batch = p.e5_preact
        opts = {k: str(v) for k, v in p.e5_method_options.get(method, {}).items()}
        models.append(ModelSpec(f"e5-{name}-{method}", TrainConfig(
            model=name, dataset=dataset, model_options=dict(options), epochs=epochs, batch_size=batch, subset=subset,
            test_subset=p.test_subset, method=method, method_options=opts, weight_decay=5e-4)))
    models.append(table1_models(p, "cifar10", dataset)[1])
    pgd20 = AttackSpec.parse("pgd", {"steps": "20", "step_size": str(2 / 255)})
    return [Part(dataset, models, [pgd20], [0.0, 8 / 255], 255.0, p.n_samples),
            Part(dataset, models, [_autoattack(p)], [0.0, 8 / 255], 255.0, p.autoattack_samples)]


BUILDERS: dict[str, tuple[str, Callable[[Preset, dict[str, str]], list[Part]], tuple[str, ...]]] = {
    "E1": ("Figure 1: ResNet56 with step size h under transferred FGSM", e1, ("cifar10",)),
    "E2": ("Table 1: ResNet50 vs Neural ODE, FGSM and PGD", e2, KINDS),
    "E3": ("Figure 2: DI2-FGSM", e3, KINDS),
    "E4": ("Figure 3: Boundary Attack", e4, KINDS),
    "E5": ("Table 2: Neural ODE vs adversarially trained PreAct-ResNet18", e5, ("cifar10",)),
}


def experiment_names(names: list[str]) -> list[str]:
    """'all' -> E1..E5; otherwise the names upper-cased, each one known (else a UserError)."""
    wanted = list(BUILDERS) if [n.upper() for n in names] == ["ALL"] else [n.upper() for n in names]
    for name in wanted:
        if name not in BUILDERS:
            raise UserError(f"unknown experiment '{name}' (known: {', '.join(BUILDERS)}, all)")
    return wanted


def build(name: str, preset: Preset, datasets: dict[str, str]) -> Experiment:
    """Experiment `name` at `preset`; `datasets` maps 'mnist'/'cifar10' to registered dataset names
    (only the kinds present are built, so a run can cover one half of a table)."""
    if name not in BUILDERS:
        raise UserError(f"unknown experiment '{name}' (known: {', '.join(BUILDERS)}, all)")
    title, fn, kinds = BUILDERS[name]
    usable = {k: v for k, v in datasets.items() if k in kinds and k in preset.kinds}
    if not usable:
        raise UserError(f"{name} needs {' or '.join(kinds)} data, which {option('only')} or the {preset.name} preset "
                        f"(models for {' and '.join(preset.kinds)}) excluded")
    parts = fn(preset, usable)
    for part in parts:  # a memory layout changes speed, not results
        part.models = [_layout(m, preset) for m in part.models]
        part.source = _layout(part.source, preset) if part.source else None
    return Experiment(name, title, parts, preset.name, preset.changes(name))


def _layout(spec: ModelSpec, preset: Preset) -> ModelSpec:
    return replace(spec, train=replace(spec.train, channels_last=preset.channels_last))

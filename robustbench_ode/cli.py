"""`odebench` command line: parse, validate, print. Work happens in the modules it calls."""
from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import UserError
from .ode_backends import DEFAULT_ODE_BACKEND, ODE_BACKENDS
from .registry import ATTACKS, DATASETS, METHODS, MODELS, parse_kv

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adversarial-robustness benchmark for Neural ODEs and ResNet-family classifiers.",
)
console = Console()
err_console = Console(stderr=True)

_LISTS = {"models": (MODELS, "models"), "attacks": (ATTACKS, "attacks"), "datasets": (DATASETS, "datasets"),
          "methods": (METHODS, "training methods (--method)")}


@app.command("list")
def list_cmd(
    what: Optional[str] = typer.Argument(None, help="models, attacks, datasets or methods (default: all)"),
) -> None:
    """List registered models, attacks, datasets and training methods with their options (and plugins)."""
    if what is not None and what not in _LISTS:
        raise UserError(f"cannot list '{what}' (choose models, attacks, datasets or methods)")
    for kind, (reg, title) in _LISTS.items():
        if what not in (None, kind):
            continue
        entries = list(reg)
        table = Table(title=title, show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("options (default)")
        plugins = any(entry.plugin for entry in entries)
        if plugins:
            table.add_column("plugin (distribution)")
        for entry in entries:
            options = entry.options_text(hidden=("root", "download"))
            table.add_row(entry.name, entry.description, options, *([entry.plugin] if plugins else []))
        console.print(table)


def _load_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from .runinfo import read_toml
    from .training.config import TrainConfig

    data = read_toml(path, "config file")

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"config file '{path}': unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data


@app.command()
def train(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered model name (odebench list models)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="registered dataset (default: digits)"),
    model_arg: Optional[list[str]] = typer.Option(None, "--model-arg", help="model option key=value (repeatable)"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with TrainConfig keys; flags override it"),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default 10)"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default 128)"),
    optimizer: Optional[str] = typer.Option(None, help="auto (Adam for Neural ODEs, SGD otherwise), sgd or adam"),
    lr: Optional[float] = typer.Option(None, help="initial learning rate (auto: 1e-3 Adam, 0.1 SGD)"),
    weight_decay: Optional[float] = typer.Option(None, help="weight decay (auto: 1e-4 SGD, 0 Adam)"),
    schedule: Optional[str] = typer.Option(None, help="auto, halve (every --lr-step epochs), multistep (/10 at 50%,75%), constant, onecycle (per batch: warm-up then cosine)"),
    lr_step: Optional[int] = typer.Option(None, help="epochs between halvings for the halve schedule (50)"),
    milestones: Optional[str] = typer.Option(None, help="multistep schedule: epochs after which lr *= --gamma, "
                                             "e.g. 30,60,90 (default: 50% and 75% of --epochs)"),
    gamma: Optional[float] = typer.Option(None, help="multistep schedule: lr factor at each milestone (default 0.1)"),
    snapshots: Optional[str] = typer.Option(None, help="also write a checkpoint after these epochs, e.g. 4,8,16, "
                                            "into RUN/epoch-004 ... (may change on --resume)"),
    train_solver: Optional[str] = typer.Option(None, help="ODE models: integrate training steps with this solver, "
                                               "e.g. rk4:step_size=0.25 (the model's own solver gives the test "
                                               "accuracy and every attack)"),
    method: Optional[str] = typer.Option(None, help="training method: standard, or an adversarial one (odebench list)"),
    method_arg: Optional[list[str]] = typer.Option(None, "--method-arg", help="method option key=value"),
    augment: Optional[str] = typer.Option(None, help="training-input augmentations, '+'-separated: crop:PAD, flip, "
                                          "gaussian:SIGMA[,SIGMA...][:p=P]; e.g. crop:4+flip or gaussian:100/255 "
                                          "(training batches only; composes with --method)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    download: bool = typer.Option(False, help="let torchvision download missing datasets"),
    subset: Optional[int] = typer.Option(None, help="class-balanced training subset of N images"),
    test_subset: Optional[int] = typer.Option(None, help="class-balanced test subset of N images for the checkpoint's "
                                              "clean accuracy (default: the whole test split)"),
    seed: Optional[int] = typer.Option(None, help="random seed (default 0)"),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda"),
    precision: Optional[str] = typer.Option(None, help="auto (default: bf16 autocast where the hardware computes bf16 "
                                            "natively, else fp32), fp32 or bf16; test accuracy is measured in fp32"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="channels_last layout for BatchNorm conv nets (default: with bf16 on CPU)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<model>-<dataset>-s<seed>)"),
    resume: bool = typer.Option(False, help="continue an interrupted run in --out from its last completed epoch"),
) -> None:
    """Train a registered model (or resume) and write a safe checkpoint into the run dir."""
    from .training.config import TrainConfig

    values = _load_toml(config)
    flags = dict(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                 weight_decay=weight_decay, schedule=schedule, lr_step=lr_step, method=method, augment=augment,
                 milestones=_epochs(milestones, "--milestones"), gamma=gamma, snapshots=_epochs(snapshots, "--snapshots"),
                 train_solver=train_solver,
                 data_dir=data_dir, subset=subset, test_subset=test_subset, seed=seed, device=device, precision=precision,
                 channels_last=channels_last)
    values.update({k: v for k, v in flags.items() if v is not None})
    if download:
        values["download"] = True
    values["model_options"] = {**values.get("model_options", {}), **parse_kv(model_arg, "--model-arg")}
    values["method_options"] = {**values.get("method_options", {}), **parse_kv(method_arg, "--method-arg")}
    if "model" not in values:
        raise UserError("--model is required (see: odebench list models)")
    cfg = TrainConfig(**values)
    cfg.validate()
    run_dir = out or Path("runs") / f"{cfg.model}-{cfg.dataset}-s{cfg.seed}"
    from .cli_train import run_training  # torch and the engine: only once the arguments are valid

    run_training(cfg, run_dir, resume, console)


def _epochs(text: Optional[str], flag_name: str) -> Optional[list[int]]:
    """'30,60,90' -> [30, 60, 90]; None stays None; anything else is a UserError naming the flag."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{flag_name} '{text}': give comma-separated epochs, e.g. 30,60,90") from None


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 reports; errors still reach stderr
        console.quiet = True
    try:
        rc = app(standalone_mode=False)
    except UserError as exc:
        _fail(exc.render(flag), 2)
    except KeyboardInterrupt:
        _fail("interrupted; finished work is saved (rerun the same command, with --resume for train)", 130)
    except Exception as exc:  # Typer's (vendored) Click exceptions: usage errors, abort, no-args help
        kind = type(exc).__name__
        if kind == "NoArgsIsHelpError":
            sys.exit(0)
        if kind == "Abort":
            _fail("interrupted; finished work is saved (rerun the same command, with --resume for train)", 130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _fail(exc.format_message(), exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


# Parameters whose flag is not the one Typer derives from their name (an explicit `typer.Option(..., "--flag")`)
_FLAGS = {"attack_name": "--attack"}


def flag(name: str) -> str:
    """The flag of a setting a UserError names (`errors.option`): `grad_solver` -> `--grad-solver`,
    as Typer derives flags from parameter names (`_FLAGS` holds the parameters named otherwise)."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def _fail(message: str, code: int) -> None:
    err_console.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    sys.exit(code)


# A model given as code instead of a checkpoint (attack, audit, stability): see user_model.py
_MODEL_FILE = typer.Option(None, "--model-file", help="your model: FILE.py:FACTORY or package.module:FACTORY, "
                           "a function that returns an nn.Module (weights from --weights)")
_WEIGHTS = typer.Option(None, "--weights", help="weights for --model-file / --model: .safetensors, or a .pt/.pth "
                        "state dict (read with torch.load(weights_only=True))")
_TORCHSCRIPT = typer.Option(None, "--torchscript", help="your model as a TorchScript file (scripted or traced)")
_MODEL = typer.Option(None, "--model", help="a registered model (odebench list models, e.g. yan2020_ode) or "
                      "timm:NAME, a timm architecture (pip install odebench\\[timm]); weights from --weights, "
                      "nothing is downloaded")
_NORMALIZE = typer.Option(None, "--normalize", help="your model expects normalised input: MEANS/STDS, one value or one "
                          "per channel each (0.1307/0.3081, 0.49,0.48,0.45/0.25,0.24,0.26), or 'dataset'; "
                          "ε stays in [0, 1] pixel units")
_PRECISION = typer.Option("auto", help="attack gradients in bf16 where this machine computes it natively (auto), "
                          "or fp32 / bf16; every reported decision is fp32")
_PRECISION_ALL = typer.Option("auto", help="training steps and attack gradients in bf16 where this machine computes "
                              "it natively (auto), or fp32 / bf16; every reported accuracy and decision is fp32")
_BACKEND_CHOICES = [f"{name} ({meaning})" for name, meaning in ODE_BACKENDS.items()]
_ODE_BACKEND = typer.Option(DEFAULT_ODE_BACKEND, help=f"adaptive ODEs: {', '.join(_BACKEND_CHOICES[:-1])} or "
                            f"{_BACKEND_CHOICES[-1]}")
_DATASET = typer.Option(None, "--dataset", "-d", help="dataset to evaluate on (default: the checkpoints', else digits)")


def _checkpoints(paths: list[Path]) -> list[Path]:
    """`paths`, each read as a checkpoint's metadata first: a missing or foreign one is answered before
    torch loads."""
    from .checkpoint import read_meta

    for path in paths:
        read_meta(path)
    return paths


def _model_source(model_file: str | None, weights: Path | None, torchscript: Path | None, model: str | None,
                  normalize: str | None) -> Any:
    from .user_model import ModelSource

    return ModelSource.from_options(model_file, weights, torchscript, model, normalize)


@app.command()
def attack(
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", "-c", help="checkpoint dir to attack (repeatable)"),
    attack_name: list[str] = typer.Option(["pgd"], "--attack", "-a", help="registered attack (repeatable)"),
    attack_arg: Optional[list[str]] = typer.Option(None, "--attack-arg", help="attack option key=value, or name.key=value for one of several attacks"),
    eps: list[str] = typer.Option(..., "--eps", "-e", help="ε values: 0.3, 8/255, or comma lists (repeatable)"),
    eps_scale: float = typer.Option(1.0, help="divide --eps by this (255 for the paper's [0,255] CIFAR grid)"),
    independent_eps: bool = typer.Option(False, "--independent-eps", help="attack every radius on every correctly "
                                         "classified sample (default: nested, a larger radius attacks only the "
                                         "samples the smaller ones left robust)"),
    n_samples: int = typer.Option(1000, help="test images to evaluate (class-balanced, deterministic)"),
    batch_size: int = typer.Option(250, help="attack batch size"),
    seed: int = typer.Option(0, help="random seed of every attack's random starts, transforms and proposals (with each attack's own seed option)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    source: Optional[Path] = typer.Option(None, help="transfer mode: craft on this checkpoint, evaluate on --checkpoint "
                                          "(or on your model; --model-as-source crafts on your model)"),
    grad_solver: Optional[str] = typer.Option(
        None, help="ODE models: take gradients through this solver while the model's own decides, "
        "e.g. rk4:step_size=0.05 or dopri5:adjoint=false (gradient attacks only)"),
    eot: int = typer.Option(1, help="average each gradient over this many passes (EOT, for randomised models)"),
    ode_backend: str = _ODE_BACKEND,
    precision: str = _PRECISION,
    ode_extras: bool = typer.Option(False, "--ode-extras", help="autoattack: add PGD through a fixed-step surrogate "
                                    "solver, SPSA and the CW margin loss (attacks that break ODEs PGD does not)"),
    paper: Optional[str] = typer.Option(None, help="add the paper's numbers side by side (E1..E5)"),
    out: Path = typer.Option(Path("runs/attack"), "--out", "-o", help="output dir (results.csv/.md, plot)"),
    model_file: Optional[str] = _MODEL_FILE,
    weights: Optional[Path] = _WEIGHTS,
    torchscript: Optional[Path] = _TORCHSCRIPT,
    model: Optional[str] = _MODEL,
    normalize: Optional[str] = _NORMALIZE,
    dataset: Optional[str] = _DATASET,
    model_as_source: bool = typer.Option(False, "--model-as-source", help="transfer mode: craft on the --model-file/"
                                         "--torchscript/--model model, evaluate on the --checkpoint models"),
) -> None:
    """Attack checkpoints (or your own model) over an ε grid; write results.csv, results.md and accuracy_vs_eps.png."""
    from .evaluation.request import AttackJob, parse_eps

    if ode_extras:
        if "autoattack" not in attack_name:
            raise UserError("--ode-extras adds members to the autoattack ensemble: add -a autoattack")
        attack_arg = [*(attack_arg or []), "autoattack.ode_extras=true"]
    specs = _attack_specs(attack_name, attack_arg, grad_solver, eot)
    l2 = all(spec.norm == "l2" for spec in specs)
    job = AttackJob(
        checkpoints=_checkpoints(checkpoint or []), attacks=specs, eps=parse_eps(eps, eps_scale, l2),
        out=out, eps_scale=eps_scale, n_samples=n_samples, batch_size=batch_size, seed=seed, device=device,
        data_dir=data_dir, source=source and _checkpoints([source])[0], paper=_paper_name(paper), ode_backend=ode_backend, precision=precision,
        model=_model_source(model_file, weights, torchscript, model, normalize), model_as_source=model_as_source,
        dataset=dataset, independent_eps=independent_eps,
    )
    from .cli_attack import run_attack_command  # torch and the engine: only once the arguments are valid

    run_attack_command(job, console)


def _attack_specs(names: list[str], raw_args: list[str] | None, grad_solver: str | None = None, eot: int = 1) -> list:
    """Attack specs; 'key=value' applies to every attack that has the option, 'name.key=value' to one.
    `grad_solver` and `eot` apply to every attack (all must be gradient attacks)."""
    from .evaluation.request import AttackSpec

    specs = []
    pairs = parse_kv(raw_args, "--attack-arg")
    for name in names:
        entry = ATTACKS.get(name)
        mine = {}
        for key, value in pairs.items():
            owner, _, opt = key.rpartition(".")
            if owner == name or (not owner and opt in entry.options):
                mine[opt] = value
        specs.append(AttackSpec.parse(name, mine, grad_solver, eot))
    for key in pairs:
        owner, _, opt = key.rpartition(".")
        if owner and owner not in names:
            raise UserError(f"--attack-arg {key}: '{owner}' is not one of the --attack names")
        if not owner and not any(opt in ATTACKS.get(n).options for n in names):
            raise UserError(f"--attack-arg {key}: no chosen attack has option '{opt}'")
    return specs


def _paper_name(paper: str | None) -> str | None:
    from .report.published import PAPER

    if paper is not None and paper.upper() not in PAPER:
        raise UserError(f"--paper must be one of {', '.join(PAPER)}, got '{paper}'")
    return paper.upper() if paper else None


@app.command()
def report(
    results: Path = typer.Argument(..., help="results.csv written by odebench attack"),
    paper: Optional[str] = typer.Option(None, help="add the paper's numbers side by side (E1..E5)"),
    out: Optional[Path] = typer.Option(None, help="where to write results.md and the plot (default: beside the CSV)"),
) -> None:
    """Re-render results.md and accuracy_vs_eps.png from a results CSV."""
    if not results.is_file():
        raise UserError(f"results file '{results}' does not exist")
    from .evaluation.store import ResultStore
    from .report import render

    ResultStore(results)  # validates that it is ours
    console.print(render(results, out, _paper_name(paper)), markup=False, highlight=False, soft_wrap=True)


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="where models and results go"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed"),
    precision: str = _PRECISION_ALL,
) -> None:
    """Main job, offline: train a ResNet and a Neural ODE on the embedded digits, attack with FGSM and PGD."""
    from .cli_reporter import RichReporter
    from .experiments.quickstart import run_quickstart

    run_quickstart(out, device, RichReporter(console), seed, precision)


@app.command()
def audit(
    checkpoint: Optional[Path] = typer.Argument(None, help="checkpoint dir to audit (or your model: --model-file, ...)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    n_samples: int = typer.Option(200, help="test images (class-balanced, deterministic)"),
    eps: Optional[str] = typer.Option(None, help="L∞ radius the attacks are compared at (default 0.1 grey, 8/255 colour)"),
    large_eps: str = typer.Option("0.5", help="L∞ radius where accuracy must reach chance"),
    square_queries: Optional[int] = typer.Option(None, help="Square attack queries per image (default 300)"),
    spsa_steps: Optional[int] = typer.Option(None, help="SPSA steps (default 10)"),
    spsa_samples: Optional[int] = typer.Option(None, help="SPSA perturbation pairs per step (default 16)"),
    boundary_steps: Optional[int] = typer.Option(None, help="Boundary attack steps (default 0: skipped; e.g. 1000)"),
    apgd_steps: Optional[int] = typer.Option(None, help="APGD-CE steps (default 100)"),
    ode_backend: str = _ODE_BACKEND,
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default <checkpoint>/audit, "
                                       "runs/audit/<model> for your model)"),
    seed: int = typer.Option(0, help="seed of the attacks"),
    model_file: Optional[str] = _MODEL_FILE,
    weights: Optional[Path] = _WEIGHTS,
    torchscript: Optional[Path] = _TORCHSCRIPT,
    model: Optional[str] = _MODEL,
    normalize: Optional[str] = _NORMALIZE,
    dataset: Optional[str] = _DATASET,
    precision: str = typer.Option("fp32", help="gradient attacks' gradients: fp32 (default: the audit judges "
                                  "gradient quality, and bf16's weaker gradients would read as masking), auto or bf16"),
) -> None:
    """Check a checkpoint (or your own model) for gradient masking (Carlini et al. 2019); write audit.md / audit.json."""
    if checkpoint is not None:
        _checkpoints([checkpoint])
    from .cli_reporter import RichReporter
    from .diagnostics.command import parse_radius, run_audit

    run_audit(checkpoint, RichReporter(console), model=_model_source(model_file, weights, torchscript, model, normalize),
              dataset=dataset, data_dir=data_dir, n_samples=n_samples,
              eps=None if eps is None else parse_radius("eps", eps), large_eps=parse_radius("large_eps", large_eps),
              device=device, out=out, seed=seed, ode_backend=ode_backend, precision=precision,
              square_queries=square_queries, spsa_steps=spsa_steps,
              spsa_samples=spsa_samples, boundary_steps=boundary_steps, apgd_steps=apgd_steps)


@app.command()
def stability(
    checkpoints: Optional[list[Path]] = typer.Argument(None, help="checkpoint dirs to measure"),
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", "-c", help="more checkpoints (repeatable)"),
    n_samples: int = typer.Option(64, help="test images (class-balanced, deterministic)"),
    sizes: str = typer.Option("1e-3,1e-2,1e-1", help="L2 sizes of the input perturbations, comma list"),
    kinds: str = typer.Option("random,adversarial", help="perturbation directions: random (Gaussian), adversarial (FGSM)"),
    time_points: int = typer.Option(11, help="time grid points for Neural ODEs"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default <checkpoint>/stability, or runs/stability for several)"),
    seed: int = typer.Option(0, help="seed of the random perturbations"),
    model_file: Optional[str] = _MODEL_FILE,
    weights: Optional[Path] = _WEIGHTS,
    torchscript: Optional[Path] = _TORCHSCRIPT,
    model: Optional[str] = _MODEL,
    normalize: Optional[str] = _NORMALIZE,
    dataset: Optional[str] = _DATASET,
) -> None:
    """Measure how input perturbations grow along depth (paper's Theorem 3.1); CSV, plot, summary."""
    paths = _checkpoints([*(checkpoints or []), *(checkpoint or [])])
    from .cli_reporter import RichReporter
    from .diagnostics.command import parse_kinds, parse_sizes, run_stability

    run_stability(paths, RichReporter(console),
                  model=_model_source(model_file, weights, torchscript, model, normalize), dataset=dataset,
                  n_samples=n_samples, sizes=parse_sizes(sizes),
                  kinds=parse_kinds(kinds), points=time_points, data_dir=data_dir, device=device, out=out, seed=seed)


@app.command()
def reproduce(
    experiments: list[str] = typer.Argument(..., help="E1 E2 E3 E4 E5, or all"),
    preset: str = typer.Option("cpu", help="paper (exact settings), cpu (about an hour each on 2 cores), strong (MNIST twins trained to convergence), published (Yan et al.'s exact pair with their 100-epoch recipe) or fast (smoke run)"),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", "-o", help="root of checkpoints and results"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    only: Optional[str] = typer.Option(None, help="run one half of a two-dataset experiment: mnist or cifar10"),
    cifar: Optional[str] = typer.Option(None, help="dataset for CIFAR-10 (default: cifar10 if its files exist, else cifar10-jpeg)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed"),
    precision: str = _PRECISION_ALL,
    zoo: Optional[Path] = typer.Option(Path("zoo"), help="finished checkpoints to use instead of training "
                                       "(<zoo>/<preset>/<dataset>/<key>/, taken only if trained with the same settings)"),
) -> None:
    """Reproduce the paper's experiments: train missing checkpoints, attack, compare with the published numbers."""
    from .experiments.paper_specs import experiment_names
    from .experiments.presets import check_preset

    check_preset(preset)
    experiment_names(experiments)
    from .cli_reporter import RichReporter
    from .experiments.reproduce import reproduce as run

    run(experiments, preset, out, data_dir, device, seed, only, cifar, RichReporter(console), precision, zoo)


@app.command()
def converge(
    checkpoint: list[Path] = typer.Option(..., "--checkpoint", "-c", help="checkpoint dir (repeatable)"),
    eps: list[str] = typer.Option(..., "--eps", "-e", help="L∞ ε values: 0.3, 8/255, or comma lists (repeatable)"),
    eps_scale: float = typer.Option(1.0, help="divide --eps by this (255 for a [0,255] grid)"),
    budgets: Optional[str] = typer.Option(None, help="comma list of rungs to run (default all, always in ladder order): "
                                          "pgd10,pgd40,pgd100,pgd1000,pgd1000x5,apgd-ce,apgd-t,autoattack"),
    step_size: str = typer.Option("0.01", help="PGD rungs' step in pixel units (the paper's 0.01), or 'scaled' (2.5·ε/steps)"),
    n_samples: int = typer.Option(1000, help="test images to evaluate (class-balanced, deterministic)"),
    batch_size: int = typer.Option(250, help="attack batch size"),
    seed: int = typer.Option(0, help="random seed (each rung derives its own from it, as odebench attack does)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    ode_backend: str = _ODE_BACKEND,
    precision: str = _PRECISION,
    out: Path = typer.Option(Path("runs/converge"), "--out", "-o", help="output dir (budget.csv/.md/.png, state/)"),
) -> None:
    """Robust accuracy vs attack budget (PGD-10 ... AutoAttack), worst case so far; says whether it converged."""
    from .evaluation.request import parse_eps

    paths, radii = _checkpoints(checkpoint), parse_eps(eps, eps_scale)
    from .cli_converge import run_converge_command
    from .evaluation.budget import BudgetJob, parse_budgets, parse_step_size

    job = BudgetJob(checkpoints=paths, eps=radii, out=out, budgets=parse_budgets(budgets),
                    step_size=parse_step_size(step_size), eps_scale=eps_scale, n_samples=n_samples,
                    batch_size=batch_size, seed=seed, device=device, data_dir=data_dir, ode_backend=ode_backend,
                    precision=precision)
    run_converge_command(job, console)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="checkpoint written by torch.save: a whole model, a state dict or a dict"),
    target: Path = typer.Argument(..., help="the .safetensors file to write"),
    key: Optional[str] = typer.Option(None, help="dotted path to the weights inside the file (default: 'state_dict' "
                                      "or 'model' if present, else everything)"),
    strip_prefix: str = typer.Option("", help="remove this prefix from tensor names (e.g. 'module.' from DataParallel)"),
) -> None:
    """Convert a pickled checkpoint to safetensors without running any of its code; list names and classes."""
    from .cli_converge import run_convert_command

    run_convert_command(source, target, key, strip_prefix, console)


claims_app = typer.Typer(no_args_is_help=True, help="Published robustness claims: list them, check them on the released weights.")
app.add_typer(claims_app, name="claims")


@claims_app.command("list")
def claims_list(
    ledger: Optional[Path] = typer.Option(None, help="a folder of claim TOML files (default: odebench's published ledger)"),
) -> None:
    """The claims in the ledger: paper, model, dataset, published numbers and where the weights are."""
    from .claims import load_ledger

    claims = load_ledger(ledger).values()
    table = Table(title="published claims")
    for column in ("name", "model", "data · threat", "published: attack ε → robust %"):
        table.add_column(column, style="bold" if column == "name" else None, no_wrap=column == "name")
    for claim in claims:
        numbers = ", ".join(f"{n.attack} {n.eps:g} → {n.robust_acc:g}" for n in claim.numbers)
        table.add_row(claim.name, claim.model, f"{claim.dataset} ({claim.sampling.n}) · {claim.threat_model}", numbers)
    console.print(table)
    for claim in claims:
        console.print(f"[bold]{claim.name}[/bold]: {claim.paper}. {claim.title}. Weights: {claim.weights.url} "
                      f"(SHA-256 {claim.weights.sha256}; {claim.weights.licence})", highlight=False)


@claims_app.command("check")
def claims_check(
    name: str = typer.Argument(..., help="the claim (odebench claims list)"),
    weights: Path = typer.Option(..., "--weights", help="the released weights as downloaded (a pickled model is read "
                                 "without running its code) or their tensors (.safetensors, state dict)"),
    n_samples: Optional[int] = typer.Option(None, help="images for the ladder and the audit (default: the claim's, "
                                            "the first of the protocol's images)"),
    protocol_samples: Optional[int] = typer.Option(None, help="cut the published protocol to its first N images "
                                                   "(default: all, as published)"),
    budgets: Optional[str] = typer.Option(None, help="the ladder's rungs (default: the claim's; see odebench converge)"),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="run the gradient-masking audit too"),
    ledger: Optional[Path] = typer.Option(None, help="a folder of claim TOML files (default: odebench's published ledger)"),
    data_dir: Optional[str] = typer.Option(None, help="data root (default: $ODEBENCH_DATA, else ./data)"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    seed: int = typer.Option(0, help="random seed of the attacks"),
    precision: str = _PRECISION,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dir (default runs/claims/NAME)"),
) -> None:
    """Run a claim's published protocol, then the converged ladder and the audit; print claimed vs measured."""
    from .claims import get_claim

    claim = get_claim(name, ledger)
    from .claims.check import check_claim, claim_markdown
    from .cli_reporter import RichReporter

    report = check_claim(claim, weights, out or Path("runs/claims") / name, data_dir=data_dir, n_samples=n_samples,
                         protocol_samples=protocol_samples, budgets=budgets, audit=audit, device=device, seed=seed,
                         precision=precision, reporter=RichReporter(console))
    console.print(claim_markdown(report), markup=False, highlight=False)

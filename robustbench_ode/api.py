"""The Python API for notebooks and scripts, on the same engine as the command line.

`evaluate` is `odebench attack` for one model (an `nn.Module` or a checkpoint directory) and
returns the rows of results.csv as a DataFrame; `audit` is `odebench audit` on given samples and
returns the verdict table. Both accept any module mapping [0, 1] pixels to logits (or wrap one
that expects normalised input with `normalize=(mean, std)`), checked as `user_model` checks a
model given on the command line. Progress and warnings go to the `robustbench_ode` logger
(`progress.LoggingReporter`). See docs/api.md.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from .data import load_samples
from .data.base import DatasetInfo, channel_stats
from .errors import UserError
from .evaluation.attack_progress import run_loaded
from .evaluation.request import AttackJob, AttackSpec, parse_eps
from .evaluation.target import Target
from .evaluation.session import Evaluation
from .evaluation.store import STR_COLUMNS
from .ode_backends import DEFAULT_ODE_BACKEND
from .progress import LoggingReporter
from .runinfo import resolve_device, seed_everything
from .pixel_model import check_logits, wrap
from .user_model import class_source_sha256, module_meta
from .weight_files import state_sha256

Normalize = tuple[Sequence[float], Sequence[float]]
AttackArg = str | tuple[str, dict[str, Any]]


def read_results(path: str | Path | io.StringIO) -> pd.DataFrame:
    """A results.csv as `evaluate` returns it (hash columns kept as text, blanks as NaN)."""
    return pd.read_csv(path, dtype=STR_COLUMNS)


def _tensor_info(model: nn.Module, x: Tensor, y: Tensor) -> DatasetInfo:
    """A description of user tensors; the number of classes is the model's output width."""
    with torch.no_grad():
        out = model(x[:2])
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise UserError(f"the model returns {tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__} "
                        "for 2 images; odebench needs logits of shape (N, classes)")
    if int(y.max()) >= out.shape[1] or int(y.min()) < 0:
        raise UserError(f"labels must lie in 0..{out.shape[1] - 1} (the model has {out.shape[1]} outputs)")
    mean, std = channel_stats(x)
    return DatasetInfo("tensors", f"tensors ({x.shape[1]}x{x.shape[2]}x{x.shape[3]})", x.shape[1], x.shape[2],
                       out.shape[1], mean, std)


def _target(model: nn.Module | str | Path, x: Tensor, y: Tensor, info: DatasetInfo | None, device: torch.device,
            ode_backend: str, name: str | None, normalize: Normalize | None) -> tuple[Target, DatasetInfo]:
    """A checkpoint directory or an in-memory module as a runner `Target`, checked against `x`; the
    module is wrapped (never changed, except for its adaptive ODE blocks' backend, its device and eval mode)."""
    if isinstance(model, (str, Path)):
        if normalize is not None:
            raise UserError("normalize applies to an nn.Module, not to a checkpoint (which normalises inside)")
        target = Target.load(Path(model), device, ode_backend)
        if info is not None and info.name != target.meta["dataset"]:
            raise UserError(f"checkpoint '{model}' was trained on {target.meta['dataset']}, not {info.name}")
        target.label = name or ""
        info = info or DatasetInfo.from_dict(target.meta["dataset_info"])
        check_logits(target.model, info, x[:2].to(device), target.name)
        return target, info
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be an nn.Module or a checkpoint directory, not a {type(model).__name__}")
    norm = (tuple(map(float, normalize[0])), tuple(map(float, normalize[1]))) if normalize is not None else None
    wrapped = wrap(model.eval(), norm, x[:4]).to(device).eval()
    label = name or type(model).__name__
    info = info or _tensor_info(wrapped, x.to(device), y)
    check_logits(wrapped, info, x[:2].to(device), label)
    meta = module_meta(label, info, state_sha256(model), class_source_sha256(model), name=label,
                       normalize={"mean": list(norm[0]), "std": list(norm[1])} if norm else None)
    return Target.from_module(wrapped, meta, device, ode_backend, label=label), info


def _specs(attacks: Sequence[AttackArg], grad_solver: str | None, eot: int) -> list[AttackSpec]:
    """'pgd' or ('pgd', {'steps': 10}) -> validated attack specs."""
    specs = []
    for item in attacks:
        name, options = (item, {}) if isinstance(item, str) else item
        specs.append(AttackSpec.parse(name, dict(options), grad_solver, eot))
    if not specs:
        raise UserError("attacks needs at least one attack name")
    return specs


def evaluate(
    model: nn.Module | str | Path,
    data: str | tuple[Tensor, Tensor] = "digits",
    attacks: Sequence[AttackArg] = ("pgd",),
    eps: Sequence[float | str] = (0.1,),
    *,
    n_samples: int | None = 1000,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    name: str | None = None,
    normalize: Normalize | None = None,
    eps_scale: float = 1.0,
    batch_size: int = 250,
    seed: int = 0,
    device: str = "cpu",
    ode_backend: str = DEFAULT_ODE_BACKEND,
    grad_solver: str | None = None,
    eot: int = 1,
    precision: str = "auto",
    independent_eps: bool = False,
) -> pd.DataFrame:
    """Robust accuracy of `model` under each attack and ε: the rows `odebench attack` writes to
    results.csv, as a DataFrame with exactly its columns.

    `model` maps [0, 1] pixels to logits (an `nn.Module`; `normalize=(mean, std)` wraps one that
    expects normalised input), or is a checkpoint directory. `data` is a registered dataset name
    (test split, read from `data_dir`) or an `(x, y)` pair of tensors; `n_samples` class-balanced
    images of it are attacked (None: all). `attacks` are registered names or `(name, options)`
    pairs; `eps` are radii in pixel units (numbers or strings such as '8/255', divided by
    `eps_scale`). With `out` the same files as the CLI's are written there (results.csv, .md, the
    plot, provenance.jsonl) and finished cells are reused; without it nothing is kept. A model's
    adaptive ODE blocks are switched to `ode_backend` in place ('model' leaves them as they are).
    `precision` is what the attacks' gradients run in (auto: bf16 where the hardware computes it
    natively; every reported decision is made in fp32), as `odebench attack --precision`.
    The grid is nested (a larger radius attacks only the samples the smaller ones left robust);
    `independent_eps=True` attacks every radius on every correctly classified sample.
    """
    dev = resolve_device(device)
    specs = _specs(attacks, grad_solver, eot)
    radii = parse_eps([str(e) for e in eps], eps_scale, all(spec.build().norm == "l2" for spec in specs))
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    x, y, info = load_samples(data, data_dir, n_samples)
    target, info = _target(model, x, y, info, dev, ode_backend, name, normalize)
    ev = Evaluation(dev, [target], None, x, y, info)

    def run(folder: Path) -> list[dict[str, Any]]:
        folder.mkdir(parents=True, exist_ok=True)
        job = AttackJob(checkpoints=[], attacks=specs, eps=radii, out=folder, eps_scale=eps_scale,
                        n_samples=len(y), batch_size=batch_size, seed=seed, device=device, ode_backend=ode_backend,
                        precision=precision, independent_eps=independent_eps,
                        extra={"api": "robustbench_ode.evaluate"})
        return run_loaded(ev, job, LoggingReporter(), report=out is not None)

    if out is not None:
        if Path(out).exists() and not Path(out).is_dir():
            raise UserError(f"out '{out}' is a file; give a directory for results.csv, results.md and the plot")
        rows = run(Path(out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run(Path(tmp))
    return read_results(io.StringIO(pd.DataFrame(rows).to_csv(index=False)))


def audit(
    model: nn.Module | str | Path,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | None = None,
    large_eps: float = 0.5,
    normalize: Normalize | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    ode_backend: str = DEFAULT_ODE_BACKEND,
    **budgets: int,
) -> pd.DataFrame:
    """The gradient-masking audit of `odebench audit` on the samples `(x, y)`: one row per check
    (check, verdict, numbers, explanation, seconds), as audit.md lists them; `df.attrs["verdict"]`
    holds the verdict line and `df.attrs["not_applicable"]` the checks that do not apply.

    `model` as for `evaluate`; `eps` defaults to 0.1 for grey and 8/255 for colour images;
    `budgets` are `AuditConfig` fields (square_queries, spsa_steps, spsa_samples, boundary_steps,
    apgd_steps, ...). With `out`, audit.md and audit.json are written there.
    """
    from .diagnostics.audit_report import numbers_text, verdict_line, write_audit
    from .diagnostics.checks import run_checks
    from .diagnostics.command import audit_config, not_applicable
    from .runinfo import provenance

    dev = resolve_device(device)
    x, y, _ = load_samples((x, y))
    target, info = _target(model, x, y, None, dev, ode_backend, name, normalize)
    cfg = audit_config(info, eps, large_eps, seed, dict(budgets))
    seed_everything(seed)
    result = run_checks(target.model, x, y, cfg, dev, LoggingReporter())
    if out is not None:
        header = {"model": target.name, "weights_sha256": target.meta["weights_sha256"], "dataset": info.label,
                  "eps (L∞)": round(cfg.eps, 6), "ode_backend": target.ode_backend or "n/a"}
        write_audit(Path(out), result, header, provenance(seed, dev))
    df = pd.DataFrame([{"check": c.name, "verdict": c.status, "numbers": numbers_text(c.numbers),
                        "explanation": c.explanation, "seconds": c.seconds} for c in result.checks])
    df.attrs.update(verdict=verdict_line(result), not_applicable=not_applicable(result),
                    config=asdict(cfg), clean_acc=result.clean_acc)
    return df

"""Bodies of `odebench audit` and `odebench stability`: load checkpoints (or a model given as
code, `user_model`) and test data, run, print, write files. The CLI only parses."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import load_checkpoint
from ..data import load_samples
from ..data.base import DatasetInfo
from ..errors import UserError, option
from ..evaluation.target import ode_backend_of
from ..ode_backends import DEFAULT_ODE_BACKEND
from ..precision import resolve_precision
from ..progress import SILENT, Reporter
from ..parsing import parse_number
from ..runinfo import atomic_write_json, provenance, resolve_device, seed_everything
from ..user_model import ModelSource
from .checks import NA, AuditConfig, AuditResult, run_checks
from .audit_report import TONE, verdict_line, verdict_table, write_audit
from .stability import KINDS, depth_of, stability_rows
from .stability_report import plot_amplification, summary, summary_table, write_csv


def default_eps(info: DatasetInfo) -> float:
    """The L∞ radius compared at when none is given: 0.1 for grey digits, 8/255 for colour images."""
    return 0.1 if info.in_channels == 1 else 8 / 255


def load_audited(checkpoint: Path | None, model: ModelSource | None, dataset: str | None, data_dir: str | None,
                 n_samples: int, dev: torch.device) -> tuple[nn.Module, dict[str, Any], Path, Tensor, Tensor, DatasetInfo]:
    """Exactly one of a checkpoint and a model given as code, with test samples of its dataset
    (`dataset` must match a checkpoint's; a model given as code defaults to digits): returns
    (model, meta, path naming it, x, y, dataset info)."""
    if (checkpoint is None) == (model is None):
        raise UserError(f"give a checkpoint dir, or a model with {option('model_file')}, {option('torchscript')} or "
                        f"{option('model')} (not both)")
    if checkpoint is not None:
        net, meta = load_checkpoint(checkpoint, dev)
        if dataset is not None and dataset != meta["dataset"]:
            raise UserError(f"{option('dataset')} {dataset} differs from the checkpoint's dataset ({meta['dataset']})")
        return (net, meta, Path(checkpoint), *load_samples(meta["dataset"], data_dir, n_samples))
    x, y, info = load_samples(dataset or "digits", data_dir, n_samples)
    net, meta, path = model.load(info, x[:2], dev)
    return net, meta, path, x, y, info


def audit_config(info: DatasetInfo, eps: float | None, large_eps: float, seed: int, budgets: dict[str, int | None]) -> AuditConfig:
    """Validated radii (`eps` None: `default_eps`) and budgets (None keeps the default) of an audit."""
    budgets = {k: v for k, v in budgets.items() if v is not None}
    eps = default_eps(info) if eps is None else eps
    for name, value in (("eps", eps), ("large_eps", large_eps)):
        if not 0 < value <= 1:
            raise UserError(f"{option(name)} must be in (0, 1] (pixel units), got {value}")
    for name, value in budgets.items():
        if value < 0:
            raise UserError(f"{option(name)} must be >= 0, got {value}")
    return AuditConfig(eps=eps, large_eps=large_eps, seed=seed, **budgets)


def not_applicable(result: AuditResult) -> str:
    """One line naming the checks that do not apply to this model, and why ('' when all apply)."""
    skipped = [f"{c.name} ({c.explanation})" for c in result.checks if c.status == NA]
    return "not applicable: " + "; ".join(skipped) if skipped else ""


def run_audit(
    checkpoint: Path | None, reporter: Reporter = SILENT, *, model: ModelSource | None = None,
    dataset: str | None = None, data_dir: str | None = None, n_samples: int = 200, eps: float | None = None,
    large_eps: float = 0.5, device: str = "auto", out: Path | None = None, seed: int = 0,
    ode_backend: str = DEFAULT_ODE_BACKEND, precision: str = "fp32", **budgets: int | None,
) -> AuditResult:
    """Audit one checkpoint, or a model given as code (`model`), for gradient masking; write
    audit.md / audit.json (default `<checkpoint>/audit`, `runs/audit/<model>` for a model given as
    code) and report the verdict table and line. Fails are reported, not raised.

    `budgets` are `AuditConfig` fields (square_queries, spsa_steps, ...); None keeps the default.
    Adaptive ODE blocks integrate with `ode_backend` (as `odebench attack` does). `precision` is
    what gradient attacks' gradients run in (default fp32: the audit judges gradient quality, and a
    bf16 gradient's weakness would read as masking); decisions are always fp32.
    """
    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)
    net, meta, path, x, y, info = load_audited(checkpoint, model, dataset, data_dir, n_samples, dev)
    backend = ode_backend_of(net, ode_backend)
    cfg = audit_config(info, eps, large_eps, seed, budgets)
    seed_everything(seed)
    t0 = time.perf_counter()
    result = run_checks(net, x, y, cfg, dev, reporter, precision=resolved)
    wall = round(time.perf_counter() - t0, 1)
    name = model.label if model else path.name
    header = {"checkpoint": str(path), "model": meta["model"], "dataset": info.label,
              "eps (L∞)": round(cfg.eps, 6), "ode_backend": backend or "n/a",
              "gradient precision": resolved.for_model(net).name, "wall_s": wall}
    if model:
        header |= {k: meta[k] for k in ("weights_sha256", "source_sha256") if meta.get(k)}
    skipped = not_applicable(result)
    if skipped:
        header["not applicable"] = skipped.removeprefix("not applicable: ")
    out = Path(out) if out is not None else (path / "audit" if checkpoint else Path("runs") / "audit" / name.replace(":", "-"))
    write_audit(out, result, header, provenance(seed, dev))
    reporter.table(verdict_table(result, f"gradient-masking audit of {name} ({info.label}, "
                                         f"{result.n} test images, {wall:g} s)"))
    reporter.result(verdict_line(result), TONE[result.verdict])
    if skipped:
        reporter.block(skipped)
    reporter.line(f"wrote {out / 'audit.md'} and audit.json")
    return result


def parse_radius(name: str, text: str) -> float:
    """'0.3' or '8/255' -> a float (range checks happen in `run_audit`); `name` is the setting
    (`eps`, `large_eps`) a bad number is reported under."""
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{option(name)} '{text}' is not a number (examples: 0.3, 8/255)") from None


def parse_sizes(text: str) -> list[float]:
    """'1e-3,1e-2,1e-1' -> positive floats."""
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option('sizes')} must be comma-separated numbers, got {text!r}") from None
    if not sizes or any(not s > 0 for s in sizes):
        raise UserError(f"{option('sizes')} must be positive numbers, got {text!r}")
    return sizes


def parse_kinds(text: str) -> tuple[str, ...]:
    """'random,adversarial' -> validated kinds."""
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise UserError(f"{option('kinds')} must be a comma list of {', '.join(KINDS)}, got {text!r}")
    return kinds


def _names(paths: list[Path]) -> list[str]:
    """Checkpoint directory names, or full paths where two would share a name."""
    names = [Path(p).resolve().name for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def run_stability(
    checkpoints: list[Path], reporter: Reporter = SILENT, *, model: ModelSource | None = None,
    dataset: str | None = None, n_samples: int = 64, sizes: list[float] | None = None,
    kinds: tuple[str, ...] = KINDS, points: int = 11, data_dir: str | None = None, device: str = "auto", out: Path | None = None, seed: int = 0,
) -> list[dict]:
    """Measure perturbation growth along depth for each checkpoint and a model given as code
    (`model`, on `dataset`, default digits); write stability.csv, stability.png and stability.json
    (summary + provenance) into `out` (default `<checkpoint>/stability` for one checkpoint,
    `runs/stability` otherwise)."""
    if not checkpoints and model is None:
        raise UserError(f"give at least one checkpoint (as arguments or with {option('checkpoint')}), or a model "
                        f"with {option('model_file')}, {option('torchscript')} or {option('model')}")
    sizes = sizes or [1e-3, 1e-2, 1e-1]
    dev = resolve_device(device)
    loaded = [(name, *load_checkpoint(p, dev)) for name, p in zip(_names(checkpoints), checkpoints)]
    if model is not None:
        x, _, info = load_samples(dataset or "digits", data_dir, 2)
        net, meta, _ = model.load(info, x, dev)
        try:
            depth_of(net)
        except UserError:
            raise UserError(f"model '{model.label}' has neither odebench's residual blocks (SchemeNet) nor an ODEBlock: "
                            "stability follows the hidden state through those") from None
        loaded.append((model.label, net, meta))
    rows: list[dict] = []
    with reporter.status("measuring") as status:
        for name, net, meta in loaded:
            status.update(f"stability: {name}")
            x, y, _ = load_samples(meta["dataset"], data_dir, n_samples)
            seed_everything(seed)
            rows += stability_rows(net, name, x.to(dev), y.to(dev), sizes, kinds, points, seed)
    out = Path(out) if out is not None else (Path(checkpoints[0]) / "stability" if len(loaded) == 1 and checkpoints
                                             else Path("runs") / "stability")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "stability.csv")
    plot_amplification(rows, out / "stability.png")
    models = [{k: meta.get(k) for k in ("model", "weights_sha256", "source_sha256")} | {"name": name}
              for name, _, meta in loaded if model is not None and name == model.label]
    atomic_write_json(out / "stability.json", {
        "checkpoints": [str(p) for p in checkpoints], **({"models": models} if models else {}),
        "n_samples": n_samples, "sizes": sizes, "kinds": list(kinds),
        "time_points": points, "summary": summary(rows), "provenance": provenance(seed, dev),
    })
    reporter.table(summary_table(rows))
    reporter.line(f"wrote {out / 'stability.csv'}, stability.png and stability.json")
    return rows

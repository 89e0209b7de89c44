"""One `odebench attack` invocation: load checkpoints (and a model given as code) and data, run the
grid, write the reports."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import distributed
from ..data import check_sample_count, load_samples
from ..data.base import DatasetInfo
from ..errors import UserError, option
from ..model_checks import OK, inspect_model
from ..report import render
from ..runinfo import atomic_write_text, provenance, resolve_device
from ..user_model import FORMAT as USER_FORMAT
from ..user_model import ModelSource
from ..precision import resolve_precision
from .nested import INDEPENDENT, NESTED
from .request import AttackJob
from .runner import Runner
from .target import Target
from .store import ResultStore


@dataclass
class Evaluation:
    """What an evaluation command works on: loaded checkpoints and the class-balanced test images."""

    device: torch.device
    targets: list[Target]
    source: Target | None
    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo


def load_evaluation(checkpoints: list[Path], out: Path, outputs: str, *, n_samples: int, batch_size: int,
                    device: str, data_dir: str | None, ode_backend: str, source: Path | None = None,
                    model: ModelSource | None = None, model_as_source: bool = False,
                    dataset: str | None = None) -> Evaluation:
    """Validate the shared options, load the checkpoints and `model` (adaptive ODEs on `ode_backend`)
    and pick `n_samples` class-balanced test images of their common dataset (`dataset`, else the
    checkpoints', else digits); create `out` (it will hold `outputs`). `model` is a target, or
    with `model_as_source` the model transfer examples are crafted on."""
    check_sample_count(n_samples)  # before any checkpoint is loaded
    if batch_size < 1:
        raise UserError(f"{option('batch_size')} must be >= 1, got {batch_size}")
    if not checkpoints and model is None:
        raise UserError(f"at least one {option('checkpoint')} is required (or a model: {option('model_file')}, "
                        f"{option('torchscript')}, {option('model')})")
    if model_as_source and (model is None or source is not None or not checkpoints):
        raise UserError(f"{option('model_as_source')} crafts on the {option('model_file')}/{option('torchscript')}/"
                        f"{option('model')} model and attacks the {option('checkpoint')} models: give both, and no "
                        f"{option('source')}")
    dev = resolve_device(device)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option('out')} '{out}' is a file; give a directory for {outputs}")
    targets = [Target.load(p, dev, ode_backend) for p in checkpoints]
    crafter = Target.load(source, dev, ode_backend) if source else None
    datasets = {t.meta["dataset"] for t in targets + ([crafter] if crafter else [])}
    if dataset is not None and datasets and datasets != {dataset}:
        raise UserError(f"{option('dataset')} {dataset} differs from the checkpoints' dataset "
                        f"({', '.join(sorted(datasets))})")
    if len(datasets) > 1:
        raise UserError(f"checkpoints were trained on different datasets ({', '.join(sorted(datasets))})")
    x, y, info = load_samples(dataset or (datasets.pop() if datasets else "digits"), data_dir, n_samples)
    if model is not None:
        module, meta, path = model.load(info, x[:2], dev)
        loaded = Target.from_module(module, meta, dev, ode_backend, path, model.label)
        if model_as_source:
            crafter = loaded
        else:
            targets.append(loaded)
    out.mkdir(parents=True, exist_ok=True)
    return Evaluation(dev, targets, crafter, x, y, info)


def identities(ev: Evaluation) -> list[dict[str, Any]]:
    """What identifies each model given as code (for provenance): name, files and their SHA-256."""
    keys = ("model", "weights", "weights_sha256", "source", "source_sha256", "normalize", "timm_version")
    return [{"name": t.name} | {k: t.meta[k] for k in keys if k in t.meta}
            for t in ev.targets + ([ev.source] if ev.source else []) if t.meta.get("format") == USER_FORMAT]


def append_provenance(out: Path, record: dict[str, Any]) -> None:
    """Add one invocation's record to `out/provenance.jsonl` (rewritten atomically)."""
    log = out / "provenance.jsonl"
    previous = log.read_text() if log.exists() else ""
    atomic_write_text(log, previous + json.dumps(record, default=str) + "\n")


def run_job(job: AttackJob, on_cell: Callable[[str], None] | None = None,
            progress: Callable[[int, int], None] | None = None,
            on_warning: Callable[[str], None] | None = None,
            on_note: Callable[[str], None] | None = None) -> tuple[list[dict], str]:
    """Run every cell of the job not yet in `out/results.csv`; return this job's rows and Markdown."""
    ev = load_evaluation(job.checkpoints, job.out, "results.csv, results.md and the plot", n_samples=job.n_samples,
                         batch_size=job.batch_size, device=job.device, data_dir=job.data_dir,
                         ode_backend=job.ode_backend, source=job.source, model=job.model,
                         model_as_source=job.model_as_source, dataset=job.dataset)
    return run_evaluation(ev, job, on_cell, progress, on_warning, on_note=on_note)


def run_evaluation(ev: Evaluation, job: AttackJob, on_cell: Callable[[str], None] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   on_warning: Callable[[str], None] | None = None, report: bool = True,
                   on_note: Callable[[str], None] | None = None) -> tuple[list[dict], str]:
    """Run the job's grid on loaded models and samples (the CLI's and the Python API's engine);
    return this job's rows and, with `report`, the Markdown (results.md and the plot written).

    Under torchrun every process runs the same grid on its share of each cell's samples and gets
    every row; rank 0 alone writes the files (the others return the rows and no Markdown)."""
    store = ResultStore(job.out / "results.csv")
    others = sorted({str(r["dataset"]) for r in store.rows} - {ev.info.label})
    if others:  # a cell's key names its model, attack and samples, not its dataset: never mix two in one store
        raise UserError(f"{option('out')} '{job.out}' holds results on {', '.join(others)}; this job evaluates on "
                        f"{ev.info.label}: give another {option('out')}")
    precision = resolve_precision(job.precision, ev.device)
    for target in ev.targets + ([ev.source] if ev.source else []):
        if not target.findings:
            target.findings = inspect_model(target.model, ev.x[:4].to(ev.device))
        gradient_attacks = [a.name for a in job.attacks if a.uses_gradients]
        crafts = target is ev.source or ev.source is None  # transfer attacks take gradients of the source only
        if crafts and gradient_attacks and any(f.check == "input gradient" and f.status != OK for f in target.findings):
            raise UserError(f"model '{target.name}': its output has no gradient with respect to the input, so "
                            f"{', '.join(gradient_attacks)} cannot run on it; use gradient-free attacks "
                            "(square, spsa, boundary)")
        for finding in target.findings:
            if (finding.status != OK or finding.notice) and on_warning is not None:
                on_warning(f"{target.name}: {finding.message}")
    runner = Runner(store, ev.x, ev.y, job.batch_size, job.seed, ev.device, ev.info.label, job.eps_scale, on_cell,
                    progress, on_warning, precision, on_note=on_note)
    models = identities(ev)
    processes = distributed.world_size()
    if distributed.is_main():
        append_provenance(job.out, provenance(job.seed, ev.device) | {
            "checkpoints": [str(p) for p in job.checkpoints],
            **({"models": models} if models else {}),
            "model_checks": {t.name: [asdict(f) for f in t.findings]
                             for t in ev.targets + ([ev.source] if ev.source else [])},
            "attacks": [{"name": a.name, "options": a.options, "grad_solver": a.grad_solver, "eot": a.eot}
                        for a in job.attacks],
            "eps": job.eps, "eps_scale": job.eps_scale, "n_samples": len(ev.y), "batch_size": job.batch_size,
            "source": str(job.source) if job.source else None, "dataset": ev.info.to_dict(),
            "ode_backend": job.ode_backend, **precision.to_dict(),
            "eps_mode": INDEPENDENT if job.independent_eps else NESTED,
            **({"processes": processes} if processes > 1 else {}), **job.extra,
        })
    with torch.inference_mode(False):
        rows = runner.run(ev.targets, job.attacks, job.eps, ev.source, nested=not job.independent_eps)
    text = render(job.out / "results.csv", job.out, job.paper) if report and distributed.is_main() else ""
    return rows, text

"""`odebench reproduce`: train what is missing, run every table of an experiment, write a summary.

Layout under --out (default runs/reproduce):
  <preset>/models/<dataset>/<key>/      checkpoints, shared by experiments (resumed if interrupted;
                                        taken from --zoo <zoo>/<preset>/<dataset>/<key>/ when that
                                        checkpoint was trained with the same settings)
  <preset>/<E>/<dataset>/results.*      the experiment's tables, with the paper's numbers beside ours
  <preset>/<E>/README.md                preset changes, commands, device, wall times, tables
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ..checkpoint import META, read_meta
from ..data.base import default_data_dir
from ..errors import UserError, option
from ..evaluation.attack_progress import run_attack_job
from ..evaluation.request import AttackJob
from ..report.published import PAPER
from ..progress import Reporter
from ..runinfo import atomic_write_json, atomic_write_text, provenance, resolve_device
from ..training.train_progress import run_training
from ..training.config import CONFIG, STATE, TrainConfig, trained_with
from .paper_specs import build, experiment_names
from .presets import PRESETS, check_preset
from .spec import Experiment, ModelSpec


def resolve_datasets(data_dir: str | None, only: str | None, cifar: str | None) -> dict[str, str]:
    """Map the paper's datasets to registered ones: official CIFAR-10 files when present, else the JPEG copy."""
    root = Path(data_dir) if data_dir else default_data_dir()
    if cifar is None:
        cifar = "cifar10" if (root / "cifar-10-batches-py").exists() or not (root / "CIFAR10-JPEG").exists() else "cifar10-jpeg"
    datasets = {"mnist": "mnist", "cifar10": cifar}
    if only is not None:
        if only not in datasets:
            raise UserError(f"{option('only')} must be mnist or cifar10, got '{only}'")
        datasets = {only: datasets[only]}
    return datasets


ZOO_FILES = (META, CONFIG, "model.safetensors")  # a finished checkpoint and the config that made it


def from_zoo(zoo_dir: Path | None, run_dir: Path, cfg: TrainConfig, reporter: Reporter) -> None:
    """Copy `zoo_dir` into the empty `run_dir` when it was trained with `cfg`: a finished checkpoint
    (reused as it is), or an unfinished run (its train_state.pt and epoch snapshots; training then
    resumes from its last epoch). Loading verifies the weights' SHA-256 as for any run."""
    if zoo_dir is None or not (zoo_dir / CONFIG).is_file() or not trained_with(zoo_dir, cfg):
        return
    finished = all((zoo_dir / name).is_file() for name in ZOO_FILES)
    if not finished and not (zoo_dir / STATE).is_file():
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        return  # an interrupted run of our own: resume it
    run_dir.mkdir(parents=True, exist_ok=True)
    if finished:
        for name in ZOO_FILES:
            shutil.copyfile(zoo_dir / name, run_dir / name)
        reporter.line(f"using the zoo checkpoint {zoo_dir}")
        return
    shutil.copytree(zoo_dir, run_dir, dirs_exist_ok=True)
    reporter.line(f"resuming the unfinished zoo run {zoo_dir}")


def ensure_trained(spec: ModelSpec, models_dir: Path, data_dir: str | None, device: str, seed: int,
                   reporter: Reporter, precision: str = "auto", zoo: Path | None = None) -> Path:
    """Reuse a finished checkpoint (trained in any precision), take it from the zoo (`zoo`: the
    folder holding `<dataset>/<key>/`), resume an interrupted one, or train it."""
    run_dir = models_dir / spec.train.dataset / spec.key
    cfg = replace(spec.train, data_dir=data_dir, device=device, seed=seed, precision=precision)
    if not (run_dir / META).exists():
        from_zoo(zoo / spec.train.dataset / spec.key if zoo else None, run_dir, cfg, reporter)
    if (run_dir / META).exists() and read_meta(run_dir).get("completed"):
        if not trained_with(run_dir, cfg):
            raise UserError(f"'{run_dir}' was trained with other settings than this preset asks for (see its "
                            f"config.json); move it away to retrain, or choose another {option('out')}")
        reporter.line(f"reusing {run_dir}")
        return run_dir
    run_training(cfg, run_dir, resume=(run_dir / STATE).exists(), reporter=reporter)
    return run_dir


def run_experiment(exp: Experiment, out: Path, data_dir: str | None, device: str, seed: int,
                   reporter: Reporter, precision: str = "auto", zoo: Path | None = None) -> str:
    """Run all parts of one experiment (training steps and attack gradients in `precision`;
    checkpoints from `zoo`/<preset> where it has them); return the Markdown summary it writes."""
    exp_dir = out / exp.preset / exp.name
    models_dir = out / exp.preset / "models"
    zoo = zoo / exp.preset if zoo else None
    reporter.rule(f"{exp.name}: {exp.title} — preset {exp.preset}")
    for change in exp.changes:
        reporter.note("  preset", change)
    for part in exp.parts:
        part_t0 = time.perf_counter()
        checkpoints = [ensure_trained(m, models_dir, data_dir, device, seed, reporter, precision, zoo)
                       for m in part.models]
        source = ensure_trained(part.source, models_dir, data_dir, device, seed, reporter, precision, zoo) \
            if part.source else None
        job = AttackJob(checkpoints=checkpoints, attacks=part.attacks, eps=part.eps, out=exp_dir / part.dataset,
                        eps_scale=part.eps_scale, n_samples=part.n_samples, seed=seed, device=device,
                        data_dir=data_dir, source=source, paper=exp.name, precision=precision,
                        extra={"experiment": exp.name, "preset": exp.preset, "preset_changes": exp.changes})
        run_attack_job(job, reporter)
        _add_wall_time(exp_dir / part.dataset / "wall_time.json", time.perf_counter() - part_t0)
    summary = _summary(exp, exp_dir, device)
    atomic_write_text(exp_dir / "README.md", summary)
    atomic_write_json(exp_dir / "experiment.json", provenance(seed, resolve_device(device)) | {
        "experiment": exp.name, "preset": exp.preset, "changes": exp.changes})
    return summary


def _add_wall_time(path: Path, seconds: float) -> None:
    """Accumulate the wall time spent on a part over the invocations that worked on it."""
    total = json.loads(path.read_text())["wall_time_s"] if path.exists() else 0.0
    atomic_write_json(path, {"wall_time_s": round(total + seconds, 1)})


def _summary(exp: Experiment, exp_dir: Path, device: str) -> str:
    """Every table of the experiment found on disk (a run may cover one dataset at a time)."""
    paper = PAPER[exp.name]
    lines = [f"# {exp.name} — {exp.title}", "", f"Preset: **{exp.preset}**. Device: {device}.", ""]
    if paper.shape:
        lines += [f"Published shape: {paper.shape}.", ""]
    if exp.changes:
        lines += ["Changed from the paper:", ""] + [f"- {c}" for c in exp.changes] + [""]
    for part_dir in sorted(p for p in exp_dir.iterdir() if (p / "results.md").exists()):
        wall = json.loads((part_dir / "wall_time.json").read_text())["wall_time_s"]
        last = (part_dir / "provenance.jsonl").read_text().splitlines()[-1]
        info = json.loads(last)["dataset"]
        note = f" ({info['note']})" if info.get("note") else ""
        lines += [f"## {info['label']}{note}", "", f"Wall time, training + attacks, summed over invocations: "
                  f"{wall:.0f} s", "", (part_dir / "results.md").read_text()]
    return "\n".join(lines)


def reproduce(names: list[str], preset: str, out: Path, data_dir: str | None, device: str, seed: int,
              only: str | None, cifar: str | None, reporter: Reporter, precision: str = "auto",
              zoo: Path | None = None) -> None:
    """Build and run the named experiments ('all' for E1-E5) at a preset."""
    check_preset(preset)
    wanted = experiment_names(names)
    datasets = resolve_datasets(data_dir, only, cifar)
    experiments = [build(name, PRESETS[preset], datasets) for name in wanted]  # validate all before running any
    for exp in experiments:
        run_experiment(exp, out, data_dir, device, seed, reporter, precision, zoo)

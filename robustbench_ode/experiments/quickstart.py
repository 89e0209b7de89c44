"""The main job on the embedded offline dataset: train a ResNet and a Neural ODE, attack both.

Small on purpose: it runs on 2 CPU cores in a few minutes, offline, and shows the whole pipeline
(train -> safe checkpoint -> FGSM/PGD over an ε grid -> CSV, Markdown, PNG).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..checkpoint import META, read_meta
from ..evaluation.attack_progress import run_attack_job
from ..evaluation.request import AttackJob, AttackSpec
from ..errors import UserError, option
from ..progress import Reporter
from ..training.train_progress import run_training
from ..training.config import TrainConfig, trained_with

MODELS = {
    "resnet20": TrainConfig(model="resnet20", dataset="digits", epochs=6, batch_size=64, lr=0.05),
    # Adam peaking at 2e-2 with a one-cycle schedule (not the paper's 1e-3): the 1,437 digits give few
    # steps per epoch, and a constant rate left the last epoch where it happened to land (85-94% dopri5
    # test accuracy by thread count and seed; one-cycle: 94.7-96.9%, docs/training.md). Training steps
    # integrate with rk4 at step 0.5 (8 evaluations of f, about 7x cheaper than dopri5's 26-50);
    # the checkpoint is the adaptive dopri5 ODE: its test accuracy and every attack use dopri5
    "odenet": TrainConfig(model="odenet", dataset="digits", epochs=8, batch_size=32, lr=2e-2, schedule="onecycle",
                          model_options={"channels": 16}, train_solver="rk4:step_size=0.5"),
}
EPS = [0.0, 0.05, 0.1, 0.2, 0.3]


def run_quickstart(out: Path, device: str, reporter: Reporter, seed: int = 0, precision: str = "auto") -> str:
    """Train (or reuse) both models, then run FGSM and PGD-40 over EPS on 200 test digits; training
    steps and attack gradients in `precision` (robustbench_ode.precision), every reported number fp32."""
    checkpoints = []
    for name, base in MODELS.items():
        cfg = replace(base, device=device, seed=seed, precision=precision)
        run_dir = out / name
        if (run_dir / META).exists() and read_meta(run_dir).get("completed"):
            if not trained_with(run_dir, cfg):
                raise UserError(f"'{run_dir}' holds a {name} trained with other settings than the quickstart's "
                                f"(see its config.json); move it away or choose another {option('out')}")
            reporter.line(f"reusing trained {name} in {run_dir}")
        else:
            run_training(cfg, run_dir, resume=run_dir.exists() and any(run_dir.iterdir()), reporter=reporter)
        checkpoints.append(run_dir)
    job = AttackJob(checkpoints=checkpoints, attacks=[AttackSpec.parse("fgsm", {}), AttackSpec.parse("pgd", {})],
                    eps=EPS, out=out / "attack", n_samples=200, batch_size=200, seed=seed, device=device,
                    precision=precision)
    return run_attack_job(job, reporter)

"""'Before' numbers of the verdict fixes: the code of commit a2e4319 (torchdiffeq decisions in
batches, no re-checking, failed Boundary starts robust) on the CPU preset's current checkpoints.

    git worktree add /tmp/old a2e4319
    (cd /tmp/old && PYTHONPATH=/tmp/old python /work/main/scripts/verdict_rerun/before.py mnist|cifar)

Writes runs/before/<E>/<dataset>/; compare with the fixed code's runs/reproduce/cpu/<E>/<dataset>/
using compare.py. The same cells as `odebench reproduce E2-E5 --preset cpu` (CIFAR: the Neural
ODE's cells of E2, E3, E5 and all of E4; no fix applies to a ResNet's cells, as MNIST shows).
"""
import sys
from pathlib import Path
import robustbench_ode
assert "/tmp/old" in robustbench_ode.__file__, f"run with the old code on PYTHONPATH, not {robustbench_ode.__file__}"
from rich.console import Console
from robustbench_ode.cli_attack import run_attack_command
from robustbench_ode.evaluation.runner import AttackSpec
from robustbench_ode.evaluation.session import AttackJob

M = Path("/work/main/runs/reproduce/cpu/models")
OUT = Path("/work/main/runs/before")
data = "/work/shared/data"
con = Console(width=160)
which = sys.argv[1]
ds = "mnist" if which == "mnist" else "cifar10-jpeg"
models = [M / ds / "resnet50", M / ds / "odenet"]
if which == "mnist":
    t1, e3, e4, scale = [0.0, 0.2, 0.3, 0.4, 0.5], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 3.0], 1.0
else:
    t1, e3, e4, scale = [0, 8, 12, 16, 20], [0, 10, 20, 30, 40, 50], [0, 10, 20, 30, 40, 50, 100, 200, 400], 255.0
ode_only = models if which == "mnist" else models[1:]  # ResNet cells: no fix applies (checked on MNIST)
jobs = [
    ("E2", [AttackSpec.parse("fgsm", {}), AttackSpec.parse("pgd", {})], t1, 1000, ode_only),
    ("E3", [AttackSpec.parse("difgsm", {})], e3, 1000, ode_only),
    ("E4", [AttackSpec.parse("boundary", {"steps": "1000"})], e4, 100, models),
]
if which == "cifar":
    e5 = [M / ds / "odenet"]
    jobs.append(("E5", [AttackSpec.parse("pgd", {"steps": "20", "step_size": str(2 / 255)})], [0, 8], 1000, e5))
for name, attacks, eps, n, ckpts in jobs:
    if not all((c / "meta.json").exists() for c in ckpts):
        print("skip", name, "(checkpoints missing)"); continue
    job = AttackJob(checkpoints=ckpts, attacks=attacks, eps=[e / scale for e in eps], out=OUT / name / ds,
                    eps_scale=scale, n_samples=n, seed=0, device="cpu", data_dir=data, paper=name)
    run_attack_command(job, con)

"""Training a Neural ODE through its own adaptive solver or through a fixed-step one (`--train-solver`).

    OMP_NUM_THREADS=1 python benchmarks/ode_train_solver.py [--solver "" --solver rk4:step_size=0.25]

Trains the quickstart's Neural ODE (its recipe: `odenet`, 16 channels, digits, Adam one-cycle to
2e-2, batch 32, 8 epochs) once per `--solver` ("" = the model's own dopri5) and `--seed` into a
temporary directory and prints a Markdown row each: training seconds, f evaluations per forward
pass (first and last epoch), the test accuracy of the checkpoint, which is always measured with
the model's own dopri5, and the f evaluations that dopri5 pass took (a model trained through a
coarse solver may have learned dynamics that are hard to integrate accurately: this says). The CPU's flags and torch's thread count come first. A planning
tool, never a pass/fail test.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from robustbench_ode.experiments.quickstart import MODELS
from robustbench_ode.models.base import nfe_of
from robustbench_ode.precision import cpu_description
from robustbench_ode.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver", action="append", help="a --train-solver value; '' for the model's own")
    parser.add_argument("--seed", type=int, action="append", help="repeatable (default 0)")
    args = parser.parse_args()
    cpu = cpu_description()
    print(f"CPU: {cpu['cpu']} ({', '.join(cpu['cpu_flags'])}); torch threads: {torch.get_num_threads()}\n")
    print("| training steps through | seed | training s | f evaluations per pass | dopri5 test accuracy "
          "| its f evaluations |")
    print("|---|---|---|---|---|---|")
    for solver in args.solver or ["", "rk4:step_size=0.25", "rk4:step_size=0.5"]:
        for seed in args.seed or [0]:
            cfg = replace(MODELS["odenet"], device="cpu", seed=seed, train_solver=solver)
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(cfg, Path(out) / "run")
                meta = trainer.run()
            nfe = [h["nfe_forward"] for h in meta["history"]]
            print(f"| {solver or 'dopri5 (its own)'} | {seed} | {meta['wall_time_s']:.1f} | {nfe[0]} → {nfe[-1]} | "
                  f"{100 * meta['metrics']['test_acc']:.1f}% | {nfe_of(trainer.model)['nfe_forward']} |", flush=True)


if __name__ == "__main__":
    main()

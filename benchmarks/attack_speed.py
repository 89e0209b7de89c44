"""PGD speed: odebench against torchattacks and Foolbox on the same checkpoint and images.

    OMP_NUM_THREADS=2 python benchmarks/attack_speed.py -c runs/.../resnet20 -c runs/.../resnet20-pgd \\
        --data-dir ../shared/data [--n-samples 1000] [--precision auto] [--tools odebench,torchattacks]

For each checkpoint: L∞ PGD-10 at ε = 8/255, step 2/255, random start, on the same class-balanced
test images, run by (1) odebench (`robustbench_ode.evaluate`: fp32 decisions, verified points,
early stop on broken samples, gradients in the resolved `--precision`), (2) torchattacks' PGD and
(3) Foolbox 3's LinfPGD (both fp32, every sample runs every step). Every tool's time runs from the
images to the robust accuracy: odebench's clean pass, attack and verification; the others' attack
and the clean and adversarial predictions. Prints a Markdown table of img/s, gradient steps/s
(input gradients of one image per second), the attack-only steps/s (`attack_only`: the attack
alone on the correctly classified images), robust accuracy and the precision, with the CPU's
flags and the kernels torch dispatches to (`ATEN_CPU_CAPABILITY` / `ONEDNN_MAX_CPU_ISA` can cap them,
e.g. to AVX2 on a CPU that has more). Each tool runs `--rounds` times; the best round is reported
(the machine may be shared). A planning and comparison tool, never a pass/fail test.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import foolbox as fb
import torch
import torchattacks

from robustbench_ode import evaluate
from robustbench_ode.checkpoint import load_checkpoint
from robustbench_ode.data import balanced_subset, load_dataset
from robustbench_ode.precision import cpu_description, resolve_precision
from robustbench_ode.registry import ATTACKS

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10


def robust_accuracy(model: torch.nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Share of samples right on the clean image and on its adversarial point (fp32 decisions)."""
    right = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            yb = y[i : i + batch]
            right.append((model(x[i : i + batch]).argmax(1) == yb) & (model(x_adv[i : i + batch]).argmax(1) == yb))
    return float(torch.cat(right).float().mean())


def third_party(tool: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    """(seconds, robust accuracy) of torchattacks' or Foolbox's PGD over all images; the seconds
    include the clean and adversarial predictions the robust accuracy needs, as odebench's do."""
    points = []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        if tool == "torchattacks":
            points.append(torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=True)(xb, yb))
        else:
            attack = fb.attacks.LinfPGD(abs_stepsize=STEP, steps=STEPS, random_start=True)
            points.append(attack(fb.PyTorchModel(model, bounds=(0, 1)), xb, yb, epsilons=EPS)[1])
    accuracy = robust_accuracy(model, x, torch.cat(points), y, batch)
    return time.perf_counter() - t0, accuracy


def attack_only(tool: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, int]:
    """(seconds, gradient steps) of the attack alone on the images the model classifies correctly:
    odebench's PGD as its runner calls it (full batches where the code refills them), or
    torchattacks' PGD batch by batch. The step itself, without the clean and final predictions."""
    if tool == "torchattacks":
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            pgd = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=True)
            pgd(x[i : i + batch], y[i : i + batch])
        return time.perf_counter() - t0, STEPS * len(x)
    attack = ATTACKS.get("pgd").build(steps=STEPS, step_size=STEP)
    t0 = time.perf_counter()
    if getattr(attack, "refills", False):
        attack(model, x, y, EPS, batch_size=batch, known_correct=True)
    else:  # odebench before full batches: the runner called it batch by batch
        for i in range(0, len(x), batch):
            attack(model, x[i : i + batch], y[i : i + batch], EPS, ids=torch.arange(i, min(i + batch, len(x))))
    return time.perf_counter() - t0, attack.grad_calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--checkpoint", action="append", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--precision", default="auto", help="odebench's gradients: auto, fp32 or bf16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tools", default="odebench,torchattacks,foolbox", help="comma-separated, of those three")
    args = ap.parse_args()
    tools = args.tools.split(",")
    torch.manual_seed(0)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    cpu = cpu_description()
    print(f"CPU: {cpu['cpu']}, flags {', '.join(cpu['cpu_flags'])}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, foolbox {fb.__version__}; "
          f"odebench precision {args.precision} -> {precision.name} ({precision.reason}); kernels "
          f"{torch.backends.cpu.get_cpu_capability()} (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')},"
          f" ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')})\n")
    print("| checkpoint | tool | img/s | gradient steps/s | attack-only steps/s | robust accuracy (%) | precision |")
    print("|---|---|---|---|---|---|---|")
    for ckpt in args.checkpoint:
        model, meta = load_checkpoint(Path(ckpt))
        splits = load_dataset(meta["dataset"], args.data_dir)
        idx = balanced_subset(splits.test_y, args.n_samples)
        x, y = splits.test_x[idx], splits.test_y[idx]
        name = Path(ckpt).name
        best: dict[str, tuple[float, float, float]] = {}
        alone: dict[str, float] = {}  # attack-only gradient steps/s, best round
        with torch.no_grad():
            batches = range(0, len(x), args.batch_size)
            right = torch.cat([model(x[i : i + args.batch_size]).argmax(1) for i in batches]) == y
        prec = "fp32"
        for _ in range(args.rounds):
            if "odebench" in tools:
                t0 = time.perf_counter()
                df = evaluate(ckpt, (x, y), attacks=[("pgd", {"steps": STEPS, "step_size": STEP})], eps=[EPS],
                              n_samples=None, batch_size=args.batch_size, precision=args.precision)
                seconds = time.perf_counter() - t0  # clean pass, attack, verification
                row = df[df["eps"] > 0].iloc[0]
                run = (seconds, float(row["grad_calls"]), float(row["robust_acc"]))
                best["odebench"] = min(best.get("odebench", run), run)
                prec = row["precision"]
            for tool in [t for t in ("torchattacks", "foolbox") if t in tools]:
                sec, acc = third_party(tool, model, x, y, args.batch_size)
                run = (sec, float(STEPS * len(y)), acc)
                best[tool] = min(best.get(tool, run), run)
            for tool in [t for t in ("odebench", "torchattacks") if t in tools]:
                sec, grads = attack_only(tool, model, x[right], y[right], args.batch_size)
                alone[tool] = max(alone.get(tool, 0.0), grads / sec)
        for tool, (sec, grads, acc) in best.items():
            steps_alone = alone.get(tool, float("nan"))
            print(f"| {name} | {tool} | {len(y) / sec:,.0f} | {grads / sec:,.0f} | {steps_alone:,.0f} | "
                  f"{100 * acc:.2f} | {prec if tool == 'odebench' else 'fp32'} |")


if __name__ == "__main__":
    main()

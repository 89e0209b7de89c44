"""AutoAttack speed: odebench's `-a autoattack` against torchattacks' AutoAttack on the same
checkpoint and images, member by member.

    OMP_NUM_THREADS=1 python benchmarks/autoattack_speed.py -c runs/aa_bench/pgd_resnet20 --eps 0.1 \\
        [-c zoo/bench/cifar10-jpeg/resnet20-pgd --eps 8/255 --data-dir ../shared/data] [--n-samples 360]

For each checkpoint (with its own --eps, in the same order), L∞ AutoAttack on the same
class-balanced test images, all in one batch, fp32, the model in eval mode:

- `odebench`: `robustbench_ode.evaluate(..., attacks=[("autoattack", options)], precision="fp32")`:
  the clean pass, the ensemble (each member only on what the earlier ones left, a sample leaving
  a member at its first adversarial point) and the verification of every point by the model;
  the per-member seconds are the `seconds_<member>` of `attack_stats`.
- `torchattacks`: `torchattacks.AutoAttack(model, norm="Linf", eps, version="standard",
  n_classes, seed=0)`, its members run in turn on the samples the earlier ones left, as its
  `MultiAttack` does, then the clean and adversarial predictions the robust accuracy needs.

Two budgets (`--budgets`): `paper` is AutoAttack's (Croce & Hein 2020, and odebench's default):
100 iterations of APGD-CE, of APGD-T per target and of FAB-T per target, 9 targets, Square
5,000 queries. `torchattacks` is what `torchattacks.AutoAttack(version="standard")` 3.5 actually
runs: its APGD, APGDT and FAB members keep their constructors' default `steps=10` (Harry24k/
adversarial-attacks-pytorch#196), so 10 iterations each (Square: 5,000 queries); odebench runs
it with `apgd_steps=10 fab_steps=10`, torchattacks at the paper budget with `steps=100` set on
those three members. Prints the CPU and its flags, then a Markdown table per checkpoint: wall
and CPU seconds (the process's CPU time: less sensitive to a shared machine than wall time),
robust accuracy, and each member's seconds and samples broken. Each run is repeated `--rounds`
times, interleaved, and the fastest (by CPU time) kept. A planning and comparison tool, never a
pass/fail test.
"""
from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import torch
import torchattacks

from robustbench_ode import evaluate
from robustbench_ode.checkpoint import load_checkpoint
from robustbench_ode.data import balanced_subset, load_dataset
from robustbench_ode.precision import cpu_description

MEMBERS = ("apgd-ce", "apgd-t", "fab-t", "square")
BUDGETS = {"paper": 100, "torchattacks": 10}  # iterations of APGD-CE, APGD-T and FAB-T


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_odebench(ckpt: str, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> dict:
    options = {"apgd_steps": steps, "fab_steps": steps}
    w0, c0 = clock()
    df = evaluate(ckpt, (x, y), attacks=[("autoattack", options)], eps=[eps], n_samples=None,
                  batch_size=len(y), precision="fp32")
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    row = df[df["eps"] > 0].iloc[0]
    stats = json.loads(row["attack_stats"])
    members = {m: (stats.get(f"seconds_{m}", 0.0), stats.get(f"broken_by_{m}", 0)) for m in MEMBERS}
    return {"wall": wall, "cpu": cpu, "robust": float(row["robust_acc"]), "members": members,
            "grad_calls": int(row["grad_calls"]), "queries": int(row["queries"])}


def run_torchattacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                     classes: int) -> dict:
    w0, c0 = clock()
    ensemble = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=classes, seed=0)
    attacks = ensemble._autoattack.attacks  # APGD (ce), APGDT, FAB (multi-targeted), Square
    for attack in attacks[:3]:
        attack.steps = steps
    final = x.clone()
    fails = torch.arange(len(y))
    members = {}
    for name, attack in zip(MEMBERS, attacks):  # MultiAttack.forward, timed per member
        t0 = time.perf_counter()
        adv = attack(x[fails], y[fails])
        with torch.no_grad():
            wrong = model(adv).argmax(1) != y[fails]
        final[fails[wrong]] = adv[wrong]
        members[name] = (time.perf_counter() - t0, int(wrong.sum()))
        fails = fails[~wrong]
        if len(fails) == 0:
            break
    with torch.no_grad():
        robust = ((model(x).argmax(1) == y) & (model(final).argmax(1) == y)).float().mean().item()
    # torchattacks' "broken" counts include the clean misclassifications APGD-CE passes through
    return {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "robust": robust, "members": members}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--checkpoint", action="append", required=True)
    ap.add_argument("--eps", action="append", required=True, help="one per checkpoint, e.g. 0.1 or 8/255")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-samples", type=int, action="append", help="one per checkpoint (default 360)")
    ap.add_argument("--budgets", default="paper,torchattacks", help="comma-separated: paper, torchattacks")
    ap.add_argument("--tools", default="odebench,torchattacks", help="comma-separated: odebench, torchattacks")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if len(args.eps) != len(args.checkpoint):
        ap.error("give one --eps per --checkpoint")
    sizes = args.n_samples or [360] * len(args.checkpoint)
    cpu = cpu_description()
    flags = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu["cpu_flags"]) or "none"
    print(f"CPU: {cpu['cpu']} (flags: {flags}), {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}; fp32\n")
    for ckpt, eps_text, n in zip(args.checkpoint, args.eps, sizes):
        eps = float(Fraction(eps_text))
        model, meta = load_checkpoint(Path(ckpt))
        model.eval()
        splits = load_dataset(meta["dataset"], args.data_dir)
        idx = balanced_subset(splits.test_y, n)
        x, y = splits.test_x[idx], splits.test_y[idx]
        classes = splits.info.num_classes
        best: dict[tuple[str, str], dict] = {}
        for _ in range(args.rounds):
            for budget in args.budgets.split(","):
                for tool in args.tools.split(","):
                    steps = BUDGETS[budget]
                    result = (run_odebench(ckpt, x, y, eps, steps) if tool == "odebench"
                              else run_torchattacks(model, x, y, eps, steps, classes))
                    key = (budget, tool)
                    if key not in best or result["cpu"] < best[key]["cpu"]:
                        best[key] = result
                    print(f"  {Path(ckpt).name} {budget} {tool}: {result['wall']:.1f} s wall, "
                          f"{result['cpu']:.1f} s CPU, robust {100 * result['robust']:.2f}%", flush=True)
        print(f"\n{Path(ckpt).name} ({meta['dataset']}, {meta.get('method', 'standard')}), L∞ ε = {eps_text}, "
              f"n = {n}, fp32, one batch\n")
        members = " | ".join(f"{m} s (broke)" for m in MEMBERS)
        print(f"| budget | tool | wall s | CPU s | robust acc (%) | {members} |")
        print("|---|---|---|---|---|" + "---|" * len(MEMBERS))
        for (budget, tool), r in best.items():
            cells = " | ".join(f"{r['members'][m][0]:.1f} ({r['members'][m][1]})" if m in r["members"] else "–"
                               for m in MEMBERS)
            print(f"| {budget} ({BUDGETS[budget]} it.) | {tool} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                  f"{100 * r['robust']:.2f} | {cells} |")
        print()


if __name__ == "__main__":
    main()

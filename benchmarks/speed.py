"""Throughput of training steps and input-gradient (attack) steps, fp32 vs bf16 autocast.

    python benchmarks/speed.py --data-dir ../shared/data [--models resnet20,odenet_mnist:channels=32]

Prints img/s per model and dataset, and the NFE of ODE models; a planning tool for presets,
never a pass/fail test.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from robustbench_ode.data import load_dataset
from robustbench_ode.models import build_model
from robustbench_ode.models.base import nfe_of
from robustbench_ode.parsing import parse_kv


def rate(step, n: int, repeats: int) -> float:
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return n * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--models", default="resnet20,odenet_mnist:channels=32:conv_layers=2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    splits = load_dataset(args.dataset, args.data_dir, subset=args.batch)
    x, y = splits.train_x[: args.batch], splits.train_y[: args.batch]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dataset}, batch {args.batch}")
    for spec in args.models.split(","):
        name, *opts = spec.split(":")
        model = build_model(name, splits.info, **parse_kv(opts))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for amp in ("fp32", "bf16"):

            def train_step():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            def grad_step():
                xi = x.clone().requires_grad_(True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                    loss = F.cross_entropy(model.eval()(xi), y)
                torch.autograd.grad(loss, xi)
                model.train()

            tr = rate(train_step, len(x), args.repeats)
            nfe = nfe_of(model)
            gr = rate(grad_step, len(x), args.repeats)
            print(f"{spec:45s} {amp}: train {tr:7.0f} img/s, input-gradient {gr:7.0f} img/s"
                  + (f", NFE fwd {nfe['nfe_forward']}" if nfe else ""), flush=True)


if __name__ == "__main__":
    main()

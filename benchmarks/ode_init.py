"""How fast the CIFAR-10 Neural ODE (Table A1 layout, t1 = 100) learns: init and learning rate.

    python benchmarks/ode_init.py --data-dir ../shared/data --variant zeroinit   # or lr1e-3, lr1e-4

Trains a 32-channel `odenet_cifar10` (2 convolutions in f, dopri5, t1 = 100) with Adam, batch 32,
on 2,000 class-balanced CIFAR-10 (JPEG copy) images and prints train/test accuracy (500 test
images) and forward NFE after each epoch. `lr1e-3` / `lr1e-4`: PyTorch's default init at that
learning rate; `zeroinit`: `zero_init=True` (f starts at 0) with Adam 1e-3. A planning tool
behind the CPU preset's choice, never a test.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from robustbench_ode.data import balanced_subset, load_dataset
from robustbench_ode.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--variant", choices=["lr1e-3", "lr1e-4", "zeroinit"], default="zeroinit")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=2000)
    args = ap.parse_args()
    splits = load_dataset("cifar10-jpeg", args.data_dir)
    idx = balanced_subset(splits.train_y, args.train)
    x, y = splits.train_x[idx], splits.train_y[idx]
    test = balanced_subset(splits.test_y, 500)
    tx, ty = splits.test_x[test], splits.test_y[test]
    torch.manual_seed(0)
    model = build_model("odenet_cifar10", splits.info, channels=32, conv_layers=2, t1=100.0,
                        zero_init=args.variant == "zeroinit")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4 if args.variant == "lr1e-4" else 1e-3)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm, correct = torch.randperm(len(x)), 0
        for i in range(0, len(x), 32):
            b = perm[i : i + 32]
            out = model(x[b])
            loss = F.cross_entropy(out, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += (out.argmax(1) == y[b]).sum().item()
        model.eval()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
        print(f"{args.variant} epoch {epoch + 1}: train {correct / len(x):.3f} test {acc:.3f} "
              f"NFE {model.body.block.nfe_forward} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()

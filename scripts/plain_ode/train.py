"""Train the plain-torchdiffeq Neural ODE of plain_ode.py (dopri5, rtol = atol = 1e-3, no adjoint)
on odebench's digits split, as a user would with their own loop, and save its weights:

    OMP_NUM_THREADS=1 python scripts/plain_ode/train.py --epochs 25 --out runs/plain_ode/weights.safetensors

then audit the same weights integrated two ways (scripts/plain_ode/audit.sh): `tight` (as trained)
and `loose_adjoint` (odeint_adjoint, rtol = atol = 0.5).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from plain_ode import ODENet  # noqa: E402

from robustbench_ode.data import load_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("runs/plain_ode/weights.safetensors"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = load_dataset("digits")
    net = ODENet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(data.train_y))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(net(data.train_x[b]), data.train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (net(data.test_x).argmax(1) == data.test_y).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} test acc {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

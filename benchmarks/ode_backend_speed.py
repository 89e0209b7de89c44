"""Speed of the two ODE backends (torchdiffeq, torchode) on the CPU preset's MNIST Neural ODE.

    OMP_NUM_THREADS=1 python benchmarks/ode_backend_speed.py [--checkpoint RUN_DIR] [--seconds 4]

The model is `odenet_mnist` with channels=32, conv_layers=2, t1=100, dopri5, rtol=atol=1e-3
(the CPU preset), loaded from `--checkpoint` or randomly initialised. Prints a Markdown table of
forward, input-gradient (one attack step) and training-step (Adam on cross-entropy) img/s at
batch 1 and 100 (and forward at 250), with the mean NFE each sample's own solve needed and the
calls of f per batch (torchode evaluates f on the whole batch until its slowest sample is done).
Images come from real MNIST under `--data-dir` if present, else from the embedded digits.
The machine may be shared, so each cell alternates the backends over a few rounds and reports
the best round. A planning tool, never a pass/fail test.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchdiffeq
import torchode
from torch import Tensor, nn

from robustbench_ode.checkpoint import load_checkpoint
from robustbench_ode.data import load_dataset
from robustbench_ode.data.base import Splits
from robustbench_ode.errors import UserError
from robustbench_ode.models import build_model
from robustbench_ode.models.base import use_ode_backend
from robustbench_ode.models.ode_block import ODEBlock

BACKENDS = ("torchdiffeq", "torchode")
FORWARD_BATCHES = (1, 100, 250)
GRAD_BATCHES = (1, 100)


def cpu_description() -> str:
    """CPU model name and the SIMD flags that matter for fp32/bf16 kernels, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    marks = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx2", "avx512_bf16", "amx_bf16"))
    return f"{name} ({marks})"


def load_model(checkpoint: str | None, splits: Splits) -> nn.Module:
    """The trained checkpoint if given, else the CPU preset's architecture at random init."""
    if checkpoint:
        return load_checkpoint(Path(checkpoint))[0]
    torch.manual_seed(0)
    return build_model("odenet_mnist", splits.info, channels=32, conv_layers=2, t1=100.0, solver="dopri5",
                       rtol=1e-3, atol=1e-3, zero_init=False)


class Batches:
    """Cycles through fixed-size batches of a pool, so every timed call sees new images."""

    def __init__(self, x: Tensor, y: Tensor, batch: int) -> None:
        self.x, self.y, self.batch, self.start = x, y, batch, 0

    def next(self) -> tuple[Tensor, Tensor]:
        if self.start + self.batch > len(self.x):
            self.start = 0
        s = slice(self.start, self.start + self.batch)
        self.start += self.batch
        return self.x[s], self.y[s]


class Bench:
    """One backend at one batch size: its own copy of the weights, optimiser and image streams."""

    def __init__(self, base: nn.Module, backend: str, batch: int, splits: Splits) -> None:
        self.model = copy.deepcopy(base).eval()  # both backends start from the same weights
        use_ode_backend(self.model, backend)
        self.block = next(m for m in self.model.modules() if isinstance(m, ODEBlock))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.test = Batches(splits.test_x, splits.test_y, batch)
        self.train = Batches(splits.train_x, splits.train_y, batch)
        self.batch = batch

    def forward(self) -> None:
        with torch.no_grad():
            self.model.eval()(self.test.next()[0])

    def input_gradient(self) -> None:
        x, y = self.test.next()
        x = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(self.model.eval()(x), y), x)

    def train_step(self) -> None:
        x, y = self.train.next()
        self.opt.zero_grad()
        F.cross_entropy(self.model.train()(x), y).backward()
        self.opt.step()

    def measure(self, step: Callable[[], None], seconds: float) -> tuple[float, float, float]:
        """(img/s, mean NFE per sample, mean calls of f per batch) of `step`, timed for about `seconds`."""
        step()  # warm-up
        own, calls, n, t0 = 0.0, 0, 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds:
            step()
            own += self.block.nfe_per_sample.float().mean().item()
            calls += self.block.nfe_forward
            n += 1
        return self.batch * n / (time.perf_counter() - t0), own / n, calls / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="run directory of a trained odenet_mnist (else random init)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--seconds", type=float, default=6.0, help="timing budget per table cell and backend")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell; the best one counts")
    args = ap.parse_args()

    try:
        splits, data = load_dataset("mnist", args.data_dir), "MNIST"
    except UserError as exc:  # no real data here: the embedded digits keep the script runnable
        print(f"(MNIST not loadable from {args.data_dir}: {exc}; using digits)")
        splits, data = load_dataset("digits"), "digits"
    base = load_model(args.checkpoint, splits)
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), torchdiffeq {torchdiffeq.__version__}, "
          f"torchode {torchode.__version__}, Python {platform.python_version()}")
    print(f"model: {args.checkpoint or 'odenet_mnist random init'}; images: {data} test (forward, gradient), "
          f"train (training step); best of {args.rounds} alternating rounds, "
          f"~{args.seconds:g} s per cell and backend\n")

    rows: dict[tuple[str, int], dict[str, str]] = {(b, n): {} for n in FORWARD_BATCHES for b in BACKENDS}
    for batch in FORWARD_BATCHES:
        benches = {backend: Bench(base, backend, batch, splits) for backend in BACKENDS}
        steps = ("forward", "input_gradient", "train_step") if batch in GRAD_BATCHES else ("forward",)
        for step in steps:
            # The machine is shared: rounds alternate the backends and the best round counts.
            results: dict[str, list[tuple[float, float, float]]] = {backend: [] for backend in BACKENDS}
            for _ in range(args.rounds):
                for backend, bench in benches.items():
                    results[backend].append(bench.measure(getattr(bench, step), args.seconds / args.rounds))
            for backend, runs in results.items():
                rows[backend, batch][step] = f"{max(r[0] for r in runs):.1f}"
                if step == "forward":
                    rows[backend, batch]["nfe"] = f"{sum(r[1] for r in runs) / len(runs):.1f}"
                    rows[backend, batch]["calls"] = f"{sum(r[2] for r in runs) / len(runs):.1f}"
            print(f"  measured {step} at batch {batch}", flush=True)

    print("\n| backend | batch | forward img/s | input-gradient img/s | training-step img/s "
          "| NFE per sample (forward) | calls of f per batch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (backend, batch), row in rows.items():
        grad, train = row.get("input_gradient", "—"), row.get("train_step", "—")
        print(f"| {backend} | {batch} | {row['forward']} | {grad} | {train} | {row['nfe']} | {row['calls']} |")


if __name__ == "__main__":
    main()

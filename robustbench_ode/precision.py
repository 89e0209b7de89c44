"""The arithmetic gradients run in: `--precision auto|fp32|bf16`.

bf16 autocast pays off only where the hardware computes bf16 natively: x86 CPUs with AMX-BF16 or
AVX-512-BF16 (measured on this project's machines: ResNet-20 training 2.4-2.5x and input
gradients 2.7-2.8x faster than fp32, with channels_last) and CUDA GPUs that support bf16. On a CPU
without them (AVX2 only) bf16 is emulated and about 10x slower. `auto` decides from the CPU flags
(`/proc/cpuinfo`) or the GPU's capability; where the flags cannot be read (not Linux, not x86) a
sub-second timed probe decides, and its answer is cached per machine.

Only gradients and training steps run in bf16. Every decision that is reported (clean accuracy,
the verification of an adversarial point, the final count) is made by the fp32 model:
`models.base.GradientsIn` wraps a model for the attack's gradients only. Adaptive-solver ODEs stay fp32
(`for_model`): bf16's 8-bit mantissa would feed the step-size controller's error estimate.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError, option

if TYPE_CHECKING:  # torch is imported by the functions that compute: the CLI validates without it
    import torch
    from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 CPU flags with bf16 arithmetic in hardware
_BF16_ISAS = ("ALL", "BF16", "AMX", "AVX10")  # ONEDNN_MAX_CPU_ISA values that still compute bf16 in hardware
TIMING_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # written next to every timing


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the next processor's block repeats the same fields
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _flags(info: dict[str, str]) -> set[str]:
    return set((info.get("flags") or info.get("Features") or "").split())  # x86 | ARM


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    return _flags(_cpuinfo())


def cpu_description() -> dict[str, object]:
    """CPU model and the flags that decide speed, for provenance next to timings."""
    info = _cpuinfo()
    flags = _flags(info)
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_flags": [f for f in TIMING_FLAGS if f in flags], "cores": os.cpu_count()}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is fp32 or bf16; `reason` says why (recorded with results)."""

    name: str
    requested: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on `device` when bf16; a no-op for fp32."""
        import torch

        if self.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def for_model(self, model: nn.Module) -> "Precision":
        """fp32 for a model with an adaptive-solver ODE block (its step control stays in fp32)."""
        from .models.ode_block import ODEBlock, is_fixed_step

        if self.bf16 and any(isinstance(m, ODEBlock) and not is_fixed_step(m.config.solver) for m in model.modules()):
            return Precision("fp32", self.requested, "adaptive ODE solver: step control stays in fp32")
        return self

    def differentiated(self, model: nn.Module) -> nn.Module:
        """What an attack takes gradients of: `model` itself in fp32, `models.base.GradientsIn(model)` in bf16."""
        from .models.base import GradientsIn

        return GradientsIn(model) if self.bf16 else model

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.name, "precision_requested": self.requested, "precision_reason": self.reason}


FP32 = Precision("fp32", "fp32", "default")


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "odebench" / "precision.json"


def probe_bf16_speedup(repeats: int = 3) -> float:
    """fp32 time / bf16 time of a small conv net's forward and backward on this CPU (< 1 s)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
    x = torch.randn(32, 16, 32, 32).to(memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)

    def run(bf16: bool) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                net(x).float().sum().backward()
            best = min(best, time.perf_counter() - t0)
        return best

    run(False), run(True)  # warm-up
    return run(False) / run(True)


def _probe_cached() -> float:
    """The probe's speed-up, measured once per machine (CPU model and torch version) and cached."""
    import torch

    key = f"{cpu_description()['cpu']}|torch {torch.__version__}"
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = round(probe_bf16_speedup(), 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache, indent=1))
        except OSError:
            pass  # a read-only home: probe again next time
    return float(cache[key])


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """`auto` -> bf16 where this device computes bf16 natively and fast, else fp32; fp32/bf16 as asked."""
    if requested not in PRECISIONS:
        raise UserError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, got '{requested}'")
    if requested != "auto":
        return Precision(requested, requested, "requested")
    import torch

    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "auto", f"{torch.cuda.get_device_name(device)} supports bf16")
        return Precision("fp32", "auto", f"{torch.cuda.get_device_name(device)} has no bf16")
    flags = cpu_flags()
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if native and not any(isa in capped for isa in _BF16_ISAS):
        return Precision("fp32", "auto", f"CPU has {' and '.join(native)} but ONEDNN_MAX_CPU_ISA={capped} keeps "
                         "oneDNN from using it (bf16 would be emulated)")
    if native:
        return Precision("bf16", "auto", f"CPU has {' and '.join(native)}")
    if "avx2" in flags or "sse2" in flags:
        return Precision("fp32", "auto", "x86 CPU without AMX-BF16 or AVX-512-BF16 (bf16 would be emulated)")
    speedup = _probe_cached()
    name = "bf16" if speedup >= 1.2 else "fp32"
    return Precision(name, "auto", f"timed probe: bf16 {speedup:.2f}x fp32's speed")

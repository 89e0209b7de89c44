"""Per-sample randomness for attacks: every random number an attack draws for a sample is a
function of (the attack's seed, the sample's id, the draw's key, its position) and nothing else.

So a sample's random start, probes or windows do not depend on the batch it is attacked in, on
the batch size, on which other samples are still being attacked, or on the process it runs in
(`robustbench_ode.distributed` shards samples over processes), and they are the same on CPU and
GPU. The global RNG is left alone. This is a counter-based generator (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011): no state is carried from draw to draw; the numbers
come from hashing the counters with Wellons' `lowbias32`, a bijection on 32-bit integers, computed
exactly in int64 tensor arithmetic.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), exact in int64 (split so no product overflows)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK


def _mix(x: Tensor) -> Tensor:
    """lowbias32 (C. Wellons, "Prospecting for hash functions", 2018): a well-mixing bijection."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _combine(state: Tensor, value: int | Tensor) -> Tensor:
    """Fold a counter into a hash state."""
    value = torch.as_tensor(value, dtype=torch.int64, device=state.device) & _MASK
    return _mix(state ^ _mix(value))


def with_run_seed(attack_seed: int, seed: int) -> int:
    """The seed an attack draws from in a run with `--seed seed`: the attack's own `seed` option
    in the lower 32 bits and the run's in the upper 32 (SampleRNG and `torch.manual_seed` take 64-bit
    seeds). So `--seed` and the option each change every random number an attack draws, and a run
    with `--seed 0` draws exactly what the attack draws on its own."""
    return attack_seed + ((seed & _MASK) << 32)


class SampleRNG:
    """Random numbers per sample, keyed: `uniform(shape, *key)` gives each sample `shape` numbers
    in [0, 1) that depend only on (seed, the sample's id, key, position); asking again with the
    same key gives the same numbers. Use a distinct key per draw (e.g. (restart,) or (step, try)).

    `rng[rows]` is the generator of a subset of the samples (the same numbers for each of them).
    """

    def __init__(self, seed: int, ids: Tensor) -> None:
        ids = ids.to(torch.int64)
        seed_state = _combine(_combine(torch.zeros((), dtype=torch.int64, device=ids.device), seed & _MASK), seed >> 32)
        self.state = _combine(seed_state.expand(len(ids)), ids)

    @classmethod
    def _of(cls, state: Tensor) -> "SampleRNG":
        rng = cls.__new__(cls)
        rng.state = state
        return rng

    def __getitem__(self, rows: Tensor) -> "SampleRNG":
        return self._of(self.state[rows.to(self.state.device)])

    def __len__(self) -> int:
        return len(self.state)

    def bits(self, shape: tuple[int, ...], *key: int, offset: int = 0) -> Tensor:
        """(n, *shape) int64 hashes in [0, 2**32); position j of a sample's draw is `offset + j`
        in row-major order, so a draw can be made in pieces (offset = numbers already drawn)."""
        state = self.state
        for k in key:
            state = _combine(state, k)
        size = math.prod(shape)
        positions = _mix(torch.arange(offset, offset + size, dtype=torch.int64, device=state.device))
        return _mix(state[:, None] ^ positions[None, :]).view(len(state), *shape)

    def uniform(self, shape: tuple[int, ...], *key: int, offset: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """(n, *shape) uniform numbers in [0, 1) (24 random bits each, exact in float32)."""
        exact = torch.float64 if dtype == torch.float64 else torch.float32
        return ((self.bits(shape, *key, offset=offset) >> 8).to(exact) * 2.0**-24).to(dtype)

    def normal(self, shape: tuple[int, ...], *key: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """(n, *shape) standard normal numbers (Box-Muller on two keyed uniform draws)."""
        u1 = self.uniform(shape, *key, 0, dtype=torch.float64)
        u2 = self.uniform(shape, *key, 1, dtype=torch.float64)
        return ((-2.0 * torch.log1p(-u1)).sqrt() * torch.cos(2.0 * math.pi * u2)).to(dtype)

    def integers(self, high: int | Tensor, *key: int) -> Tensor:
        """(n,) integers in [0, high) (`high` one bound, or one per sample)."""
        high = torch.as_tensor(high, device=self.state.device)
        return (self.uniform((), *key, dtype=torch.float64) * high).floor().long()

    def rademacher(self, shape: tuple[int, ...], *key: int, offset: int = 0, like: Tensor) -> Tensor:
        """(n, *shape) independent ±1 entries with the dtype and device of `like`; entry j is bit
        j % 32 of hash j // 32 (32 signs per hash), with `offset` counted in entries."""
        size = math.prod(shape)
        first, last = offset // 32, (offset + size - 1) // 32
        words = self.bits((last - first + 1,), *key, offset=first)
        shifts = torch.arange(32, device=words.device)
        bits = ((words[:, :, None] >> shifts) & 1).flatten(1)[:, offset - 32 * first : offset - 32 * first + size]
        return (2 * bits - 1).to(device=like.device, dtype=like.dtype).view(len(self), *shape)


def random_in_ball(x: Tensor, eps: float, norm: str, rng: SampleRNG, *key: int) -> Tensor:
    """A uniform random point of the eps-ball around each sample of `x` (one row of `rng` each),
    clamped to [0, 1]; `key` names the draw (e.g. the restart).

    L∞: uniform in the cube (Madry et al. 2018). L2: Gaussian direction, radius eps * U^(1/d),
    which is uniform in the ball.
    """
    shape = tuple(x.shape[1:])
    if norm == "linf":
        delta = (2 * rng.uniform(shape, *key, dtype=x.dtype).to(x.device) - 1) * eps
    else:
        direction = rng.normal(shape, *key, 0, dtype=x.dtype).to(x.device).flatten(1)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        u = rng.uniform((1,), *key, 1, dtype=x.dtype).to(x.device)
        delta = (direction * eps * u ** (1.0 / direction.shape[1])).view_as(x)
    return (x + delta).clamp(0.0, 1.0)

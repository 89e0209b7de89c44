"""Several processes under torchrun: who am I, which samples are mine, and the gathers that put
the processes' results back together.

`torchrun --nproc-per-node N -m robustbench_ode attack ...` starts N copies of the command with
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous in their environment. Each joins one process
group on first use (`init`): NCCL where every process has a GPU (the one numbered by its
LOCAL_RANK; DistributedDataParallel's gradients), gloo otherwise, plus a gloo group for the small
CPU objects exchanged here. Without WORLD_SIZE > 1 every helper is the single-process identity,
so the same code runs alone unchanged. See docs/scale.md.
"""
from __future__ import annotations

import atexit
import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")
_cpu_group: Any = None


def init() -> None:
    """Join torchrun's process group once (a no-op in a single process or when already joined)."""
    global _cpu_group
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and local_rank < torch.cuda.device_count()  # one GPU per process
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    _cpu_group = dist.new_group(backend="gloo") if cuda else dist.group.WORLD
    atexit.register(leave)


def leave() -> None:
    """Leave the process group (each process once its work is done; at exit at the latest).

    Drops this module's reference to the gloo group too: a process group object still alive when
    the interpreter shuts down has its gloo threads torn down without the GIL, and the process
    aborts ("terminate called without an active exception") after finishing its work."""
    global _cpu_group
    _cpu_group = None
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """How many processes work on the job (1 without torchrun)."""
    init()
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's number, 0 .. world_size() - 1."""
    init()
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0; the only one without torchrun)."""
    return rank() == 0


def cpu_group() -> Any:
    """The gloo group for CPU tensors and objects (the default group where that is gloo)."""
    global _cpu_group
    if _cpu_group is None:  # a group the caller initialised: ours is made once, by every process alike
        _cpu_group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return _cpu_group


def shard(n: int, split: bool = True, of: int | None = None) -> Tensor:
    """The indices (into n samples) that process `of` (default: this one) works on: every
    world_size()-th sample from its rank, or, when not `split`, all of them on rank 0 and none
    elsewhere (for work that must not be divided)."""
    world, r = world_size(), rank() if of is None else of
    if not split:
        return torch.arange(n if r == 0 else 0)
    return torch.arange(r, n, world)


def all_gather(obj: T) -> list[T]:
    """Every process's `obj` (picklable), in rank order; [obj] in a single process."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=cpu_group())
    return out


def gather_shards(part: Tensor, n: int, split: bool = True) -> Tensor:
    """The (n, ...) CPU tensor whose rows at `shard(n, split, of=r)` are process r's `part`."""
    parts = all_gather(part.cpu())
    if len(parts) == 1:
        return parts[0]
    full = torch.empty((n, *part.shape[1:]), dtype=part.dtype)
    for r, rows in enumerate(parts):
        full[shard(n, split, of=r)] = rows
    return full


def broadcast(obj: T) -> T:
    """Rank 0's `obj` in every process (picklable)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=cpu_group())
    return box[0]


def sync_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers of `module` (e.g. BatchNorm statistics)."""
    if world_size() == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0, group=cpu_group() if buf.device.type == "cpu" else None)


"""The epoch loop: deterministic, resumable training that writes a safe checkpoint.

Resume equivalence: each epoch's shuffling comes from a generator seeded with (seed, epoch), and
the global RNG state (which draws augmentation noise and adversarial random starts) is saved with
the optimiser after every completed epoch, so a run resumed from epoch k computes exactly what an
uninterrupted run computes.

Several processes (torchrun, DistributedDataParallel): every global batch of the seeded order
is split among the processes (process r takes every N-th image from the r-th, as
DistributedSampler does), so the effective batch stays --batch-size and the schedule is the
single process's; DDP averages the gradients. Each process reseeds its global RNG at every epoch
from (seed, epoch, rank), so a resumed run draws the same noise and starts; rank 0 writes the
run dir. See docs/scale.md.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import distributed
from ..checkpoint import save_checkpoint
from ..data import Splits, load_dataset
from ..errors import UserError, option
from ..models import build_model
from ..registry import MODELS
from ..models.base import fast_layout, has_ode_solver, nfe_of, solver_surrogate
from ..models.odenet import parse_solver_spec
from ..precision import resolve_precision
from ..runinfo import atomic_write_json, provenance, resolve_device, seed_everything
from .augment import parse_augment
from .config import CONFIG, STATE, TrainConfig, resumable_part
from .methods import build_method, method_entry

def is_ode_model(model: nn.Module) -> bool:
    """True when the model integrates an ODE (it has NFE counters)."""
    return nfe_of(model) is not None


def make_optimizer(
    cfg: TrainConfig, model: nn.Module, steps_per_epoch: int = 1
) -> tuple[torch.optim.Optimizer, Any, dict]:
    """The paper's recipes: Adam halved every 50 epochs (Neural ODE), SGD 0.1 with /10 at 50%/75% (ResNet);
    `multistep` with explicit `milestones` and `gamma` gives e.g. Yan et al.'s /5 after epochs 30, 60, 90.

    `onecycle` (Smith & Topin's super-convergence: warm-up to --lr over the first 30% of the batches,
    cosine annealing to ~0 after) is stepped per batch, so it needs `steps_per_epoch`; the others
    are stepped per epoch."""
    ode = is_ode_model(model)
    opt_name = cfg.optimizer if cfg.optimizer != "auto" else ("adam" if ode else "sgd")
    if opt_name == "adam":
        lr = cfg.lr or 1e-3
        wd = cfg.weight_decay or 0.0
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    else:
        lr = cfg.lr or 0.1
        wd = 1e-4 if cfg.weight_decay is None else cfg.weight_decay
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=wd)
    schedule = cfg.schedule if cfg.schedule != "auto" else ("halve" if opt_name == "adam" else "multistep")
    extra: dict[str, Any] = {}
    if schedule == "halve":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=0.5)
    elif schedule == "multistep":
        milestones = sorted(set(cfg.milestones)) or sorted({max(1, round(cfg.epochs * 0.5)), max(1, round(cfg.epochs * 0.75))})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=cfg.gamma)
        extra = {"milestones": milestones, "gamma": cfg.gamma}
    elif schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=cfg.epochs * steps_per_epoch)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    resolved = {"optimizer": opt_name, "lr": lr, "weight_decay": wd, "schedule": schedule} | extra
    return opt, sched, resolved


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Clean accuracy in fp32, eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum().item()
    model.train(was_training)
    return correct / max(1, len(x))


EpochCallback = Callable[[dict[str, Any]], None]
BatchCallback = Callable[[int, int, float, float, dict | None, float], None]


class Trainer:
    """Trains one model into a run directory, resuming from its last completed epoch."""

    def __init__(self, cfg: TrainConfig, out: Path, resume: bool = False) -> None:
        cfg.validate()
        self.cfg, self.out, self.resume = cfg, Path(out), resume
        self.device = resolve_device(cfg.device)
        self.processes, self.rank = distributed.world_size(), distributed.rank()
        if self.out.exists() and any(self.out.iterdir()) and not resume:
            raise UserError(f"run dir '{self.out}' is not empty: pass {option('resume')} to continue it, "
                            f"or choose another {option('out')}")
        if cfg.batch_size < self.processes:
            raise UserError(f"{option('batch_size')} {cfg.batch_size} is smaller than the {self.processes} processes "
                            "that share each batch")
        self.method = build_method(cfg.method, cfg.method_options)
        if self.processes > 1 and not getattr(self.method, "supports_ddp", True):
            raise UserError(f"training method '{cfg.method}' does not run in several processes; train it in one")
        self.augment = parse_augment(cfg.augment)
        self.splits: Splits = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.subset, cfg.test_subset)
        seed_everything(cfg.seed)
        model = build_model(cfg.model, self.splits.info, **cfg.model_options).to(self.device)
        self.precision = resolve_precision(cfg.precision, self.device).for_model(model)
        # channels_last goes with bf16 on a CPU for BatchNorm nets (their bf16 kernels want it; GroupNorm
        # ones run 3.6x slower in it: yan2020_cnn, 1 thread, AMX); asked for, it is honoured
        batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        self.channels_last = (self.precision.bf16 and self.device.type == "cpu" and batchnorm) \
            if cfg.channels_last is None else cfg.channels_last
        self.model = fast_layout(model, self.channels_last)
        self.stepped = self._training_solver(self.model)
        self.model_options = MODELS.get(cfg.model).resolve(cfg.model_options)
        self.method_options = method_entry(cfg.method).resolve(cfg.method_options)
        steps = -(-len(self.splits.train_y) // cfg.batch_size)
        self.optimizer, self.scheduler, self.resolved = make_optimizer(cfg, self.model, steps)
        self.per_batch_schedule = self.resolved["schedule"] == "onecycle"
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.wall = 0.0
        if resume:
            self._load_state()
        self.parallel = self._parallel()

    def _parallel(self) -> nn.Module:
        """What a training step runs: the model, or under torchrun the model in
        DistributedDataParallel (its construction waits for every process and gives them rank 0's
        weights and buffers). Buffers are not synchronised at each forward: within an epoch
        BatchNorm statistics are each process's own, and at its end every process takes rank 0's
        (the ones saved, so a resumed run starts where an uninterrupted one is); a forward is
        then never a collective, so methods may run the model a different number of times in
        each process."""
        if self.processes == 1:
            return self.stepped
        from torch.nn.parallel import DistributedDataParallel

        cuda = self.device.type == "cuda"
        return DistributedDataParallel(
            self.stepped, device_ids=[torch.cuda.current_device()] if cuda else None, forward_sync_buffers=False,
            process_group=None if cuda else distributed.cpu_group())

    def _training_solver(self, model: nn.Module) -> nn.Module:
        """What training steps run: `model`, or with `train_solver` the same weights integrated by that
        solver (`models.base.solver_surrogate`: every parameter shared, so the optimiser trains `model`)."""
        if not self.cfg.train_solver:
            return model
        if not has_ode_solver(model):
            raise UserError(f"{option('train_solver')} applies to ODE models; '{self.cfg.model}' has no ODE solver")
        return solver_surrogate(model, **parse_solver_spec(self.cfg.train_solver, "train_solver"))

    def _load_state(self) -> None:
        state_file = self.out / STATE
        if not state_file.exists():
            raise UserError(f"nothing to resume in '{self.out}' (no {STATE})")
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file
            raise UserError(f"cannot resume from '{state_file}': {str(exc).splitlines()[0]}") from None
        if resumable_part(state.get("config", {})) != resumable_part(asdict(self.cfg)):
            raise UserError(f"'{self.out}' was started with a different configuration (see its config.json); "
                            f"resume with the same options or choose another {option('out')}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.start_epoch, self.history, self.wall = state["epoch"], state["history"], state["wall"]

    def _save_state(self, epoch: int) -> None:
        if not distributed.is_main():
            return
        state = {
            "config": asdict(self.cfg),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "history": self.history,
            "wall": self.wall,
        }
        tmp = self.out / f".{STATE}.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / STATE)

    def _train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.splits.train_x, self.splits.train_y
        if self.device.type == "cuda" and x.numel() * 4 < 0.5 * torch.cuda.mem_get_info(self.device)[0]:
            return x.to(self.device), y.to(self.device)  # keep data on the GPU when it fits
        return x, y

    def run(self, on_batch: BatchCallback | None = None, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
        """Train the remaining epochs, saving state after each; write the checkpoint at the end."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            atomic_write_json(self.out / CONFIG, asdict(cfg) | {"resolved": self.resolved | self.precision.to_dict() | {
                "channels_last": self.channels_last}})
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        x_all, y_all = self._train_data()
        n = len(x_all)
        for epoch in range(self.start_epoch, cfg.epochs):
            self.parallel.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
            if self.processes > 1:  # each process its own noise, a function of (seed, epoch, rank): resumable
                torch.manual_seed((cfg.seed * 100003 + epoch) * 1009 + self.rank)
            t0 = time.perf_counter()
            seen, loss_sum, correct = 0, 0.0, 0
            for b, i in enumerate(range(0, n, cfg.batch_size)):
                idx = order[i : i + cfg.batch_size]
                if len(idx) < self.processes:  # a last batch too small to give every process an image
                    break
                idx = idx[self.rank :: self.processes]  # this process's share of the global batch
                xb = x_all[idx.to(x_all.device)].to(self.device, non_blocking=True)
                yb = y_all[idx.to(y_all.device)].to(self.device, non_blocking=True)
                if self.augment is not None:  # training inputs only: evaluate() and the attacks see clean images
                    xb = self.augment(xb)
                with self.precision.autocast(self.device):
                    loss, logits = self.method.train_step(self.parallel, self.optimizer, xb, yb)
                if self.per_batch_schedule:
                    self.scheduler.step()
                seen += len(yb)
                loss_sum += loss * len(yb)
                correct += (logits.argmax(1) == yb).sum().item()
                if on_batch:
                    rate = seen / max(1e-9, time.perf_counter() - t0)
                    on_batch(epoch, b, loss_sum / seen, correct / seen, nfe_of(self.stepped), rate)
            if not self.per_batch_schedule:
                self.scheduler.step()
            dt = time.perf_counter() - t0
            self.wall += dt
            if self.processes > 1:  # the epoch's figures over every process's share; rank 0's statistics for all
                shares = distributed.all_gather((seen, loss_sum, correct))
                seen, loss_sum, correct = (sum(share[k] for share in shares) for k in range(3))
                distributed.sync_buffers(self.model)
            record = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(1, seen),
                "train_acc": correct / max(1, seen),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(dt, 3),
                "img_per_s": round(seen / max(1e-9, dt), 1),
                "precision": self.precision.name,
                **(nfe_of(self.stepped) or {}),
            }
            self.history.append(record)
            snapshot = epoch + 1 in cfg.snapshots and epoch + 1 < cfg.epochs
            if snapshot and distributed.is_main():  # before the state: a crash redoes the epoch and its snapshot
                self.write_checkpoint(self.out / snapshot_dir(epoch + 1), epoch + 1)
            self._save_state(epoch + 1)
            if on_epoch:
                on_epoch(record)
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Evaluate clean test accuracy in fp32 and write the checkpoint with full metadata (under
        torchrun rank 0 does, and every process returns its metadata)."""
        if not distributed.is_main():
            return distributed.broadcast(None)
        return distributed.broadcast(self.write_checkpoint(self.out, self.cfg.epochs))

    def write_checkpoint(self, path: Path, epochs_done: int) -> dict[str, Any]:
        """Write the model as it is after `epochs_done` epochs, with its fp32 clean test accuracy,
        as a checkpoint at `path`; return its metadata. Rank 0 only."""
        test_acc = evaluate(self.model, self.splits.test_x, self.splits.test_y, self.cfg.eval_batch_size, self.device)
        history = [h for h in self.history if h["epoch"] <= epochs_done]
        rates = [h["img_per_s"] for h in history]
        meta = {
            "model": self.cfg.model,
            "model_options": self.model_options,
            "dataset": self.cfg.dataset,
            "dataset_info": self.splits.info.to_dict(),
            "normalisation": {"mean": list(self.splits.info.mean), "std": list(self.splits.info.std)},
            "train_size": len(self.splits.train_y),
            "test_size": len(self.splits.test_y),
            "epochs": epochs_done,
            "method": self.cfg.method,
            "method_options": self.method_options,
            "training": self.resolved | self.precision.to_dict() | {
                "batch_size": self.cfg.batch_size, "channels_last": self.channels_last, "augment": self.cfg.augment,
                **({"train_solver": self.cfg.train_solver} if self.cfg.train_solver else {})},
            "metrics": {
                "test_acc": test_acc,
                "final_train_loss": history[-1]["train_loss"] if history else None,
                "img_per_s": round(sum(rates) / len(rates), 1) if rates else None,
            },
            "history": history,
            "wall_time_s": round(sum(h["seconds"] for h in history), 2) if epochs_done < self.cfg.epochs else round(self.wall, 2),
            "completed": True,
            **({"snapshot": {"of_epochs": self.cfg.epochs, "run_dir": str(self.out)}} if epochs_done < self.cfg.epochs else {}),
            **provenance(self.cfg.seed, self.device),
        }
        save_checkpoint(path, self.model, meta)
        return meta


def snapshot_dir(epoch: int) -> str:
    """Where a run dir keeps the checkpoint of `epoch` (`TrainConfig.snapshots`): epoch-004, ..."""
    return f"epoch-{epoch:03d}"

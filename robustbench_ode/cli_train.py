"""Runs a training job with a rich progress bar (kept out of cli.py so cli stays a thin parser)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .errors import UserError
from .training.trainer import TrainConfig, Trainer


def run_training(cfg: TrainConfig, out: Path, resume: bool, console: Console) -> dict:
    """Train with live loss / accuracy / NFE / throughput, then print test accuracy."""
    if out.exists() and not out.is_dir():
        raise UserError(f"run directory '{out}' is a file; give --out a directory")
    trainer = Trainer(cfg, out, resume=resume)
    n_batches = -(-len(trainer.splits.train_y) // cfg.batch_size)
    console.print(
        f"training [bold]{cfg.model}[/bold] on {trainer.splits.info.label} "
        f"({len(trainer.splits.train_y)} train / {len(trainer.splits.test_y)} test), "
        f"{trainer.resolved['optimizer']} lr={trainer.resolved['lr']} schedule={trainer.resolved['schedule']}, "
        f"method={cfg.method}, device={trainer.device}"
        + (f", resuming at epoch {trainer.start_epoch + 1}" if trainer.start_epoch else "")
    )
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[nfe]} {task.fields[rate]:.0f} img/s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("train", total=n_batches, epoch="-", loss=0.0, acc=0.0, nfe="", rate=0.0)

        def on_batch(epoch: int, b: int, loss: float, acc: float, nfe: dict | None, rate: float) -> None:
            nfe_text = f"NFE {nfe['nfe_forward']}/{nfe['nfe_backward']}" if nfe else ""
            progress.update(task, completed=b + 1, epoch=f"{epoch + 1}/{cfg.epochs}", loss=loss, acc=acc,
                            nfe=nfe_text, rate=rate)

        def on_epoch(rec: dict) -> None:
            nfe_text = f" NFE fwd {rec['nfe_forward']} bwd {rec['nfe_backward']}" if "nfe_forward" in rec else ""
            console.print(f"epoch {rec['epoch']}/{cfg.epochs}: loss {rec['train_loss']:.4f} "
                          f"train acc {rec['train_acc']:.4f} {rec['img_per_s']:.0f} img/s{nfe_text}")
            progress.reset(task, total=n_batches)

        meta = trainer.run(on_batch=on_batch, on_epoch=on_epoch)
    console.print(f"test accuracy [bold]{meta['metrics']['test_acc']:.4f}[/bold] "
                  f"({meta['test_size']} images); checkpoint written to {out}")
    return meta

"""Train one run directory while reporting progress: the body of `odebench train`, also used by
`quickstart` and `reproduce` (and callable from Python with no reporter)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError, option
from ..progress import SILENT, Reporter
from .config import TrainConfig
from .trainer import Trainer


def run_training(cfg: TrainConfig, out: Path, resume: bool = False, reporter: Reporter = SILENT) -> dict[str, Any]:
    """Train (or resume) `cfg` into `out`, reporting loss / accuracy / NFE / throughput per batch and
    a line per epoch; return the checkpoint's metadata (test accuracy in `metrics`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"run directory '{out}' is a file; give {option('out')} a directory")
    trainer = Trainer(cfg, out, resume=resume)
    n_batches = -(-len(trainer.splits.train_y) // cfg.batch_size)
    resolved = trainer.resolved
    reporter.line(
        f"training {cfg.model} on {trainer.splits.info.label} "
        f"({len(trainer.splits.train_y)} train / {len(trainer.splits.test_y)} test), "
        f"{resolved['optimizer']} lr={resolved['lr']} schedule={resolved['schedule']}, "
        f"method={cfg.method}, device={trainer.device}"
        + (f", training steps through {cfg.train_solver}" if cfg.train_solver else "")
        + (f", resuming at epoch {trainer.start_epoch + 1}" if trainer.start_epoch else "")
    )
    with reporter.bars(transient=True) as bars:
        bars.start("epoch -", n_batches)

        def on_batch(epoch: int, b: int, loss: float, acc: float, nfe: dict | None, rate: float) -> None:
            nfe_text = f"NFE {nfe['nfe_forward']}/{nfe['nfe_backward']}" if nfe else ""
            bars.update(b + 1, label=f"epoch {epoch + 1}/{cfg.epochs}",
                        status=f"loss {loss:.4f} acc {acc:.3f} {nfe_text} {rate:.0f} img/s")

        def on_epoch(rec: dict) -> None:
            nfe_text = f" NFE fwd {rec['nfe_forward']} bwd {rec['nfe_backward']}" if "nfe_forward" in rec else ""
            reporter.line(f"epoch {rec['epoch']}/{cfg.epochs}: loss {rec['train_loss']:.4f} "
                          f"train acc {rec['train_acc']:.4f} {rec['img_per_s']:.0f} img/s{nfe_text}")
            if rec["epoch"] == cfg.epochs:  # the checkpoint's test accuracy: a forward of every test image
                reporter.line(f"measuring clean test accuracy on {len(trainer.splits.test_y)} test images (fp32"
                              + ("" if cfg.test_subset else "; --test-subset N measures fewer") + ")")
            bars.start(f"epoch {rec['epoch']}/{cfg.epochs}", n_batches)

        meta = trainer.run(on_batch=on_batch, on_epoch=on_epoch)
    reporter.line(f"test accuracy {meta['metrics']['test_acc']:.4f} ({meta['test_size']} images); "
                  f"checkpoint written to {out}")
    return meta

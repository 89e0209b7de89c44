"""Train one of the strong (or published) preset's checkpoints into the directory `odebench reproduce
--preset strong` (`published`) reuses, so the trainings can run as separate processes (one per core):

    OMP_NUM_THREADS=1 python scripts/strong/train_one.py yan_twin --data-dir ../shared/data
    OMP_NUM_THREADS=1 python scripts/strong/train_one.py yan_ode-noise --preset published --data-dir ../shared/data

Resumes an interrupted run; the TrainConfig is the preset's own (experiments.paper_specs.table1_models).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from robustbench_ode.cli.rich_reporter import RichReporter
from robustbench_ode.experiments.paper_specs import table1_models
from robustbench_ode.experiments.presets import PRESETS
from robustbench_ode.experiments.reproduce import ensure_trained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("key", help="strong: yan_twin, yan_ode, yan_twin-noise or yan_ode-noise; published: yan_cnn-noise "
                                "or yan_ode-noise")
    ap.add_argument("--preset", default="strong", choices=("strong", "published"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/reproduce", help="reproduce's --out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--zoo", default="zoo", help="take (or resume) the run from <zoo>/<preset>/mnist/<key> if it matches")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    specs = {s.key: s for s in table1_models(preset, "mnist", "mnist")}
    if args.key not in specs:
        ap.error(f"unknown key {args.key!r} (choose from {', '.join(specs)})")
    ensure_trained(specs[args.key], Path(args.out) / preset.name / "models", args.data_dir, args.device, 0,
                   RichReporter(Console()), zoo=Path(args.zoo) / preset.name)


if __name__ == "__main__":
    main()

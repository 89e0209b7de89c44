"""Collect claim.json files into one Markdown table: the released files' checks (runs/claims) and
the training-length curve (runs/published/curve) and the strong preset's pair on the same protocol
(runs/published/same_protocol), robust accuracy (%) per attack and radius.

    python scripts/published/table.py runs/claims runs/published/curve runs/published/same_protocol
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rung(report: dict, eps: float, label: str) -> str:
    """The ladder's worst case after rung `label` at `eps` ('' where it did not run)."""
    rows = [r for r in report["ladder"] if abs(r["eps"] - eps) < 1e-9 and r["budget"] == label]
    return f"{100 * rows[0]['robust_acc']:.1f}" if rows else "·"


def weights(report: dict, folder: Path) -> str:
    if folder.name.startswith("strong-"):  # its ledger entry names the zoo file, so it counts as "released"
        return "ours: strong preset, 8 epochs one-cycle"
    if report["weights"]["is_released_file"]:
        return "released (100 epochs, best noisy-test epoch)"
    return f"ours, epoch {int(folder.name.rsplit('-e', 1)[1])}"


def main() -> None:
    print("| model | weights | clean (protocol images) | FGSM 0.15 / 0.3 / 0.5 (1,000 images) "
          "| APGD-CE rung 0.15 / 0.3 (200 images) | APGD-T rung 0.15 / 0.3 |")
    print("|---|---|---|---|---|---|")
    for folder in map(Path, sys.argv[1:]):
        for path in sorted(folder.glob("*/claim.json")):
            r = json.loads(path.read_text())
            fgsm = {n["eps"]: n["measured"] for n in r["numbers"]}
            print(f"| {r['model']} | {weights(r, path.parent)} | {_clean(path.parent)} | "
                  f"{' / '.join(f'{fgsm[e]:.1f}' if e in fgsm else '·' for e in (0.15, 0.3, 0.5))} | "
                  f"{rung(r, 0.15, 'apgd-ce')} / {rung(r, 0.3, 'apgd-ce')} | {rung(r, 0.15, 'apgd-t')} / {rung(r, 0.3, 'apgd-t')} |")


def _clean(run: Path) -> str:
    """Clean accuracy (%) on the protocol's images, from its results.csv."""
    import csv

    with open(run / "protocol" / "results.csv") as fh:
        row = next(csv.DictReader(fh))
    return f"{100 * float(row['clean_acc']):.1f}"


if __name__ == "__main__":
    main()

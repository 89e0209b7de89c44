"""Collect claim.json files into one Markdown table: the released files' checks (runs/claims) and
the training-length curve (runs/published/curve).

    python scripts/published/table.py runs/claims runs/published/curve
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rung(report: dict, eps: float, label: str) -> str:
    rows = [r for r in report["ladder"] if abs(r["eps"] - eps) < 1e-9 and r["budget"] == label]
    return f"{100 * rows[0]['robust_acc']:.1f}" if rows else ""


def main() -> None:
    print("| model | weights | protocol FGSM 0.15 / 0.3 / 0.5 % | APGD-T ladder 0.15 / 0.3 % | worst case 0.15 / 0.3 % (last rung) | verdict |")
    print("|---|---|---|---|---|---|")
    for folder in map(Path, sys.argv[1:]):
        for path in sorted(folder.glob("*/claim.json")):
            r = json.loads(path.read_text())
            fgsm = {n["eps"]: n["measured"] for n in r["numbers"]}
            worst = {e: [x for x in r["ladder"] if abs(x["eps"] - e) < 1e-9] for e in (0.15, 0.3)}
            last = " / ".join(f"{100 * w[-1]['robust_acc']:.1f}" if w else "" for w in worst.values())
            label = next((w[-1]["budget"] for w in worst.values() if w), "")
            weights = "released" if r["weights"]["is_released_file"] else path.parent.name
            print(f"| {r['model']} | {weights} | {' / '.join(str(fgsm.get(e, '')) for e in (0.15, 0.3, 0.5))} | "
                  f"{rung(r, 0.15, 'apgd-t')} / {rung(r, 0.3, 'apgd-t')} | {last} ({label}) | {r['verdict']} |")


if __name__ == "__main__":
    main()

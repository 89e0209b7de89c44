"""Before (code at a2e4319, before.py) vs after (`odebench reproduce`) on the same checkpoints, per cell.

    python scripts/verdict_rerun/compare.py E2 mnist
"""
import sys, pandas as pd
from pathlib import Path
exp, ds = sys.argv[1], sys.argv[2]
b = pd.read_csv(f"runs/before/{exp}/{ds}/results.csv")
a = pd.read_csv(f"runs/reproduce/cpu/{exp}/{ds}/results.csv", keep_default_na=False)
key = ["model", "attack", "eps", "n"]
m = b.merge(a, on=key, suffixes=("_before", "_after"), how="outer")
scale = float(a["eps_scale"].iloc[0]) if len(a) else 1.0
m["eps"] = (m["eps"] * scale).round(4)
cols = key + ["clean_acc_before", "clean_acc_after", "robust_acc_before", "robust_acc_after", "unverified", "failed_starts"]
cols = [c for c in cols if c in m.columns]
print(m[cols].to_string())

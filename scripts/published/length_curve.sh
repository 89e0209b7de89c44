#!/usr/bin/env bash
# Robustness against training length: each snapshot of the `published` preset's two trainings
# (runs/reproduce/published/models/mnist/yan_{cnn,ode}-noise/epoch-NNN, and the final checkpoint)
# checked with its claim's protocol and the ladder's gradient rungs, on the same images as the
# released files (resumable; skips snapshots that do not exist yet).
#   bash scripts/published/length_curve.sh DATA_ROOT [BUDGETS]
set -euo pipefail
data=$1; budgets=${2:-pgd10,pgd40,apgd-ce,apgd-t}
models=runs/reproduce/published/models/mnist
for net in cnn ode; do
  for dir in "$models/yan_$net-noise"/epoch-* "$models/yan_$net-noise"; do
    [ -f "$dir/model.safetensors" ] || continue
    epochs=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['epochs'])" "$dir/meta.json")
    out=runs/published/curve/yan_$net-e$(printf %03d "$epochs")
    [ -f "$out/claim.json" ] && continue
    odebench claims check yan2020-$net --weights "$dir/model.safetensors" --data-dir "$data" --budgets "$budgets" \
      --no-audit --device cpu --out "$out"
  done
done

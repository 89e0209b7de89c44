#!/usr/bin/env bash
# Copy the strong preset's small result files into docs/results/strong/ for committing: E2's tables
# and the models' metadata (scripts/collect_results.sh), the budget curves (runs/converge_strong*),
# and the four finished checkpoints (weights, meta.json, config.json; ~0.6 MB each) into zoo/strong/mnist/,
# where `odebench reproduce --preset strong` takes them instead of training.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/collect_results.sh strong runs/reproduce docs/results/strong
for src in runs/converge_strong runs/converge_strong-fp32; do
  [ -d "$src" ] || continue
  dst=docs/results/strong/$(basename "$src" | sed 's/converge_strong/converge/')
  find "$src" -type f \( -name '*.csv' -o -name '*.md' -o -name '*.png' -o -name '*.jsonl' \) | while read -r f; do
    rel=${f#"$src"/}; mkdir -p "$dst/$(dirname "$rel")"; cp "$f" "$dst/$rel"
  done
done
for run in runs/reproduce/strong/models/mnist/*/; do
  [ -f "$run/meta.json" ] || continue
  dst=zoo/strong/mnist/$(basename "$run"); mkdir -p "$dst"
  cp "$run/model.safetensors" "$run/meta.json" "$run/config.json" "$dst/"
done
echo "collected into docs/results/strong/ and zoo/strong/"

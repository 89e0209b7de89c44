#!/usr/bin/env bash
# Copy the published-claims work's small files for committing: each claim check (runs/claims/*) and
# each training-length check (runs/published/curve/*) and the strong pair on the same protocol
# (runs/published/same_protocol/*) into docs/results/published/ (claim.json/.md,
# the protocol's and the ladder's tables, the audit), the table of all of them into
# docs/results/published/table.md, and the `published` preset's runs as far as they got (config,
# train_state.pt to resume from, epoch snapshots; ~0.6 MB per checkpoint) into zoo/published/mnist/,
# where `odebench reproduce --preset published` resumes them instead of starting over.
set -euo pipefail
cd "$(dirname "$0")/../.."
for src in runs/claims runs/published/curve runs/published/same_protocol; do
  [ -d "$src" ] || continue
  for run in "$src"/*/; do
    [ -f "$run/claim.json" ] || continue
    dst=docs/results/published/$(basename "$src")/$(basename "$run"); mkdir -p "$dst"
    cp "$run/claim.json" "$run/claim.md" "$dst/"
    for f in protocol/results.csv protocol/results.md protocol/provenance.jsonl ladder/budget.csv ladder/budget.md \
             ladder/steps.csv audit/audit.md audit/audit.json; do
      [ -f "$run/$f" ] && mkdir -p "$dst/$(dirname "$f")" && cp "$run/$f" "$dst/$f"
    done
  done
done
python scripts/published/table.py runs/claims runs/published/curve runs/published/same_protocol > docs/results/published/table.md
for run in runs/reproduce/published/models/mnist/*/; do
  [ -f "$run/config.json" ] || continue
  dst=zoo/published/mnist/$(basename "$run"); mkdir -p "$dst"
  find "$run" -maxdepth 2 -type f \( -name '*.json' -o -name '*.safetensors' -o -name 'train_state.pt' \) | while read -r f; do
    rel=${f#"$run"}; mkdir -p "$dst/$(dirname "$rel")"; cp "$f" "$dst/$rel"
  done
done
echo "collected into docs/results/published/ and zoo/published/"

#!/usr/bin/env bash
# Copy the small result files of a reproduction (tables, plots, provenance, model metadata;
# never weights) from runs/reproduce/<preset>/ into docs/results/<preset>/ for committing.
#
#   bash scripts/collect_results.sh [cpu] [runs/reproduce] [docs/results/cpu]
set -euo pipefail
PRESET=${1:-cpu}
SRC=${2:-runs/reproduce}/$PRESET
DST=${3:-docs/results/$PRESET}
cd "$(dirname "$0")/.."
[ -d "$SRC" ] || { echo "error: $SRC does not exist" >&2; exit 2; }
find "$SRC" -type f \( -name '*.csv' -o -name '*.md' -o -name '*.png' -o -name '*.jsonl' \
    -o -name 'wall_time.json' -o -name 'experiment.json' -o -name 'audit.json' -o -name 'stability.json' \
    -o -name 'meta.json' -o -name 'config.json' \) | while read -r f; do
  rel=${f#"$SRC"/}
  mkdir -p "$DST/$(dirname "$rel")"
  cp "$f" "$DST/$rel"
done
echo "copied $(find "$DST" -type f | wc -l) files into $DST"

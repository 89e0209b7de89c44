#!/usr/bin/env bash
# Collect the small result files of the verdict rerun into docs/results/cpu-verified/ (never weights).
set -euo pipefail
cd "$(dirname "$0")/../.."
DST=docs/results/cpu-verified
bash scripts/collect_results.sh cpu runs/reproduce "$DST"
copy() {  # copy the small files of $1 into $2
  [ -d "$1" ] || return 0
  find "$1" -type f \( -name '*.csv' -o -name '*.md' -o -name '*.png' -o -name '*.jsonl' -o -name '*.json' \) | while read -r f; do
    mkdir -p "$2/$(dirname "${f#"$1"/}")"; cp "$f" "$2/${f#"$1"/}"
  done
}
copy runs/before "$DST/before"
copy runs/audit "$DST/audit"
copy runs/quickstart/attack "$DST/quickstart/after"
copy runs/quickstart_before/attack "$DST/quickstart/before"
copy runs/aa_speed "$DST/autoattack-speed"
echo "collected into $DST"

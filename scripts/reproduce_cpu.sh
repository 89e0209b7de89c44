#!/usr/bin/env bash
# Run the paper's experiments with the CPU preset in the background, resumably.
#
#   nohup bash scripts/reproduce_cpu.sh ../shared/data > runs/reproduce_cpu.log 2>&1 &
#
# Kill it at any time; running it again skips finished checkpoints and cells and resumes
# interrupted training from its last completed epoch. Results: runs/reproduce/cpu/<E>/.
# THREADS (default: all cores) sets torch's thread count; use 1 when the machine is shared.
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
export OMP_NUM_THREADS=${THREADS:-$(nproc)}
for half in mnist cifar10; do
  for e in E2 E3 E4; do
    odebench reproduce "$e" --preset cpu --only "$half" --data-dir "$DATA" --device cpu --out runs/reproduce
  done
done
odebench reproduce E1 --preset cpu --data-dir "$DATA" --device cpu --out runs/reproduce
odebench reproduce E5 --preset cpu --data-dir "$DATA" --device cpu --out runs/reproduce

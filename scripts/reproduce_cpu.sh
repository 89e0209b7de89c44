#!/usr/bin/env bash
# Run the paper's experiments with the CPU preset in the background, resumably, as two streams
# of one thread each (one per core of a 2-core machine):
#   stream 1: E1, then the MNIST halves of E2, E3, E4
#   stream 2: the CIFAR-10 halves of E2, E3, E4, then E5 (which reuses E2's CIFAR Neural ODE)
#
#   nohup bash scripts/reproduce_cpu.sh ../shared/data > runs/reproduce_cpu.log 2>&1 &
#
# Kill it at any time; running it again skips finished checkpoints and cells and resumes
# interrupted training from its last completed epoch. Results: runs/reproduce/cpu/<E>/,
# per-stream logs: runs/reproduce_cpu.stream{1,2}.log. THREADS sets each stream's thread count.
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
export OMP_NUM_THREADS=${THREADS:-1}
mkdir -p runs
run() { odebench reproduce "$@" --preset cpu --data-dir "$DATA" --device cpu --out runs/reproduce; }
(
  run E1
  for e in E2 E3 E4; do run "$e" --only mnist; done
) > runs/reproduce_cpu.stream1.log 2>&1 &
(
  for e in E2 E3 E4; do run "$e" --only cifar10; done
  run E5
) > runs/reproduce_cpu.stream2.log 2>&1 &
wait
echo "done: runs/reproduce/cpu/*/README.md"

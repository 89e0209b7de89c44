#!/usr/bin/env bash
# E3 (DI2-FGSM) and E4 (Boundary Attack) at the CPU preset with the models of run.sh (the faster
# ResNet-20s and the MNIST Neural ODE on every training image; the CIFAR Neural ODE is unchanged),
# MNIST then CIFAR, one after another on all cores; a rerun resumes unfinished cells.
#
#   nohup bash scripts/cpu_models/e3e4.sh ../shared/data > runs/logs/e3e4.log 2>&1 &
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
for exp in E3 E4; do
  for only in mnist cifar10; do
    echo "== $exp $only $(date -u +%FT%TZ)"
    /usr/bin/time -f "wall %e s" odebench reproduce "$exp" --preset cpu --only "$only" --data-dir "$DATA" \
      --device cpu --out runs/reproduce
  done
done
echo "all done $(date -u +%FT%TZ)"

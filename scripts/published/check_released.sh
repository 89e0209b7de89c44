#!/usr/bin/env bash
# Check the three TisODE claims on Yan et al.'s released files (resumable: rerun to continue).
#   bash scripts/published/check_released.sh DIR_WITH_RELEASED_FILES DATA_ROOT
# DIR holds CNN_model_best.pth, ODE_model_best.pth and tisode_model_best.pth, downloaded from
# github.com/HanshuYAN/TisODE (checkpoints/MNIST_{CNN,ODE,tisode}_gaus_1/model_best.pth).
set -euo pipefail
released=$1; data=$2
for pair in cnn:CNN ode:ODE tisode:tisode; do
  claim=${pair%%:*}; file=${pair##*:}
  odebench claims check yan2020-$claim --weights "$released/${file}_model_best.pth" --data-dir "$data" \
    --device cpu --out runs/claims/yan2020-$claim
done

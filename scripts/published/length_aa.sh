#!/usr/bin/env bash
# Robustness against training length at the radii: AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square;
# attack_stats says what each member broke) at
# L∞ ε = 0.2 (the radius of the released pair's 42.5% vs 11.0% under APGD-CE) on 100 class-balanced MNIST
# test images (what one CPU core finishes in a session), for every snapshot of the `published`
# preset's two trainings (zoo/published/mnist/yan_{cnn,ode}-noise/epoch-NNN) and, when given, Yan
# et al.'s released pair (converted with `odebench convert`; never committed: no licence).
#   bash scripts/published/length_aa.sh DATA_ROOT [RELEASED_ODE.safetensors RELEASED_CNN.safetensors]
# Resumable: a rerun reuses finished cells. One output folder per network (snapshot folders share names).
set -euo pipefail
data=$1; released_ode=${2:-}; released_cnn=${3:-}
grid=(-a autoattack --eps 0.2 --n-samples 100 --data-dir "$data" --device cpu)
for net in ode cnn; do
  ckpts=()
  for dir in zoo/published/mnist/yan_$net-noise/epoch-*; do
    [ -f "$dir/model.safetensors" ] && ckpts+=(-c "$dir")
  done
  odebench attack "${ckpts[@]}" "${grid[@]}" --out "runs/published/length_aa/yan_$net"
done
[ -n "$released_ode" ] && odebench attack --model yan2020_ode --weights "$released_ode" --dataset mnist "${grid[@]}" \
  --out runs/published/length_aa/released_ode
[ -n "$released_cnn" ] && odebench attack --model yan2020_cnn --weights "$released_cnn" --dataset mnist "${grid[@]}" \
  --out runs/published/length_aa/released_cnn

#!/usr/bin/env bash
# Attack-budget curves of the strong preset's four MNIST checkpoints (docs/REPRODUCTION.md, "Strong
# models"), one background process per model, one thread each, resumable (rerun the same command):
#
#   nohup bash scripts/strong/curves.sh ../shared/data twins > runs/logs/curves-twins.log 2>&1 &
#   nohup bash scripts/strong/curves.sh ../shared/data odes  > runs/logs/curves-odes.log 2>&1 &
#   EPS=0.1 nohup bash scripts/strong/curves.sh ../shared/data all > runs/logs/curves-0.1.log 2>&1 &
#
# BUDGETS (default: the ladder without PGD-1000 x 5 restarts and AutoAttack, which cost most on
# the ODE nets; a rerun with rungs appended reuses the finished ones), EPS (default 0.2), N (200)
# and PRECISION (default auto: bf16 gradients on a CPU with native bf16; every decision fp32)
# choose the curve; the output is runs/converge_strong[-PRECISION]/<model>[-eps<EPS>]/.
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
WHICH=${2:-all}
N=${N:-200}
EPS=${EPS:-0.2}
PRECISION=${PRECISION:-auto}
BUDGETS=${BUDGETS:-pgd10,pgd40,pgd100,pgd1000,apgd-ce,apgd-t}
export OMP_NUM_THREADS=${THREADS:-1}
M=runs/reproduce/strong/models/mnist
OUT=runs/converge_strong$([ "$PRECISION" = auto ] || echo "-$PRECISION")
SUFFIX=$([ "$EPS" = 0.2 ] || echo "-eps$EPS")
case $WHICH in
  twins) MODELS="yan_twin yan_twin-noise" ;;
  odes) MODELS="yan_ode yan_ode-noise" ;;
  *) MODELS="yan_twin yan_twin-noise yan_ode yan_ode-noise" ;;
esac
for m in $MODELS; do
  nice -n "${NICE:-0}" odebench converge -c "$M/$m" --eps "$EPS" --budgets "$BUDGETS" --n-samples "$N" \
    --data-dir "$DATA" --device cpu --precision "$PRECISION" --out "$OUT/$m$SUFFIX" &
done
wait

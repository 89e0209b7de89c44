#!/usr/bin/env bash
# The audit of a Neural ODE written with plain torchdiffeq (no odebench ODEBlock), trained here,
# integrated as trained (dopri5, rtol = atol = 1e-3) and with a loose tolerance and adjoint
# gradients (odeint_adjoint, rtol = atol = 0.5): docs/audit.md, "Your own Neural ODE".
set -euo pipefail
cd "$(dirname "$0")/../.."
w=runs/plain_ode/weights.safetensors
[ -f "$w" ] || OMP_NUM_THREADS=1 python scripts/plain_ode/train.py --epochs 25 --out "$w"
for m in tight loose_adjoint; do
  OMP_NUM_THREADS=1 odebench audit --model-file "scripts/plain_ode/plain_ode.py:$m" --weights "$w" \
    --n-samples 100 --device cpu --out "runs/plain_ode/audit-$m"
done

# Device command of the 2026-11-26 GPU session (see docs/results.md); run from the repo root as
#   bash scripts/gpu/run3.sh   with .gpu staged by ../shared/gpu/stage.sh all and runs/reproduce/cpu/models/mnist carried.
source .gpu/env.sh
D=$ODEBENCH_DATA; M=runs/reproduce/cpu/models/mnist
timeout 40 python3 -m robustbench_ode audit $M/resnet50 --data-dir $D --n-samples 100 --device cuda --out $OUT/audit-resnet > $OUT/audit_resnet.log 2>&1; echo "resnet rc=$?"
timeout 130 python3 -m robustbench_ode audit $M/odenet --data-dir $D --n-samples 40 --device cuda --out $OUT/audit-ode > $OUT/audit_ode.log 2>&1; echo "ode rc=$?"
grep -h "verdict\|input gradients" $OUT/audit-*/audit.md

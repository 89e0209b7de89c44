# Device command of the 2026-11-26 GPU session (see docs/results.md); run from the repo root as
#   bash scripts/gpu/run2.sh   with .gpu staged by ../shared/gpu/stage.sh all and runs/reproduce/cpu/models/mnist carried.
source .gpu/env.sh
D=$ODEBENCH_DATA; W=/tmp/w2; rm -rf $W; mkdir -p $W
M=runs/reproduce/cpu/models/mnist
TAG=2; source scripts/gpu/steps.sh
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/steps2.txt
step fast45 150 python3 -m robustbench_ode reproduce E4 E5 --preset fast --data-dir $D --device cuda --out $W/reproduce
step audit_ode 165 python3 -m robustbench_ode audit $M/odenet --data-dir $D --n-samples 40 --device cuda --out $W/audit-mnist-odenet
pack

# Device command of the 2026-11-26 GPU session (see docs/results.md); run from the repo root as
#   bash scripts/gpu/run1.sh   with .gpu staged by ../shared/gpu/stage.sh all and runs/reproduce/cpu/models/mnist carried.
# One device call: the fast preset of E1-E5 on CUDA, audits of the CPU-trained MNIST checkpoints,
# and a full-size Table A1 MNIST Neural ODE (128 channels, 4 convs, dopri5, t1=100) under FGSM/PGD.
source .gpu/env.sh
D=$ODEBENCH_DATA; W=/tmp/w; rm -rf $W; mkdir -p $W
M=runs/reproduce/cpu/models/mnist
TAG=; source scripts/gpu/steps.sh
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; python3 -c "import torch;print(torch.__version__)"; } > $OUT/steps.txt 2>&1
step fast 90 python3 -m robustbench_ode reproduce all --preset fast --data-dir $D --device cuda --out $W/reproduce
step audit_ode 90 python3 -m robustbench_ode audit $M/odenet --data-dir $D --n-samples 100 --device cuda --out $W/audit-mnist-odenet
step audit_resnet 40 python3 -m robustbench_ode audit $M/resnet50 --data-dir $D --n-samples 100 --device cuda --out $W/audit-mnist-resnet
step train_full 170 python3 -m robustbench_ode train --model odenet_mnist --model-arg zero_init=true --dataset mnist --data-dir $D --epochs 1 --batch-size 32 --device cuda --out $W/ode-full
[ -f $W/ode-full/meta.json ] && step attack_full 120 python3 -m robustbench_ode attack -c $W/ode-full -a fgsm -a pgd --eps 0.2,0.3,0.4,0.5 --n-samples 1000 --data-dir $D --device cuda --paper E2 --out $W/e2-full
pack; ls -la $OUT

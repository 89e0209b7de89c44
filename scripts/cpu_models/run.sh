#!/usr/bin/env bash
# The CPU preset's faster ResNets and the attack-speed benchmark, one step after another on all
# cores (each step resumes or is skipped when done; the log says what ran):
#   1. the CPU preset's CIFAR ResNet-20 (22 epochs, one-cycle SGD, crop + flip, all 50,000 images,
#      --precision auto), trained where `reproduce` looks for it;
#   2. a PGD-AT ResNet-20 (PGD-3, step 4/255, 6 epochs, same schedule) for the benchmark only;
#   3. benchmarks/attack_speed.py on both (odebench vs torchattacks vs Foolbox, PGD-10, 1,000 images);
#   4. E2 at the CPU preset, MNIST then CIFAR (the ResNets retrain; the Neural ODEs are reused).
#
#   nohup bash scripts/cpu_models/run.sh ../shared/data > runs/logs/cpu_models.log 2>&1 &
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
ROOT=runs/reproduce/cpu/models/cifar10-jpeg
mkdir -p runs/logs runs/bench
recipe=(--optimizer sgd --lr 0.2 --weight-decay 5e-4 --schedule onecycle --augment crop:4+flip --batch-size 128
        --dataset cifar10-jpeg --data-dir "$DATA" --device cpu --model resnet20)
train() {  # train OUT ARGS...: skip a finished run, resume an interrupted one
  local out=$1; shift
  if [ -f "$out/meta.json" ]; then echo "done: $out"; return; fi
  local resume=(); [ -f "$out/train_state.pt" ] && resume=(--resume)
  /usr/bin/time -f "wall %e s" odebench train "${recipe[@]}" "$@" --out "$out" "${resume[@]}"
}
train "$ROOT/resnet50" --epochs 22
train runs/cpu2/cifar-r20-pgd --epochs 6 --method pgd --method-arg steps=3 --method-arg step_size=4/255
[ -f runs/bench/attack_speed.md ] || python benchmarks/attack_speed.py -c "$ROOT/resnet50" -c runs/cpu2/cifar-r20-pgd \
  --data-dir "$DATA" --n-samples 1000 | tee runs/bench/attack_speed.md
for only in mnist cifar10; do
  /usr/bin/time -f "wall %e s" odebench reproduce E2 --preset cpu --only "$only" --data-dir "$DATA" --device cpu \
    --out runs/reproduce
done
echo "all done"

#!/usr/bin/env bash
# Copy what scripts/cpu_models/run.sh and e3e4.sh made into the repository for committing:
#   docs/results/cpu-fast/E2..E4/   E2-E4 at the CPU preset with the faster models (tables, plots, provenance)
#   docs/results/cpu-fast/models/   every CPU-preset model's meta.json and config.json
#   docs/results/cpu-fast/attack_speed.md   the benchmark's table
#   zoo/cpu/<dataset>/<key>/        the CPU preset's finished checkpoints (weights, meta, config), where
#                                   `odebench reproduce --preset cpu` takes them instead of training
#   zoo/bench/cifar10-jpeg/resnet20-pgd/    the PGD-AT ResNet-20 of the benchmark
set -euo pipefail
cd "$(dirname "$0")/../.."
DST=docs/results/cpu-fast
mkdir -p "$DST"
for exp in E2 E3 E4; do
  [ -d "runs/reproduce/cpu/$exp" ] && bash scripts/collect_results.sh "cpu/$exp" runs/reproduce "$DST/$exp"
done
for run in runs/reproduce/cpu/models/*/*/; do
  [ -f "$run/meta.json" ] || continue
  rel=${run#runs/reproduce/cpu/models/}; rel=${rel%/}
  mkdir -p "$DST/models/$rel" "zoo/cpu/$rel"
  cp "$run/meta.json" "$run/config.json" "$DST/models/$rel/"
  cp "$run/model.safetensors" "$run/meta.json" "$run/config.json" "zoo/cpu/$rel/"
done
if [ -f runs/cpu2/cifar-r20-pgd/meta.json ]; then
  mkdir -p zoo/bench/cifar10-jpeg/resnet20-pgd
  cp runs/cpu2/cifar-r20-pgd/{model.safetensors,meta.json,config.json} zoo/bench/cifar10-jpeg/resnet20-pgd/
fi
for f in runs/bench/attack_speed.md runs/bench/attack_speed-fp32.md; do [ -f "$f" ] && cp "$f" "$DST/"; done
du -sh zoo/cpu zoo/bench 2>/dev/null
